use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[idempotent(manager = &*MANAGER)]
fn inner(x: u32) -> u32 { x * 2 }

#[idempotent(manager = &*MANAGER)]
fn outer(x: u32) -> u32 { inner(x).unwrap_or(0) + 1 }

#[idempotent(manager = &*MANAGER)]
async fn outer_async(x: u32) -> u32 { inner(x).unwrap_or(0) + 2 }

fn main() {
    assert_eq!(outer(2).unwrap(), 5);
    assert_eq!(idempotency::block_on(outer_async(2)).unwrap(), 6);
}
