//! Long-running work (issue 16) as store-independent cases: lease renewal (SEMANTICS.md
//! scenario 14), a stale holder after a stall (12, 13), `current()` inside the function (15),
//! a dropped future (9b), the failure TTL counted from the failure (21) and waiting under
//! contention (31). `tests/long_running` runs them on the memory and file stores, and
//! `tests/redis` on Redis.
//!
//! Leases here expire in real stores, so these cases use small real durations; the order of
//! events is set with channels and barriers, never with sleeps. Where the store takes a clock
//! (memory, file), the cases that only need store time move a `ManualClock` instead.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use idempotency::{
    block_on, current, idempotent, Begin, Call, Claim, ClaimRequest, ConflictPolicy, Current,
    DynStorage, Error, ErrorKind, IdempotencyKey, IdempotencyManager, IdempotentPipeline,
    ManualClock, Observed, Owner, Pipeline, Record, RecordError, RecordStatus, Result, Storage,
    Timestamp,
};
use serde::{Deserialize, Serialize};

/// Calls `$run!` with the names of every case, so that each runner lists them once.
macro_rules! every_case {
    ($run:ident) => {
        $run!(
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

/// Where the cases run.
pub trait Fixture {
    /// A fresh store on the system clock (time passes for real).
    fn store(&self) -> Arc<dyn DynStorage>;
    /// A fresh store on a clock the test moves, when the store takes one (not Redis).
    fn clocked(&self) -> Option<(Arc<dyn DynStorage>, ManualClock)>;
    /// A fresh store without `fsync`s where it has them (the file store's
    /// `Durability::Buffered`), for a case that bounds wall time: on a loaded disk one `fsync`
    /// can take longer than the bound, which would then measure the disk.
    fn store_without_fsync(&self) -> Arc<dyn DynStorage> {
        self.store()
    }
}

fn call(op: &str, args: &str) -> Call {
    Call::new(IdempotencyKey::derive(op, 1, args).unwrap())
}

fn manager(store: Arc<dyn DynStorage>, lease: Duration) -> IdempotencyManager {
    IdempotencyManager::builder_dyn(store)
        .default_ttl(Duration::from_secs(120))
        .pending_timeout(lease)
        .build()
        .unwrap()
}

fn status(m: &IdempotencyManager, c: &Call) -> Observed {
    block_on(m.status(&c.key)).unwrap().expect("a record")
}

/// Waits (real time, reading the store's own view) until `c`'s record is expired or gone.
fn wait_until_expired(m: &IdempotencyManager, c: &Call) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while let Some(o) = block_on(m.status(&c.key)).unwrap() {
        if o.status() == RecordStatus::Expired {
            return;
        }
        assert!(Instant::now() < give_up, "the record never expired");
        thread::sleep(o.time_to_live().max(Duration::from_millis(1)));
    }
}

// ---- Scenario 14: renewal ----------------------------------------------------------------

/// Lease 300 ms, a body of 1 s, a second caller trying every 50 ms: the body runs once, the
/// second caller is refused (never takes over) while the first works, then replays.
pub fn scenario_14_a_body_longer_than_its_lease_keeps_it(f: &dyn Fixture) {
    let lease = Duration::from_millis(300);
    let m = manager(f.store(), lease);
    let c = call("long::s14", "keeps");
    let runs = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = mpsc::channel();
    let first = {
        let (m, c, runs, done) = (m.clone(), c.clone(), runs.clone(), done.clone());
        thread::spawn(move || {
            let o = m.execute_sync(&c, || {
                runs.fetch_add(1, Ordering::SeqCst);
                started_tx.send(Instant::now()).unwrap();
                thread::sleep(Duration::from_secs(1));
                "A".to_string()
            });
            done.store(true, Ordering::SeqCst);
            o
        })
    };
    let began = started.recv().unwrap();
    let mut late_refusals = 0;
    while !done.load(Ordering::SeqCst) {
        match m.execute_sync(&c, || {
            runs.fetch_add(1, Ordering::SeqCst);
            "B".to_string()
        }) {
            Err(e) if e.kind() == ErrorKind::InProgress => {
                if began.elapsed() > lease + Duration::from_millis(100) {
                    late_refusals += 1;
                }
            }
            // The first caller stored its value just before it said it was done.
            Ok(o) if o.is_replayed() && o.value == "A" => break,
            other => panic!("a second caller while the first works: {other:?}"),
        }
        thread::sleep(Duration::from_millis(50));
    }
    let a = first.join().unwrap().unwrap();
    assert!(!a.is_replayed() && a.value == "A" && a.provenance.fencing_token == 1);
    assert!(
        late_refusals > 0,
        "the second caller was refused after the first lease would have ended"
    );
    let again = m.execute_sync(&c, || "C".to_string()).unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, "A");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
}

/// A store that fails one renewal (the `fail_on`-th, counting from 1) as an unreachable store
/// would, and counts them all. Everything else goes to the inner store.
#[derive(Debug)]
pub struct FailOneRenewal {
    inner: Arc<dyn DynStorage>,
    fail_on: usize,
    renewals: AtomicUsize,
}

impl Storage for FailOneRenewal {
    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        self.inner.try_claim(key, req).await
    }
    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        self.inner.complete(key, owner, result, ttl).await
    }
    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        self.inner.fail(key, owner, error, ttl).await
    }
    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        self.inner.release(key, owner).await
    }
    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        if self.renewals.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_on {
            let down = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down (test)");
            return Err(Error::storage("renew", down));
        }
        self.inner.renew(key, owner, lease).await
    }
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        self.inner.delete(key).await
    }
}

/// A store error on the second of several renewals: the renewals that follow go on, nobody
/// takes over, the body is not told of a loss, and its value is stored.
pub fn scenario_14_a_failed_renewal_does_not_lose_the_lease(f: &dyn Fixture) {
    let lease = Duration::from_millis(600);
    let store = Arc::new(FailOneRenewal {
        inner: f.store(),
        fail_on: 2,
        renewals: AtomicUsize::new(0),
    });
    let m = manager(store.clone(), lease);
    let c = call("long::s14", "store-error");
    let runs = Arc::new(AtomicUsize::new(0));
    let (started_tx, started) = mpsc::channel();
    let (finish_tx, finish) = mpsc::channel::<()>();
    let first = {
        let (m, c, runs) = (m.clone(), c.clone(), runs.clone());
        thread::spawn(move || {
            m.execute_sync(&c, || {
                runs.fetch_add(1, Ordering::SeqCst);
                let me = current().unwrap();
                started_tx.send(()).unwrap();
                finish.recv().unwrap();
                assert!(
                    !me.is_lease_lost(),
                    "one failed renewal is not a lost lease"
                );
                "A".to_string()
            })
        })
    };
    started.recv().unwrap();
    // Let the body outlive two whole leases, with the failed renewal inside the first.
    let until = Instant::now() + 2 * lease + Duration::from_millis(200);
    while Instant::now() < until {
        let r = m.execute_sync(&c, || {
            runs.fetch_add(1, Ordering::SeqCst);
            "B".to_string()
        });
        assert_eq!(r.unwrap_err().kind(), ErrorKind::InProgress);
        thread::sleep(Duration::from_millis(50));
    }
    finish_tx.send(()).unwrap();
    let a = first.join().unwrap().unwrap();
    assert!(!a.is_replayed() && a.value == "A");
    let renewals = store.renewals.load(Ordering::SeqCst);
    assert!(
        renewals >= 4,
        "renewals went on after the failed one ({renewals})"
    );
    assert_eq!(m.stats().store_errors, 1, "the failed renewal is counted");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(m
        .execute_sync(&c, || "C".to_string())
        .unwrap()
        .is_replayed());
}

/// A renewal the store refuses (the record was deleted, then another caller claimed and
/// finished the key): the body is told, and its completion is refused with `LeaseLost`; the
/// other caller's value stays.
pub fn scenario_14_a_refused_renewal_loses_the_lease(f: &dyn Fixture) {
    let lease = Duration::from_millis(300);
    let m = manager(f.store(), lease);
    let c = call("long::s14", "refused");
    let (started_tx, started) = mpsc::channel();
    let (taken_tx, taken) = mpsc::channel::<()>();
    let first = {
        let (m, c) = (m.clone(), c.clone());
        thread::spawn(move || {
            m.execute_sync(&c, || {
                let me = current().unwrap();
                started_tx.send(()).unwrap();
                taken.recv().unwrap();
                // The next renewal finds the other holder (a third of a lease from now).
                let give_up = Instant::now() + Duration::from_secs(10);
                while !me.is_lease_lost() && Instant::now() < give_up {
                    thread::sleep(Duration::from_millis(10));
                }
                assert!(me.is_lease_lost(), "the body is told its lease is lost");
                "A".to_string()
            })
        })
    };
    started.recv().unwrap();
    assert!(block_on(m.storage().delete(&c.key)).unwrap());
    let b = m.execute_sync(&c, || "B".to_string()).unwrap();
    assert!(!b.is_replayed());
    taken_tx.send(()).unwrap();
    let a = first.join().unwrap();
    assert_eq!(a.unwrap_err().kind(), ErrorKind::LeaseLost);
    let again = m.execute_sync(&c, || "C".to_string()).unwrap();
    assert!(again.is_replayed());
    assert_eq!(again.value, "B");
    assert_eq!(
        status(&m, &c).record.owner.execution_id,
        b.provenance.execution_id
    );
}

/// An async body can await the loss (`Current::lease_lost`), as a cancellation signal.
pub fn scenario_14_an_async_body_can_await_the_loss(f: &dyn Fixture) {
    let lease = Duration::from_millis(300);
    let m = manager(f.store(), lease);
    let c = call("long::s14", "await-the-loss");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let first = {
        let (m, c) = (m.clone(), c.clone());
        rt.spawn(async move {
            m.execute(&c, || async {
                let me = current().unwrap();
                started_tx.send(()).unwrap();
                tokio::select! {
                    () = me.lease_lost() => "cancelled".to_string(),
                    () = tokio::time::sleep(Duration::from_secs(10)) => "never told".to_string(),
                }
            })
            .await
        })
    };
    rt.block_on(started).unwrap();
    assert!(block_on(m.storage().delete(&c.key)).unwrap());
    let b = m.execute_sync(&c, || "B".to_string()).unwrap();
    assert!(!b.is_replayed());
    let a = rt.block_on(first).unwrap();
    assert_eq!(a.unwrap_err().kind(), ErrorKind::LeaseLost);
}

/// Renewals stop when the body panics: the claim is released, the panic resumes, and no
/// renewal follows.
pub fn scenario_14_renewals_stop_when_the_body_panics(f: &dyn Fixture) {
    let lease = Duration::from_millis(150);
    let store = Arc::new(FailOneRenewal {
        inner: f.store(),
        fail_on: usize::MAX,
        renewals: AtomicUsize::new(0),
    });
    let m = manager(store.clone(), lease);
    let c = call("long::s14", "panics");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.execute_sync(&c, || -> u8 {
            let give_up = Instant::now() + Duration::from_secs(10);
            while store.renewals.load(Ordering::SeqCst) < 2 && Instant::now() < give_up {
                thread::sleep(Duration::from_millis(5));
            }
            panic!("the body gives up after two renewals")
        })
    }));
    assert!(panicked.is_err(), "the panic resumes");
    let after = store.renewals.load(Ordering::SeqCst);
    assert!(after >= 2, "renewed while the body ran ({after})");
    assert!(block_on(m.status(&c.key)).unwrap().is_none(), "released");
    // Three renewal periods later, none has come (there is no event to wait for).
    thread::sleep(lease);
    assert_eq!(store.renewals.load(Ordering::SeqCst), after);
}

/// Renewals are bounded (`max_lease_renewal`): past the bound the lease runs out and the body
/// is told. Nobody took over, so its completion, fenced by the store, is still stored.
pub fn scenario_14_renewals_are_bounded(f: &dyn Fixture) {
    let lease = Duration::from_millis(100);
    let m = IdempotencyManager::builder_dyn(f.store())
        .pending_timeout(lease)
        .max_lease_renewal(Duration::from_millis(200))
        .build()
        .unwrap();
    let c = call("long::s14", "bounded");
    let o = m
        .execute_sync(&c, || {
            let me = current().unwrap();
            let give_up = Instant::now() + Duration::from_secs(10);
            while !me.is_lease_lost() && Instant::now() < give_up {
                thread::sleep(Duration::from_millis(5));
            }
            me.is_lease_lost()
        })
        .unwrap();
    assert!(o.value, "the body was told its lease ran out");
    assert!(!o.is_replayed() && o.is_retained());
    assert!(m.execute_sync(&c, || false).unwrap().is_replayed());
}

/// Renewals can be turned off per call: a body longer than its lease is then taken over.
pub fn scenario_14_renewal_can_be_turned_off(f: &dyn Fixture) {
    let lease = Duration::from_millis(100);
    let m = manager(f.store(), lease);
    let c = call("long::s14", "off").renew_lease(false);
    let (started_tx, started) = mpsc::channel();
    let (finish_tx, finish) = mpsc::channel::<()>();
    let first = {
        let (m, c) = (m.clone(), c.clone());
        thread::spawn(move || {
            m.execute_sync(&c, || {
                started_tx.send(()).unwrap();
                finish.recv().unwrap();
                "A".to_string()
            })
        })
    };
    started.recv().unwrap();
    wait_until_expired(&m, &c);
    let b = m.execute_sync(&c, || "B".to_string()).unwrap();
    assert!(b.provenance.takeover && b.provenance.fencing_token == 2);
    finish_tx.send(()).unwrap();
    assert_eq!(
        first.join().unwrap().unwrap_err().kind(),
        ErrorKind::LeaseLost
    );
}

// ---- Scenarios 12 and 13: a stale holder -------------------------------------------------

/// A claims with a lease of 100 ms and stalls 150 ms (a paused process: no renewals); B takes
/// over and stores "B". While B holds the key a third caller gets `InProgress`; afterwards A's
/// complete, fail and release change nothing, and "B" is what replays.
pub fn scenario_12_a_stale_holder_changes_nothing(f: &dyn Fixture) {
    let lease = Duration::from_millis(100);
    let (store, clock) = match f.clocked() {
        Some((s, c)) => (s, Some(c)),
        None => (f.store(), None),
    };
    let m = manager(store, lease);
    let c = call("long::s12", "stale");
    let Begin::Acquired(a) = block_on(m.begin_operation(&c)).unwrap() else {
        panic!("a fresh key is acquired")
    };
    match &clock {
        Some(clock) => clock.advance(Duration::from_millis(150)),
        None => thread::sleep(Duration::from_millis(150)),
    }
    let (holding_tx, holding) = mpsc::channel();
    let (finish_tx, finish) = mpsc::channel::<()>();
    let b = {
        let (m, c) = (m.clone(), c.clone());
        thread::spawn(move || {
            m.execute_sync(&c, || {
                holding_tx.send(current().unwrap().fencing_token()).unwrap();
                finish.recv().unwrap();
                "B".to_string()
            })
        })
    };
    assert_eq!(holding.recv().unwrap(), 2, "B took over with token 2");
    let third = m.execute_sync(&c, || "C".to_string());
    assert_eq!(third.unwrap_err().kind(), ErrorKind::InProgress);
    finish_tx.send(()).unwrap();
    let b = b.join().unwrap().unwrap();
    assert!(b.provenance.takeover && b.value == "B");

    let kind = |r: Result<Record>| r.map(|_| ()).unwrap_err().kind();
    assert_eq!(
        kind(block_on(m.complete_operation(&a, "A"))),
        ErrorKind::LeaseLost
    );
    assert_eq!(
        kind(block_on(m.fail_operation(&a, "A failed"))),
        ErrorKind::LeaseLost
    );
    assert!(!block_on(m.release_operation(&a)).unwrap());
    let stored = status(&m, &c);
    assert_eq!(stored.status(), RecordStatus::Success);
    assert_eq!(stored.record.owner.execution_id, b.provenance.execution_id);
    let again = m.execute_sync(&c, || "D".to_string()).unwrap();
    assert!(again.is_replayed() && again.value == "B");
}

// ---- Scenario 15: current() --------------------------------------------------------------

fn assert_describes(me: &Current, c: &Call, execution_id: uuid::Uuid, token: u64) {
    assert_eq!(me.key(), &c.key);
    assert_eq!(me.execution_id(), execution_id);
    assert_eq!(me.fencing_token(), token);
}

/// Runs `c` on `m` with a sync body that keeps what `current()` says; returns it with the
/// outcome's execution id.
fn seen_in_sync_body(m: &IdempotencyManager, c: &Call) -> (Current, uuid::Uuid) {
    let seen = Mutex::new(None);
    let o = m
        .execute_sync(c, || {
            *seen.lock().unwrap() = current();
            0_u8
        })
        .unwrap();
    let me = seen
        .lock()
        .unwrap()
        .take()
        .expect("current() inside the body");
    (me, o.provenance.execution_id)
}

/// In a sync body: the call's key, execution id and fencing token; a derived key that is the
/// same for every read and differs by label and by call; `None` outside.
pub fn scenario_15_current_in_a_sync_body(f: &dyn Fixture) {
    let m = manager(f.store(), Duration::from_secs(10));
    let c = call("long::s15", "sync");
    assert!(current().is_none());
    let (me, execution_id) = seen_in_sync_body(&m, &c);
    assert!(current().is_none(), "None again after the call");
    assert_describes(&me, &c, execution_id, 1);
    assert!(!me.is_lease_lost());
    let k = me.derived_key("stripe-charge");
    assert_eq!(k.len(), 32);
    assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(k, me.derived_key("stripe-charge"));
    assert_ne!(k, me.derived_key("stripe-refund"));
    let (other, _) = seen_in_sync_body(&m, &call("long::s15", "other"));
    assert_ne!(other.derived_key("stripe-charge"), k);
}

/// In an async body: the same across awaits and thread hops of a multi-thread runtime; a
/// nested call sees its own, and the outer body its own again after it.
pub fn scenario_15_current_in_an_async_body(f: &dyn Fixture) {
    let m = manager(f.store(), Duration::from_secs(10));
    let outer = call("long::s15", "async-outer");
    let inner = call("long::s15", "async-inner");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let o = rt
        .block_on({
            let (m, inner, seen) = (m.clone(), inner.clone(), seen.clone());
            let outer = outer.clone();
            async move {
                m.execute(&outer, || async {
                    let before = current().unwrap();
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let nested = m
                        .execute(&inner, || async { current().unwrap().key().clone() })
                        .await
                        .unwrap();
                    let after = current().unwrap();
                    seen.lock().unwrap().extend([before, after]);
                    nested.value
                })
                .await
            }
        })
        .unwrap();
    assert_eq!(o.value, inner.key, "the nested call saw its own key");
    let seen = seen.lock().unwrap();
    for me in seen.iter() {
        assert_describes(me, &outer, o.provenance.execution_id, 1);
    }
    assert!(current().is_none());
}

struct Step;

impl Pipeline for Step {
    const NAME: &'static str = "long::s15::pipeline";
    type Input = u32;
    type Output = (String, u64, String);
    type Error = String;
    fn run(&self, input: &u32) -> std::result::Result<Self::Output, String> {
        let me = current().ok_or("no current call in a pipeline's run")?;
        Ok((
            me.key().to_string(),
            me.fencing_token(),
            me.derived_key(&input.to_string()),
        ))
    }
}

/// In a pipeline's `run`.
pub fn scenario_15_current_in_a_pipeline_run(f: &dyn Fixture) {
    let p = IdempotentPipeline::new(Step, manager(f.store(), Duration::from_secs(10)));
    let o = p.execute(&7).unwrap();
    let (key, token, derived) = o.value.unwrap();
    assert_eq!(key, p.call(&7).unwrap().key.to_string());
    assert_eq!(token, 1);
    assert_eq!(derived.len(), 32);
}

/// After a takeover: token 2, a new execution id, the same idempotency key and derived key.
pub fn scenario_15_a_takeover_sees_token_2_and_the_same_derived_key(f: &dyn Fixture) {
    let lease = Duration::from_millis(200);
    let (store, clock) = match f.clocked() {
        Some((s, c)) => (s, Some(c)),
        None => (f.store(), None),
    };
    let m = manager(store, lease);
    let c = call("long::s15", "takeover");
    // Attempt 1 enters its body, reads `current()`, and is dropped there (its caller gave up).
    let first = Arc::new(Mutex::new(None));
    {
        let slot = first.clone();
        let fut = m.execute(&c, || {
            *slot.lock().unwrap() = current();
            std::future::pending::<String>()
        });
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while slot.lock().unwrap().is_none() {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
    }
    let first = first.lock().unwrap().take().unwrap();
    match &clock {
        Some(clock) => clock.advance(lease + Duration::from_millis(1)),
        None => wait_until_expired(&m, &c),
    }
    let (second, _) = seen_in_sync_body(&m, &c);
    assert_eq!(first.fencing_token(), 1);
    assert_eq!(second.fencing_token(), 2);
    assert_eq!(second.key(), first.key());
    assert_ne!(second.execution_id(), first.execution_id());
    assert_eq!(second.derived_key("ledger"), first.derived_key("ledger"));
}

// ---- Scenario 9b: a dropped future -------------------------------------------------------

#[idempotent(manager = m, pending_timeout = 2, ttl = 60)]
async fn slow_double(
    #[idempotency(skip)] m: &IdempotencyManager,
    x: u32,
    #[idempotency(skip)] seen: &Mutex<Option<Current>>,
) -> u32 {
    *seen.lock().unwrap() = current();
    tokio::time::sleep(Duration::from_secs(1)).await;
    x * 2
}

/// `timeout(50 ms, f(x))` on a body of 1 s with a lease of 2 s, then `f(x)` again: the dropped
/// call's record is left to its lease (documented), so the repeat is `InProgress` at once, its
/// renewals stopped with the drop, and 2.1 s after the first call the repeat runs.
pub fn scenario_9_a_dropped_future_is_left_to_its_lease(f: &dyn Fixture) {
    let m = manager(f.store(), Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let seen = Mutex::new(None);
        let start = tokio::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_millis(50), slow_double(&m, 21, &seen)).await;
        assert!(r.is_err(), "the timeout fired inside the body");
        let me = seen.lock().unwrap().take().expect("the body ran");
        let repeat = slow_double(&m, 21, &seen).await;
        assert_eq!(repeat.unwrap_err().kind(), ErrorKind::InProgress);
        let pending = m.status(me.key()).await.unwrap().unwrap();
        assert_eq!(pending.status(), RecordStatus::Pending);
        // A renewal would have come 2/3 s after the claim: nothing moves the lease now.
        tokio::time::sleep_until(start + Duration::from_millis(1000)).await;
        let later = m.status(me.key()).await.unwrap().unwrap();
        assert_eq!(
            later.record.expires_at, pending.record.expires_at,
            "no renewal after the drop"
        );
        tokio::time::sleep_until(start + Duration::from_millis(2100)).await;
        assert_eq!(slow_double(&m, 21, &seen).await.unwrap(), 42);
        let now = seen.lock().unwrap().take().expect("the repeat ran");
        assert_eq!(now.fencing_token(), 2, "it took the expired claim over");
    });
}

// ---- Scenario 21: the failure TTL counts from the failure -------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Declined(String);

/// Lease 1 s, failure TTL 60 s, a body of 3 s that returns a stored error: the error replays
/// for 60 s from the failure (not from the claim). On a store that takes a clock, to the
/// millisecond; on Redis (real time, the lease renewed meanwhile) by the record's expiry.
pub fn scenario_21_the_failure_ttl_counts_from_the_failure(f: &dyn Fixture) {
    let lease = Duration::from_secs(1);
    let failure_ttl = Duration::from_secs(60);
    let clocked = f.clocked();
    let store = match &clocked {
        Some((s, _)) => s.clone(),
        None => f.store(),
    };
    let m = IdempotencyManager::builder_dyn(store)
        .default_ttl(Duration::from_secs(120))
        .failure_ttl(failure_ttl)
        .pending_timeout(lease)
        .build()
        .unwrap();
    let c = call("long::s21", "failure-ttl");
    let runs = AtomicUsize::new(0);
    let body = || {
        runs.fetch_add(1, Ordering::SeqCst);
        match &clocked {
            Some((_, clock)) => clock.advance(Duration::from_secs(3)),
            None => thread::sleep(Duration::from_secs(3)),
        }
        Err::<u32, _>(Declined("card declined".into()))
    };
    let first = m.try_execute_sync(&c, body).unwrap();
    assert_eq!(first.value, Err(Declined("card declined".into())));
    let rec = status(&m, &c);
    assert_eq!(rec.status(), RecordStatus::Failed);
    let kept = rec
        .record
        .expires_at
        .saturating_since(rec.record.created_at);
    assert!(
        kept >= failure_ttl + Duration::from_millis(2900),
        "kept {kept:?} from the claim: the failure TTL started at the failure"
    );
    let replay = m.try_execute_sync(&c, body).unwrap();
    assert!(replay.is_replayed());
    assert_eq!(replay.value, Err(Declined("card declined".into())));
    if let Some((_, clock)) = &clocked {
        assert_eq!(
            rec.record.expires_at,
            rec.record
                .created_at
                .saturating_add(Duration::from_secs(63))
        );
        clock.advance(failure_ttl - Duration::from_millis(1));
        assert!(m.try_execute_sync(&c, body).unwrap().is_replayed());
        clock.advance(Duration::from_millis(2));
        assert!(!m.try_execute_sync(&c, body).unwrap().is_replayed());
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    } else {
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}

// ---- Scenario 31: waiting under contention -----------------------------------------------

/// A caller waiting 200 ms on a key that 8 threads keep claiming and releasing returns within
/// 400 ms, in 50 of 50 runs.
pub fn scenario_31_a_wait_under_contention_ends_in_time(f: &dyn Fixture) {
    let m = manager(f.store_without_fsync(), Duration::from_secs(10));
    let c = call("long::s31", "contention");
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(9));
    let churn: Vec<_> = (0..8)
        .map(|_| {
            let (m, c, stop, ready) = (m.clone(), c.clone(), stop.clone(), ready.clone());
            thread::spawn(move || {
                ready.wait();
                while !stop.load(Ordering::SeqCst) {
                    match block_on(m.begin_operation(&c)) {
                        Ok(Begin::Acquired(held)) => {
                            thread::sleep(Duration::from_millis(2));
                            block_on(m.release_operation(&held)).unwrap();
                        }
                        // Held by another: try again soon (a caller, not a spin loop: on the
                        // file store every claim takes the shard's OS lock).
                        _ => thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        })
        .collect();
    ready.wait();
    // A waiter that gets the key fails transiently: it releases it, the churn goes on.
    let waiting = c
        .clone()
        .cache_failures(false)
        .on_conflict(ConflictPolicy::Wait {
            timeout: Duration::from_millis(200),
        });
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let t = Instant::now();
        let r = m.try_execute_sync(&waiting, || Err::<u8, _>("transient".to_string()));
        let took = t.elapsed();
        match r {
            Ok(o) => assert!(!o.is_replayed()),
            Err(e) => assert_eq!(e.kind(), ErrorKind::InProgress),
        }
        slowest = slowest.max(took);
    }
    stop.store(true, Ordering::SeqCst);
    for t in churn {
        t.join().unwrap();
    }
    assert!(
        slowest <= Duration::from_millis(400),
        "the slowest of 50 waits took {slowest:?}"
    );
}
