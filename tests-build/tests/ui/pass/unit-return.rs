use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[idempotent(manager = &*MANAGER)]
fn send_email(to: &str) {
    let _ = to;
}

#[idempotent(manager = &*MANAGER)]
async fn send_sms(to: String) {
    let _ = to;
}

fn main() {
    let r: Result<(), idempotency::Error> = send_email("a@b.c");
    r.unwrap();
    idempotency::block_on(send_sms("1".into())).unwrap();
}
