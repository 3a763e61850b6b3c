use idempotency::idempotent;

#[idempotent]
extern "C" fn f(x: u8) -> u8 {
    x
}

fn main() {
    let _ = f(1);
}
