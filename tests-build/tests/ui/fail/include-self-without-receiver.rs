use idempotency::idempotent;

#[idempotent(include_self = false)]
fn f(x: u8) -> u8 {
    x
}

#[idempotent(include_self = maybe)]
fn g(x: u8) -> u8 {
    x
}

fn main() {}
