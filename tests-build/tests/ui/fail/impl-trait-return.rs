use idempotency::idempotent;

#[idempotent]
fn f(x: u8) -> impl std::fmt::Display {
    x
}

fn main() {}
