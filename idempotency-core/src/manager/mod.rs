//! `IdempotencyManager`: claim → run → complete / fail / release, with leases, fencing, replay
//! and the policies of SEMANTICS.md.
//!
//! - [`options`]: the vocabulary of one call ([`Call`], [`CallOptions`], the policies);
//! - [`config`]: the manager's settings and builder, and one call's settings resolved;
//! - [`claim`]: the claim step, which runs no user code;
//! - [`attempt`]: the run of the function under a held claim, and the fenced write after it;
//! - [`codec`]: how each entry point stores and replays its output;
//! - [`outcome`]: what a call returns, and its provenance;
//! - [`operation`]: the low-level API for callers that run the operation themselves;
//! - [`renewal`]: lease renewal while the function runs;

mod attempt;
mod claim;
mod codec;
mod config;
mod operation;
mod options;
mod outcome;
mod renewal;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::current::CallContext;
use crate::error::{Error, Result};
use crate::rt;
use crate::storage::DynStorage;
use crate::telemetry::{Counters, ManagerStats};

use claim::Claimed;
use codec::{Classified, Codec, Transient, Value};

pub use config::{ManagerBuilder, ManagerConfig};
pub use operation::{Begin, OperationLease};
pub use options::{Call, CallOptions, ConflictPolicy, FingerprintPolicy, StoreErrorPolicy};
pub use outcome::{Outcome, Provenance, Retention};

/// A store's namespace ([`Storage::namespace`](crate::Storage::namespace)), read once.
fn namespace_of(storage: &dyn DynStorage) -> Arc<str> {
    let mut ns = String::new();
    storage.namespace(&mut ns);
    ns.into()
}

struct Inner {
    storage: Arc<dyn DynStorage>,
    /// The store's namespace ([`Storage::namespace`](crate::Storage::namespace)), hashed into
    /// every derived key.
    namespace: Arc<str>,
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

impl IdempotencyManager {
    /// Starts a builder over `storage`.
    pub fn builder(storage: impl DynStorage) -> ManagerBuilder {
        Self::builder_dyn(Arc::new(storage))
    }

    /// Starts a builder over a shared store.
    pub fn builder_dyn(storage: Arc<dyn DynStorage>) -> ManagerBuilder {
        ManagerBuilder::new(storage)
    }

    /// A manager over `storage` with the default settings.
    pub fn new(storage: impl DynStorage) -> Self {
        let storage: Arc<dyn DynStorage> = Arc::new(storage);
        IdempotencyManager {
            inner: Arc::new(Inner {
                namespace: namespace_of(storage.as_ref()),
                storage,
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
    /// [`Error::ResultNotRetained`] without running `f` (SEMANTICS.md scenario 28).
    ///
    /// While `f` runs its lease is renewed every third of the lease (unless turned off:
    /// [`ManagerBuilder::renew_leases`], [`Call::renew_lease`]), so `f` may run longer than the
    /// lease; inside `f`, [`current`](crate::current) describes the call (key, execution id,
    /// fencing token, a derived key for downstream APIs, whether the lease is lost). A panic in
    /// `f` releases the claim and resumes the panic. If this future is dropped while `f` runs,
    /// its renewals stop (no I/O in `Drop`) and the record stays `Pending` until the lease ends,
    /// then one caller takes over (SEMANTICS.md scenario 9).
    ///
    /// # Errors
    /// [`Error::InProgress`] (another caller holds the key), [`Error::FingerprintMismatch`]
    /// (reject policy), store errors (fail-closed), [`Error::CorruptRecord`],
    /// [`Error::IncompatibleRecord`] (the stored value does not decode as `T`),
    /// [`Error::ResultNotRetained`] (a repeat of a call whose value was not retained),
    /// [`Error::LeaseLost`] (a newer holder took over while `f`
    /// ran, or a renewal found one; the stored result is theirs),
    /// [`Error::CompletionNotRecorded`], [`Error::Config`].
    pub async fn execute<T, F, Fut>(&self, call: &Call, f: F) -> Result<Outcome<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.run(call, f, &Value).await
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
        self.try_execute_with(call, f, |_: &E| false).await
    }

    /// As [`try_execute`](Self::try_execute), with `is_transient` classifying each error: a
    /// transient error (timeout, 429, 5xx) releases the claim so the next call runs again
    /// (SEMANTICS.md scenario 8); a permanent one is stored and replayed (scenario 7). When
    /// failures are not cached (the call's [`Call::cache_failures`]`(false)`, else the
    /// manager's [`ManagerBuilder::cache_failures`]`(false)`), every error is transient,
    /// whatever `is_transient` says.
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
        C: Fn(&E) -> bool,
    {
        let cache = self.inner.config.caches_failures_of(call);
        let classify = move |e: &E| !cache || is_transient(e);
        self.run(call, f, &Classified(classify)).await
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

    /// The sync form of [`try_execute_with`](Self::try_execute_with): `is_transient` may borrow
    /// (a pipeline classifies its errors with its own method).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub fn try_execute_with_sync<T, E, F, C>(
        &self,
        call: &Call,
        f: F,
        is_transient: C,
    ) -> Result<Outcome<std::result::Result<T, E>>>
    where
        T: Serialize + DeserializeOwned,
        E: Serialize + DeserializeOwned,
        F: FnOnce() -> std::result::Result<T, E>,
        C: Fn(&E) -> bool,
    {
        rt::block_on(self.try_execute_with(call, || std::future::ready(f()), is_transient))
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
        self.run(call, f, &Transient).await
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

    /// The engine behind every entry point: resolve the settings, claim, then run `f` under
    /// the claim, replay the finished record, or (fail-open) run `f` unprotected.
    async fn run<R, F, Fut, K>(&self, call: &Call, f: F, codec: &K) -> Result<Outcome<R>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        K: Codec<R>,
    {
        // Every error here is a framework error, and inside another function's body that
        // body's failure is then not stored (see `Attempt::run`): `seen` says so. No inner
        // future: a replay's value moves through as few futures as possible (issue 17).
        let settings = match self.inner.config.resolve(call) {
            Ok(settings) => settings,
            Err(e) => return Err(seen(e)),
        };
        self.inner.counters.request();
        // A replay is read here; the rest is boxed, so that the future of every call is no
        // larger than a replay needs and is cheap to move, and the box holds the claim's
        // holder, never the whole claim answer. Matched by hand, without `?`, so that no claim
        // answer is held across the await.
        let held = match self.claim(call, &call.key, settings).await {
            Err(e) => return Err(seen(e)),
            Ok(Claimed::Finished { obs, mismatch }) => {
                return Outcome::replay(&call.key, &obs, mismatch, codec).map_err(seen)
            }
            Ok(Claimed::Acquired(attempt)) => Held::Claimed(attempt),
            Ok(Claimed::Unprotected { execution_id }) => Held::Unprotected(execution_id),
        };
        Box::pin(self.run_held(call, held, f, codec))
            .await
            .map_err(seen)
    }

    /// The run of `f` once the claim step is over without a replay: under the claim, or
    /// (fail-open: the store could not be reached and the policy runs the function anyway)
    /// unprotected.
    async fn run_held<R, F, Fut, K>(
        &self,
        call: &Call,
        held: Held<'_>,
        f: F,
        codec: &K,
    ) -> Result<Outcome<R>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        K: Codec<R>,
    {
        let execution_id = match held {
            Held::Claimed(attempt) => return attempt.run(f, codec).await,
            Held::Unprotected(execution_id) => execution_id,
        };
        let ctx = Arc::new(CallContext::new(
            call.key.clone(),
            Arc::clone(&self.inner.namespace),
            execution_id,
            0,
        ));
        let value = match attempt::body(f, &ctx).await {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if ctx.nested_error() {
            // Nothing is stored here: the enclosing body, if any, hears of it.
            crate::current::framework_error_seen();
        }
        Ok(Outcome {
            value,
            provenance: Provenance::unprotected(&call.key, execution_id),
        })
    }
}

/// A call's claim answer when it was not a replay: the claim's holder, or the execution id of
/// an unprotected run.
enum Held<'a> {
    Claimed(attempt::Attempt<'a>),
    Unprotected(uuid::Uuid),
}

/// `e`, after telling an enclosing idempotent body that a framework error happened inside it
/// ([`framework_error_seen`](crate::current::framework_error_seen)).
fn seen(e: Error) -> Error {
    crate::current::framework_error_seen();
    e
}
