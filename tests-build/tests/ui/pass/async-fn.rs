use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[idempotent(manager = &*MANAGER)]
async fn fetch(id: u64) -> String {
    format!("item-{id}")
}

fn main() {
    assert_eq!(idempotency::block_on(fetch(7)).unwrap(), "item-7");
}
