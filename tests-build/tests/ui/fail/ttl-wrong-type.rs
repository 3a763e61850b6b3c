use idempotency::idempotent;

#[idempotent(ttl = "1h")]
fn f(x: u8) -> u8 {
    x
}

#[idempotent(ttl = 1.5)]
fn g(x: u8) -> u8 {
    x
}

#[idempotent(pending_timeout = String::from("60"))]
fn h(x: u8) -> u8 {
    x
}

fn main() {}
