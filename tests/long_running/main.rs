//! Long-running work (issue 16) on the memory and file stores: lease renewal (scenario 14), a
//! stale holder (12), `current()` (15), a dropped future (9b), the failure TTL (21) and
//! waiting under contention (31). The cases live in `cases.rs`; `tests/redis` runs them on
//! Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod cases;

use std::sync::Arc;

use idempotency::{Durability, DynStorage, FileStorage, ManualClock, MemoryStorage, Timestamp};

use cases::Fixture;

const START: Timestamp = Timestamp(1_700_000_000_000);

struct Memory;

impl Fixture for Memory {
    fn store(&self) -> Arc<dyn DynStorage> {
        Arc::new(MemoryStorage::new())
    }
    fn clocked(&self) -> Option<(Arc<dyn DynStorage>, ManualClock)> {
        let clock = ManualClock::new(START);
        Some((
            Arc::new(MemoryStorage::with_clock(Arc::new(clock.clone()))),
            clock,
        ))
    }
}

struct File;

impl File {
    fn dir() -> std::path::PathBuf {
        tempfile::tempdir().unwrap().keep()
    }
}

impl Fixture for File {
    fn store(&self) -> Arc<dyn DynStorage> {
        Arc::new(FileStorage::open(Self::dir()).unwrap())
    }
    fn store_without_fsync(&self) -> Arc<dyn DynStorage> {
        let store = FileStorage::builder(Self::dir())
            .durability(Durability::Buffered)
            .open()
            .unwrap();
        Arc::new(store)
    }
    fn clocked(&self) -> Option<(Arc<dyn DynStorage>, ManualClock)> {
        let clock = ManualClock::new(START);
        let store = FileStorage::builder(Self::dir())
            .clock(Arc::new(clock.clone()))
            .open()
            .unwrap();
        Some((Arc::new(store), clock))
    }
}

/// One test per case, on the store of the enclosing module's `FIXTURE`.
macro_rules! on_fixture {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            crate::cases::$name(&FIXTURE);
        }
    )*};
}

mod memory {
    const FIXTURE: super::Memory = super::Memory;
    every_case!(on_fixture);
}

mod file {
    const FIXTURE: super::File = super::File;
    every_case!(on_fixture);
}
