//! `#[idempotent(renew_lease = ...)]` (SEMANTICS.md scenario 14): by default a body that runs
//! past its lease keeps it; `renew_lease = false` lets the lease run out while the body runs.

use std::sync::LazyLock;
use std::time::Duration;

use idempotency::{block_on, current, idempotent, IdempotencyManager, MemoryStorage, RecordStatus};

static MANAGER: LazyLock<IdempotencyManager> =
    LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));

/// The status of this call's own record after the body has worked for three leases.
fn status_after_three_leases() -> RecordStatus {
    let me = current().unwrap_or_else(|| panic!("inside a call"));
    // The body's work: longer than its 300 ms lease (the subject of the test, not a wait for
    // another thread).
    std::thread::sleep(Duration::from_millis(900));
    match block_on(MANAGER.storage().get(me.key())) {
        Ok(Some(observed)) => observed.status(),
        other => panic!("the call's record: {other:?}"),
    }
}

#[idempotent(manager = &*MANAGER, pending_timeout = Duration::from_millis(300))]
fn renewed(n: u32) -> RecordStatus {
    let _ = n;
    status_after_three_leases()
}

#[idempotent(manager = &*MANAGER, pending_timeout = Duration::from_millis(300), renew_lease = false)]
fn not_renewed(n: u32) -> RecordStatus {
    let _ = n;
    status_after_three_leases()
}

#[test]
fn scenario_14_the_macro_renews_by_default_and_renew_lease_false_opts_out() {
    assert_eq!(renewed(1).ok(), Some(RecordStatus::Pending));
    assert_eq!(not_renewed(1).ok(), Some(RecordStatus::Expired));
}
