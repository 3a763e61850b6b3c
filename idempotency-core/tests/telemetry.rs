//! Tracing events and metrics on the paths that emit them, with a test subscriber and a test
//! recorder; and the `stats()` snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idempotency_core::{
    Begin, Call, ConflictPolicy, FingerprintPolicy, IdempotencyKey, IdempotencyManager, KeyEncoder,
    ManualClock, MemoryStorage, Timestamp,
};

#[path = "support/capture.rs"]
mod capture;
use capture::{capture, Captured};

fn call(op: &str, args: u32) -> Call {
    Call::new(IdempotencyKey::derive(op, 1, &args).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn tracing_events_name_each_step_with_key_and_execution_id_never_inputs() {
    let cap = Captured::default();
    let clock = ManualClock::new(Timestamp(1_000));
    let m = IdempotencyManager::builder(MemoryStorage::with_clock(Arc::new(clock.clone())))
        .pending_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    capture(&cap, || {
        let c = call("t::steps", 424_242);
        m.execute_sync(&c, || 1_u8)
            .unwrap_or_else(|e| panic!("{e}"));
        m.execute_sync(&c, || 2_u8)
            .unwrap_or_else(|e| panic!("{e}"));
        // conflict, then takeover after the lease, then fenced out.
        let p = call("t::pending", 1);
        let Ok(Begin::Acquired(stale)) = idempotency_core::block_on(m.begin_operation(&p)) else {
            panic!("claim")
        };
        assert!(m.execute_sync(&p, || 0_u8).is_err());
        clock.advance(Duration::from_secs(2));
        m.execute_sync(&p, || 3_u8)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(idempotency_core::block_on(m.complete_operation(&stale, &9_u8)).is_err());
        // failure cached, released
        let f = call("t::fail", 1);
        let _ = m.try_execute_sync(&f, || Err::<u8, String>("declined".into()));
        let r = call("t::release", 1).cache_failures(false);
        let _ = m.try_execute_sync(&r, || Err::<u8, String>("timeout".into()));
        // mismatch
        let mut enc = KeyEncoder::new("t::custom", 1);
        enc.custom_key("k").arg(&1_u8);
        let a = Call::new(enc.finish().unwrap_or_else(|e| panic!("{e}")));
        let mut enc = KeyEncoder::new("t::custom", 1);
        enc.custom_key("k").arg(&2_u8);
        let b = Call::new(enc.finish().unwrap_or_else(|e| panic!("{e}")))
            .fingerprint_policy(FingerprintPolicy::Reject);
        m.execute_sync(&a, || 0_u8)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(m.execute_sync(&b, || 0_u8).is_err());
    });
    let flaky = idempotency_core::testing::FlakyStorage::default();
    flaky.set_claim_down(true);
    let open = IdempotencyManager::builder(flaky)
        .on_store_error(idempotency_core::StoreErrorPolicy::FailOpen)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    capture(&cap, || {
        assert!(open.execute_sync(&call("t::down", 1), || 0_u8).is_ok());
    });
    // A value over `max_result_bytes`: the caller gets it, the log says it was not retained.
    let small = IdempotencyManager::builder(MemoryStorage::new())
        .max_result_bytes(8)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    capture(&cap, || {
        let o = small
            .execute_sync(&call("t::big", 1), || "0123456789abcdef".to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!o.is_retained());
    });
    let msgs = cap.messages();
    for expected in [
        "result not retained: repeats get ResultNotRetained until the record expires",
        "store error",
        "store unavailable: running unprotected (fail-open)",
        "claimed",
        "completed",
        "replayed",
        "conflict: in progress",
        "took over an expired record",
        "failed: error stored",
        "released",
        "fingerprint mismatch",
    ] {
        assert!(
            msgs.iter().any(|m| m == expected),
            "missing event `{expected}` in {msgs:?}"
        );
    }
    let events = cap.events();
    let claimed = events
        .iter()
        .find(|e| e.get("message").map(String::as_str) == Some("claimed"))
        .unwrap_or_else(|| panic!("no claimed event"));
    assert!(claimed
        .get("key")
        .is_some_and(|k| k.starts_with("t::steps:")));
    assert!(claimed.get("execution_id").is_some_and(|id| id.len() == 36));
    for e in &events {
        for v in e.values() {
            assert!(!v.contains("424242"), "raw inputs never appear: {e:?}");
        }
    }
}

#[test]
fn fenced_out_write_is_traced_on_the_managed_path() {
    let cap = Captured::default();
    let clock = ManualClock::new(Timestamp(1_000));
    let store = MemoryStorage::with_clock(Arc::new(clock.clone()));
    let m = IdempotencyManager::builder(store)
        .pending_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let c = call("t::fenced", 1);
    let m2 = m.clone();
    let c2 = c.clone();
    capture(&cap, || {
        let r = m.execute_sync(&c, || {
            // While this holder runs, its lease passes and another caller takes over.
            clock.advance(Duration::from_secs(2));
            m2.execute_sync(&c2, || 2_u8)
                .unwrap_or_else(|e| panic!("{e}"));
            1_u8
        });
        assert!(r.is_err());
    });
    assert!(cap.messages().iter().any(|m| m.starts_with("fenced out")));
    assert_eq!(m.stats().fenced_out, 1);
}

#[test]
fn stats_snapshot_gives_counts_and_ratios() {
    let m = IdempotencyManager::builder(MemoryStorage::new())
        .on_conflict(ConflictPolicy::Reject)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let c = call("t::stats", 1);
    for _ in 0..4 {
        m.execute_sync(&c, || 1_u8)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let _ = m.try_execute_sync(&call("t::stats", 2), || Err::<u8, String>("no".into()));
    let s = m.stats();
    assert_eq!(
        (s.requests, s.executions, s.replays, s.failures_cached),
        (5, 2, 3, 1)
    );
    assert!((s.hit_rate() - 0.6).abs() < 1e-9);
    assert!((s.failure_rate() - 0.5).abs() < 1e-9);
    assert_eq!(s.lock_contention(), 0.0);
}

#[cfg(feature = "metrics")]
mod metrics_feature {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Rec {
        counters: Mutex<BTreeMap<String, Arc<Count>>>,
        histograms: Mutex<BTreeMap<String, Arc<Count>>>,
    }
    #[derive(Default)]
    struct Count(AtomicU64);
    impl CounterFn for Count {
        fn increment(&self, v: u64) {
            self.0.fetch_add(v, Ordering::SeqCst);
        }
        fn absolute(&self, v: u64) {
            self.0.store(v, Ordering::SeqCst);
        }
    }
    impl HistogramFn for Count {
        fn record(&self, _: f64) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn name(key: &Key) -> String {
        let mut s = key.name().to_owned();
        for l in key.labels() {
            s.push_str(&format!(",{}={}", l.key(), l.value()));
        }
        s
    }
    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let c = self
                .counters
                .lock()
                .map(|mut m| m.entry(name(key)).or_default().clone());
            c.map(Counter::from_arc).unwrap_or_else(|_| Counter::noop())
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let c = self
                .histograms
                .lock()
                .map(|mut m| m.entry(name(key)).or_default().clone());
            c.map(Histogram::from_arc)
                .unwrap_or_else(|_| Histogram::noop())
        }
    }
    impl Rec {
        fn counter(&self, n: &str) -> u64 {
            self.counters
                .lock()
                .ok()
                .and_then(|m| m.get(n).map(|c| c.0.load(Ordering::SeqCst)))
                .unwrap_or(0)
        }
        fn histogram(&self, n: &str) -> u64 {
            self.histograms
                .lock()
                .ok()
                .and_then(|m| m.get(n).map(|c| c.0.load(Ordering::SeqCst)))
                .unwrap_or(0)
        }
    }

    #[test]
    fn every_metric_is_recorded_on_the_path_that_emits_it() {
        use idempotency_core::testing::FlakyStorage;
        use idempotency_core::{KeyEncoder, StoreErrorPolicy};
        let rec = Rec::default();
        let clock = ManualClock::new(Timestamp(1_000));
        let m = IdempotencyManager::builder(MemoryStorage::with_clock(Arc::new(clock.clone())))
            .pending_timeout(Duration::from_secs(1))
            .on_conflict(ConflictPolicy::Reject)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let flaky = FlakyStorage::default();
        let open = IdempotencyManager::builder(flaky.clone())
            .on_store_error(StoreErrorPolicy::FailOpen)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let closed = IdempotencyManager::new(flaky.clone());
        metrics::with_local_recorder(&rec, || {
            // executed, replayed
            let c = call("t::metrics", 1);
            m.execute_sync(&c, || 1_u8)
                .unwrap_or_else(|e| panic!("{e}"));
            m.execute_sync(&c, || 1_u8)
                .unwrap_or_else(|e| panic!("{e}"));
            // conflict, then takeover after the lease, then the stale holder fenced out
            let p = call("t::metrics", 2);
            let Ok(Begin::Acquired(_stale)) = idempotency_core::block_on(m.begin_operation(&p))
            else {
                panic!("claim")
            };
            assert!(m.execute_sync(&p, || 0_u8).is_err());
            let m2 = m.clone();
            let p2 = p.clone();
            let clock2 = clock.clone();
            let r = m.execute_sync(&call("t::metrics", 3), move || {
                clock2.advance(Duration::from_secs(2));
                m2.execute_sync(&p2, || 2_u8).map(|o| o.value).ok()
            });
            assert!(r.is_ok());
            let q = call("t::metrics", 4);
            let m3 = m.clone();
            let q2 = q.clone();
            let clock3 = clock.clone();
            let fenced = m.execute_sync(&q, move || {
                clock3.advance(Duration::from_secs(2));
                m3.execute_sync(&q2, || 5_u8).map(|o| o.value).ok()
            });
            assert!(fenced.is_err(), "the first holder is fenced out");
            // failure cached, release
            let _ = m.try_execute_sync(&call("t::metrics", 5), || Err::<u8, String>("x".into()));
            let _ = m.try_execute_sync(&call("t::metrics", 6).cache_failures(false), || {
                Err::<u8, String>("x".into())
            });
            // fingerprint mismatch, rejected
            let custom = |arg: u8| {
                let mut e = KeyEncoder::new("t::metrics-custom", 1);
                e.custom_key("k").arg(&arg);
                Call::new(e.finish().unwrap_or_else(|e| panic!("{e}")))
            };
            m.execute_sync(&custom(1), || 0_u8)
                .unwrap_or_else(|e| panic!("{e}"));
            let strict = custom(2).fingerprint_policy(FingerprintPolicy::Reject);
            assert!(m.execute_sync(&strict, || 0_u8).is_err());
            // store errors: fail closed, fail open (unprotected)
            flaky.set_claim_down(true);
            assert!(closed
                .execute_sync(&call("t::metrics", 7), || 0_u8)
                .is_err());
            assert!(open.execute_sync(&call("t::metrics", 8), || 0_u8).is_ok());
            flaky.set_claim_down(false);
            // lock wait: a waiter that gives up after its bound
            let w = call("t::metrics", 9).on_conflict(ConflictPolicy::Wait {
                timeout: Duration::from_millis(20),
            });
            let _ = idempotency_core::block_on(m.begin_operation(&w));
            assert!(m.execute_sync(&w, || 0_u8).is_err());
        });
        for (name, at_least) in [
            ("idempotency_requests_total,outcome=executed", 1),
            ("idempotency_requests_total,outcome=replayed", 1),
            ("idempotency_requests_total,outcome=conflict", 1),
            ("idempotency_requests_total,outcome=mismatch_rejected", 1),
            ("idempotency_requests_total,outcome=store_error", 2),
            ("idempotency_requests_total,outcome=unprotected", 1),
            ("idempotency_executions_total", 1),
            ("idempotency_replays_total", 1),
            ("idempotency_conflicts_total", 1),
            ("idempotency_fingerprint_mismatches_total", 1),
            ("idempotency_failures_cached_total", 1),
            ("idempotency_releases_total", 1),
            ("idempotency_takeovers_total", 1),
            ("idempotency_fenced_out_total", 1),
            ("idempotency_store_errors_total,operation=claim", 2),
        ] {
            assert!(
                rec.counter(name) >= at_least,
                "{name}: {}",
                rec.counter(name)
            );
        }
        assert_eq!(rec.counter("idempotency_replays_total"), 1);
        assert!(rec.histogram("idempotency_lock_wait_seconds") >= 1);
        assert!(rec.histogram("idempotency_store_latency_seconds,operation=claim") >= 8);
        assert!(rec.histogram("idempotency_store_latency_seconds,operation=complete") >= 2);
    }
}
