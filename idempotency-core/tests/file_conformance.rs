//! The conformance kit on `FileStorage`, with the store's clock injected, in a fresh directory
//! per test (scenario 26 included: the harness writes raw bytes into record files): the state
//! transitions and the admin checks.
#![cfg(all(feature = "testing", feature = "file"))]

use std::sync::Arc;
use std::time::Duration;

use idempotency_core::testing::{AdminHarness, Harness};
use idempotency_core::{
    DynStorage, DynStorageAdmin, FileStorage, IdempotencyKey, ManualClock, Timestamp,
};

struct FileHarness {
    clock: ManualClock,
    store: FileStorage,
    _dir: tempfile::TempDir,
}

impl FileHarness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        let store = FileStorage::builder(dir.path().join("store"))
            .clock(Arc::new(clock.clone()))
            .open()
            .unwrap();
        FileHarness {
            clock,
            store,
            _dir: dir,
        }
    }
}

impl Harness for FileHarness {
    fn store(&self) -> Arc<dyn DynStorage> {
        Arc::new(self.store.clone())
    }
    async fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
    fn rewind(&self, d: Duration) -> bool {
        self.clock.rewind(d);
        true
    }
    async fn write_raw(&self, key: &IdempotencyKey, bytes: &[u8]) -> bool {
        let path = self.store.record_path(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).is_ok()
    }
}

impl AdminHarness for FileHarness {
    fn admin_store(&self) -> Arc<dyn DynStorageAdmin> {
        Arc::new(self.store.clone())
    }
}

idempotency_core::conformance_suite!(FileHarness::new());
idempotency_core::admin_suite!(FileHarness::new());
