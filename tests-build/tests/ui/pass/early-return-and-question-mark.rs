use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct E;
impl From<idempotency::Error> for E { fn from(_: idempotency::Error) -> Self { E } }
impl From<std::num::ParseIntError> for E { fn from(_: std::num::ParseIntError) -> Self { E } }

#[idempotent(manager = &*MANAGER)]
fn f(s: &str) -> Result<i64, E> {
    if s.is_empty() { return Ok(0); }
    let n: i64 = s.parse()?;
    Ok(n)
}

#[idempotent(manager = &*MANAGER)]
async fn g(s: String) -> Result<i64, E> {
    if s.is_empty() { return Ok(0); }
    let n: i64 = s.parse()?;
    Ok(n)
}

#[idempotent(manager = &*MANAGER)]
fn h(n: u8) -> u8 {
    if n > 3 { return 3; }
    n
}

fn main() {
    assert_eq!(f("12").unwrap(), 12);
    assert_eq!(idempotency::block_on(g(String::new())).unwrap(), 0);
    assert_eq!(h(9).unwrap(), 3);
}
