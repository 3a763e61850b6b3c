//! Faults on the file store: the kill-point matrix (a child process crashed or paused at every
//! kill point between two store steps, then a restart), the fail-open policy on a read-only or
//! full store directory, and the CI-sized soak. The Redis store runs the same matrix and soak
//! from the workspace's `tests/redis/faults.rs`.
//!
//! The full soak (100 000 operations over 1 000 keys; not part of CI):
//!
//! ```text
//! IDEMPOTENCY_SOAK_OPS=100000 cargo test -p idempotency-core --features testing --release \
//!     --test faults -- --exact scenario_30_soak_file_store --nocapture
//! ```
#![cfg(all(feature = "testing", feature = "file"))]

mod fault_common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fault_common::{kill_matrix, soak, Opener};
use idempotency_core::{
    ErrorKind, FileStorage, IdempotencyKey, IdempotencyManager, StoreErrorPolicy, SystemClock,
};

fn open_file(location: &str, lease: Duration) -> IdempotencyManager {
    let store = FileStorage::builder(location)
        .clock(Arc::new(SystemClock))
        .open()
        .unwrap();
    IdempotencyManager::builder(store)
        .pending_timeout(lease)
        .build()
        .unwrap()
}

const OPEN: Opener = open_file;

/// One test per kill point and action; each re-executes itself as the child.
macro_rules! kill_cases {
    ($($name:ident: $action:ident at $point:literal;)*) => {$(
        #[test]
        fn $name() {
            if kill_matrix::child(OPEN) {
                return;
            }
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("store");
            kill_matrix::$action(stringify!($name), dir.to_str().unwrap(), tmp.path(), OPEN, $point);
        }
    )*};
}

kill_cases! {
    scenario_10_killed_after_claim_runs_once_after_the_lease: abort_case at "after_claim";
    scenario_27_killed_writing_the_claim_leaves_no_record: abort_case at "during_write#1";
    scenario_24_killed_after_run_may_rerun_after_the_lease: abort_case at "after_run";
    scenario_24_killed_before_complete_may_rerun_after_the_lease: abort_case at "before_complete";
    scenario_27_killed_writing_the_result_may_rerun_after_the_lease: abort_case at "during_write#2";
    scenario_6_killed_after_complete_replays: abort_case at "after_complete";
    scenario_12_paused_after_claim_is_fenced: pause_case at "after_claim";
    scenario_12_paused_after_run_is_fenced: pause_case at "after_run";
    scenario_12_paused_before_complete_is_fenced: pause_case at "before_complete";
    scenario_12_paused_after_complete_keeps_its_result: pause_case at "after_complete";
}

// (A holder paused *inside* `during_write` holds its shard's file lock, so nobody can take
// over until it resumes; `FileStorage` documents this. There is no pause case for it.)

// ---------------------------------------------------------------------------------------------
// Scenario 23 on an unwritable file store: fail closed by default; fail open runs the function,
// logs it and counts it.

#[path = "support/capture.rs"]
mod capture;
use capture::{capture, Captured};

/// Asserts a warning was logged that `key` ran unprotected (fail-open).
fn assert_unprotected_warning(cap: &Captured, key: &IdempotencyKey) {
    let events = cap.events();
    let warned = events.iter().any(|e| {
        e.get("level").map(String::as_str) == Some("WARN")
            && e.get("message").is_some_and(|m| m.contains("unprotected"))
            && e.get("key").is_some_and(|k| k.contains(key.as_str()))
    });
    assert!(warned, "a warning names the key {key}: {events:?}");
}

#[derive(Debug, Clone, Copy)]
enum Outage {
    ReadOnly,
    Full,
}

/// Makes the store at `dir` unwritable: a read-only remount or a full tmpfs where this process
/// may mount (root); elsewhere the store directory removed under the open store (the store
/// never re-creates it), an injected I/O error of the same kind.
fn break_store(mount: Option<&fault_common::Tmpfs>, dir: &Path, outage: Outage) -> &'static str {
    match (mount, outage) {
        (Some(t), Outage::ReadOnly) => {
            t.remount_read_only();
            "read-only tmpfs"
        }
        (Some(_), Outage::Full) => {
            use std::io::Write;
            let mut f = std::fs::File::create(dir.join("filler")).unwrap();
            let chunk = vec![0_u8; 64 << 10];
            while f.write_all(&chunk).is_ok() {}
            "full tmpfs"
        }
        (None, _) => {
            std::fs::remove_dir_all(dir).unwrap();
            "store directory removed (no tmpfs: not root)"
        }
    }
}

fn fail_open_and_closed(outage: Outage) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mount = fault_common::Tmpfs::mount(&dir, "1m");
    let store = FileStorage::open(&dir).unwrap();
    let closed = IdempotencyManager::new(store.clone());
    let open = IdempotencyManager::builder(store)
        .on_store_error(StoreErrorPolicy::FailOpen)
        .build()
        .unwrap();
    let how = break_store(mount.as_ref(), &dir, outage);
    eprintln!("scenario 23 ({outage:?}): {how}");
    let call = |s: &str| {
        idempotency_core::Call::new(IdempotencyKey::derive("faults::outage", 1, s).unwrap())
    };

    // Fail closed (the default): the function does not run; a typed error.
    let runs = AtomicUsize::new(0);
    let err = closed
        .execute_sync(&call("closed"), || runs.fetch_add(1, Ordering::SeqCst))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StoreUnavailable, "{err}");
    assert!(matches!(err, idempotency_core::Error::Io { .. }), "{err:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "fail closed: nothing ran");
    assert_eq!(closed.stats().store_errors, 1);
    assert_eq!(closed.stats().unprotected, 0);

    // Fail open: it runs, unprotected, and says so three ways.
    let cap = Captured::default();
    let c = call("open");
    let o = capture(&cap, || {
        open.execute_sync(&c, || runs.fetch_add(1, Ordering::SeqCst))
    })
    .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "fail open: it ran");
    assert!(o.provenance.unprotected && !o.is_replayed());
    let stats = open.stats();
    assert_eq!((stats.unprotected, stats.store_errors), (1, 1), "{stats:?}");
    assert_unprotected_warning(&cap, &c.key);
}

#[cfg(unix)]
#[test]
fn scenario_23_read_only_store_fails_closed_or_open_by_policy() {
    fail_open_and_closed(Outage::ReadOnly);
}

#[cfg(unix)]
#[test]
fn scenario_23_full_store_fails_closed_or_open_by_policy() {
    fail_open_and_closed(Outage::Full);
}

// ---------------------------------------------------------------------------------------------
// The soak (CI-sized by default; see the module docs for the full one).

#[test]
fn scenario_30_soak_file_store() {
    if soak::child(OPEN) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let points = [
        "after_claim",
        "after_run",
        "before_complete",
        "during_write",
        "after_complete",
    ];
    let fig = soak::run(
        "scenario_30_soak_file_store",
        dir.to_str().unwrap(),
        tmp.path(),
        OPEN,
        &points,
        soak::size(100_000),
        &|_| {},
    );
    assert!(fig.killed > 0, "the soak killed no child: {fig:?}");
    assert!(fig.executions > 0 && fig.replays > 0);
}
