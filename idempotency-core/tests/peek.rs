//! `Storage::peek_finished` (issue 17): a differential check (the memory store with its peek
//! against the same store whose peek is hidden, so every call claims: every answer, provenance
//! and counter must agree), and two wrong peeks (an off-by-one expiry, a stale read-through
//! cache) that the conformance-kit check must catch.
#![cfg(feature = "testing")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idempotency_core::testing::{peek_finished_answers_what_a_claim_would, Harness};
use idempotency_core::{
    block_on, Call, Claim, ClaimRequest, ConflictPolicy, DynStorage, FingerprintPolicy,
    IdempotencyKey, IdempotencyManager, KeyEncoder, ManualClock, MemoryStorage, Observed, Owner,
    Record, RecordError, RecordStatus, Result, Storage, Timestamp,
};

/// Forwards everything to the memory store but `peek_finished`, which it hides (`peek` false)
/// or answers wrongly (`Mode`).
#[derive(Debug, Clone)]
struct Wrap {
    inner: MemoryStorage,
    clock: ManualClock,
    mode: Mode,
    cache: Arc<Mutex<HashMap<IdempotencyKey, Observed>>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// The default: no peek, every call claims (the behaviour before the change).
    Hidden,
    /// Live while `now <= expires_at` (off by one at the boundary).
    LateExpiry,
    /// Keeps the first finished record it read until it expires (a read-through cache).
    StaleCache,
}

impl Wrap {
    fn new(clock: &ManualClock, mode: Mode) -> Self {
        Wrap {
            inner: MemoryStorage::with_clock(Arc::new(clock.clone())),
            clock: clock.clone(),
            mode,
            cache: Arc::default(),
        }
    }
}

impl Storage for Wrap {
    fn peek_finished(&self, key: &IdempotencyKey) -> Option<Observed> {
        use idempotency_core::Clock;
        let now = self.clock.now();
        match self.mode {
            Mode::Hidden => None,
            Mode::LateExpiry => {
                let obs = block_on(Storage::get(&self.inner, key)).ok()??;
                let finished = matches!(
                    obs.record.status,
                    RecordStatus::Success | RecordStatus::Failed
                );
                (finished && now <= obs.record.expires_at).then_some(Observed {
                    record: obs.record,
                    now,
                })
            }
            Mode::StaleCache => {
                let mut cache = self.cache.lock().unwrap();
                if let Some(o) = cache.get(key) {
                    if !o.record.is_expired_at(now) {
                        return Some(Observed {
                            record: o.record.clone(),
                            now,
                        });
                    }
                }
                let o = Storage::peek_finished(&self.inner, key)?;
                cache.insert(key.clone(), o.clone());
                Some(o)
            }
        }
    }
    async fn try_claim(&self, key: &IdempotencyKey, req: &ClaimRequest) -> Result<Claim> {
        Storage::try_claim(&self.inner, key, req).await
    }
    async fn complete(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        result: &[u8],
        ttl: Duration,
    ) -> Result<Record> {
        Storage::complete(&self.inner, key, owner, result, ttl).await
    }
    async fn fail(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        error: &RecordError,
        ttl: Duration,
    ) -> Result<Record> {
        Storage::fail(&self.inner, key, owner, error, ttl).await
    }
    async fn release(&self, key: &IdempotencyKey, owner: &Owner) -> Result<bool> {
        Storage::release(&self.inner, key, owner).await
    }
    async fn renew(
        &self,
        key: &IdempotencyKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Timestamp> {
        Storage::renew(&self.inner, key, owner, lease).await
    }
    async fn get(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        Storage::get(&self.inner, key).await
    }
    async fn delete(&self, key: &IdempotencyKey) -> Result<bool> {
        Storage::delete(&self.inner, key).await
    }
}

const TTL: Duration = Duration::from_secs(10);
const FTTL: Duration = Duration::from_secs(5);

fn keyed(arg: u8) -> Call {
    let mut e = KeyEncoder::new("review::peek", 1);
    e.custom_key("k").arg(&arg);
    Call::new(e.finish().unwrap())
}

fn plain(arg: u8) -> Call {
    let mut e = KeyEncoder::new("review::plain", 1);
    e.arg(&arg);
    Call::new(e.finish().unwrap())
}

/// Everything a call answers, except the execution ids (random per store).
fn shape<T: std::fmt::Debug>(r: idempotency_core::Result<idempotency_core::Outcome<T>>) -> String {
    match r {
        Ok(o) => {
            let p = o.provenance;
            format!(
                "Ok({:?}) replayed={} token={} created={:?} expires={:?} ttl={:?} mismatch={} \
                 takeover={} unprotected={} retention={:?}",
                o.value,
                p.replayed,
                p.fencing_token,
                p.created_at,
                p.expires_at,
                p.time_to_live,
                p.fingerprint_mismatch,
                p.takeover,
                p.unprotected,
                p.retention
            )
        }
        Err(e) => format!("Err({:?})", e.kind()),
    }
}

/// One script of calls; returns what each answered and the stats after.
fn script(store: impl DynStorage, clock: &ManualClock) -> Vec<String> {
    let m = IdempotencyManager::builder(store)
        .default_ttl(TTL)
        .failure_ttl(FTTL)
        .pending_timeout(Duration::from_secs(3))
        .max_result_bytes(64)
        .build()
        .unwrap();
    let mut out = Vec::new();
    let mut log = |s: String| out.push(s);
    // fresh, replay, last ms, exact boundary (takeover), replay of the new record
    log(shape(m.execute_sync(&plain(1), || 1_u32)));
    log(shape(m.execute_sync(&plain(1), || 2_u32)));
    clock.advance(TTL - Duration::from_millis(1));
    log(shape(m.execute_sync(&plain(1), || 3_u32)));
    clock.advance(Duration::from_millis(1));
    log(shape(m.execute_sync(&plain(1), || 4_u32)));
    log(shape(m.execute_sync(&plain(1), || 5_u32)));
    // fingerprint mismatch: replay policy, reject policy
    log(shape(m.execute_sync(&keyed(1), || 10_u32)));
    log(shape(m.execute_sync(&keyed(2), || 11_u32)));
    log(shape(m.execute_sync(
        &keyed(3).fingerprint_policy(FingerprintPolicy::Reject),
        || 12_u32,
    )));
    // refresh (cache bypass), then a replay of the refreshed record
    log(shape(m.execute_sync(&keyed(1).refresh(), || 13_u32)));
    log(shape(m.execute_sync(&keyed(1), || 14_u32)));
    // wait policy on a finished record
    let wait = ConflictPolicy::Wait {
        timeout: Duration::from_secs(1),
    };
    log(shape(
        m.execute_sync(&keyed(1).on_conflict(wait), || 15_u32),
    ));
    // a stored failure, replayed; past the failure TTL it runs again
    log(shape(m.try_execute_sync(&plain(2), || {
        Err::<u32, String>("no".into())
    })));
    log(shape(
        m.try_execute_sync(&plain(2), || Ok::<u32, String>(20)),
    ));
    clock.advance(FTTL);
    log(shape(
        m.try_execute_sync(&plain(2), || Ok::<u32, String>(21)),
    ));
    // a value not retained (over max_result_bytes): repeats get ResultNotRetained
    log(shape(m.execute_sync(&plain(3), || vec![7_u8; 200])));
    log(shape(m.execute_sync(&plain(3), || vec![8_u8; 1])));
    // a different result type on a stored record
    log(shape(m.execute_sync(&plain(1), || "text".to_owned())));
    log(format!("{:?}", m.stats()));
    out
}

#[test]
fn peeked_replays_answer_exactly_what_claims_answer() {
    let start = Timestamp(1_700_000_000_000);
    let (a, b) = (ManualClock::new(start), ManualClock::new(start));
    let with_peek = script(MemoryStorage::with_clock(Arc::new(a.clone())), &a);
    let claims_only = script(Wrap::new(&b, Mode::Hidden), &b);
    for (i, (x, y)) in with_peek.iter().zip(&claims_only).enumerate() {
        assert_eq!(x, y, "step {i}");
    }
    assert_eq!(with_peek.len(), claims_only.len());
    for line in &with_peek {
        println!("{line}");
    }
}

struct H(Wrap);

impl Harness for H {
    fn store(&self) -> Arc<dyn DynStorage> {
        Arc::new(self.0.clone())
    }
    async fn advance(&self, d: Duration) {
        self.0.clock.advance(d);
    }
}

/// The kit's check fails each wrong peek.
#[test]
fn the_kit_check_catches_each_wrong_peek() {
    for mode in [Mode::LateExpiry, Mode::StaleCache] {
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        let harness = H(Wrap::new(&clock, mode));
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            block_on(peek_finished_answers_what_a_claim_would(&harness))
        }));
        assert!(run.is_err(), "{mode:?} passed the kit's peek check");
    }
}

/// A peek that answers a record at the exact end of its TTL (an off-by-one store) is not
/// replayed: the manager replays only what is live and finished on the store's own reading of
/// `now`, and the call runs again as a claim would have made it.
#[test]
fn an_expired_record_a_store_peeks_is_not_replayed() {
    let clock = ManualClock::new(Timestamp(1_700_000_000_000));
    let m = IdempotencyManager::builder(Wrap::new(&clock, Mode::LateExpiry))
        .default_ttl(TTL)
        .pending_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    m.execute_sync(&plain(1), || 1_u32).unwrap();
    clock.advance(TTL);
    let at_expiry = m.execute_sync(&plain(1), || 2_u32).unwrap();
    assert_eq!(at_expiry.value, 2, "{}", shape(Ok(at_expiry.clone())));
    assert!(at_expiry.provenance.takeover);
}

#[test]
fn prefixed_peeks_answer_what_prefixed_claims_answer() {
    use idempotency_core::Prefixed;
    let start = Timestamp(1_700_000_000_000);
    let (a, b) = (ManualClock::new(start), ManualClock::new(start));
    let with_peek = script(
        Prefixed::new(MemoryStorage::with_clock(Arc::new(a.clone())), "t").unwrap(),
        &a,
    );
    let claims_only = script(Prefixed::new(Wrap::new(&b, Mode::Hidden), "t").unwrap(), &b);
    assert_eq!(with_peek, claims_only);
}
