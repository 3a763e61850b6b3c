use idempotency::idempotent;

#[derive(serde::Serialize, serde::Deserialize)]
struct MyError;

#[idempotent]
fn f(x: u8) -> Result<u8, MyError> {
    Ok(x)
}

fn main() {}
