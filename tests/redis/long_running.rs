//! Long-running work (issue 16) on Redis: the cases of `tests/long_running/cases.rs` (lease
//! renewal, a stale holder, `current()`, a dropped future, the failure TTL, waiting under
//! contention), with time passing for real.

use std::sync::Arc;

use idempotency::{DynStorage, ManualClock};

use crate::harness::RedisHarness;

#[path = "../long_running/cases.rs"]
#[macro_use]
mod cases;

struct Redis(RedisHarness);

impl cases::Fixture for Redis {
    fn store(&self) -> Arc<dyn DynStorage> {
        Arc::new(self.0.store.clone())
    }
    fn clocked(&self) -> Option<(Arc<dyn DynStorage>, ManualClock)> {
        None
    }
}

/// One test per case, each on a fresh harness (a unique key prefix).
macro_rules! on_redis {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let Some(h) = RedisHarness::new() else { return };
            cases::$name(&Redis(h));
        }
    )*};
}

every_case!(on_redis);
