use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct E;
impl From<idempotency::Error> for E { fn from(_: idempotency::Error) -> Self { E } }

#[idempotent(manager = &*MANAGER)]
fn sum_to(n: u64) -> Result<u64, E> {
    if n == 0 { return Ok(0); }
    Ok(n + sum_to(n - 1)?)
}

#[idempotent(manager = &*MANAGER)]
async fn sum_to_async(n: u64) -> Result<u64, E> {
    if n == 0 { return Ok(0); }
    Ok(n + Box::pin(sum_to_async(n - 1)).await?)
}

fn main() {
    assert_eq!(sum_to(10).unwrap(), 55);
    assert_eq!(idempotency::block_on(sum_to_async(10)).unwrap(), 55);
}
