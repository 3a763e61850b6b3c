use idempotency::idempotent;

#[idempotent]
fn validate<E: From<idempotency::Error>>(n: i64) -> Result<i64, E> {
    Ok(n)
}

fn main() {}
