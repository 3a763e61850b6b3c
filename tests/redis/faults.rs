//! Faults on the Redis store, each on the harness's own `redis-server` (never a shared one):
//! the kill-point matrix (a child process crashed or paused at every kill point between two
//! store steps, then a restart), Redis paused (SIGSTOP) past the client's time-outs, Redis
//! stopped with the fail-open policy, and the CI-sized soak. The matrix and the soak are the
//! file store's (`idempotency-core/tests/fault_common/`, included here).
//!
//! The full soak (100 000 operations over 1 000 keys; not part of CI):
//!
//! ```text
//! IDEMPOTENCY_SOAK_OPS=100000 cargo test --release --features redis --test redis -- \
//!     --exact faults::scenario_30_soak_redis_store --nocapture
//! ```

#[allow(unreachable_pub)]
#[path = "../../idempotency-core/tests/fault_common/mod.rs"]
mod fault_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fault_common::{kill_matrix, soak, Opener};
use idempotency::{
    Call, ErrorKind, IdempotencyKey, IdempotencyManager, RedisStorage, StoreErrorPolicy,
};
use idempotency_redis::{redis, RedisConfig};

use crate::harness::{has_redis_server, skip, Server};

fn open_redis(location: &str, lease: Duration) -> IdempotencyManager {
    let (url, prefix) = location.split_once('|').unwrap();
    let store = RedisConfig::new(url).prefix(prefix).open().unwrap();
    IdempotencyManager::builder(store)
        .pending_timeout(lease)
        .build()
        .unwrap()
}

const OPEN: Opener = open_redis;

/// The test's name as libtest knows it in this binary (`faults::<name>`).
fn test_path(name: &str) -> String {
    format!("faults::{name}")
}

/// The harness's own server for `test`, or `None` (after a loud skip) without `redis-server`.
fn own_server(test: &str) -> Option<Server> {
    if !has_redis_server() {
        skip(test, "the fault tests need their own redis-server on PATH");
        return None;
    }
    Some(Server::start())
}

/// The redis-server's own process id (`INFO server`), for SIGSTOP/SIGCONT.
fn server_pid(url: &str) -> u32 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("server").query(&mut c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("process_id in INFO server")
        .trim()
        .parse()
        .unwrap()
}

macro_rules! kill_cases {
    ($($name:ident: $action:ident at $point:literal;)*) => {$(
        #[test]
        fn $name() {
            if kill_matrix::child(OPEN) {
                return;
            }
            let Some(server) = own_server(stringify!($name)) else { return };
            let tmp = tempfile::tempdir().unwrap();
            let location = format!("{}|kill:", server.url());
            kill_matrix::$action(&test_path(stringify!($name)), &location, tmp.path(), OPEN, $point);
        }
    )*};
}

kill_cases! {
    scenario_10_redis_killed_after_claim_runs_once_after_the_lease: abort_case at "after_claim";
    scenario_24_redis_killed_after_run_may_rerun_after_the_lease: abort_case at "after_run";
    scenario_24_redis_killed_before_complete_may_rerun_after_the_lease: abort_case at "before_complete";
    scenario_6_redis_killed_after_complete_replays: abort_case at "after_complete";
    scenario_12_redis_paused_after_claim_is_fenced: pause_case at "after_claim";
    scenario_12_redis_paused_after_run_is_fenced: pause_case at "after_run";
    scenario_12_redis_paused_before_complete_is_fenced: pause_case at "before_complete";
    scenario_12_redis_paused_after_complete_keeps_its_result: pause_case at "after_complete";
}

fn call(s: &str) -> Call {
    Call::new(IdempotencyKey::derive("redis::faults", 1, &s).unwrap())
}

/// Redis SIGSTOPped longer than the client's response time-out: calls fail closed with the
/// typed store error and nothing runs; fail-open runs, logs and counts; after SIGCONT the
/// store works again, and a claim sent during the pause (which Redis may apply when it
/// resumes, its reply long given up) still never lets a key run twice.
#[test]
fn scenario_23_redis_paused_past_client_timeouts() {
    let test = "scenario_23_redis_paused_past_client_timeouts";
    let Some(server) = own_server(test) else {
        return;
    };
    let pid = server_pid(&server.url());
    let store = RedisConfig::new(server.url())
        .prefix("paused:")
        .response_timeout(Duration::from_millis(300))
        .connection_timeout(Duration::from_millis(300))
        .reconnect_retries(1)
        .open()
        .unwrap();
    let lease = Duration::from_secs(2);
    let closed = IdempotencyManager::builder(store.clone())
        .pending_timeout(lease)
        .complete_attempts(1)
        .build()
        .unwrap();
    let open = IdempotencyManager::builder(store.clone())
        .pending_timeout(lease)
        .on_store_error(StoreErrorPolicy::FailOpen)
        .build()
        .unwrap();
    let runs = AtomicUsize::new(0);
    let run = || runs.fetch_add(1, Ordering::SeqCst) as u32;
    let done = call("done");
    closed.execute_sync(&done, run).unwrap();

    signal(pid, "STOP");
    let ghost = call("ghost");
    let e = closed.execute_sync(&ghost, run).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StoreUnavailable, "{e}");
    let e = closed.execute_sync(&done, run).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StoreUnavailable, "{e}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "fail closed: nothing ran");
    let unprotected = call("unprotected");
    let o = open.execute_sync(&unprotected, run).unwrap();
    assert!(o.provenance.unprotected);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "fail open: it ran");
    assert_eq!(open.stats().unprotected, 1);
    assert!(open.stats().store_errors >= 1);
    signal(pid, "CONT");

    // Back: the stored result replays (the connection recovers on its own).
    let o = retry(|| closed.execute_sync(&done, run));
    assert!(o.is_replayed() && o.value == 0);
    // The ghost claim: Redis may have applied it on resume. Either way the key runs once: now
    // (no ghost) or after the ghost's lease.
    let ghost_ran = loop {
        match closed.execute_sync(&ghost, run) {
            Ok(o) => break o,
            Err(e) if e.kind() == ErrorKind::InProgress => std::thread::sleep(lease / 10),
            Err(e) => panic!("{e}"),
        }
    };
    assert!(!ghost_ran.is_replayed());
    assert!(closed.execute_sync(&ghost, run).unwrap().is_replayed());
    assert_eq!(runs.load(Ordering::SeqCst), 3, "each key ran once");
}

/// Redis stopped: fail closed by default; fail open runs the function and counts it (the
/// warning it logs is the manager's, checked on the file store in `idempotency-core`'s
/// `tests/faults.rs`).
#[test]
fn scenario_23_redis_stopped_fails_closed_or_open_by_policy() {
    let test = "scenario_23_redis_stopped_fails_closed_or_open_by_policy";
    let Some(server) = own_server(test) else {
        return;
    };
    let store = RedisConfig::new(server.url())
        .prefix("stopped:")
        .response_timeout(Duration::from_millis(300))
        .connection_timeout(Duration::from_millis(300))
        .reconnect_retries(1)
        .open()
        .unwrap();
    let closed = IdempotencyManager::new(store.clone());
    let open = IdempotencyManager::builder(store)
        .on_store_error(StoreErrorPolicy::FailOpen)
        .build()
        .unwrap();
    let _stopped = server.stop();
    let runs = AtomicUsize::new(0);
    let e = closed
        .execute_sync(&call("closed"), || runs.fetch_add(1, Ordering::SeqCst))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StoreUnavailable, "{e}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let c = call("open");
    let o = open
        .execute_sync(&c, || runs.fetch_add(1, Ordering::SeqCst))
        .unwrap();
    assert!(o.provenance.unprotected && !o.is_replayed());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        (open.stats().unprotected, open.stats().store_errors),
        (1, 1)
    );
}

fn signal(pid: u32, sig: &str) {
    fault_common::signal(pid, sig);
}

/// Retries `f` while the store is still reconnecting (at most 10 s).
fn retry<T>(mut f: impl FnMut() -> idempotency::Result<T>) -> T {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if e.kind() == ErrorKind::StoreUnavailable => {
                assert!(
                    std::time::Instant::now() < give_up,
                    "never reconnected: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn scenario_30_soak_redis_store() {
    if soak::child(OPEN) {
        return;
    }
    let test = "scenario_30_soak_redis_store";
    let Some(server) = own_server(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let prefix = "soak:";
    let location = format!("{}|{prefix}", server.url());
    let store = RedisStorage::builder(server.url())
        .prefix(prefix)
        .open()
        .unwrap();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let conn = std::sync::Mutex::new(&mut conn);
    // No record without an expiry: Redis's own TTL on every record key.
    let pttl = |key: &IdempotencyKey| {
        let ms: i64 = redis::cmd("PTTL")
            .arg(store.record_key(key))
            .query(&mut **conn.lock().unwrap())
            .unwrap();
        // -1: a key without an expiry (the bug this catches); -2: expired and gone since the
        // record was read; 0: expiring this millisecond.
        assert!(
            ms >= 0 || ms == -2,
            "{key}: PTTL {ms}: a record without an expiry"
        );
    };
    let points = [
        "after_claim",
        "after_run",
        "before_complete",
        "after_complete",
    ];
    let fig = soak::run(
        &test_path(test),
        &location,
        tmp.path(),
        OPEN,
        &points,
        soak::size(100_000),
        &pttl,
    );
    assert!(fig.killed > 0, "the soak killed no child: {fig:?}");
    assert!(fig.executions > 0 && fig.replays > 0);
}
