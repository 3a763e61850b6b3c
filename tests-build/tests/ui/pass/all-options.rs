use std::time::Duration;
use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct E;
impl From<idempotency::Error> for E { fn from(_: idempotency::Error) -> Self { E } }

const HOUR: Duration = Duration::from_secs(3600);

#[idempotent(
    manager = &*MANAGER,
    ttl = HOUR,
    failure_ttl = 30,
    pending_timeout = Duration::from_secs(60),
    name = "orders::place",
    version = 7,
    key = order_id,
    scope = (tenant, region),
    on_conflict = wait(Duration::from_millis(200)),
    cache_failures = false,
    fingerprint = "reject",
)]
fn place(tenant: &str, region: u8, order_id: String, cents: u64) -> Result<u64, E> {
    Ok(cents)
}

#[idempotent(manager = MANAGER.clone(), on_conflict = "reject", fingerprint = replay, ttl = 10)]
fn other(x: u8) -> u8 { x }

#[idempotent(manager = std::sync::Arc::new(MANAGER.clone()), on_conflict = wait(2))]
fn arc(x: u8) -> u8 { x }

fn main() {
    assert_eq!(place("t", 1, "o-1".into(), 5).unwrap(), 5);
    assert_eq!(other(1).unwrap(), 1);
    assert_eq!(arc(1).unwrap(), 1);
}
