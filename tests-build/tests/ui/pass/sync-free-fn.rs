use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[idempotent(manager = &*MANAGER)]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

fn main() {
    let r: Result<u32, idempotency::Error> = add(1, 2);
    assert_eq!(r.unwrap(), 3);
}
