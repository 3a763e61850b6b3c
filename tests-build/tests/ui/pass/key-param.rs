use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[idempotent(manager = &*MANAGER)]
fn charge(#[idempotency(key)] idempotency_key: &str, cents: u64) -> u64 { cents }

#[idempotent(manager = &*MANAGER)]
fn charge_opt(#[idempotency(key)] idempotency_key: Option<String>, cents: u64) -> u64 { cents }

fn main() {
    assert_eq!(charge("k1", 5).unwrap(), 5);
    assert_eq!(charge("k1", 5).unwrap(), 5);
    assert!(charge_opt(None, 5).is_err());
    assert_eq!(idempotency::with_key_sync("override", || charge("ignored", 6)).unwrap(), 6);
}
