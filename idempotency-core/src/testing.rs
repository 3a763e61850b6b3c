//! The conformance kit: the scenarios of SEMANTICS.md as reusable checks that every store runs.
//!
//! A store's test file implements [`Harness`] and invokes [`conformance_suite!`](crate::conformance_suite),
//! which generates one `#[tokio::test]` per scenario, named after it
//! (`scenario_12_stale_holder_is_fenced`). Each check asserts real behaviour through an
//! [`IdempotencyManager`] over the store and fails with a message naming the scenario.
//!
//! Time: a harness on an injected [`ManualClock`](crate::ManualClock) moves the store's clock; a store with its own
//! clock (Redis) lets real time pass in [`Harness::advance`] instead. Checks use leases and TTLs
//! of a few hundred milliseconds so both work.

// The kit is a set of test assertions: failing one is a panic, by design.
#![allow(clippy::panic)]

/// Kill points, for the fault tests: [`crate::fault`], here under its older path.
#[doc(inline)]
pub use crate::fault;
mod replay;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    Begin, Call, Claim, ClaimRequest, ConflictPolicy, DynStorage, Error, ErrorKind, Fingerprint,
    FingerprintPolicy, IdempotencyKey, IdempotencyManager, KeyEncoder, Outcome, Owner,
    RecordStatus, Result,
};

pub use replay::{
    issue_12_every_serde_shape_replays, issue_12_item_5_result_over_the_limit_reaches_its_caller,
    issue_12_item_6_tagged_enum_and_skipped_field_replay, Adjacent, Bytes, Flat, Floats, Id,
    Marker, Meta, Point, Skipped, Tagged, Untagged, WithSkippedVariant,
};

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

/// A [`MemoryStorage`](crate::MemoryStorage) whose claim and completion steps can be made to
/// fail like an unreachable backend ([`Error::Storage`]), for testing outage handling
/// (SEMANTICS.md scenarios 23 and 24): fail-closed, fail-open, completion retries. Clones share
/// the records and the switches.
#[derive(Debug, Clone, Default)]
pub struct FlakyStorage {
    inner: crate::MemoryStorage,
    claim_down: Arc<std::sync::atomic::AtomicBool>,
    complete_down: Arc<std::sync::atomic::AtomicBool>,
    complete_calls: Arc<AtomicUsize>,
}

impl FlakyStorage {
    /// Makes claims fail (`true`) or work (`false`).
    pub fn set_claim_down(&self, down: bool) {
        self.claim_down.store(down, Ordering::SeqCst);
    }
    /// Makes completions (`complete` and `fail`) fail (`true`) or work (`false`).
    pub fn set_complete_down(&self, down: bool) {
        self.complete_down.store(down, Ordering::SeqCst);
    }
    /// How many times `complete` or `fail` was called.
    pub fn complete_calls(&self) -> usize {
        self.complete_calls.load(Ordering::SeqCst)
    }
    fn down(&self, flag: &std::sync::atomic::AtomicBool, operation: &'static str) -> Result<()> {
        if flag.load(Ordering::SeqCst) {
            return Err(Error::storage(
                operation,
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "store down (test)"),
            ));
        }
        Ok(())
    }
}

impl crate::Storage for FlakyStorage {
    async fn try_claim(
        &self,
        key: &IdempotencyKey,
        req: &crate::ClaimRequest,
    ) -> Result<crate::Claim> {
        self.down(&self.claim_down, "claim")?;
        crate::Storage::try_claim(&self.inner, key, req).await
    }
    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &crate::Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<crate::Record> {
        self.complete_calls.fetch_add(1, Ordering::SeqCst);
        self.down(&self.complete_down, "complete")?;
        crate::Storage::complete(&self.inner, key, owner, result, ttl).await
    }
    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &crate::Owner,
        error: &crate::RecordError,
        ttl: Duration,
    ) -> Result<crate::Record> {
        self.complete_calls.fetch_add(1, Ordering::SeqCst);
        self.down(&self.complete_down, "fail")?;
        crate::Storage::fail(&self.inner, key, owner, error, ttl).await
    }
    async fn release(&self, key: &IdempotencyKey, owner: &crate::Owner) -> Result<bool> {
        crate::Storage::release(&self.inner, key, owner).await
    }
    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &crate::Owner,
        lease: Duration,
    ) -> Result<crate::Timestamp> {
        crate::Storage::renew(&self.inner, key, owner, lease).await
    }
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<crate::Observed>> {
        crate::Storage::get(&self.inner, key).await
    }
    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        crate::Storage::delete(&self.inner, key).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        crate::Storage::purge_expired(&self.inner).await
    }
}

/// A fenced transition of [`Storage`](crate::Storage), for [`LostReplyStorage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// [`Storage::complete`](crate::Storage::complete).
    Complete,
    /// [`Storage::fail`](crate::Storage::fail).
    Fail,
    /// [`Storage::release`](crate::Storage::release).
    Release,
    /// [`Storage::renew`](crate::Storage::renew).
    Renew,
}

impl Transition {
    fn bit(self) -> u8 {
        match self {
            Transition::Complete => 1,
            Transition::Fail => 2,
            Transition::Release => 4,
            Transition::Renew => 8,
        }
    }
}

/// Any store, wrapped so that the reply to a chosen transition is lost once: the transition is
/// applied by the store, then the caller gets [`Error::Storage`] as from a connection dropped
/// after the request was sent (SEMANTICS.md scenario 5, store-independent). Clones share the
/// switches.
#[derive(Debug, Clone)]
pub struct LostReplyStorage {
    inner: Arc<dyn DynStorage>,
    armed: Arc<std::sync::atomic::AtomicU8>,
    lost: Arc<AtomicUsize>,
}

impl LostReplyStorage {
    /// Wraps `inner`; nothing is lost until [`lose_next`](Self::lose_next).
    pub fn new(inner: Arc<dyn DynStorage>) -> Self {
        LostReplyStorage {
            inner,
            armed: Arc::default(),
            lost: Arc::default(),
        }
    }
    /// Loses the reply of the next call of `transition` (after the store has applied it).
    pub fn lose_next(&self, transition: Transition) {
        self.armed.fetch_or(transition.bit(), Ordering::SeqCst);
    }
    /// How many replies were lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
    /// `reply`, or a lost-reply error when `transition` was armed (disarming it).
    fn deliver<T>(&self, transition: Transition, reply: Result<T>) -> Result<T> {
        let bit = transition.bit();
        if self.armed.fetch_and(!bit, Ordering::SeqCst) & bit == 0 {
            return reply;
        }
        self.lost.fetch_add(1, Ordering::SeqCst);
        Err(Error::storage(
            match transition {
                Transition::Complete => "complete",
                Transition::Fail => "fail",
                Transition::Release => "release",
                Transition::Renew => "renew",
            },
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the reply was lost after the store applied the request (test)",
            ),
        ))
    }
}

impl crate::Storage for LostReplyStorage {
    async fn try_claim(
        &self,
        key: &IdempotencyKey,
        req: &crate::ClaimRequest,
    ) -> Result<crate::Claim> {
        self.inner.try_claim(key, req).await
    }
    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &crate::Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<crate::Record> {
        let reply = self.inner.complete(key, owner, result, ttl).await;
        self.deliver(Transition::Complete, reply)
    }
    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &crate::Owner,
        error: &crate::RecordError,
        ttl: Duration,
    ) -> Result<crate::Record> {
        let reply = self.inner.fail(key, owner, error, ttl).await;
        self.deliver(Transition::Fail, reply)
    }
    async fn release(&self, key: &IdempotencyKey, owner: &crate::Owner) -> Result<bool> {
        let reply = self.inner.release(key, owner).await;
        self.deliver(Transition::Release, reply)
    }
    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &crate::Owner,
        lease: Duration,
    ) -> Result<crate::Timestamp> {
        let reply = self.inner.renew(key, owner, lease).await;
        self.deliver(Transition::Renew, reply)
    }
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<crate::Observed>> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        self.inner.delete(key).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.inner.purge_expired().await
    }
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

/// A value with every "empty" shape, to prove replays return exactly the stored value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Falsy {
    zero: u64,
    no: bool,
    empty: String,
    list: Vec<u8>,
    none: Option<u32>,
    unit: (),
}

/// Scenario 1: 64 threads pass a barrier and call one key; the function runs once.
pub async fn scenario_1_threads_execute_once<H: Harness>(h: &H) {
    let m = manager(h);
    let count = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(64));
    let release = Arc::new(Barrier::new(2));
    let c = call("kit::s1", &"k");
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let (m, count, barrier, release, c) = (
                m.clone(),
                count.clone(),
                barrier.clone(),
                release.clone(),
                c.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let r = m.execute_sync(&c, || {
                    count.fetch_add(1, Ordering::SeqCst);
                    // Hold the claim until every other thread has been answered.
                    release.wait();
                    7_u32
                });
                (i, r)
            })
        })
        .collect();
    // The 63 losers answer InProgress without waiting for anything; count them, then let the
    // winner finish.
    let mut in_progress = 0;
    let mut executed = 0;
    let mut pending: Vec<_> = threads;
    let mut released = false;
    while !pending.is_empty() {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        pending = rest;
        for t in done {
            match t.join() {
                Ok((_, Err(Error::InProgress { .. }))) => in_progress += 1,
                Ok((_, Ok(o))) => {
                    assert!(!o.is_replayed());
                    assert_eq!(o.value, 7);
                    executed += 1;
                }
                Ok((i, Err(e))) => panic!("scenario 1: thread {i}: {e}"),
                Err(_) => panic!("scenario 1: a thread panicked"),
            }
        }
        if !released && in_progress == 63 {
            release.wait();
            released = true;
        }
        std::thread::yield_now();
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 1: executions");
    assert_eq!((executed, in_progress), (1, 63), "scenario 1: outcomes");
}

/// Scenario 1 with 1000 tokio tasks on one key.
pub async fn scenario_1_tasks_execute_once<H: Harness>(h: &H) {
    let m = manager_with(h, |b| {
        b.on_conflict(ConflictPolicy::Wait {
            timeout: Duration::from_secs(30),
        })
    });
    let count = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Barrier::new(1000));
    let c = call("kit::s1-tasks", &"k");
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (m, count, gate, c) = (m.clone(), count.clone(), gate.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            m.execute(&c, || async {
                count.fetch_add(1, Ordering::SeqCst);
                11_u64
            })
            .await
        }));
    }
    let mut replayed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(o)) => {
                assert_eq!(o.value, 11);
                replayed += usize::from(o.is_replayed());
            }
            Ok(Err(e)) => panic!("scenario 1 (tasks): {e}"),
            Err(e) => panic!("scenario 1 (tasks): join: {e}"),
        }
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "scenario 1 (tasks): executions"
    );
    assert_eq!(replayed, 999, "scenario 1 (tasks): replays");
}

/// Scenario 4: while caller A holds the key (paused inside its function), caller B runs in
/// full; the function still runs once.
pub async fn scenario_4_no_read_then_write_claim<H: Harness>(h: &H) {
    let m = manager(h);
    let count = Arc::new(AtomicUsize::new(0));
    let c = call("kit::s4", &1_u8);
    let (in_a, a_paused) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let a = {
        let (m, count, c, in_a, a_paused) = (
            m.clone(),
            count.clone(),
            c.clone(),
            in_a.clone(),
            a_paused.clone(),
        );
        std::thread::spawn(move || {
            m.execute_sync(&c, || {
                count.fetch_add(1, Ordering::SeqCst);
                in_a.wait();
                a_paused.wait();
                1_u8
            })
        })
    };
    in_a.wait();
    let b = m.execute_sync(&c, || {
        count.fetch_add(1, Ordering::SeqCst);
        2_u8
    });
    assert_eq!(
        kind(b),
        ErrorKind::InProgress,
        "scenario 4: B while A holds"
    );
    a_paused.wait();
    let a = a
        .join()
        .unwrap_or_else(|_| panic!("scenario 4: A panicked"));
    assert_eq!(must(a).value, 1);
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 4: executions");
}

/// Scenario 5, after the claim: a completion (and a stored failure) applied by the store whose
/// reply is lost is retried by the manager, and the retry returns the caller's own value, never
/// `LeaseLost` (no other holder ever existed); the record holds that value. A renew or release
/// whose reply is lost succeeds when the caller retries it.
pub async fn scenario_5_lost_transition_reply_is_resolved<H: Harness>(h: &H) {
    let lossy = LostReplyStorage::new(h.store());
    let m = match IdempotencyManager::builder_dyn(Arc::new(lossy.clone()))
        .default_ttl(Duration::from_secs(3600))
        .pending_timeout(Duration::from_secs(300))
        .build()
    {
        Ok(m) => m,
        Err(e) => panic!("test manager configuration: {e}"),
    };

    // complete
    let count = AtomicUsize::new(0);
    let c = call("kit::s5-complete", &"job");
    lossy.lose_next(Transition::Complete);
    let o = m
        .execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            "mine".to_string()
        })
        .await;
    assert_eq!(
        lossy.lost(),
        1,
        "scenario 5: the completion's reply was lost"
    );
    let o = o.unwrap_or_else(|e| panic!("scenario 5: the retried completion answered {e}"));
    assert_eq!(o.value, "mine");
    assert!(!o.is_replayed());
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.status(), RecordStatus::Success);
    assert_eq!(obs.record.owner.execution_id, o.provenance.execution_id);
    assert_eq!(obs.record.owner.fencing_token, 1);
    assert_eq!(
        must(IdempotencyManager::decode_value::<String>(&obs)),
        "mine"
    );
    let again = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            "other".to_string()
        })
        .await,
    );
    assert!(again.is_replayed());
    assert_eq!(
        again.value, "mine",
        "scenario 5: the caller's value is stored"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 5: executions");

    // fail (a permanent error, stored)
    let count = AtomicUsize::new(0);
    let c = call("kit::s5-fail", &"card");
    let declined = || PayError::Declined("insufficient funds".into());
    for round in 0..2 {
        if round == 0 {
            lossy.lose_next(Transition::Fail);
        }
        let o = m
            .try_execute_with(
                &c,
                || async {
                    count.fetch_add(1, Ordering::SeqCst);
                    Err::<u32, _>(declined())
                },
                |e| matches!(e, PayError::Timeout),
            )
            .await
            .unwrap_or_else(|e| panic!("scenario 5: the retried fail answered {e}"));
        assert_eq!(o.value, Err(declined()));
        assert_eq!(o.is_replayed(), round > 0);
    }
    assert_eq!(lossy.lost(), 2, "scenario 5: the fail's reply was lost");
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 5: executions");
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.status(), RecordStatus::Failed);

    // renew, then release, each retried by the caller after a lost reply
    let lossy_store: Arc<dyn DynStorage> = Arc::new(lossy.clone());
    let store = h.store();
    let k = must(IdempotencyKey::derive("kit::s5-lease", 1, &"job")).key;
    let long = Duration::from_secs(30);
    let owner = claim_fresh(&store, &k, long).await;
    lossy.lose_next(Transition::Renew);
    assert_eq!(
        kind(lossy_store.renew(&k, &owner, long).await),
        ErrorKind::StoreUnavailable
    );
    let until = lossy_store
        .renew(&k, &owner, long)
        .await
        .unwrap_or_else(|e| panic!("scenario 5: the retried renew answered {e}"));
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.status(), RecordStatus::Pending);
    assert_eq!(obs.record.owner, owner);
    assert_eq!(obs.record.lease_until, Some(until));
    lossy.lose_next(Transition::Release);
    assert_eq!(
        kind(lossy_store.release(&k, &owner).await),
        ErrorKind::StoreUnavailable
    );
    must(lossy_store.release(&k, &owner).await);
    assert_eq!(lossy.lost(), 4);
    assert!(
        must(store.get(&k).await).is_none(),
        "scenario 5: the claim is released"
    );
    let next = claim_fresh(&store, &k, long).await;
    assert_ne!(next.execution_id, owner.execution_id);
}

/// Claims `key` (which must be free) with a fresh execution id; returns the owner.
async fn claim_fresh(store: &Arc<dyn DynStorage>, key: &IdempotencyKey, lease: Duration) -> Owner {
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

/// Scenario 5, as a store contract: each fenced transition applied twice by the same owner
/// (execution id and fencing token) succeeds both times and leaves the state of the first;
/// fencing is untouched: another execution id, an older token of the same execution id, or
/// the same owner with other bytes or the other status is refused, whatever bytes it carries.
pub async fn scenario_5_transitions_reapplied_by_their_owner_succeed<H: Harness>(h: &H) {
    let store = h.store();
    let long = Duration::from_secs(30);
    let ttl = Duration::from_secs(3600);
    let key = |s: &str| must(IdempotencyKey::derive("kit::s5-again", 1, &s)).key;
    let stranger = |o: Owner| Owner {
        execution_id: crate::rt::execution_id(),
        fencing_token: o.fencing_token,
    };
    let newer = |o: Owner| Owner {
        execution_id: o.execution_id,
        fencing_token: o.fencing_token + 1,
    };
    let lost = |r: Result<crate::Record>, what: &str| {
        assert_eq!(kind(r), ErrorKind::LeaseLost, "scenario 5: {what} refused");
    };

    // complete twice
    let k = key("complete");
    let a = claim_fresh(&store, &k, long).await;
    let first = must(store.complete(&k, &a, b"v1", ttl).await);
    let second = must(store.complete(&k, &a, b"v1", ttl).await);
    assert_eq!(
        second, first,
        "scenario 5: a repeated complete answers as the first"
    );
    lost(
        store.complete(&k, &stranger(a), b"v1", ttl).await,
        "another execution id",
    );
    lost(
        store.complete(&k, &newer(a), b"v1", ttl).await,
        "another token",
    );
    lost(store.complete(&k, &a, b"v2", ttl).await, "other bytes");
    let err = crate::RecordError::Encoded(vec![1, 2]);
    lost(
        store.fail(&k, &a, &err, ttl).await,
        "a fail after the complete",
    );
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(
        obs.record, first,
        "scenario 5: the first complete's record stays"
    );

    // fail twice
    let k = key("fail");
    let a = claim_fresh(&store, &k, long).await;
    let first = must(store.fail(&k, &a, &err, ttl).await);
    let second = must(store.fail(&k, &a, &err, ttl).await);
    assert_eq!(
        second, first,
        "scenario 5: a repeated fail answers as the first"
    );
    lost(
        store.fail(&k, &stranger(a), &err, ttl).await,
        "another execution id",
    );
    let other = crate::RecordError::NotRetained("other".into());
    lost(store.fail(&k, &a, &other, ttl).await, "another error");
    lost(
        store.complete(&k, &a, b"", ttl).await,
        "a complete after the fail",
    );
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(
        obs.record, first,
        "scenario 5: the first fail's record stays"
    );

    // renew twice
    let k = key("renew");
    let a = claim_fresh(&store, &k, long).await;
    let u1 = must(store.renew(&k, &a, long).await);
    let u2 = must(store.renew(&k, &a, long).await);
    assert!(
        u2 >= u1,
        "scenario 5: a repeated renew never shortens the lease"
    );
    assert_eq!(
        kind(store.renew(&k, &stranger(a), long).await),
        ErrorKind::LeaseLost
    );
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.record.owner, a);
    assert_eq!(obs.record.lease_until, Some(u2));

    // release twice
    let k = key("release");
    let a = claim_fresh(&store, &k, long).await;
    assert!(!must(store.release(&k, &stranger(a)).await));
    assert!(!must(store.release(&k, &newer(a)).await));
    assert!(must(store.release(&k, &a).await));
    assert!(
        !must(store.release(&k, &a).await),
        "scenario 5: a repeated release deletes nothing"
    );
    assert!(must(store.get(&k).await).is_none());

    // the same execution id with an older token (its own claim, taken over after its lease)
    let k = key("takeover");
    let req = ClaimRequest {
        execution_id: crate::rt::execution_id(),
        fingerprint: Fingerprint([5; 32]),
        lease: LEASE,
        refresh: false,
    };
    let Claim::Acquired { owner: old, .. } = must(store.try_claim(&k, &req).await) else {
        panic!("scenario 5: could not claim")
    };
    h.advance(LEASE + Duration::from_millis(50)).await;
    let Claim::Acquired {
        owner: cur,
        takeover,
        ..
    } = must(store.try_claim(&k, &req).await)
    else {
        panic!("scenario 5: could not take over")
    };
    assert!(takeover);
    assert_eq!(cur.execution_id, old.execution_id);
    assert!(cur.fencing_token > old.fencing_token);
    lost(store.complete(&k, &old, b"v", ttl).await, "the older token");
    assert_eq!(
        kind(store.renew(&k, &old, long).await),
        ErrorKind::LeaseLost
    );
    assert!(!must(store.release(&k, &old).await));
    let done = must(store.complete(&k, &cur, b"v", ttl).await);
    lost(
        store.complete(&k, &old, b"v", ttl).await,
        "the older token with identical bytes",
    );
    lost(
        store.fail(&k, &old, &err, ttl).await,
        "the older token's fail",
    );
    let obs = must(store.get(&k).await).unwrap_or_else(|| panic!("scenario 5: no record"));
    assert_eq!(obs.record, done);
}

/// Scenario 6: a repeat replays the stored value exactly, even "empty" values, and is marked.
pub async fn scenario_6_replay_after_success<H: Harness>(h: &H) {
    let m = manager(h);
    let count = AtomicUsize::new(0);
    let v = Falsy {
        zero: 0,
        no: false,
        empty: String::new(),
        list: vec![],
        none: None,
        unit: (),
    };
    let c = call("kit::s6", &"args");
    let first = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            v.clone()
        })
        .await,
    );
    assert!(!first.is_replayed());
    let second: Outcome<Falsy> = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            Falsy {
                zero: 9,
                no: true,
                empty: "changed".into(),
                list: vec![1],
                none: Some(1),
                unit: (),
            }
        })
        .await,
    );
    assert!(second.is_replayed(), "scenario 6: marked as a replay");
    assert_eq!(second.value, v, "scenario 6: the stored value");
    assert_eq!(
        second.provenance.execution_id,
        first.provenance.execution_id
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Plain zero-sized and empty results replay too.
    for (i, c) in [call("kit::s6-unit", &0_u8)].iter().enumerate() {
        must(m.execute(c, || async {}).await);
        let o: Outcome<()> = must(
            m.execute(c, || async { panic!("replay {i} must not run") })
                .await,
        );
        assert!(o.is_replayed());
    }
    let c = call("kit::s6-none", &0_u8);
    must(m.execute(&c, || async { None::<u8> }).await);
    let o = must(m.execute(&c, || async { Some(1_u8) }).await);
    assert_eq!(o.value, None);
}

/// Error type used by the failure checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PayError {
    /// A permanent business rejection.
    Declined(String),
    /// A retryable error.
    Timeout,
}

/// Scenario 7: a permanent error is stored for the failure TTL and replayed as an equal error.
pub async fn scenario_7_permanent_failure_is_cached<H: Harness>(h: &H) {
    let m = manager(h);
    let count = AtomicUsize::new(0);
    let c = call("kit::s7", &"card");
    for round in 0..3 {
        let o = must(
            m.try_execute_with(
                &c,
                || async {
                    count.fetch_add(1, Ordering::SeqCst);
                    Err::<u32, _>(PayError::Declined("insufficient funds".into()))
                },
                |e| matches!(e, PayError::Timeout),
            )
            .await,
        );
        assert_eq!(
            o.value,
            Err(PayError::Declined("insufficient funds".into()))
        );
        assert_eq!(o.is_replayed(), round > 0);
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 7: executions");
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 7: no record"));
    assert_eq!(obs.status(), RecordStatus::Failed);
    assert!(
        obs.time_to_live() <= Duration::from_secs(300),
        "failure TTL applies"
    );
}

/// Scenario 8: a transient error releases the claim; the next call runs again.
pub async fn scenario_8_transient_failure_is_not_cached<H: Harness>(h: &H) {
    let m = manager(h);
    let count = AtomicUsize::new(0);
    let c = call("kit::s8", &"card");
    let transient = |e: &PayError| matches!(e, PayError::Timeout);
    let o = must(
        m.try_execute_with(
            &c,
            || async {
                count.fetch_add(1, Ordering::SeqCst);
                Err::<u32, _>(PayError::Timeout)
            },
            transient,
        )
        .await,
    );
    assert_eq!(o.value, Err(PayError::Timeout));
    assert!(
        must(m.status(&c.key).await).is_none(),
        "scenario 8: no record left"
    );
    let o = must(
        m.try_execute_with(
            &c,
            || async {
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<u32, PayError>(5)
            },
            transient,
        )
        .await,
    );
    assert_eq!(o.value, Ok(5));
    assert!(!o.is_replayed());
    assert_eq!(count.load(Ordering::SeqCst), 2, "scenario 8: executions");
}

/// Scenario 9a: a panic releases the claim and is re-raised; 9b: a dropped future leaves the
/// record `Pending` until the lease ends, then one caller takes over.
pub async fn scenario_9_panic_and_cancellation<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s9a", &1_u8);
    let m2 = m.clone();
    let c2 = c.clone();
    let joined =
        std::thread::spawn(move || m2.execute_sync(&c2, || -> u8 { panic!("boom") })).join();
    assert!(joined.is_err(), "scenario 9a: the panic is re-raised");
    assert!(
        must(m.status(&c.key).await).is_none(),
        "scenario 9a: no Pending left"
    );
    let o = must(m.execute(&c, || async { 3_u8 }).await);
    assert!(!o.is_replayed());

    // 9b: drop the future while the function is inside.
    let c = call("kit::s9b", &1_u8);
    {
        // Poll until the function has been entered (the claim may take several polls on a
        // store with I/O), then drop the future, as an outer `timeout` would.
        let entered = std::sync::atomic::AtomicBool::new(false);
        let fut = m.execute(&c, || {
            entered.store(true, Ordering::SeqCst);
            std::future::pending::<u8>()
        });
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        while !entered.load(Ordering::SeqCst) {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            std::thread::yield_now();
        }
    }
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 9b: record gone"));
    assert_eq!(obs.status(), RecordStatus::Pending);
    assert_eq!(
        kind(m.execute(&c, || async { 1_u8 }).await),
        ErrorKind::InProgress
    );
    h.advance(LEASE + Duration::from_millis(50)).await;
    let o = must(m.execute(&c, || async { 4_u8 }).await);
    assert!(
        o.provenance.takeover && o.provenance.fencing_token == 2,
        "scenario 9b: takeover"
    );
}

/// Scenario 10: a holder that vanished (crash) blocks others until its lease ends; then the
/// first caller takes over with fencing token 2 and its result is the one stored.
pub async fn scenario_10_crash_while_pending<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s10", &"job");
    let lease = match must(m.begin_operation(&c).await) {
        Begin::Acquired(l) => l,
        Begin::Existing(o) => panic!("scenario 10: fresh key answered {o:?}"),
    };
    assert_eq!(lease.owner.fencing_token, 1);
    drop(lease); // the holder "crashes": it never finishes.
    assert_eq!(
        kind(m.execute(&c, || async { 1_u8 }).await),
        ErrorKind::InProgress
    );
    h.advance(LEASE + Duration::from_millis(50)).await;
    let count = AtomicUsize::new(0);
    let o = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            2_u8
        })
        .await,
    );
    assert_eq!(o.provenance.fencing_token, 2, "scenario 10: fence 1 -> 2");
    let o = must(m.execute(&c, || async { 3_u8 }).await);
    assert!(
        o.is_replayed() && o.value == 2,
        "scenario 10: the takeover's result is stored"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// Scenario 11: after the lease expired, 16 callers race to take over; exactly one does.
pub async fn scenario_11_takeover_race<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s11", &"job");
    must(m.begin_operation(&c).await);
    h.advance(LEASE + Duration::from_millis(50)).await;
    let count = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(16));
    let hold = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (m, c, count, barrier, hold) = (
                m.clone(),
                c.clone(),
                count.clone(),
                barrier.clone(),
                hold.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                m.execute_sync(&c, || {
                    count.fetch_add(1, Ordering::SeqCst);
                    hold.wait();
                    1_u8
                })
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut pending = threads;
    let mut released = false;
    while !pending.is_empty() {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        pending = rest;
        for t in done {
            results.push(
                t.join()
                    .unwrap_or_else(|_| panic!("scenario 11: thread panicked")),
            );
        }
        if !released && results.len() == 15 {
            hold.wait();
            released = true;
        }
        std::thread::yield_now();
    }
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "scenario 11: one takeover");
    assert_eq!(winners[0].provenance.fencing_token, 2);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.kind() == ErrorKind::InProgress));
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 11: executions");
}

/// Scenario 12: a stale holder (fence 1) finishing after a takeover (fence 2) is refused; the
/// newer result stays.
pub async fn scenario_12_stale_holder_is_fenced<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s12", &"job");
    let Begin::Acquired(a) = must(m.begin_operation(&c).await) else {
        panic!("scenario 12: A could not claim")
    };
    h.advance(LEASE + Duration::from_millis(50)).await;
    let b = must(m.execute(&c, || async { "vB".to_string() }).await);
    assert_eq!(b.provenance.fencing_token, 2);
    let late = m.complete_operation(&a, &"vA".to_string()).await;
    assert_eq!(
        kind(late),
        ErrorKind::LeaseLost,
        "scenario 12: A's write refused"
    );
    let late = m.fail_operation(&a, &"err".to_string()).await;
    assert_eq!(
        kind(late),
        ErrorKind::LeaseLost,
        "scenario 12: A's fail refused"
    );
    // Fencing compares the holder, not the bytes: B's exact value from A is refused too.
    let late = m.complete_operation(&a, &"vB".to_string()).await;
    assert_eq!(
        kind(late),
        ErrorKind::LeaseLost,
        "scenario 12: A's write of B's value refused"
    );
    let o = must(m.execute(&c, || async { "vC".to_string() }).await);
    assert_eq!(o.value, "vB", "scenario 12: the record still holds vB");

    // The same while the newer holder is still working (its record `Pending`): a store whose
    // finish forgot the fence would let the stale holder finish the newer holder's claim.
    let c = call("kit::s12-pending", &"job");
    let Begin::Acquired(mut a) = must(m.begin_operation(&c).await) else {
        panic!("scenario 12: A could not claim")
    };
    h.advance(LEASE + Duration::from_millis(50)).await;
    let Begin::Acquired(b) = must(m.begin_operation(&c).await) else {
        panic!("scenario 12: B could not take over")
    };
    assert_eq!(b.owner.fencing_token, 2);
    for (what, late) in [
        ("write", m.complete_operation(&a, &"vA".to_string()).await),
        ("fail", m.fail_operation(&a, &"err".to_string()).await),
    ] {
        assert_eq!(
            kind(late),
            ErrorKind::LeaseLost,
            "scenario 12: A's {what} refused while B holds the key"
        );
    }
    assert_eq!(
        kind(m.renew_operation(&mut a, LEASE).await),
        ErrorKind::LeaseLost,
        "scenario 12: A's renewal refused while B holds the key"
    );
    let obs =
        must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 12: B's record gone"));
    assert_eq!(
        obs.status(),
        RecordStatus::Pending,
        "scenario 12: B still pending"
    );
    assert_eq!(obs.record.owner, b.owner, "scenario 12: B still the holder");
    must(m.complete_operation(&b, &"vB".to_string()).await);
    let o = must(m.execute(&c, || async { "vC".to_string() }).await);
    assert_eq!(o.value, "vB", "scenario 12: B's value is the record's");
}

/// Scenario 13: a stale holder's release deletes nothing; the newer holder's record survives.
pub async fn scenario_13_stale_holder_release_is_noop<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s13", &"job");
    let Begin::Acquired(a) = must(m.begin_operation(&c).await) else {
        panic!("scenario 13: A could not claim")
    };
    h.advance(LEASE + Duration::from_millis(50)).await;
    let Begin::Acquired(b) = must(m.begin_operation(&c).await) else {
        panic!("scenario 13: B could not take over")
    };
    assert!(
        !must(m.release_operation(&a).await),
        "scenario 13: A's release is a no-op"
    );
    let obs =
        must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 13: B's record gone"));
    assert_eq!(obs.record.owner, b.owner);
    must(m.complete_operation(&b, &1_u8).await);
    assert!(!must(m.release_operation(&a).await));
    let o = must(m.execute(&c, || async { 2_u8 }).await);
    assert_eq!(o.value, 1);
}

/// Scenario 16: a custom key reused with different inputs, after success and while pending:
/// the reject policy refuses before the in-progress check; the replay policy replays and flags.
pub async fn scenario_16_fingerprint_mismatch<H: Harness>(h: &H) {
    let m = manager(h);
    let a = custom_call("kit::s16", "order-1", &100_u32);
    let b = custom_call("kit::s16", "order-1", &200_u32);
    assert_eq!(a.key, b.key);
    must(m.execute(&a, || async { "charged 100".to_string() }).await);
    let replay = must(m.execute(&b, || async { "charged 200".to_string() }).await);
    assert!(replay.is_replayed() && replay.provenance.fingerprint_mismatch);
    assert_eq!(replay.value, "charged 100");
    let strict = b.clone().fingerprint_policy(FingerprintPolicy::Reject);
    let r = m
        .execute(&strict, || async { "charged 200".to_string() })
        .await;
    assert_eq!(kind(r), ErrorKind::FingerprintMismatch);
    // While pending: the mismatch answer comes before the in-progress answer.
    let p1 = custom_call("kit::s16", "order-2", &1_u32);
    let p2 =
        custom_call("kit::s16", "order-2", &2_u32).fingerprint_policy(FingerprintPolicy::Reject);
    must(m.begin_operation(&p1).await);
    assert_eq!(
        kind(m.execute(&p2, || async { 0_u8 }).await),
        ErrorKind::FingerprintMismatch
    );
    assert_eq!(
        kind(m.execute(&p1, || async { 0_u8 }).await),
        ErrorKind::InProgress
    );
}

/// Scenario 18: two operations called with the same user key both execute.
pub async fn scenario_18_scope_by_function<H: Harness>(h: &H) {
    let m = manager(h);
    let charge = custom_call("kit::charge", "k", &());
    let refund = custom_call("kit::refund", "k", &());
    assert_ne!(charge.key, refund.key);
    let count = AtomicUsize::new(0);
    for c in [&charge, &refund] {
        let o = must(
            m.execute(c, || async {
                count.fetch_add(1, Ordering::SeqCst);
            })
            .await,
        );
        assert!(!o.is_replayed());
    }
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // A version bump is a new namespace too.
    let mut enc = KeyEncoder::new("kit::charge", 2);
    enc.custom_key("k").arg(&());
    assert_ne!(must(enc.finish()).key, charge.key);
}

/// Scenario 19: tenants T1 and T2 using "order-1" execute separately and never see each
/// other's values.
pub async fn scenario_19_tenant_isolation<H: Harness>(h: &H) {
    let m = manager(h);
    let keyed = |tenant: &str| {
        let mut enc = KeyEncoder::new("kit::s19", 1);
        enc.scope(tenant).custom_key("order-1").arg(&());
        Call::new(must(enc.finish()))
    };
    let (t1, t2) = (keyed("T1"), keyed("T2"));
    assert_ne!(t1.key, t2.key);
    let o1 = must(m.execute(&t1, || async { "T1 secret".to_string() }).await);
    let o2 = must(m.execute(&t2, || async { "T2 value".to_string() }).await);
    assert!(!o1.is_replayed() && !o2.is_replayed());
    assert_eq!(o2.value, "T2 value");
}

/// Scenario 21: SUCCESS replays until `ttl` after completion, then runs again.
pub async fn scenario_21_retention_boundary<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.default_ttl(TTL).pending_timeout(LEASE));
    let c = call("kit::s21", &"x");
    let count = AtomicUsize::new(0);
    let run = || async {
        count.fetch_add(1, Ordering::SeqCst);
        1_u8
    };
    must(m.execute(&c, run).await);
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 21: no record"));
    assert!(obs.time_to_live() <= TTL && obs.time_to_live() > Duration::ZERO);
    assert!(
        obs.record
            .expires_at
            .saturating_since(obs.record.created_at)
            >= TTL
    );
    h.advance(TTL / 2).await;
    assert!(
        must(m.execute(&c, run).await).is_replayed(),
        "scenario 21: within the TTL"
    );
    h.advance(TTL).await;
    assert!(
        !must(m.execute(&c, run).await).is_replayed(),
        "scenario 21: past the TTL"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // Zero TTLs and a lease longer than the TTL are configuration errors.
    let bad = IdempotencyManager::builder_dyn(h.store())
        .default_ttl(Duration::from_secs(1))
        .pending_timeout(Duration::from_secs(2))
        .build();
    assert_eq!(kind(bad), ErrorKind::Config);
    let bad = IdempotencyManager::builder_dyn(h.store())
        .default_ttl(Duration::ZERO)
        .build();
    assert_eq!(kind(bad), ErrorKind::Config);
}

/// Scenario 22: leases are decided on the store's clock; a clock step past the lease lets a
/// second caller take over, but the first caller's late write is still fenced.
pub async fn scenario_22_clock_steps_are_fenced<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.pending_timeout(LEASE));
    let c = call("kit::s22", &"x");
    let Begin::Acquired(a) = must(m.begin_operation(&c).await) else {
        panic!("scenario 22: A could not claim")
    };
    if h.rewind(Duration::from_secs(600)) {
        // A store clock stepping backward never frees a live lease.
        assert_eq!(
            kind(m.execute(&c, || async { 0_u8 }).await),
            ErrorKind::InProgress
        );
        h.advance(Duration::from_secs(600)).await;
    }
    assert_eq!(
        kind(m.execute(&c, || async { 0_u8 }).await),
        ErrorKind::InProgress
    );
    h.advance(LEASE * 3).await; // the store clock jumps past the lease
    let b = must(m.execute(&c, || async { 2_u8 }).await);
    assert_eq!(b.provenance.fencing_token, 2);
    assert_eq!(
        kind(m.complete_operation(&a, &1_u8).await),
        ErrorKind::LeaseLost
    );
    assert_eq!(must(m.execute(&c, || async { 3_u8 }).await).value, 2);
}

/// Scenario 26: a corrupt record fails closed (no execution, no panic) until deleted.
pub async fn scenario_26_corrupt_record_fails_closed<H: Harness>(h: &H) {
    let m = manager(h);
    let c = call("kit::s26", &"x");
    must(m.execute(&c, || async { 1_u8 }).await);
    let current = [
        b'I',
        b'D',
        b'R',
        crate::Record::FORMAT_VERSION,
        0xff,
        0xff,
        0xff,
    ];
    for bytes in [&b""[..], b"IDR", &current, b"garbage that is not a record"] {
        assert!(
            h.write_raw(&c.key, bytes).await,
            "scenario 26 needs Harness::write_raw"
        );
        let count = AtomicUsize::new(0);
        let r = m
            .execute(&c, || async {
                count.fetch_add(1, Ordering::SeqCst);
                2_u8
            })
            .await;
        assert_eq!(kind(r), ErrorKind::CorruptRecord, "scenario 26: {bytes:?}");
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
    // A future format version, and a version-1 record (its value postcard, not CBOR): both
    // are incompatible, never decoded as this build's format.
    for bytes in [&b"IDR\x63rest"[..], b"IDR\x01\x0bkit::s26\x01\x01\x2a\x00"] {
        assert!(h.write_raw(&c.key, bytes).await);
        let r = m.execute(&c, || async { 2_u8 }).await;
        assert_eq!(
            kind(r),
            ErrorKind::IncompatibleRecord,
            "scenario 26: another format version: {bytes:?}"
        );
    }
    assert!(
        must(m.storage().delete(&c.key).await),
        "scenario 26: an explicit delete removes it"
    );
    assert!(!must(m.execute(&c, || async { 3_u8 }).await).is_replayed());
}

/// Scenario 28: results of 0 B, 1 MB and 8 MB replay bit-exact; one over the limit is stored as
/// "result not retained" and never re-runs.
pub async fn scenario_28_large_results<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.max_result_bytes(16 << 20));
    for (i, size) in [0_usize, 1 << 20, 8 << 20].into_iter().enumerate() {
        let c = call("kit::s28", &i);
        let data: Vec<u8> = (0..size).map(|j| (j % 251) as u8).collect();
        must(m.execute(&c, || async { data.clone() }).await);
        let o = must(m.execute(&c, || async { Vec::<u8>::new() }).await);
        assert!(o.is_replayed());
        assert!(
            o.value == data,
            "scenario 28: {size} bytes replayed bit-exact"
        );
    }
    let c = call("kit::s28", &"over");
    let count = AtomicUsize::new(0);
    for i in 0..2 {
        let r = m
            .execute(&c, || async {
                count.fetch_add(1, Ordering::SeqCst);
                vec![7_u8; 17 << 20]
            })
            .await;
        if i == 0 {
            // The caller that ran the function gets its value, marked not retained.
            let o = must(r);
            assert!(!o.is_retained() && o.value.len() == 17 << 20, "scenario 28");
        } else {
            assert_eq!(kind(r), ErrorKind::ResultNotRetained);
        }
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "scenario 28: no re-run");
    // A result whose Serialize fails is not retained either.
    #[derive(Debug)]
    struct Unencodable;
    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("cannot encode"))
        }
    }
    impl<'de> Deserialize<'de> for Unencodable {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> std::result::Result<Self, D::Error> {
            Ok(Unencodable)
        }
    }
    let c = call("kit::s28", &"unencodable");
    let r = m.execute(&c, || async { Unencodable }).await;
    assert!(!must(r).is_retained(), "scenario 28: an unencodable value");
    let r = m.execute(&c, || async { Unencodable }).await;
    assert_eq!(kind(r), ErrorKind::ResultNotRetained);
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("scenario 28: no record"));
    assert_eq!(
        obs.status(),
        RecordStatus::Failed,
        "scenario 28: never left Pending"
    );
}

/// Scenario 29: a stored value that no longer decodes as the result type is an
/// `IncompatibleRecord`, with no silent re-execution; a version bump starts over.
pub async fn scenario_29_incompatible_result_type<H: Harness>(h: &H) {
    #[derive(Serialize, Deserialize)]
    struct V1 {
        amount: String,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct V2 {
        amount: u64,
        currency: String,
    }
    let m = manager(h);
    let c = call("kit::s29", &"x");
    must(
        m.execute(&c, || async {
            V1 {
                amount: "12.50".into(),
            }
        })
        .await,
    );
    let count = AtomicUsize::new(0);
    let r = m
        .execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            V2 {
                amount: 1250,
                currency: "EUR".into(),
            }
        })
        .await;
    assert_eq!(kind(r), ErrorKind::IncompatibleRecord);
    assert_eq!(count.load(Ordering::SeqCst), 0);
    let bumped = Call::new(must(IdempotencyKey::derive("kit::s29", 2, &"x")));
    assert!(!must(
        m.execute(&bumped, || async {
            V2 {
                amount: 1,
                currency: "EUR".into(),
            }
        })
        .await
    )
    .is_replayed());
}

/// Scenario 31: in wait mode, waiters replay the first caller's value; if it releases, exactly
/// one waiter runs; past the bound, a waiter gets `InProgress`.
pub async fn scenario_31_wait_mode<H: Harness>(h: &H) {
    let m = manager_with(h, |b| {
        b.on_conflict(ConflictPolicy::Wait {
            timeout: Duration::from_secs(20),
        })
    });
    let c = call("kit::s31", &"x");
    let count = Arc::new(AtomicUsize::new(0));
    let (started, finish) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let holder = {
        let (m, c, count, started, finish) = (
            m.clone(),
            c.clone(),
            count.clone(),
            started.clone(),
            finish.clone(),
        );
        std::thread::spawn(move || {
            m.execute_sync(&c, || {
                count.fetch_add(1, Ordering::SeqCst);
                started.wait();
                finish.wait();
                "v".to_string()
            })
        })
    };
    started.wait();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let (m, c, count) = (m.clone(), c.clone(), count.clone());
            std::thread::spawn(move || {
                m.execute_sync(&c, || {
                    count.fetch_add(1, Ordering::SeqCst);
                    "w".to_string()
                })
            })
        })
        .collect();
    finish.wait();
    must(holder.join().unwrap_or_else(|_| panic!("holder panicked")));
    for w in waiters {
        let o = must(w.join().unwrap_or_else(|_| panic!("waiter panicked")));
        assert_eq!(o.value, "v");
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "scenario 31: waiters replay"
    );

    // The holder fails transiently: exactly one waiter runs.
    let c = call("kit::s31", &"transient");
    let count = Arc::new(AtomicUsize::new(0));
    let (started, finish) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let holder = {
        let (m, c, count, started, finish) = (
            m.clone(),
            c.clone(),
            count.clone(),
            started.clone(),
            finish.clone(),
        );
        std::thread::spawn(move || {
            crate::block_on(m.try_execute_with(
                &c,
                || async {
                    count.fetch_add(1, Ordering::SeqCst);
                    started.wait();
                    finish.wait();
                    Err::<String, _>(PayError::Timeout)
                },
                |_| true,
            ))
        })
    };
    started.wait();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let (m, c, count) = (m.clone(), c.clone(), count.clone());
            std::thread::spawn(move || {
                m.try_execute_sync(&c, || {
                    count.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, PayError>("w".to_string())
                })
            })
        })
        .collect();
    finish.wait();
    must(holder.join().unwrap_or_else(|_| panic!("holder panicked")));
    let mut executed = 0;
    for w in waiters {
        let o = must(w.join().unwrap_or_else(|_| panic!("waiter panicked")));
        assert_eq!(o.value, Ok("w".to_string()));
        executed += usize::from(!o.is_replayed());
    }
    assert_eq!(executed, 1, "scenario 31: one waiter runs after a release");
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // Past the bound: InProgress.
    let quick = manager_with(h, |b| {
        b.on_conflict(ConflictPolicy::Wait {
            timeout: Duration::from_millis(30),
        })
    });
    let c = call("kit::s31", &"bound");
    must(quick.begin_operation(&c).await);
    assert_eq!(
        kind(quick.execute(&c, || async { 0_u8 }).await),
        ErrorKind::InProgress
    );
}

/// Scenario 32: an empty or missing custom key is `InvalidKey`; nothing runs, nothing is stored.
pub async fn scenario_32_missing_or_empty_key<H: Harness>(h: &H) {
    let _ = h.store();
    for bad in ["", "\n", "a\u{0}b", &"x".repeat(256)] {
        let mut enc = KeyEncoder::new("kit::s32", 1);
        enc.custom_key(bad).arg(&());
        assert_eq!(
            kind(enc.finish()),
            ErrorKind::InvalidKey,
            "scenario 32: {bad:?}"
        );
    }
    let none: Option<&str> = None;
    let r = none
        .ok_or(Error::InvalidKey { reason: "no key" })
        .and_then(|k| {
            let mut enc = KeyEncoder::new("kit::s32", 1);
            enc.custom_key(k);
            enc.finish()
        });
    assert_eq!(kind(r), ErrorKind::InvalidKey);
}

/// Expands to one `#[tokio::test]` per scenario of the kit, each building its harness with
/// `$make` (an expression evaluated per test, which may `.await`). The form
/// `conformance_suite!(make; without_raw_bytes)` leaves out scenario 26 (corrupt bytes), for a
/// store that holds decoded records rather than bytes (the memory store).
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
