use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

#[derive(serde::Serialize)]
struct Point { x: i32, y: i32 }

#[idempotent(manager = &*MANAGER)]
fn area((w, h): (u32, u32), Point { x, y }: Point, mut scale: u32, _: bool) -> i64 {
    scale += 1;
    i64::from(w * h * scale) + i64::from(x + y)
}

fn main() {
    assert_eq!(area((2, 3), Point { x: 1, y: 1 }, 1, true).unwrap(), 14);
}
