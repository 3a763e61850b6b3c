use idempotency::idempotent;

#[idempotent(ttl = 60, version = 1, ttl = 120)]
fn f(x: u8) -> u8 {
    x
}

fn main() {}
