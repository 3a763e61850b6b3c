//! The store the macro behaviour tests run against: each test file is compiled twice (see the
//! `[[test]]` entries in Cargo.toml), once on the memory store and once, as `<name>_file`, on the
//! embedded file store in a fresh temporary directory.

use std::sync::Arc;

use idempotency::{DynStorageAdmin, FileStorage, IdempotencyManager, MemoryStorage};

/// Whether this test binary runs on the file store.
pub const ON_FILE_STORE: bool = {
    let name = env!("CARGO_CRATE_NAME").as_bytes();
    let n = name.len();
    n > 5
        && name[n - 5] == b'_'
        && name[n - 4] == b'f'
        && name[n - 3] == b'i'
        && name[n - 2] == b'l'
        && name[n - 1] == b'e'
};

/// A fresh manager on this binary's store.
pub fn manager() -> IdempotencyManager {
    manager_and_store().0
}

/// A fresh manager on this binary's store, and the store's operator side (to list it).
#[allow(dead_code)]
pub fn manager_and_store() -> (IdempotencyManager, Arc<dyn DynStorageAdmin>) {
    if ON_FILE_STORE {
        let dir = tempfile::tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"))
            .keep();
        let store = FileStorage::open(dir).unwrap_or_else(|e| panic!("file store: {e}"));
        (IdempotencyManager::new(store.clone()), Arc::new(store))
    } else {
        let store = MemoryStorage::new();
        (IdempotencyManager::new(store.clone()), Arc::new(store))
    }
}
