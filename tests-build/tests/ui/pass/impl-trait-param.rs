use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[idempotent(manager = &*MANAGER)]
fn describe(x: impl serde::Serialize + std::fmt::Debug, #[idempotency(skip)] f: impl Fn(u8) -> u8) -> String {
    format!("{x:?}/{}", f(1))
}

fn main() {
    assert_eq!(describe(5_u8, |n| n + 1).unwrap(), "5/2");
}
