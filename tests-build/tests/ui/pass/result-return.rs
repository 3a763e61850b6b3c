use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum AppError { Invalid, Idempotency(String) }

impl From<idempotency::Error> for AppError {
    fn from(e: idempotency::Error) -> Self { AppError::Idempotency(e.to_string()) }
}

type AppResult<T> = Result<T, AppError>;

#[idempotent(manager = &*MANAGER)]
fn parse(s: &str) -> Result<u32, AppError> {
    s.parse().map_err(|_| AppError::Invalid)
}

#[idempotent(manager = &*MANAGER)]
fn parse_alias(s: &str) -> AppResult<u32> {
    s.parse().map_err(|_| AppError::Invalid)
}

fn main() {
    assert_eq!(parse("4"), Ok(4));
    assert_eq!(parse("x"), Err(AppError::Invalid));
    assert_eq!(parse_alias("5"), Ok(5));
}
