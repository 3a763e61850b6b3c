//! The conformance kit: the scenarios of SEMANTICS.md as reusable checks that every store runs.
//!
//! A store's test file implements [`Harness`] and invokes [`conformance_suite!`](crate::conformance_suite),
//! which generates one `#[tokio::test]` per scenario, named after it
//! (`scenario_12_stale_holder_is_fenced`). Each check asserts real behaviour through an
//! [`IdempotencyManager`] over the store, or through the store's own transitions, and fails with
//! a message naming the scenario. These checks need only [`Storage`](crate::Storage): a
//! minimal store passes them without implementing [`StorageAdmin`](crate::StorageAdmin).
//!
//! A store that also implements [`StorageAdmin`](crate::StorageAdmin) implements [`AdminHarness`] and invokes
//! [`admin_suite!`](crate::admin_suite) for the operator's side: listing, removing unreadable
//! entries and purging.
//!
//! Time: a harness on an injected [`ManualClock`](crate::ManualClock) moves the store's clock; a
//! store with its own clock (Redis) lets real time pass in [`Harness::advance`] instead. Checks
//! use leases and TTLs of a few hundred milliseconds so both work.
//!
//! The kit also holds stores that misbehave on purpose ([`FlakyStorage`],
//! [`LostReplyStorage`]) and, under [`fault`], the kill points of the fault tests.

// The kit is a set of test assertions: failing one is a panic, by design.
#![allow(clippy::panic)]

mod admin;
mod concurrency;
mod fencing;
mod outcomes;
mod replay;
mod stores;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::{
    Call, Claim, ClaimRequest, DynStorage, DynStorageAdmin, ErrorKind, Fingerprint, IdempotencyKey,
    IdempotencyManager, KeyEncoder, Owner, Result,
};

/// Kill points, for the fault tests: [`crate::fault`], here under its older path.
#[doc(inline)]
pub use crate::fault;

pub use self::admin::{
    admin_list_walks_every_record_once, admin_remove_unreadable_removes_only_unreadable_entries,
    scenario_30_purge_removes_only_expired_records,
};
pub use self::concurrency::{
    scenario_11_takeover_race, scenario_1_tasks_execute_once, scenario_1_threads_execute_once,
    scenario_31_wait_mode, scenario_4_no_read_then_write_claim,
};
pub use self::fencing::{
    scenario_10_crash_while_pending, scenario_12_stale_holder_is_fenced,
    scenario_13_stale_holder_release_is_noop, scenario_22_clock_steps_are_fenced,
    scenario_5_lost_transition_reply_is_resolved,
    scenario_5_transitions_reapplied_by_their_owner_succeed,
};
pub use self::outcomes::{
    peek_finished_answers_what_a_claim_would, scenario_16_fingerprint_mismatch,
    scenario_18_scope_by_function, scenario_19_tenant_isolation, scenario_21_retention_boundary,
    scenario_26_corrupt_record_fails_closed, scenario_28_large_results,
    scenario_29_incompatible_result_type, scenario_32_missing_or_empty_key,
    scenario_6_replay_after_success, scenario_7_permanent_failure_is_cached,
    scenario_8_transient_failure_is_not_cached, scenario_9_panic_and_cancellation, Falsy, PayError,
};
pub use self::replay::{
    issue_12_every_serde_shape_replays, issue_12_item_5_result_over_the_limit_reaches_its_caller,
    issue_12_item_6_tagged_enum_and_skipped_field_replay, Adjacent, Bytes, Flat, Floats, Id,
    Marker, Meta, Point, Skipped, Tagged, Untagged, WithSkippedVariant,
};
pub use self::stores::{FlakyStorage, LostReplyStorage, Transition};

/// What the kit needs from a store under test.
pub trait Harness: Send + Sync + 'static {
    /// A fresh store namespace (an empty directory, a unique Redis key prefix), with the store's
    /// clock under the harness's control where possible.
    fn store(&self) -> Arc<dyn DynStorage>;

    /// Lets at least `d` pass on the store's clock (advance an injected clock, or wait).
    fn advance(&self, d: Duration) -> impl Future<Output = ()> + Send;

    /// Moves the store's clock backward by `d`, if the harness controls it. Returns `false`
    /// when it cannot (the clock-step checks then only run forward steps).
    fn rewind(&self, _d: Duration) -> bool {
        false
    }

    /// Overwrites the stored bytes of `key` with `bytes` (a corrupt record), if the harness can.
    /// Returns `false` when it cannot.
    fn write_raw(&self, _key: &IdempotencyKey, _bytes: &[u8]) -> impl Future<Output = bool> + Send {
        async { false }
    }
}

/// What the admin checks need from a store that implements
/// [`StorageAdmin`](crate::StorageAdmin).
pub trait AdminHarness: Harness {
    /// A fresh store namespace, as [`Harness::store`], with its operator's side. The checks
    /// write through it too (a [`DynStorageAdmin`] is a [`DynStorage`]).
    fn admin_store(&self) -> Arc<dyn DynStorageAdmin>;
}

/// The lease used by time-based checks.
pub const LEASE: Duration = Duration::from_millis(300);
/// The success TTL used by time-based checks.
pub const TTL: Duration = Duration::from_millis(900);

fn manager<H: Harness>(h: &H) -> IdempotencyManager {
    manager_with(h, |b| b)
}

fn manager_with<H: Harness>(
    h: &H,
    f: impl FnOnce(crate::ManagerBuilder) -> crate::ManagerBuilder,
) -> IdempotencyManager {
    let b = IdempotencyManager::builder_dyn(h.store())
        .default_ttl(Duration::from_secs(3600))
        .pending_timeout(Duration::from_secs(300));
    match f(b).build() {
        Ok(m) => m,
        Err(e) => panic!("test manager configuration: {e}"),
    }
}

fn call(op: &str, args: &(impl Serialize + ?Sized)) -> Call {
    Call::new(must(IdempotencyKey::derive(op, 1, args)))
}

fn custom_call(op: &str, key: &str, args: &(impl Serialize + ?Sized)) -> Call {
    let mut enc = KeyEncoder::new(op, 1);
    enc.custom_key(key).arg(args);
    Call::new(must(enc.finish()))
}

fn must<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e} ({e:?})"),
    }
}

fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

/// Claims `key` (which must be free) with a fresh execution id; returns the owner.
async fn claim_fresh<S: DynStorage + ?Sized>(
    store: &S,
    key: &IdempotencyKey,
    lease: Duration,
) -> Owner {
    let req = ClaimRequest {
        execution_id: crate::rt::execution_id(),
        fingerprint: Fingerprint([5; 32]),
        lease,
        refresh: false,
    };
    match must(store.try_claim(key, &req).await) {
        Claim::Acquired { owner, .. } => owner,
        other => panic!("expected to claim `{key}`, got {other:?}"),
    }
}

/// Expands to one `#[tokio::test]` per state-transition scenario of the kit, each building its
/// [`Harness`](crate::testing::Harness) with `$make` (an expression evaluated per test, which
/// may `.await`). The form `conformance_suite!(make; without_raw_bytes)` leaves out scenario 26
/// (corrupt bytes), for a store that holds decoded records rather than bytes (the memory
/// store). The checks need only [`Storage`](crate::Storage); see
/// [`admin_suite!`](crate::admin_suite) for [`StorageAdmin`](crate::StorageAdmin).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!($make; without_raw_bytes);
        $crate::conformance_suite!(@tests $make; scenario_26_corrupt_record_fails_closed);
    };
    ($make:expr; without_raw_bytes) => {
        $crate::conformance_suite!(@tests $make;
            scenario_1_threads_execute_once,
            scenario_1_tasks_execute_once,
            scenario_4_no_read_then_write_claim,
            scenario_5_lost_transition_reply_is_resolved,
            scenario_5_transitions_reapplied_by_their_owner_succeed,
            scenario_6_replay_after_success,
            scenario_7_permanent_failure_is_cached,
            scenario_8_transient_failure_is_not_cached,
            scenario_9_panic_and_cancellation,
            scenario_10_crash_while_pending,
            scenario_11_takeover_race,
            scenario_12_stale_holder_is_fenced,
            scenario_13_stale_holder_release_is_noop,
            scenario_16_fingerprint_mismatch,
            scenario_18_scope_by_function,
            scenario_19_tenant_isolation,
            scenario_21_retention_boundary,
            scenario_22_clock_steps_are_fenced,
            scenario_28_large_results,
            scenario_29_incompatible_result_type,
            scenario_31_wait_mode,
            scenario_32_missing_or_empty_key,
            peek_finished_answers_what_a_claim_would,
            issue_12_item_5_result_over_the_limit_reaches_its_caller,
            issue_12_item_6_tagged_enum_and_skipped_field_replay,
            issue_12_every_serde_shape_replays
        );
    };
    (@tests $make:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let harness = $make;
            $crate::testing::$name(&harness).await;
        }
    )*};
}

/// Expands to one `#[tokio::test]` per admin check of the kit (listing, removing unreadable
/// entries, purging: scenario 30), each building its
/// [`AdminHarness`](crate::testing::AdminHarness) with `$make` (an expression evaluated per
/// test, which may `.await`), for a store that implements
/// [`StorageAdmin`](crate::StorageAdmin).
#[macro_export]
macro_rules! admin_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            admin_list_walks_every_record_once,
            admin_remove_unreadable_removes_only_unreadable_entries,
            scenario_30_purge_removes_only_expired_records
        );
    };
}
