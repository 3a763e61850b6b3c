use idempotency::idempotent;

#[idempotent(ttl = 0, failure_ttl = 0)]
fn f(x: u8) -> u8 {
    x
}

fn main() {}
