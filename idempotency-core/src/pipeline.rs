//! The pipeline base: a [`Pipeline`] holds the logic of one step in a single method, and
//! [`IdempotentPipeline`] makes running it idempotent.
//!
//! A pipeline names itself ([`Pipeline::NAME`], [`Pipeline::VERSION`]), declares its input,
//! output and error types, and implements [`Pipeline::run`]. The wrapper adds, on top of an
//! [`IdempotencyManager`]:
//!
//! - [`execute`](IdempotentPipeline::execute): the idempotency key is derived from the
//!   pipeline's name, version and the canonical encoding of the input; the first call runs the
//!   pipeline, repeats within the TTL replay the stored output (or stored error);
//! - [`execute_with_key`](IdempotentPipeline::execute_with_key): a caller-supplied idempotency
//!   key (a record id, a request id); the input then only forms the fingerprint, so reusing a key
//!   with a different input is detected;
//! - [`execute_refresh`](IdempotentPipeline::execute_refresh): cache bypass, the pipeline runs
//!   again and its result replaces the stored one;
//! - [`status`](IdempotentPipeline::status): the record's status, TTL remaining and execution id;
//! - provenance on every result ([`Outcome`]): replayed or executed, the key, the execution id,
//!   when it was created and how long it is kept.
//!
//! ```
//! use std::time::Duration;
//! # use idempotency_core as idempotency;
//! use idempotency::{IdempotencyManager, IdempotentPipeline, MemoryStorage, Pipeline};
//!
//! struct Invoice;
//! impl Pipeline for Invoice {
//!     const NAME: &'static str = "billing::invoice";
//!     type Input = (String, u64);
//!     type Output = String;
//!     type Error = String;
//!     fn ttl(&self) -> Option<Duration> {
//!         Some(Duration::from_secs(24 * 3600))
//!     }
//!     fn run(&self, (customer, cents): &(String, u64)) -> Result<String, String> {
//!         Ok(format!("invoice for {customer}: {cents} cents"))
//!     }
//! }
//!
//! let invoices = IdempotentPipeline::new(Invoice, IdempotencyManager::new(MemoryStorage::new()));
//! let input = ("acme".to_owned(), 1200);
//! let first = invoices.execute(&input)?;
//! let again = invoices.execute(&input)?;
//! assert!(!first.is_replayed() && again.is_replayed());
//! assert_eq!(again.provenance.execution_id, first.provenance.execution_id);
//! assert_eq!(again.value, Ok("invoice for acme: 1200 cents".to_owned()));
//! # Ok::<(), idempotency_core::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::error::Result;
use crate::key::{IdempotencyKey, KeyEncoder};
use crate::manager::{Call, CallOptions, IdempotencyManager, Outcome};
use crate::record::{RecordStatus, Timestamp};
use crate::rt;

/// One pipeline step whose logic lives in [`run`](Self::run). Wrap it in an
/// [`IdempotentPipeline`] to run it idempotently.
///
/// The output and the error are stored (CBOR, with named fields, so any serde shape replays) and
/// replayed, so both are `Serialize + DeserializeOwned`; the input only enters the idempotency
/// key (or, with a custom key, the fingerprint) through its canonical encoding, so it only needs
/// `Serialize`. An output or error that cannot be stored so that it replays exactly (over
/// [`max_result_bytes`](crate::ManagerBuilder::max_result_bytes), or deserializing as something
/// else) is *not retained*: the call that ran still gets it, marked
/// [`Retention::NotRetained`](crate::Retention::NotRetained), and repeats get
/// [`Error::ResultNotRetained`](crate::Error::ResultNotRetained) without running again.
pub trait Pipeline {
    /// The operation name that starts every idempotency key of this pipeline
    /// (`NAME:32_hex_chars`). Two pipelines with different names never share records.
    const NAME: &'static str;
    /// The operation version. Bump it when the output type or the meaning of the output
    /// changes: records of the old version are then never replayed (SEMANTICS.md scenario 29).
    const VERSION: u32 = 1;

    /// What one run takes.
    type Input: Serialize;
    /// What one run produces; stored and replayed.
    type Output: Serialize + DeserializeOwned;
    /// What one run can fail with; a permanent error is stored (for the failure TTL) and
    /// replayed, a transient one releases the claim (see [`is_transient`](Self::is_transient)).
    type Error: Serialize + DeserializeOwned;

    /// How long a successful result is kept and replayed, counted from completion (store
    /// clock). `None` (the default) takes the manager's TTL (3600 s unless configured).
    fn ttl(&self) -> Option<Duration> {
        None
    }

    /// Per-call settings applied to every call of this pipeline: failure TTL, lease, conflict
    /// and fingerprint policies. An explicit `ttl` here wins over [`ttl`](Self::ttl).
    fn call_options(&self) -> CallOptions {
        CallOptions::default()
    }

    /// Whether `error` is transient (a timeout, a 429, a full disk): the claim is then released
    /// so the next call runs again, and nothing is stored (SEMANTICS.md scenario 8). The default,
    /// `false`, treats every error as permanent: it is stored as a `Failed` record and replayed
    /// (scenario 7). `CallOptions::cache_failures = Some(false)` (or a manager built with
    /// `ManagerBuilder::cache_failures(false)`, when the call sets none) makes every error
    /// transient.
    fn is_transient(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// The pipeline logic: one run over `input`. Called at most once per idempotency key while
    /// its record lives, unless a caller bypasses the stored result
    /// ([`IdempotentPipeline::execute_refresh`]) or a crashed holder's lease expired. Its lease
    /// is renewed while it runs; inside it, [`current`](crate::current) gives the call's key,
    /// fencing token and derived keys for downstream APIs.
    ///
    /// # Errors
    /// The pipeline's own error type; it becomes the outcome's value.
    fn run(&self, input: &Self::Input) -> std::result::Result<Self::Output, Self::Error>;
}

/// What an idempotent pipeline call returns: the framework's errors outside, the pipeline's own
/// result (fresh or replayed) with its provenance inside.
pub type PipelineResult<P> = Result<
    Outcome<std::result::Result<<P as Pipeline>::Output, <P as Pipeline>::Error>>,
    crate::error::Error,
>;

/// A [`Pipeline`] run through an [`IdempotencyManager`]: idempotent `execute`, custom keys,
/// cache bypass, status and provenance. Cheap to clone when the pipeline is.
#[derive(Clone)]
pub struct IdempotentPipeline<P> {
    pipeline: P,
    manager: IdempotencyManager,
}

impl<P> fmt::Debug for IdempotentPipeline<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotentPipeline")
            .field("pipeline", &std::any::type_name::<P>())
            .field("manager", &self.manager)
            .finish()
    }
}

/// The record behind a pipeline call, as [`IdempotentPipeline::status`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStatus {
    /// The idempotency key that was looked up (without the manager's prefix).
    pub key: IdempotencyKey,
    /// The record, or `None` when the key has no record (never run, or purged).
    pub record: Option<RecordInfo>,
}

/// A summary of one stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    /// The status as of the read (`Expired` once past its TTL or lease).
    pub status: RecordStatus,
    /// The execution id of the attempt that holds or produced the record.
    pub execution_id: Uuid,
    /// The fencing token of that attempt (1 for the first claim, +1 per takeover).
    pub fencing_token: u64,
    /// When that attempt claimed the key (store clock).
    pub created_at: Timestamp,
    /// When the record expires: the lease deadline while `Pending`, else completion + TTL
    /// (store clock).
    pub expires_at: Timestamp,
    /// Time left before the record expires, as of the read (zero once expired).
    pub time_to_live: Duration,
    /// Whether the stored fingerprint equals the fingerprint of the input given to `status`.
    pub fingerprint_matches: bool,
}

impl PipelineStatus {
    /// The record's status, `None` when there is no record.
    pub fn status(&self) -> Option<RecordStatus> {
        self.record.as_ref().map(|r| r.status)
    }
    /// Time left before the record expires; zero when there is no record.
    pub fn time_to_live(&self) -> Duration {
        self.record
            .as_ref()
            .map_or(Duration::ZERO, |r| r.time_to_live)
    }
    /// The execution id of the record's attempt, `None` when there is no record.
    pub fn execution_id(&self) -> Option<Uuid> {
        self.record.as_ref().map(|r| r.execution_id)
    }
}

impl<P> IdempotentPipeline<P> {
    /// Wraps `pipeline`; its records live in `manager`'s store. (The `idempotency` facade's
    /// `idempotent_pipeline` uses the process-wide default manager instead.)
    pub fn new(pipeline: P, manager: IdempotencyManager) -> Self {
        IdempotentPipeline { pipeline, manager }
    }
    /// The wrapped pipeline.
    pub fn pipeline(&self) -> &P {
        &self.pipeline
    }
    /// The manager the records go through.
    pub fn manager(&self) -> &IdempotencyManager {
        &self.manager
    }
    /// The wrapped pipeline, unwrapped.
    pub fn into_inner(self) -> P {
        self.pipeline
    }
}

impl<P: Pipeline> IdempotentPipeline<P> {
    fn make_call(&self, custom_key: Option<&str>, input: &P::Input) -> Result<Call> {
        let mut enc = KeyEncoder::new(P::NAME, P::VERSION);
        enc.arg(input);
        if let Some(key) = custom_key {
            enc.custom_key(key);
        }
        let derived = enc.finish()?;
        let mut options = self.pipeline.call_options();
        if options.ttl.is_none() {
            options.ttl = self.pipeline.ttl();
        }
        Ok(Call {
            key: derived.key,
            fingerprint: derived.fingerprint,
            options,
        })
    }

    /// The [`Call`] [`execute`](Self::execute) makes for `input`: the key derived from the
    /// pipeline's name, version and input, with the pipeline's TTL and call options. Adjust it
    /// (conflict policy, refresh) and pass it to [`execute_call`](Self::execute_call).
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad [`Pipeline::NAME`];
    /// [`Error::Encode`](crate::Error::Encode) when the input fails to serialize.
    pub fn call(&self, input: &P::Input) -> Result<Call> {
        self.make_call(None, input)
    }

    /// The [`Call`] [`execute_with_key`](Self::execute_with_key) makes: `key` identifies the
    /// operation (hashed with the pipeline's name and version), `input` forms the fingerprint.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for an empty key, one over 255 bytes or
    /// one with control characters; [`Error::Encode`](crate::Error::Encode).
    pub fn call_with_key(&self, key: &str, input: &P::Input) -> Result<Call> {
        self.make_call(Some(key), input)
    }

    /// Runs the pipeline over `input` once per idempotency key: the first call runs
    /// [`Pipeline::run`] and stores its result (an `Ok` for the TTL, a permanent `Err` for the
    /// failure TTL); repeats replay it, marked as replayed in the provenance. A result that
    /// cannot be stored so that it replays exactly still reaches this caller, with
    /// [`Outcome::is_retained`] `false`; repeats then get `ResultNotRetained` (see
    /// [`IdempotencyManager::execute`]).
    ///
    /// # Errors
    /// The framework's errors, as [`IdempotencyManager::execute`]: `InProgress` (another caller
    /// runs the same input now), store errors, `CorruptRecord`, `IncompatibleRecord`,
    /// `ResultNotRetained` (a repeat of a call whose result was not retained), `LeaseLost`,
    /// `CompletionNotRecorded`, `InvalidKey`, `Encode`, `Config`. The pipeline's
    /// own error is not an error here but the outcome's value.
    pub fn execute(&self, input: &P::Input) -> PipelineResult<P> {
        self.execute_call(&self.call(input)?, input)
    }

    /// As [`execute`](Self::execute), with a caller-supplied idempotency key (Stripe style).
    /// Reusing `key` with a different input replays the first result with
    /// `provenance.fingerprint_mismatch` set, or fails with `FingerprintMismatch` under
    /// [`FingerprintPolicy::Reject`](crate::FingerprintPolicy::Reject).
    ///
    /// # Errors
    /// As [`execute`](Self::execute), plus `FingerprintMismatch` under the reject policy.
    pub fn execute_with_key(&self, key: &str, input: &P::Input) -> PipelineResult<P> {
        self.execute_call(&self.call_with_key(key, input)?, input)
    }

    /// Cache bypass: runs the pipeline even if a result is stored, and replaces the stored
    /// result with the new one (a new execution id and fencing token). A call in progress is
    /// still a conflict.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub fn execute_refresh(&self, input: &P::Input) -> PipelineResult<P> {
        self.execute_call(&self.call(input)?.refresh(), input)
    }

    /// Runs the pipeline under a prepared `call` (from [`call`](Self::call) or
    /// [`call_with_key`](Self::call_with_key), adjusted). `input` must be the input the call's
    /// key or fingerprint was made from.
    ///
    /// # Errors
    /// As [`execute_with_key`](Self::execute_with_key).
    pub fn execute_call(&self, call: &Call, input: &P::Input) -> PipelineResult<P> {
        // `try_execute_with` makes every error transient when failures are not cached.
        let pipeline = &self.pipeline;
        self.manager.try_execute_with_sync(
            call,
            || pipeline.run(input),
            |e: &P::Error| pipeline.is_transient(e),
        )
    }

    /// The record of [`execute`](Self::execute)'s key for `input`: status, TTL remaining,
    /// execution id, and whether the stored fingerprint matches. Reads only.
    ///
    /// # Errors
    /// Store errors; `CorruptRecord`/`IncompatibleRecord`; `InvalidKey`, `Encode`.
    pub fn status(&self, input: &P::Input) -> Result<PipelineStatus> {
        self.status_of(&self.call(input)?)
    }

    /// The record of [`execute_with_key`](Self::execute_with_key)'s key.
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub fn status_with_key(&self, key: &str, input: &P::Input) -> Result<PipelineStatus> {
        self.status_of(&self.call_with_key(key, input)?)
    }

    /// The record of a prepared `call`'s key.
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub fn status_of(&self, call: &Call) -> Result<PipelineStatus> {
        let observed = rt::block_on(self.manager.status(&call.key))?;
        Ok(PipelineStatus {
            key: call.key.clone(),
            record: observed.map(|obs| RecordInfo {
                status: obs.status(),
                execution_id: obs.record.owner.execution_id,
                fencing_token: obs.record.owner.fencing_token,
                created_at: obs.record.created_at,
                expires_at: obs.record.expires_at,
                time_to_live: obs.time_to_live(),
                fingerprint_matches: obs.record.fingerprint == call.fingerprint,
            }),
        })
    }
}
