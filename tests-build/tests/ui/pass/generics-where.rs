use idempotency::idempotent;
use serde::{de::DeserializeOwned, Serialize};
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[idempotent(manager = &*MANAGER)]
fn echo<T, const N: usize>(#[idempotency(skip)] items: [T; N], tail: &[T]) -> Vec<T>
where
    T: Serialize + DeserializeOwned + Clone,
{
    let _ = N;
    let mut v = items.to_vec();
    v.extend_from_slice(tail);
    v
}

fn main() {
    assert_eq!(echo([1_u8, 2], &[3]).unwrap(), vec![1, 2, 3]);
    assert_eq!(echo(["a".to_owned()], &[]).unwrap(), vec!["a".to_owned()]);
}
