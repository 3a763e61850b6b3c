//! Manager behaviour beyond the store conformance kit: store outages (scenarios 23, 24), an
//! ambiguous claim reply (scenario 5), the sync API inside and outside runtimes, nested
//! operations and provenance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotency_core::testing::FlakyStorage;
use idempotency_core::{
    block_on, Begin, Call, Claim, ClaimRequest, ErrorKind, IdempotencyKey, IdempotencyManager,
    ManualClock, MemoryStorage, RecordStatus, Result, Storage, StoreErrorPolicy, Timestamp,
};
use uuid::Uuid;

fn call(args: &str) -> Call {
    Call::new(IdempotencyKey::derive("tests::manager", 1, args).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn scenario_23_store_down_at_claim_fails_closed() {
    let store = FlakyStorage::default();
    store.set_claim_down(true);
    let m = IdempotencyManager::new(store.clone());
    let count = AtomicUsize::new(0);
    let r = m.execute_sync(&call("a"), || count.fetch_add(1, Ordering::SeqCst));
    assert_eq!(
        r.map_err(|e| e.kind()).err(),
        Some(ErrorKind::StoreUnavailable)
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "fail closed: the function did not run"
    );
}

#[test]
fn scenario_23_fail_open_runs_unprotected_and_says_so() {
    let store = FlakyStorage::default();
    store.set_claim_down(true);
    let m = IdempotencyManager::builder(store)
        .on_store_error(StoreErrorPolicy::FailOpen)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let o = m
        .execute_sync(&call("a"), || 5_u8)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.value, 5);
    assert!(o.provenance.unprotected && !o.provenance.replayed);
}

#[test]
fn scenario_24_store_down_after_execution_keeps_the_claim() {
    let store = FlakyStorage::default();
    store.set_complete_down(true);
    let m = IdempotencyManager::new(store.clone());
    let c = call("b");
    let r = m.execute_sync(&c, || 99_u32);
    let err = r.err().unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(err.kind(), ErrorKind::CompletionNotRecorded);
    match &err {
        idempotency_core::Error::CompletionNotRecorded { encoded, .. } => {
            assert_eq!(
                ciborium::from_reader::<u32, _>(&encoded[..]).ok(),
                Some(99),
                "the value is carried"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.complete_calls(), 3, "bounded retries");
    // The Pending record is not deleted: duplicates stay blocked until the lease ends.
    let obs = idempotency_core::block_on(m.status(&c.key)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(obs.map(|o| o.status()), Some(RecordStatus::Pending));
    store.set_complete_down(false);
    let again = m.execute_sync(&c, || 100_u32);
    assert_eq!(
        again.map_err(|e| e.kind()).err(),
        Some(ErrorKind::InProgress)
    );
}

#[test]
fn scenario_5_retried_claim_finds_its_own_record() {
    let store = MemoryStorage::new();
    let key = IdempotencyKey::derive("tests::s5", 1, &())
        .unwrap_or_else(|e| panic!("{e}"))
        .key;
    let req = ClaimRequest {
        execution_id: Uuid::new_v4(),
        fingerprint: idempotency_core::Fingerprint([1; 32]),
        lease: Duration::from_secs(30),
        refresh: false,
    };
    let first = idempotency_core::block_on(Storage::try_claim(&store, &key, &req))
        .unwrap_or_else(|e| panic!("{e}"));
    // The reply was "lost"; the client retries with the same execution id.
    let retry = idempotency_core::block_on(Storage::try_claim(&store, &key, &req))
        .unwrap_or_else(|e| panic!("{e}"));
    match (first, retry) {
        (Claim::Acquired { owner: a, .. }, Claim::Acquired { owner: b, .. }) => assert_eq!(a, b),
        other => panic!("scenario 5: {other:?}"),
    }
    // Anyone else sees the record as in progress.
    let other = ClaimRequest {
        execution_id: Uuid::new_v4(),
        ..req
    };
    let r = idempotency_core::block_on(Storage::try_claim(&store, &key, &other))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(r, Claim::Existing(_)));
}

#[test]
fn sync_api_works_inside_and_outside_tokio_runtimes() {
    let m = IdempotencyManager::new(MemoryStorage::new());
    assert_eq!(
        m.execute_sync(&call("outside"), || 1_u8)
            .map(|o| o.value)
            .ok(),
        Some(1)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let m2 = m.clone();
    let v = rt.block_on(async move {
        m2.execute_sync(&call("current-thread"), || 2_u8)
            .map(|o| o.value)
    });
    assert_eq!(v.ok(), Some(2));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let m3 = m.clone();
    let v = rt.block_on(async move {
        tokio::spawn(async move {
            m3.execute_sync(&call("multi-thread"), || 3_u8)
                .map(|o| o.value)
        })
        .await
        .ok()
        .and_then(Result::ok)
    });
    assert_eq!(v, Some(3));
}

#[tokio::test]
async fn nested_operations_keep_their_own_keys_and_ttls() {
    let clock = ManualClock::new(Timestamp(1_000_000));
    let m = IdempotencyManager::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
    let outer = call("outer").ttl(Duration::from_secs(100));
    let inner = call("inner").ttl(Duration::from_secs(10));
    let count = AtomicUsize::new(0);
    let run = || async {
        m.execute(&outer, || async {
            count.fetch_add(1, Ordering::SeqCst);
            let i = m
                .execute(&inner, || async {
                    count.fetch_add(10, Ordering::SeqCst);
                    7_u8
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            i.value + 1
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(run().await.value, 8);
    let outer_rec = m
        .status(&outer.key)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("outer"));
    let inner_rec = m
        .status(&inner.key)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("inner"));
    assert_eq!(outer_rec.time_to_live(), Duration::from_secs(100));
    assert_eq!(inner_rec.time_to_live(), Duration::from_secs(10));
    clock.advance(Duration::from_secs(11));
    // The outer result replays; the inner one expired on its own TTL.
    assert!(run().await.is_replayed());
    let o = m
        .execute(&inner, || async { 9_u8 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!o.is_replayed());
    assert_eq!(count.load(Ordering::SeqCst), 11);
}

#[tokio::test]
async fn provenance_describes_executed_and_replayed_values() {
    let clock = ManualClock::new(Timestamp(5_000));
    let m = IdempotencyManager::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
    let c = call("prov");
    let first = m
        .execute(&c, || async { "v".to_string() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p = &first.provenance;
    assert!(!p.replayed && !p.takeover && p.fencing_token == 1);
    assert_eq!(p.key, c.key);
    assert_eq!(p.created_at, Timestamp(5_000));
    assert_eq!(p.time_to_live, Duration::from_secs(3600));
    clock.advance(Duration::from_secs(600));
    let again = m
        .execute(&c, || async { "w".to_string() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let q = &again.provenance;
    assert!(q.replayed);
    assert_eq!(q.execution_id, p.execution_id);
    assert_eq!(q.created_at, p.created_at);
    assert_eq!(q.time_to_live, Duration::from_secs(3000));
}

#[tokio::test]
async fn refresh_bypasses_and_replaces_the_stored_result() {
    let m = IdempotencyManager::new(MemoryStorage::new());
    let c = call("refresh");
    m.execute(&c, || async { 1_u8 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = m
        .execute(&c.clone().refresh(), || async { 2_u8 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!r.is_replayed() && r.value == 2 && r.provenance.fencing_token == 2);
    let o = m
        .execute(&c, || async { 3_u8 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(o.is_replayed() && o.value == 2);
}

#[tokio::test]
async fn prefixed_stores_namespace_records() {
    let store = MemoryStorage::new();
    let prefixed = |p: &str| {
        idempotency_core::Prefixed::new(store.clone(), p).unwrap_or_else(|e| panic!("{e}"))
    };
    let a = IdempotencyManager::new(prefixed("app-a"));
    let b = IdempotencyManager::new(prefixed("app-b"));
    let c = call("shared");
    assert_eq!(
        a.execute(&c, || async { 1_u8 }).await.map(|o| o.value).ok(),
        Some(1)
    );
    let o = b
        .execute(&c, || async { 2_u8 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!o.is_replayed() && o.value == 2);
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn memory_store_lists_in_pages() {
    use idempotency_core::{Listed, StorageAdmin};
    let store = MemoryStorage::new();
    let m = IdempotencyManager::new(store.clone());
    for i in 0..5 {
        m.execute(&call(&format!("list-{i}")), || async { i })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = StorageAdmin::list(&store, cursor.as_deref(), 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(page.items.len() <= 2);
        for item in page.items {
            match item {
                Listed::Record(o) => seen.push(o.record.key.to_string()),
                Listed::Unreadable { location, .. } => panic!("unreadable {location}"),
            }
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

/// A process forked (without exec) after its thread made execution ids must not repeat the
/// parent's ids: a claim by the child and one by the parent on a shared store would then look
/// like one caller's retried claim (scenario 5), and both would run (scenario 2).
#[cfg(unix)]
#[test]
fn scenario_2_forked_processes_never_share_an_execution_id() {
    use idempotency_core::{block_on, Begin, FileStorage};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = FileStorage::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let m = IdempotencyManager::new(store);
    // This thread makes an execution id before the fork.
    let warm = block_on(m.begin_operation(&call("fork-warm-up")));
    assert!(matches!(warm, Ok(Begin::Acquired(_))));
    let c = call("fork");
    // SAFETY: the child only runs a claim on the file store, writes one file and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match block_on(m.begin_operation(&c)) {
            Ok(Begin::Acquired(_)) => 0,
            _ => 1,
        };
        // SAFETY: ends the forked child without running the parent's destructors or harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child claimed the fresh key"
    );
    // The child holds a live claim: the parent's call is a conflict, never a second holder.
    match block_on(m.begin_operation(&c)) {
        Ok(Begin::Existing(obs)) => assert_eq!(obs.record.status, RecordStatus::Pending),
        Ok(Begin::Acquired(lease)) => panic!(
            "the parent also acquired the key the child holds (execution id {} reused)",
            lease.owner.execution_id
        ),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn issue_manual_clock_advance_saturates() {
    // Advancing past the far future must not wrap the store clock back to the epoch (which
    // would make every expired lease live again).
    let clock = ManualClock::new(Timestamp(10));
    clock.advance(Duration::MAX);
    assert_eq!(idempotency_core::Clock::now(&clock), Timestamp(u64::MAX));
    clock.advance(Duration::from_millis(5));
    assert_eq!(idempotency_core::Clock::now(&clock), Timestamp(u64::MAX));
}

#[tokio::test]
async fn scenario_16_refresh_under_reject_policy_does_not_replace_other_inputs() {
    use idempotency_core::{FingerprintPolicy, KeyEncoder};
    let m = IdempotencyManager::builder(MemoryStorage::new())
        .fingerprint_policy(FingerprintPolicy::Reject)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let custom = |arg: u8| {
        let mut e = KeyEncoder::new("tests::refresh-reject", 1);
        e.custom_key("k").arg(&arg);
        Call::new(e.finish().unwrap_or_else(|e| panic!("{e}")))
    };
    m.execute(&custom(1), || async { 1_u8 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = m.execute(&custom(2).refresh(), || async { 2_u8 }).await;
    assert_eq!(
        r.map_err(|e| e.kind()).err(),
        Some(ErrorKind::FingerprintMismatch)
    );
    // The same inputs may refresh.
    let o = m
        .execute(&custom(1).refresh(), || async { 3_u8 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!o.is_replayed() && o.value == 3);
}

#[test]
fn scenario_9_panic_in_the_results_serialize_releases_the_claim() {
    #[derive(Debug, serde::Deserialize)]
    struct Explodes;
    impl serde::Serialize for Explodes {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            panic!("serialize exploded")
        }
    }
    let m = IdempotencyManager::new(MemoryStorage::new());
    let c = call("explodes");
    let (m2, c2) = (m.clone(), c.clone());
    let joined = std::thread::spawn(move || m2.execute_sync(&c2, || Explodes)).join();
    assert!(joined.is_err(), "the panic is resumed");
    let status = idempotency_core::block_on(m.status(&c.key)).unwrap_or_else(|e| panic!("{e}"));
    assert!(status.is_none(), "no Pending record is left behind");
}

#[test]
fn scenario_8_a_failed_release_still_returns_the_callers_own_error() {
    // A store whose release always fails: the transient error still reaches the caller.
    #[derive(Debug, Clone, Default)]
    struct NoRelease(MemoryStorage);
    impl Storage for NoRelease {
        async fn try_claim(&self, k: &IdempotencyKey, r: &ClaimRequest) -> Result<Claim> {
            Storage::try_claim(&self.0, k, r).await
        }
        async fn complete(
            &self,
            k: &IdempotencyKey,
            o: &idempotency_core::Owner,
            b: &[u8],
            t: Duration,
        ) -> Result<idempotency_core::Record> {
            Storage::complete(&self.0, k, o, b, t).await
        }
        async fn fail(
            &self,
            k: &IdempotencyKey,
            o: &idempotency_core::Owner,
            e: &idempotency_core::RecordError,
            t: Duration,
        ) -> Result<idempotency_core::Record> {
            Storage::fail(&self.0, k, o, e, t).await
        }
        async fn release(&self, _: &IdempotencyKey, _: &idempotency_core::Owner) -> Result<bool> {
            Err(idempotency_core::Error::storage(
                "release",
                std::io::Error::other("down"),
            ))
        }
        async fn renew(
            &self,
            k: &IdempotencyKey,
            o: &idempotency_core::Owner,
            l: Duration,
        ) -> Result<Timestamp> {
            Storage::renew(&self.0, k, o, l).await
        }
        async fn get(&self, k: &IdempotencyKey) -> Result<Option<idempotency_core::Observed>> {
            Storage::get(&self.0, k).await
        }
        async fn delete(&self, k: &IdempotencyKey) -> Result<bool> {
            Storage::delete(&self.0, k).await
        }
    }
    let m = IdempotencyManager::new(NoRelease::default());
    let c = call("no-release").cache_failures(false);
    let o = m
        .try_execute_sync(&c, || Err::<u8, String>("timeout".into()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.value, Err("timeout".to_string()));
    assert_eq!(m.stats().store_errors, 1);
}

/// A failure of a body in which a nested idempotent call failed with a framework error (here a
/// conflict, turned by the body into its own error value) is not stored: the next call runs
/// again (scenario 8), through the async API too.
#[test]
fn scenario_08_a_failure_after_a_nested_framework_error_is_not_cached() {
    let m = IdempotencyManager::new(MemoryStorage::new());
    let inner = call("nested-inner");
    let outer = call("nested-outer");
    let Begin::Acquired(held) = block_on(m.begin_operation(&inner)).unwrap() else {
        panic!("the inner key is free");
    };
    let runs = AtomicUsize::new(0);
    let body = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        match m.execute(&inner, || async { 1_u32 }).await {
            Ok(o) => Ok(o.value),
            Err(e) => Err(format!("nested: {}", e.kind().as_str())),
        }
    };
    let first = block_on(m.try_execute(&outer, body)).unwrap();
    assert_eq!(first.value, Err("nested: in_progress".to_owned()));
    assert!(!first.is_retained(), "{:?}", first.provenance);
    assert!(block_on(m.release_operation(&held)).unwrap());
    let second = block_on(m.try_execute(&outer, body)).unwrap();
    assert_eq!(second.value, Ok(1));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // The same when the failure is too large to store: released, never a terminal
    // "not retained" marker that would stop the retry from running.
    let small = IdempotencyManager::builder(MemoryStorage::new())
        .max_result_bytes(8)
        .build()
        .unwrap();
    let Begin::Acquired(held) = block_on(small.begin_operation(&inner)).unwrap() else {
        panic!("the inner key is free");
    };
    let big = || async {
        match small.execute(&inner, || async { 1_u32 }).await {
            Ok(o) => Ok(o.value),
            Err(e) => Err(format!(
                "nested and too long to store: {}",
                e.kind().as_str()
            )),
        }
    };
    let first = block_on(small.try_execute(&outer, big)).unwrap();
    assert!(first.value.is_err());
    assert!(!first.is_retained(), "{:?}", first.provenance);
    assert!(block_on(small.release_operation(&held)).unwrap());
    let second = block_on(small.try_execute(&outer, big)).unwrap();
    assert_eq!(second.value, Ok(1), "the retry ran again");
    // A body's own failure, with no nested framework error, is still cached (scenario 7).
    let own = call("own-failure");
    let fail = || async { Err::<u32, String>("declined".to_owned()) };
    assert!(block_on(m.try_execute(&own, fail)).unwrap().is_retained());
    let again = block_on(m.try_execute(&own, || async { Ok::<u32, String>(5) })).unwrap();
    assert_eq!(again.value, Err("declined".to_owned()));
    assert!(again.is_replayed());
}

/// `cache_failures(false)`, on the manager or on the call, makes every error transient through
/// `try_execute_with` too, whatever its classifier says (scenario 8): nothing is stored, the
/// next call runs again. A call's `cache_failures(true)` wins over the manager's `false`.
#[test]
fn scenario_08_try_execute_with_follows_cache_failures_false() {
    let permanent = |_: &String| false;
    let runs = AtomicUsize::new(0);
    let fail = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Err::<u32, String>("no".to_owned())
    };
    let m = IdempotencyManager::builder(MemoryStorage::new())
        .cache_failures(false)
        .build()
        .unwrap();
    let c = call("try-with-manager-off");
    for _ in 0..2 {
        let out = block_on(m.try_execute_with(&c, fail, permanent)).unwrap();
        assert_eq!(out.value, Err("no".to_owned()));
        assert!(!out.is_replayed());
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "a manager's cache_failures(false)"
    );
    let on = call("try-with-call-on").cache_failures(true);
    block_on(m.try_execute_with(&on, fail, permanent)).unwrap();
    assert!(block_on(m.try_execute_with(&on, fail, permanent))
        .unwrap()
        .is_replayed());
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "a call's cache_failures(true)"
    );

    let m = IdempotencyManager::new(MemoryStorage::new());
    let off = call("try-with-call-off").cache_failures(false);
    for _ in 0..2 {
        assert!(!block_on(m.try_execute_with(&off, fail, permanent))
            .unwrap()
            .is_replayed());
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        5,
        "a call's cache_failures(false)"
    );
}
