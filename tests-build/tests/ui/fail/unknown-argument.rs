use idempotency::idempotent;

#[idempotent(tl = 60, managr = m)]
fn f(x: u8) -> u8 {
    x
}

fn main() {}
