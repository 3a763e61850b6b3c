use idempotency::idempotent;

#[idempotent(key = id)]
fn f(id: u64) -> u8 {
    let _ = id;
    1
}

fn main() {}
