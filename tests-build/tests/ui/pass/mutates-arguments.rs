use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[idempotent(manager = &*MANAGER)]
fn push(mut v: Vec<u8>, mut n: u8) -> Vec<u8> {
    n += 1;
    v.push(n);
    v
}

fn main() {
    assert_eq!(push(vec![1], 1).unwrap(), vec![1, 2]);
    assert_eq!(push(vec![1], 1).unwrap(), vec![1, 2]);
}
