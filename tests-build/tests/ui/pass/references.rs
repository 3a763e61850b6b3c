use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[idempotent(manager = &*MANAGER)]
fn total(name: &str, items: &[u64], extra: &Option<u64>, map: &std::collections::HashMap<String, u64>) -> u64 {
    name.len() as u64 + items.iter().sum::<u64>() + extra.unwrap_or(0) + map.values().sum::<u64>()
}

fn main() {
    let map = std::collections::HashMap::from([("a".to_owned(), 1)]);
    assert_eq!(total("ab", &[1, 2], &Some(3), &map).unwrap(), 9);
}
