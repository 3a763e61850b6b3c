//! Long-running work (issue 16) on Redis: the cases of `tests/long_running/cases.rs` (lease
//! renewal, a stale holder, `current()`, a dropped future, the failure TTL, waiting under
//! contention), with time passing for real.

use std::sync::Arc;

use idempotency::{DynStorage, ManualClock};

use crate::harness::RedisHarness;

#[path = "../long_running/cases.rs"]
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

macro_rules! cases {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let Some(h) = RedisHarness::new() else { return };
            cases::$name(&Redis(h));
        }
    )*};
}

cases!(
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
