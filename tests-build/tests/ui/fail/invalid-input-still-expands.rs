//! A bad argument is reported, and the function is still expanded with the valid ones, so
//! its callers (which use the `Result` the expansion returns) see no follow-on errors.
use idempotency::idempotent;

#[idempotent(ttl = 60, tll = 5)]
fn f(x: u8) -> u8 {
    x
}

#[derive(idempotency::NormalizeKey)]
union U {
    a: u8,
}

fn uses_key(_: &impl idempotency::NormalizeKey) {}

fn main() -> Result<(), idempotency::Error> {
    let value: u8 = f(1)?;
    let _ = value;
    uses_key(&U { a: 1 });
    Ok(())
}
