//! Attributes, docs, visibility, generics, where clauses and inner attributes survive.
use idempotency::idempotent;
static MANAGER: std::sync::LazyLock<idempotency::IdempotencyManager> = std::sync::LazyLock::new(|| idempotency::IdempotencyManager::new(idempotency::MemoryStorage::new()));

mod inner {
    use super::*;

    /// Documented.
    #[must_use = "use the value"]
    #[inline]
    #[idempotent(manager = &*MANAGER)]
    pub(crate) fn visible<'a, T>(x: &'a T) -> Vec<u8>
    where
        T: serde::Serialize + AsRef<[u8]> + ?Sized,
    {
        #![allow(clippy::redundant_clone)]
        x.as_ref().to_vec()
    }
}

#[idempotent(manager = &*MANAGER)]
unsafe fn unsafe_fn(x: u8) -> u8 {
    x
}

#[deny(unused_variables)]
#[idempotent(manager = &*MANAGER)]
fn r#type(r#in: u8) -> u8 {
    r#in
}

fn main() {
    let v: Result<Vec<u8>, idempotency::Error> = inner::visible("ab");
    assert_eq!(v.unwrap(), b"ab".to_vec());
    assert_eq!(unsafe { unsafe_fn(1) }.unwrap(), 1);
    assert_eq!(r#type(2).unwrap(), 2);
}
