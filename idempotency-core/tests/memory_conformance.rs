//! The conformance kit on `MemoryStorage`, with the store's clock injected: the state
//! transitions and the admin checks.
#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::Duration;

use idempotency_core::testing::{AdminHarness, Harness};
use idempotency_core::{DynStorage, DynStorageAdmin, ManualClock, MemoryStorage, Timestamp};

struct Memory {
    clock: ManualClock,
    store: MemoryStorage,
}

impl Memory {
    fn new() -> Self {
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        let store = MemoryStorage::with_clock(Arc::new(clock.clone()));
        Memory { clock, store }
    }
}

impl Harness for Memory {
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
}

impl AdminHarness for Memory {
    fn admin_store(&self) -> Arc<dyn DynStorageAdmin> {
        Arc::new(self.store.clone())
    }
}

idempotency_core::conformance_suite!(Memory::new(); without_raw_bytes);
idempotency_core::admin_suite!(Memory::new());
