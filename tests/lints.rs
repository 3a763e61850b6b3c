//! The expansions are lint-clean: the attributes below deny rustc and clippy lints (pedantic
//! included) over code that uses both macros, so any lint the generated code trips fails the
//! build under `cargo clippy --all-targets` (thiserror's `test_lints.rs`).

use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct LintError;

impl From<idempotency::Error> for LintError {
    fn from(_: idempotency::Error) -> Self {
        LintError
    }
}

#[test]
fn lints_idempotent_expansion_is_clean() {
    #![deny(
        warnings,
        unused_qualifications,
        unused_results,
        clippy::all,
        clippy::pedantic
    )]

    use idempotency::{idempotent, IdempotencyManager, MemoryStorage};

    static MANAGER: std::sync::LazyLock<IdempotencyManager> =
        std::sync::LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));

    /// Sync, plain return, pattern and skipped parameters.
    #[idempotent(manager = &*MANAGER, ttl = 60, version = 2)]
    fn sync_plain((a, b): (u32, u32), #[idempotency(skip)] note: &str) -> u32 {
        let _ = note;
        a + b
    }

    /// Sync, fallible, custom key and scope.
    #[idempotent(manager = &*MANAGER, key = id, scope = tenant, cache_failures = false)]
    fn sync_fallible(tenant: &str, id: &str, n: u32) -> Result<u32, LintError> {
        if n == 0 {
            return Err(LintError);
        }
        Ok(n)
    }

    /// Async, unit return, conflict and fingerprint policies.
    #[idempotent(manager = &*MANAGER, on_conflict = wait(1), fingerprint = "reject")]
    async fn async_unit(#[idempotency(key)] key: String, n: u64) {
        let _ = n;
    }

    /// Async, fallible, early return and `?`.
    #[idempotent(manager = &*MANAGER)]
    async fn async_fallible(s: String) -> Result<u64, LintError> {
        if s.is_empty() {
            return Ok(0);
        }
        let n: u64 = s.parse().map_err(|_| LintError)?;
        Ok(n)
    }

    /// Sync, fallible with an error that is never stored (probed).
    #[idempotent(manager = &*MANAGER)]
    fn sync_io(n: u32) -> std::io::Result<u32> {
        Ok(n)
    }

    /// Generic error type, stored.
    #[idempotent(manager = &*MANAGER)]
    fn sync_generic<E>(n: u32) -> Result<u32, E>
    where
        E: From<idempotency::Error> + Serialize + serde::de::DeserializeOwned,
    {
        Ok(n)
    }

    struct Service;
    impl Service {
        #[idempotent(manager = &*MANAGER)]
        fn method(&self, x: u8) -> u8 {
            let _ = self;
            x
        }
    }

    assert_eq!(sync_plain((1, 2), "n").ok(), Some(3));
    assert_eq!(sync_fallible("t", "k", 1), Ok(1));
    assert!(idempotency::block_on(async_unit("k".to_owned(), 1)).is_ok());
    assert_eq!(idempotency::block_on(async_fallible("5".to_owned())), Ok(5));
    assert_eq!(Service.method(1).ok(), Some(1));
    assert_eq!(sync_io(1).ok(), Some(1));
    assert_eq!(sync_generic::<LintError>(1), Ok(1));
}

#[test]
fn lints_derive_expansion_is_clean() {
    #![deny(
        warnings,
        unused_qualifications,
        unused_results,
        clippy::all,
        clippy::pedantic
    )]

    use idempotency::NormalizeKey;

    #[derive(NormalizeKey)]
    struct Named {
        a: u8,
        #[idempotency(skip)]
        _b: u8,
    }

    #[derive(NormalizeKey)]
    struct Generic<T>(T, u8);

    #[derive(NormalizeKey)]
    enum Kind {
        A,
        B(u8),
        C {
            x: u8,
            #[idempotency(with = ToString::to_string)]
            y: u16,
        },
    }

    #[derive(NormalizeKey)]
    enum Never {}

    let mut enc = idempotency::KeyEncoder::new("lints", 1);
    let _ = enc
        .arg_normalized(&Named { a: 1, _b: 2 })
        .arg_normalized(&Generic(1_u8, 2))
        .arg_normalized(&Kind::A)
        .arg_normalized(&Kind::B(1))
        .arg_normalized(&Kind::C { x: 1, y: 2 });
    let _ = std::marker::PhantomData::<Never>;
    assert!(enc.finish().is_ok());
}
