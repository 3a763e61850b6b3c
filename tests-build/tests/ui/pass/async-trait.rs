use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct E;
impl From<idempotency::Error> for E { fn from(_: idempotency::Error) -> Self { E } }

#[async_trait::async_trait]
trait Notify {
    async fn notify(&self, user: u64, text: &str) -> Result<u32, E>;
}

struct Mailer { tenant: String }

#[async_trait::async_trait]
impl Notify for Mailer {
    #[idempotent(manager = &*MANAGER, scope = &self.tenant, key = format!("{user}-{text}"))]
    async fn notify(&self, user: u64, text: &str) -> Result<u32, E> {
        Ok(u32::try_from(user).unwrap_or(0) + u32::try_from(text.len()).unwrap_or(0) + u32::try_from(self.tenant.len()).unwrap_or(0))
    }
}

fn main() {
    let m = Mailer { tenant: "t".into() };
    assert_eq!(idempotency::block_on(m.notify(1, "hi")).unwrap(), 4);
}
