//! `IdempotencyManager`: claim → run → complete / fail / release, with leases, fencing, replay
//! and the policies of SEMANTICS.md.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::codec::{decode, encode};
use crate::error::{Error, Result};
use crate::key::{DerivedKey, Fingerprint, IdempotencyKey};
use crate::record::{Owner, RecordError, RecordStatus, Timestamp};
use crate::rt::{self, CatchUnwind};
use crate::storage::{Claim, ClaimRequest, DynStorage, Observed};
use crate::telemetry::{Counters, ManagerStats, Step, StoreTimer};

/// A kill point for the fault tests (`testing::fault`, feature `testing`); nothing without
/// the feature.
#[inline(always)]
fn kill_point(_point: &'static str, _key: &IdempotencyKey) {
    #[cfg(feature = "testing")]
    crate::testing::fault::hit(_point, _key.as_str());
}

/// What a caller does when another caller holds a live lease on the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Return [`Error::InProgress`] at once (the default; the IETF draft's 409, Stripe's
    /// `idempotency_key_in_use`).
    Reject,
    /// Poll until the holder finishes, then replay its result; if the holder released its claim
    /// (a retryable failure) exactly one waiter claims and runs. After `timeout` (caller-side
    /// monotonic time) return [`Error::InProgress`]. (Temporal's `UseExisting`, Restate's attach.)
    Wait {
        /// The longest time to wait.
        timeout: Duration,
    },
}

/// What happens when an idempotency key is reused with a different fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FingerprintPolicy {
    /// Replay the stored result and flag it in the provenance (the specification's default).
    #[default]
    Replay,
    /// Refuse with [`Error::FingerprintMismatch`] (Stripe, the IETF draft: 422).
    Reject,
}

/// What happens when the store cannot be reached at claim time (SEMANTICS.md scenario 23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreErrorPolicy {
    /// The function does not run; the caller gets the store error (the default).
    #[default]
    FailClosed,
    /// The function runs unprotected; the outcome's provenance says so.
    FailOpen,
}

/// Per-call settings; unset fields take the manager's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Retention of a `Success` record, from completion.
    pub ttl: Option<Duration>,
    /// Retention of a `Failed` record, from completion.
    pub failure_ttl: Option<Duration>,
    /// The lease (pending timeout).
    pub pending_timeout: Option<Duration>,
    /// The conflict policy.
    pub on_conflict: Option<ConflictPolicy>,
    /// The fingerprint policy.
    pub fingerprint: Option<FingerprintPolicy>,
    /// Whether errors are stored as `Failed` records (`true`) or release the claim (`false`).
    pub cache_failures: Option<bool>,
    /// Cache bypass: run even if a finished record exists, and replace it.
    pub refresh: bool,
}

/// One idempotent call: its key, the fingerprint of its inputs, and per-call settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The idempotency key.
    pub key: IdempotencyKey,
    /// The fingerprint of the inputs.
    pub fingerprint: Fingerprint,
    /// Per-call settings.
    pub options: CallOptions,
}

impl Call {
    /// A call with default settings.
    pub fn new(derived: DerivedKey) -> Call {
        Call {
            key: derived.key,
            fingerprint: derived.fingerprint,
            options: CallOptions::default(),
        }
    }
    /// Sets the success TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options.ttl = Some(ttl);
        self
    }
    /// Sets the failure TTL.
    pub fn failure_ttl(mut self, ttl: Duration) -> Self {
        self.options.failure_ttl = Some(ttl);
        self
    }
    /// Sets the lease (pending timeout).
    pub fn pending_timeout(mut self, lease: Duration) -> Self {
        self.options.pending_timeout = Some(lease);
        self
    }
    /// Sets the conflict policy.
    pub fn on_conflict(mut self, policy: ConflictPolicy) -> Self {
        self.options.on_conflict = Some(policy);
        self
    }
    /// Sets the fingerprint policy.
    pub fn fingerprint_policy(mut self, policy: FingerprintPolicy) -> Self {
        self.options.fingerprint = Some(policy);
        self
    }
    /// Sets whether errors are cached as `Failed` records.
    pub fn cache_failures(mut self, cache: bool) -> Self {
        self.options.cache_failures = Some(cache);
        self
    }
    /// Bypasses the stored result: the function runs and its result replaces the record.
    pub fn refresh(mut self) -> Self {
        self.options.refresh = true;
        self
    }
}

impl From<DerivedKey> for Call {
    fn from(d: DerivedKey) -> Call {
        Call::new(d)
    }
}

/// Where a result came from (the specification's provenance metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// `true` when the value is a stored result (a replay); `false` when the function ran now.
    pub replayed: bool,
    /// The idempotency key.
    pub key: IdempotencyKey,
    /// The execution id of the attempt that produced the value.
    pub execution_id: Uuid,
    /// The fencing token of that attempt.
    pub fencing_token: u64,
    /// When that attempt claimed the key (store clock).
    pub created_at: Timestamp,
    /// When the stored record expires (store clock); for an unprotected run, `created_at`.
    pub expires_at: Timestamp,
    /// Time left before the stored record expires, as of this call.
    pub time_to_live: Duration,
    /// `true` when the stored fingerprint differs from this call's (replay policy).
    pub fingerprint_mismatch: bool,
    /// `true` when this call took over an expired record (a crashed holder's, or an old one).
    pub takeover: bool,
    /// `true` when the store was unavailable and the function ran unprotected (fail-open).
    pub unprotected: bool,
    /// Whether the value is stored for repeats of this call: [`Retention::Stored`] for a
    /// replay and for a stored result or error; [`Retention::NotRetained`] when the function
    /// ran but its value could not be stored (repeats get [`Error::ResultNotRetained`]);
    /// [`Retention::NotStored`] when nothing was stored (a transient error, fail-open).
    pub retention: Retention,
}

/// What became of a freshly computed value: whether repeats of the call can replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retention {
    /// The value is the record's stored result (or stored error): repeats within its TTL replay
    /// it. Every replayed value is `Stored`.
    Stored,
    /// Nothing was stored and nothing blocks a new run: a transient error released the claim,
    /// or the store was unreachable and the function ran unprotected (fail-open). The next call
    /// runs the function again.
    NotStored,
    /// The function ran, but its value could not be stored: its encoding is over
    /// [`max_result_bytes`](ManagerBuilder::max_result_bytes), its `Serialize` failed, or it
    /// does not replay exactly (it does not deserialize as its own type, or deserializes as a
    /// different value, such as `Some(None)` read back as `None`). This caller still gets the
    /// value. The record is finished as a terminal "result not retained" marker for the failure
    /// TTL: repeats get [`Error::ResultNotRetained`] with `reason`, and the function does not
    /// run again (SEMANTICS.md scenario 28).
    NotRetained {
        /// Why the value could not be stored.
        reason: String,
    },
}

/// A value with its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    /// The function's value, fresh or replayed.
    pub value: T,
    /// Where it came from.
    pub provenance: Provenance,
}

impl<T> Outcome<T> {
    /// Whether the value was replayed from the store.
    pub fn is_replayed(&self) -> bool {
        self.provenance.replayed
    }
    /// Whether the value is stored, so that repeats of the call replay it (always `true` for a
    /// replay). `false` for a value that was not retained ([`Retention::NotRetained`]: repeats
    /// get [`Error::ResultNotRetained`]) or not stored ([`Retention::NotStored`]: the next call
    /// runs again).
    pub fn is_retained(&self) -> bool {
        self.provenance.retention == Retention::Stored
    }
    /// The value.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// The manager's settings. Build with [`IdempotencyManager::builder`].
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    default_ttl: Duration,
    failure_ttl: Duration,
    pending_timeout: Duration,
    on_conflict: ConflictPolicy,
    fingerprint: FingerprintPolicy,
    on_store_error: StoreErrorPolicy,
    cache_failures: bool,
    key_prefix: String,
    max_result_bytes: usize,
    complete_attempts: u32,
    poll_interval: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            default_ttl: Duration::from_secs(3600),
            failure_ttl: Duration::from_secs(300),
            pending_timeout: Duration::from_secs(300),
            on_conflict: ConflictPolicy::Reject,
            fingerprint: FingerprintPolicy::Replay,
            on_store_error: StoreErrorPolicy::FailClosed,
            cache_failures: true,
            key_prefix: String::new(),
            max_result_bytes: 128 << 20,
            complete_attempts: 3,
            poll_interval: Duration::from_millis(10),
        }
    }
}

impl ManagerConfig {
    /// Retention of `Success` records.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }
    /// Retention of `Failed` records.
    pub fn failure_ttl(&self) -> Duration {
        self.failure_ttl
    }
    /// The lease (pending timeout).
    pub fn pending_timeout(&self) -> Duration {
        self.pending_timeout
    }
    /// The key prefix (namespace).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }
    /// Whether a function's own errors are stored as `Failed` records by default (a call's
    /// [`CallOptions::cache_failures`] overrides it).
    pub fn cache_failures(&self) -> bool {
        self.cache_failures
    }
}

/// Builds an [`IdempotencyManager`]. Defaults from the specification: TTL 3600 s, failure TTL
/// 300 s, pending timeout (lease) 300 s, conflict → reject, fingerprint mismatch → replay, store
/// unavailable → fail closed, failures cached.
#[derive(Debug)]
pub struct ManagerBuilder {
    storage: Arc<dyn DynStorage>,
    config: ManagerConfig,
}

impl ManagerBuilder {
    /// Retention of `Success` records, from completion. Default 3600 s.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }
    /// Retention of `Failed` records, from completion. Default 300 s.
    pub fn failure_ttl(mut self, ttl: Duration) -> Self {
        self.config.failure_ttl = ttl;
        self
    }
    /// The lease: how long a `Pending` record blocks others before one may take over. Default
    /// 300 s. Set it above the function's longest run time.
    pub fn pending_timeout(mut self, lease: Duration) -> Self {
        self.config.pending_timeout = lease;
        self
    }
    /// The conflict policy. Default [`ConflictPolicy::Reject`].
    pub fn on_conflict(mut self, policy: ConflictPolicy) -> Self {
        self.config.on_conflict = policy;
        self
    }
    /// The fingerprint policy. Default [`FingerprintPolicy::Replay`].
    pub fn fingerprint_policy(mut self, policy: FingerprintPolicy) -> Self {
        self.config.fingerprint = policy;
        self
    }
    /// The store-unavailable policy. Default [`StoreErrorPolicy::FailClosed`].
    pub fn on_store_error(mut self, policy: StoreErrorPolicy) -> Self {
        self.config.on_store_error = policy;
        self
    }
    /// Whether errors are stored as `Failed` records for the failure TTL (default `true`, as
    /// Stripe and the IETF draft replay errors); `false` releases the claim on every error, as
    /// Powertools does. Per-error classification: [`IdempotencyManager::try_execute_with`].
    pub fn cache_failures(mut self, cache: bool) -> Self {
        self.config.cache_failures = cache;
        self
    }
    /// A namespace prepended to the operation name of every key this manager stores.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }
    /// The largest encoded result (or stored error) kept, in bytes (default 128 MiB; values are
    /// CBOR, where a `Vec<u8>` takes up to 2 bytes per element, a `serde_bytes` buffer 1). A
    /// larger value is not retained: the caller that ran the function still gets it, marked
    /// [`Retention::NotRetained`]; the record is finished as "result not retained", so repeats
    /// get [`Error::ResultNotRetained`] and the function does not run again.
    pub fn max_result_bytes(mut self, bytes: usize) -> Self {
        self.config.max_result_bytes = bytes;
        self
    }
    /// How many times a completion is attempted before giving up (default 3, with 10 ms then
    /// 40 ms of backoff).
    pub fn complete_attempts(mut self, attempts: u32) -> Self {
        self.config.complete_attempts = attempts.max(1);
        self
    }
    /// How often a waiting caller polls the store under [`ConflictPolicy::Wait`] (default 10 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// Checks the settings and builds the manager.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero TTL, failure TTL or lease, a lease longer than the TTL
    /// (SEMANTICS.md scenario 21), or an invalid key prefix.
    pub fn build(self) -> Result<IdempotencyManager> {
        let c = &self.config;
        validate_durations(c.default_ttl, c.failure_ttl, c.pending_timeout)?;
        if c.key_prefix.chars().any(char::is_control) {
            return Err(Error::Config(
                "the key prefix contains a control character".into(),
            ));
        }
        Ok(IdempotencyManager {
            inner: Arc::new(Inner {
                storage: self.storage,
                config: self.config,
                counters: Counters::default(),
            }),
        })
    }
}

fn validate_durations(ttl: Duration, failure_ttl: Duration, lease: Duration) -> Result<()> {
    let ms = Duration::from_millis(1);
    if ttl < ms || failure_ttl < ms || lease < ms {
        return Err(Error::Config(
            "`ttl`, `failure_ttl` and `pending_timeout` must be at least 1 ms".into(),
        ));
    }
    if lease > ttl {
        return Err(Error::Config(format!(
            "the lease (`pending_timeout`, {lease:?}) must not exceed `ttl` ({ttl:?})"
        )));
    }
    Ok(())
}

struct Inner {
    storage: Arc<dyn DynStorage>,
    config: ManagerConfig,
    counters: Counters,
}

/// Runs functions under idempotency keys: the first call with a key runs; repeats within the
/// TTL replay the stored result; concurrent duplicates never both run; a crashed holder's lease
/// expires and exactly one caller takes over; a stale holder's late write is refused.
///
/// Cheap to clone (one `Arc`). Works from async code ([`execute`](Self::execute),
/// [`try_execute`](Self::try_execute)) and sync code ([`execute_sync`](Self::execute_sync),
/// [`try_execute_sync`](Self::try_execute_sync)).
#[derive(Clone)]
pub struct IdempotencyManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for IdempotencyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyManager")
            .field("storage", &self.inner.storage)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// How a function's output is stored and replayed.
enum Disposition {
    Success(Vec<u8>),
    Failure(Vec<u8>),
    Release,
    NotRetained(String),
}

/// Encodes and checks a function's output; the second argument is `max_result_bytes`.
/// What becomes of a body's value: `(value, max_result_bytes, nested)`, where `nested` says a
/// nested idempotent call in the body failed with a framework error (an `Err` is then never
/// stored, whatever its size or shape: see `run_claimed`).
type StoreFn<R> = dyn Fn(&R, usize, bool) -> Disposition + Send + Sync;

struct Codec<R> {
    store: Box<StoreFn<R>>,
    decode_success: fn(&[u8]) -> std::result::Result<R, String>,
    decode_failure: fn(&[u8]) -> std::result::Result<R, String>,
}

/// The disposition of a value that is stored when it replays exactly ([`codec::retain`]), and
/// is otherwise not retained.
///
/// [`codec::retain`]: crate::codec::retain
fn retained<T: Serialize + DeserializeOwned>(
    value: &T,
    max: usize,
    stored: fn(Vec<u8>) -> Disposition,
) -> Disposition {
    match crate::codec::retain(value, max) {
        Ok(bytes) => stored(bytes),
        Err(reason) => Disposition::NotRetained(reason),
    }
}

fn no_failure<R>(_: &[u8]) -> std::result::Result<R, String> {
    Err("a stored error, but this operation cannot fail".to_owned())
}

fn errors_not_stored<R>(_: &[u8]) -> std::result::Result<R, String> {
    Err(
        "a stored error, but this operation's errors are never stored (its error type changed?)"
            .to_owned(),
    )
}

fn decode_ok<T: DeserializeOwned, E>(b: &[u8]) -> std::result::Result<Result<T, E>, String> {
    decode::<T>(b).map(Ok)
}

fn decode_err<T, E: DeserializeOwned>(b: &[u8]) -> std::result::Result<Result<T, E>, String> {
    decode::<E>(b).map(Err)
}

/// A claim held through the low-level API ([`IdempotencyManager::begin_operation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationLease {
    /// The idempotency key as stored (with the manager's prefix).
    pub key: IdempotencyKey,
    /// The holder.
    pub owner: Owner,
    /// When the lease ends (store clock).
    pub lease_until: Timestamp,
    /// Whether an expired record was taken over.
    pub takeover: bool,
    ttl: Duration,
    failure_ttl: Duration,
}

/// The answer to [`IdempotencyManager::begin_operation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The caller holds the key and must finish with `complete_operation`, `fail_operation`
    /// or `release_operation`.
    Acquired(OperationLease),
    /// A live record exists: a duplicate (finished) or a conflict (`Pending`).
    Existing(Observed),
}

impl IdempotencyManager {
    /// Starts a builder over `storage`.
    pub fn builder(storage: impl DynStorage) -> ManagerBuilder {
        Self::builder_dyn(Arc::new(storage))
    }

    /// Starts a builder over a shared store.
    pub fn builder_dyn(storage: Arc<dyn DynStorage>) -> ManagerBuilder {
        ManagerBuilder {
            storage,
            config: ManagerConfig::default(),
        }
    }

    /// A manager over `storage` with the default settings.
    pub fn new(storage: impl DynStorage) -> Self {
        IdempotencyManager {
            inner: Arc::new(Inner {
                storage: Arc::new(storage),
                config: ManagerConfig::default(),
                counters: Counters::default(),
            }),
        }
    }

    /// The store.
    pub fn storage(&self) -> &Arc<dyn DynStorage> {
        &self.inner.storage
    }

    /// The settings.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// What this manager has done since it was built: counts and the ratios operators watch
    /// (hit rate, duplicate rate, failure rate, lock contention). Works without the `metrics`
    /// feature.
    pub fn stats(&self) -> ManagerStats {
        self.inner.counters.snapshot()
    }

    fn store_key<'k>(&self, key: &'k IdempotencyKey) -> Cow<'k, IdempotencyKey> {
        let prefix = &self.inner.config.key_prefix;
        if prefix.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(key.with_prefix(prefix))
        }
    }

    fn request(call: &Call, lease: Duration) -> ClaimRequest {
        ClaimRequest {
            execution_id: crate::rt::execution_id(),
            fingerprint: call.fingerprint,
            lease,
            refresh: call.options.refresh,
        }
    }

    /// The TTL, failure TTL and lease of `call`. A per-call TTL shorter than the manager's lease
    /// shortens the lease to match, unless the call sets its own lease.
    fn settings(&self, call: &Call) -> Result<(Duration, Duration, Duration)> {
        let c = &self.inner.config;
        let ttl = call.options.ttl.unwrap_or(c.default_ttl);
        let failure_ttl = call.options.failure_ttl.unwrap_or(c.failure_ttl);
        let lease = call
            .options
            .pending_timeout
            .unwrap_or_else(|| c.pending_timeout.min(ttl));
        validate_durations(ttl, failure_ttl, lease)?;
        Ok((ttl, failure_ttl, lease))
    }

    /// Runs `f` under `call`'s key, or replays the stored value.
    ///
    /// The first call with a key runs `f` and stores its value for the TTL; repeats replay it
    /// (the value deserializes equal to the original, including `0`, `false`, `""`, `()` and
    /// `None`, whatever its serde attributes: tagged and untagged enums, flattened and skipped
    /// fields, maps with non-string keys). Before the record claims `Success` the encoded value
    /// is decoded back as `T` and compared with the original; a value that would not replay
    /// exactly (over [`max_result_bytes`](ManagerBuilder::max_result_bytes), failing to
    /// serialize, or deserializing as something else, such as `Some(None)` as `None`) is **not
    /// retained**: this call still returns `Ok` with the value, marked
    /// [`Retention::NotRetained`] ([`Outcome::is_retained`] is `false`), and repeats get
    /// [`Error::ResultNotRetained`] without running `f` (SEMANTICS.md scenario 28). A panic in
    /// `f` releases the claim and resumes the panic. If this future is
    /// dropped while `f` runs, the record stays `Pending` until the lease ends, then one caller
    /// takes over (SEMANTICS.md scenario 9).
    ///
    /// # Errors
    /// [`Error::InProgress`] (another caller holds the key), [`Error::FingerprintMismatch`]
    /// (reject policy), store errors (fail-closed), [`Error::CorruptRecord`],
    /// [`Error::IncompatibleRecord`] (the stored value does not decode as `T`),
    /// [`Error::ResultNotRetained`] (a repeat of a call whose value was not retained),
    /// [`Error::LeaseLost`] (a newer holder took over while `f`
    /// ran; the stored result is theirs), [`Error::CompletionNotRecorded`], [`Error::Config`].
    pub async fn execute<T, F, Fut>(&self, call: &Call, f: F) -> Result<Outcome<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let codec = Codec {
            store: Box::new(|v: &T, max, _| retained(v, max, Disposition::Success)),
            decode_success: decode::<T>,
            decode_failure: no_failure::<T>,
        };
        self.run(call, f, codec).await
    }

    /// Runs a fallible `f` under `call`'s key: `Ok` values are stored for the TTL; `Err` values
    /// are stored as `Failed` records for the failure TTL and replayed as `Err` (unless failures
    /// are not cached, which releases the claim so the next call runs again). A value or error
    /// that would not replay exactly is not retained, as in [`execute`](Self::execute). An `Err`
    /// of a body in which a nested idempotent call (on any manager, polled within the body, not
    /// in a task it spawns) failed with a framework error (a conflict, an outage) is never
    /// stored either: the next call runs again (SEMANTICS.md scenario 8).
    ///
    /// # Errors
    /// As [`execute`](Self::execute). The function's own `Err` is not an error here: it is the
    /// outcome's value.
    pub async fn try_execute<T, E, F, Fut>(
        &self,
        call: &Call,
        f: F,
    ) -> Result<Outcome<std::result::Result<T, E>>>
    where
        T: Serialize + DeserializeOwned,
        E: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let cache = call
            .options
            .cache_failures
            .unwrap_or(self.inner.config.cache_failures);
        self.try_execute_with(call, f, move |_: &E| !cache).await
    }

    /// As [`try_execute`](Self::try_execute), with `is_transient` classifying each error: a
    /// transient error (timeout, 429, 5xx) releases the claim so the next call runs again
    /// (SEMANTICS.md scenario 8); a permanent one is stored and replayed (scenario 7).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn try_execute_with<T, E, F, Fut, C>(
        &self,
        call: &Call,
        f: F,
        is_transient: C,
    ) -> Result<Outcome<std::result::Result<T, E>>>
    where
        T: Serialize + DeserializeOwned,
        E: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        C: Fn(&E) -> bool + Send + Sync + 'static,
    {
        let codec = Codec {
            store: Box::new(move |r: &std::result::Result<T, E>, max, nested| match r {
                Ok(v) => retained(v, max, Disposition::Success),
                Err(e) if nested || is_transient(e) => Disposition::Release,
                Err(e) => retained(e, max, Disposition::Failure),
            }),
            decode_success: decode_ok::<T, E>,
            decode_failure: decode_err::<T, E>,
        };
        self.run(call, f, codec).await
    }

    /// The sync form of [`execute`](Self::execute): `f` runs on the calling thread. Safe inside
    /// or outside a tokio runtime (store steps run on a minimal executor; see
    /// [`block_on`](crate::block_on)).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub fn execute_sync<T, F>(&self, call: &Call, f: F) -> Result<Outcome<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        rt::block_on(self.execute(call, || std::future::ready(f())))
    }

    /// The sync form of [`try_execute`](Self::try_execute).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub fn try_execute_sync<T, E, F>(
        &self,
        call: &Call,
        f: F,
    ) -> Result<Outcome<std::result::Result<T, E>>>
    where
        T: Serialize + DeserializeOwned,
        E: Serialize + DeserializeOwned,
        F: FnOnce() -> std::result::Result<T, E>,
    {
        rt::block_on(self.try_execute(call, || std::future::ready(f())))
    }

    /// As [`try_execute`](Self::try_execute) for an error type that is never stored (one that
    /// does not serialize, such as `anyhow::Error`, `Box<dyn Error + Send + Sync>` or
    /// `std::io::Error`): `Ok` values are stored for the TTL and replayed; every `Err` is
    /// transient, so it releases the claim and the next call runs again (SEMANTICS.md
    /// scenario 8). `E` needs no `Serialize`.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); a `Failed` record left by an earlier version whose errors
    /// were stored is [`Error::IncompatibleRecord`].
    pub async fn try_execute_transient<T, E, F, Fut>(
        &self,
        call: &Call,
        f: F,
    ) -> Result<Outcome<std::result::Result<T, E>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let codec = Codec {
            store: Box::new(|r: &std::result::Result<T, E>, max, _| match r {
                Ok(v) => retained(v, max, Disposition::Success),
                Err(_) => Disposition::Release,
            }),
            decode_success: decode_ok::<T, E>,
            decode_failure: errors_not_stored::<std::result::Result<T, E>>,
        };
        self.run(call, f, codec).await
    }

    /// The sync form of [`try_execute_transient`](Self::try_execute_transient).
    ///
    /// # Errors
    /// As [`try_execute_transient`](Self::try_execute_transient).
    pub fn try_execute_transient_sync<T, E, F>(
        &self,
        call: &Call,
        f: F,
    ) -> Result<Outcome<std::result::Result<T, E>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> std::result::Result<T, E>,
    {
        rt::block_on(self.try_execute_transient(call, || std::future::ready(f())))
    }

    async fn run<R, F, Fut>(&self, call: &Call, f: F, codec: Codec<R>) -> Result<Outcome<R>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let outcome = self.run_unmarked(call, f, codec).await;
        if outcome.is_err() {
            // A framework error inside another function's body: that body's failure is not
            // stored (see `run_claimed`).
            rt::framework_error_seen();
        }
        outcome
    }

    async fn run_unmarked<R, F, Fut>(
        &self,
        call: &Call,
        f: F,
        codec: Codec<R>,
    ) -> Result<Outcome<R>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let (ttl, failure_ttl, lease) = self.settings(call)?;
        let key = self.store_key(&call.key);
        let config = &self.inner.config;
        let storage = &self.inner.storage;
        let counters = &self.inner.counters;
        counters.request();
        let on_conflict = call.options.on_conflict.unwrap_or(config.on_conflict);
        let fp_policy = call.options.fingerprint.unwrap_or(config.fingerprint);
        // Read the monotonic clock only once a conflict makes waiting possible.
        let mut started: Option<Instant> = None;
        let mut waited = false;
        let req = Self::request(call, lease);
        if call.options.refresh && fp_policy == FingerprintPolicy::Reject {
            // A cache bypass replaces the record, so under the reject policy it must not replace
            // a record made from other inputs (checked before the claim; the claim itself is
            // still atomic).
            if let Some(obs) = storage.get(&key).await? {
                if obs.status() != RecordStatus::Expired
                    && obs.record.fingerprint != call.fingerprint
                {
                    counters.step(Step::Mismatch { rejected: true }, &call.key, None);
                    return Err(Error::FingerprintMismatch {
                        key: call.key.clone(),
                    });
                }
            }
        }
        loop {
            let timer = StoreTimer::start();
            let claimed = storage.try_claim(&key, &req).await;
            timer.stop("claim");
            let claim = match claimed {
                Ok(c) => c,
                Err(e) => {
                    if !e.is_store_unavailable() {
                        return Err(e);
                    }
                    counters.step(Step::StoreError("claim"), &call.key, None);
                    if config.on_store_error == StoreErrorPolicy::FailClosed {
                        return Err(e);
                    }
                    counters.step(Step::Unprotected, &call.key, None);
                    return Ok(Outcome {
                        value: f().await,
                        provenance: Provenance {
                            replayed: false,
                            key: call.key.clone(),
                            execution_id: req.execution_id,
                            fencing_token: 0,
                            created_at: Timestamp(0),
                            expires_at: Timestamp(0),
                            time_to_live: Duration::ZERO,
                            fingerprint_mismatch: false,
                            takeover: false,
                            unprotected: true,
                            retention: Retention::NotStored,
                        },
                    });
                }
            };
            let still_pending =
                matches!(&claim, Claim::Existing(o) if o.record.status == RecordStatus::Pending);
            if let (true, false, Some(t)) = (waited, still_pending, started) {
                counters.lock_wait(t.elapsed());
            }
            match claim {
                Claim::Acquired {
                    owner,
                    lease_until,
                    takeover,
                } => {
                    counters.step(Step::Claimed, &call.key, Some(&owner));
                    if takeover {
                        counters.step(Step::TookOver, &call.key, Some(&owner));
                    }
                    let lease = OperationLease {
                        key: key.into_owned(),
                        owner,
                        lease_until,
                        takeover,
                        ttl,
                        failure_ttl,
                    };
                    kill_point("after_claim", &call.key);
                    return self.run_claimed(call, lease, f, &codec).await;
                }
                Claim::Existing(obs) => {
                    // The mismatch answer comes before the in-progress answer (scenario 16).
                    let mismatch = obs.record.fingerprint != call.fingerprint;
                    if mismatch {
                        let rejected = fp_policy == FingerprintPolicy::Reject;
                        counters.step(Step::Mismatch { rejected }, &call.key, None);
                        if rejected {
                            return Err(Error::FingerprintMismatch {
                                key: call.key.clone(),
                            });
                        }
                    }
                    match obs.record.status {
                        RecordStatus::Pending | RecordStatus::Expired => {
                            let lease_until = obs.record.expires_at;
                            if !waited {
                                counters.step(Step::Conflict, &call.key, Some(&obs.record.owner));
                            }
                            let since = *started.get_or_insert_with(Instant::now);
                            match on_conflict {
                                ConflictPolicy::Wait { timeout } if since.elapsed() < timeout => {
                                    waited = true;
                                    let left = timeout.saturating_sub(since.elapsed());
                                    rt::sleep(config.poll_interval.min(left)).await;
                                }
                                _ => {
                                    if waited {
                                        counters.lock_wait(since.elapsed());
                                    }
                                    return Err(Error::InProgress {
                                        key: call.key.clone(),
                                        lease_until,
                                    });
                                }
                            }
                        }
                        RecordStatus::Success | RecordStatus::Failed => {
                            counters.step(Step::Replayed, &call.key, Some(&obs.record.owner));
                            return self.replay(call, obs, mismatch, &codec);
                        }
                    }
                }
            }
        }
    }

    fn replay<R>(
        &self,
        call: &Call,
        obs: Observed,
        mismatch: bool,
        codec: &Codec<R>,
    ) -> Result<Outcome<R>> {
        let rec = &obs.record;
        let incompatible = |reason: String| Error::IncompatibleRecord {
            key: call.key.to_string(),
            reason,
        };
        let value = match (rec.status, &rec.error) {
            (RecordStatus::Success, _) => {
                (codec.decode_success)(&rec.result).map_err(incompatible)?
            }
            (_, Some(RecordError::Encoded(bytes))) => {
                (codec.decode_failure)(bytes).map_err(incompatible)?
            }
            (_, Some(RecordError::NotRetained(reason))) => {
                return Err(Error::ResultNotRetained {
                    key: call.key.clone(),
                    reason: reason.clone(),
                })
            }
            (_, None) => {
                return Err(Error::CorruptRecord {
                    key: call.key.to_string(),
                    reason: "a `Failed` record without an error".into(),
                })
            }
        };
        Ok(Outcome {
            value,
            provenance: Provenance {
                replayed: true,
                key: call.key.clone(),
                execution_id: rec.owner.execution_id,
                fencing_token: rec.owner.fencing_token,
                created_at: rec.created_at,
                expires_at: rec.expires_at,
                time_to_live: obs.time_to_live(),
                fingerprint_mismatch: mismatch,
                takeover: false,
                unprotected: false,
                retention: Retention::Stored,
            },
        })
    }

    async fn run_claimed<R, F, Fut>(
        &self,
        call: &Call,
        lease: OperationLease,
        f: F,
        codec: &Codec<R>,
    ) -> Result<Outcome<R>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let storage = &self.inner.storage;
        let nested_framework_error = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let run = CatchUnwind(Box::pin(rt::InBody {
            fut: Box::pin(async move { f().await }),
            flag: Arc::clone(&nested_framework_error),
        }))
        .await;
        let value = match run {
            Ok(v) => v,
            Err(panic) => {
                // A panic is retryable: release the claim, then let the panic continue.
                let _ = storage.release(&lease.key, &lease.owner).await;
                self.inner
                    .counters
                    .step(Step::Released, &call.key, Some(&lease.owner));
                std::panic::resume_unwind(panic);
            }
        };
        kill_point("after_run", &call.key);
        // A record just finished is kept for exactly its TTL from now. Every fresh outcome of a
        // claimed run gets its provenance here, with what became of its value.
        let provenance = |times: Option<(Timestamp, Timestamp)>,
                          time_to_live: Duration,
                          retention: Retention| {
            let (created_at, expires_at) = times.unwrap_or_default();
            Provenance {
                replayed: false,
                key: call.key.clone(),
                execution_id: lease.owner.execution_id,
                fencing_token: lease.owner.fencing_token,
                created_at,
                expires_at,
                time_to_live,
                fingerprint_mismatch: false,
                takeover: lease.takeover,
                unprotected: false,
                retention,
            }
        };
        let max = self.inner.config.max_result_bytes;
        // A failure of a body in which a nested idempotent call failed with a framework error
        // (a conflict, an outage, converted by `?` into an error type that cannot carry it, so
        // `Error::is_carried_by` cannot see it) is not the function's outcome: the codec
        // releases it, stored or not, without encoding it.
        let nested = nested_framework_error.load(std::sync::atomic::Ordering::Relaxed);
        // The user's `Serialize`, `Deserialize` (the replay check) and transient classifier run
        // here, after the function: a panic in them is treated like a panic in the function
        // (claim released, panic resumed).
        let disposition = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (codec.store)(&value, max, nested)
        })) {
            Ok(d) => d,
            Err(panic) => {
                let _ = storage.release(&lease.key, &lease.owner).await;
                self.inner
                    .counters
                    .step(Step::Released, &call.key, Some(&lease.owner));
                std::panic::resume_unwind(panic);
            }
        };
        match disposition {
            Disposition::Success(bytes) => {
                let rec = self.finish_with_retry(call, &lease, Ok(&bytes)).await?;
                self.inner
                    .counters
                    .step(Step::Completed, &call.key, Some(&lease.owner));
                Ok(Outcome {
                    provenance: provenance(
                        Some((rec.created_at, rec.expires_at)),
                        lease.ttl,
                        Retention::Stored,
                    ),
                    value,
                })
            }
            Disposition::Failure(bytes) => {
                let err = RecordError::Encoded(bytes);
                let rec = self.finish_with_retry(call, &lease, Err(&err)).await?;
                self.inner
                    .counters
                    .step(Step::FailureCached, &call.key, Some(&lease.owner));
                Ok(Outcome {
                    provenance: provenance(
                        Some((rec.created_at, rec.expires_at)),
                        lease.failure_ttl,
                        Retention::Stored,
                    ),
                    value,
                })
            }
            Disposition::Release => {
                // The caller gets its own retryable error either way; if the release fails the
                // claim blocks the key until its lease ends.
                match storage.release(&lease.key, &lease.owner).await {
                    Ok(_) => {
                        self.inner
                            .counters
                            .step(Step::Released, &call.key, Some(&lease.owner))
                    }
                    Err(_) => self.inner.counters.step(
                        Step::StoreError("release"),
                        &call.key,
                        Some(&lease.owner),
                    ),
                }
                Ok(Outcome {
                    value,
                    provenance: provenance(None, Duration::ZERO, Retention::NotStored),
                })
            }
            Disposition::NotRetained(reason) => {
                // The function ran (its side effects are done) but its value cannot be replayed:
                // the record becomes a terminal marker, so later callers get `ResultNotRetained`
                // and never run it again, while this caller gets the value it computed.
                let err = RecordError::NotRetained(reason.clone());
                let rec = self.finish_with_retry(call, &lease, Err(&err)).await?;
                self.inner
                    .counters
                    .step(Step::NotRetained, &call.key, Some(&lease.owner));
                Ok(Outcome {
                    provenance: provenance(
                        Some((rec.created_at, rec.expires_at)),
                        lease.failure_ttl,
                        Retention::NotRetained { reason },
                    ),
                    value,
                })
            }
        }
    }

    async fn finish_with_retry(
        &self,
        call: &Call,
        lease: &OperationLease,
        what: std::result::Result<&[u8], &RecordError>,
    ) -> Result<crate::record::Record> {
        let storage = &self.inner.storage;
        let attempts = self.inner.config.complete_attempts;
        let mut backoff = Duration::from_millis(10);
        let mut attempt = 1;
        let counters = &self.inner.counters;
        loop {
            kill_point("before_complete", &call.key);
            let timer = StoreTimer::start();
            let r = match what {
                Ok(bytes) => {
                    storage
                        .complete(&lease.key, &lease.owner, bytes, lease.ttl)
                        .await
                }
                Err(err) => {
                    storage
                        .fail(&lease.key, &lease.owner, err, lease.failure_ttl)
                        .await
                }
            };
            timer.stop("complete");
            if let Err(e) = &r {
                if e.is_store_unavailable() {
                    counters.step(Step::StoreError("complete"), &call.key, Some(&lease.owner));
                }
            }
            match r {
                Ok(rec) => {
                    kill_point("after_complete", &call.key);
                    return Ok(rec);
                }
                Err(Error::LeaseLost { .. }) => {
                    counters.step(Step::FencedOut, &call.key, Some(&lease.owner));
                    return Err(Error::LeaseLost {
                        key: call.key.clone(),
                    });
                }
                Err(e) if e.is_store_unavailable() && attempt < attempts => {
                    rt::sleep(backoff).await;
                    backoff *= 4;
                    attempt += 1;
                }
                Err(e) => {
                    let encoded = match what {
                        Ok(bytes) => bytes.to_vec(),
                        Err(RecordError::Encoded(bytes)) => bytes.clone(),
                        Err(RecordError::NotRetained(_)) => Vec::new(),
                    };
                    return Err(Error::CompletionNotRecorded {
                        key: call.key.clone(),
                        encoded,
                        source: Box::new(e),
                    });
                }
            }
        }
    }

    /// The live record for `call`'s key, if any: a finished record is a duplicate, a `Pending`
    /// one a conflict. Reads only; claims nothing.
    ///
    /// # Errors
    /// Store errors; `CorruptRecord`/`IncompatibleRecord`.
    pub async fn check_duplicate(&self, call: &Call) -> Result<Option<Observed>> {
        let key = self.store_key(&call.key);
        Ok(self
            .inner
            .storage
            .get(&key)
            .await?
            .filter(|o| o.status() != RecordStatus::Expired))
    }

    /// The record of `key` as stored (expired records included until purged), with the store's
    /// time: status, TTL remaining, execution id.
    ///
    /// # Errors
    /// Store errors; `CorruptRecord`/`IncompatibleRecord`.
    pub async fn status(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        let key = self.store_key(key);
        self.inner.storage.get(&key).await
    }

    /// Claims `call`'s key for a caller that runs the operation itself (the low-level API).
    ///
    /// # Errors
    /// Store errors; [`Error::FingerprintMismatch`] under the reject policy;
    /// `CorruptRecord`/`IncompatibleRecord`; [`Error::Config`].
    pub async fn begin_operation(&self, call: &Call) -> Result<Begin> {
        let (ttl, failure_ttl, lease) = self.settings(call)?;
        let key = self.store_key(&call.key);
        let req = Self::request(call, lease);
        match self.inner.storage.try_claim(&key, &req).await? {
            Claim::Acquired {
                owner,
                lease_until,
                takeover,
            } => Ok(Begin::Acquired(OperationLease {
                key: key.into_owned(),
                owner,
                lease_until,
                takeover,
                ttl,
                failure_ttl,
            })),
            Claim::Existing(obs) => {
                let policy = call
                    .options
                    .fingerprint
                    .unwrap_or(self.inner.config.fingerprint);
                if obs.record.fingerprint != call.fingerprint && policy == FingerprintPolicy::Reject
                {
                    return Err(Error::FingerprintMismatch {
                        key: call.key.clone(),
                    });
                }
                Ok(Begin::Existing(obs))
            }
        }
    }

    /// Stores `value` as the result of a claim from [`begin_operation`](Self::begin_operation),
    /// encoded as CBOR (read it back with [`decode_value`](Self::decode_value)). Unlike
    /// [`execute`](Self::execute), this low-level step does not check that the value replays.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] when a newer holder took over; [`Error::Encode`]; store errors.
    pub async fn complete_operation<T: Serialize + ?Sized>(
        &self,
        lease: &OperationLease,
        value: &T,
    ) -> Result<crate::record::Record> {
        let bytes = encode(value).map_err(|message| Error::Encode {
            what: "the result",
            message,
        })?;
        self.inner
            .storage
            .complete(&lease.key, &lease.owner, &bytes, lease.ttl)
            .await
    }

    /// Stores `error` as the failure of a claim from [`begin_operation`](Self::begin_operation),
    /// kept for the failure TTL, encoded as CBOR (unchecked, as in
    /// [`complete_operation`](Self::complete_operation)).
    ///
    /// # Errors
    /// [`Error::LeaseLost`] when a newer holder took over; [`Error::Encode`]; store errors.
    pub async fn fail_operation<E: Serialize + ?Sized>(
        &self,
        lease: &OperationLease,
        error: &E,
    ) -> Result<crate::record::Record> {
        let bytes = encode(error).map_err(|message| Error::Encode {
            what: "the error",
            message,
        })?;
        self.inner
            .storage
            .fail(
                &lease.key,
                &lease.owner,
                &RecordError::Encoded(bytes),
                lease.failure_ttl,
            )
            .await
    }

    /// Releases a claim from [`begin_operation`](Self::begin_operation) without a result, so the
    /// next caller runs the operation. A no-op (returning `false`) for a stale holder.
    ///
    /// # Errors
    /// Store errors.
    pub async fn release_operation(&self, lease: &OperationLease) -> Result<bool> {
        self.inner.storage.release(&lease.key, &lease.owner).await
    }

    /// Extends a claim's lease by the call's pending timeout from now (store clock).
    ///
    /// # Errors
    /// [`Error::LeaseLost`]; store errors.
    pub async fn renew_operation(&self, lease: &mut OperationLease, by: Duration) -> Result<()> {
        lease.lease_until = self
            .inner
            .storage
            .renew(&lease.key, &lease.owner, by)
            .await?;
        Ok(())
    }

    /// Decodes the stored value of a finished record as `T` (values are CBOR since record format
    /// version 2).
    ///
    /// # Errors
    /// [`Error::IncompatibleRecord`] when it does not decode as `T`.
    pub fn decode_value<T: DeserializeOwned>(obs: &Observed) -> Result<T> {
        decode(&obs.record.result).map_err(|reason| Error::IncompatibleRecord {
            key: obs.record.key.to_string(),
            reason,
        })
    }

    /// Decodes the stored error of a `Failed` record as `E`; `None` when the record holds no
    /// stored error (`Pending`, `Success`).
    ///
    /// # Errors
    /// [`Error::ResultNotRetained`] for a "result not retained" marker;
    /// [`Error::IncompatibleRecord`] when the error does not decode as `E`.
    pub fn decode_error<E: DeserializeOwned>(obs: &Observed) -> Result<Option<E>> {
        match &obs.record.error {
            None => Ok(None),
            Some(RecordError::Encoded(bytes)) => {
                decode(bytes)
                    .map(Some)
                    .map_err(|reason| Error::IncompatibleRecord {
                        key: obs.record.key.to_string(),
                        reason,
                    })
            }
            Some(RecordError::NotRetained(reason)) => Err(Error::ResultNotRetained {
                key: obs.record.key.clone(),
                reason: reason.clone(),
            }),
        }
    }
}
