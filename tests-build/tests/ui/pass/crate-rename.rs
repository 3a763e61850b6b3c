//! `crate = path` for a re-exported or renamed dependency.
mod reexport {
    pub use idempotency as idem;
}

static MANAGER: std::sync::LazyLock<reexport::idem::IdempotencyManager> = std::sync::LazyLock::new(|| reexport::idem::IdempotencyManager::new(reexport::idem::MemoryStorage::new()));

#[reexport::idem::idempotent(crate = reexport::idem, manager = &*MANAGER)]
fn f(x: u8) -> u8 { x }

#[derive(reexport::idem::NormalizeKey)]
#[idempotency(crate = "reexport::idem")]
struct S { a: u8 }

fn main() {
    assert_eq!(f(1).unwrap(), 1);
    let mut enc = reexport::idem::KeyEncoder::new("x", 1);
    enc.arg_normalized(&S { a: 1 });
    assert!(enc.finish().is_ok());
}
