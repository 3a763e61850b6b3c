use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[derive(serde::Serialize)]
struct Counter(u32);

impl Counter {
    #[idempotent(manager = &*MANAGER)]
    fn get(&self, x: u32) -> u32 { self.0 + x }
    #[idempotent(manager = &*MANAGER, name = "counter::bump")]
    fn bump(&mut self, x: u32) -> u32 { self.0 += x; self.0 }
    #[idempotent(manager = &*MANAGER, include_self)]
    fn consume(self) -> u32 { self.0 }
    #[idempotent(manager = &*MANAGER, include_self = false)]
    async fn get_async(&self, x: u32) -> u32 { self.0 + x }
}

fn main() {
    let mut c = Counter(1);
    assert_eq!(c.get(1).unwrap(), 2);
    assert_eq!(c.bump(1).unwrap(), 2);
    assert_eq!(idempotency::block_on(c.get_async(2)).unwrap(), 4);
    assert_eq!(c.consume().unwrap(), 2);
}
