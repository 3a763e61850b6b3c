use idempotency::idempotent;

#[idempotent]
fn f(#[idempotency(key)] a: &str, #[idempotency(key)] b: &str) -> u8 {
    let _ = (a, b);
    1
}

#[idempotent(key = a)]
fn g(a: &str, #[idempotency(key)] b: &str) -> u8 {
    let _ = b;
    1
}

#[idempotent]
fn h(#[idempotency(skp)] a: &str) -> u8 {
    let _ = a;
    1
}

fn main() {}
