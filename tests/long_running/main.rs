//! Long-running work (issue 16) on the memory and file stores: lease renewal (scenario 14), a
//! stale holder (12), `current()` (15), a dropped future (9b), the failure TTL (21) and
//! waiting under contention (31). The cases live in `cases.rs`; `tests/redis` runs them on
//! Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;

use std::sync::Arc;

use idempotency::{DynStorage, FileStorage, ManualClock, MemoryStorage, Timestamp};

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
    fn clocked(&self) -> Option<(Arc<dyn DynStorage>, ManualClock)> {
        let clock = ManualClock::new(START);
        let store = FileStorage::builder(Self::dir())
            .clock(Arc::new(clock.clone()))
            .open()
            .unwrap();
        Some((Arc::new(store), clock))
    }
}

/// One test per case, on the store of the enclosing module.
macro_rules! cases {
    ($fixture:expr; $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            crate::cases::$name(&$fixture);
        }
    )*};
}

macro_rules! all_cases {
    ($fixture:expr) => {
        cases!($fixture;
            scenario_14_a_body_longer_than_its_lease_keeps_it,
            scenario_14_a_failed_renewal_does_not_lose_the_lease,
            scenario_14_a_refused_renewal_loses_the_lease,
            scenario_14_an_async_body_can_await_the_loss,
            scenario_14_renewals_stop_when_the_body_panics,
            scenario_14_renewals_are_bounded,
            scenario_14_renewal_can_be_turned_off,
            scenario_12_a_stale_holder_changes_nothing,
            scenario_15_current_in_a_sync_body,
            scenario_15_current_in_an_async_body,
            scenario_15_current_in_a_pipeline_run,
            scenario_15_a_takeover_sees_token_2_and_the_same_derived_key,
            scenario_9_a_dropped_future_is_left_to_its_lease,
            scenario_21_the_failure_ttl_counts_from_the_failure,
            scenario_31_a_wait_under_contention_ends_in_time,
        );
    };
}

mod memory {
    all_cases!(super::Memory);
}

mod file {
    all_cases!(super::File);
}
