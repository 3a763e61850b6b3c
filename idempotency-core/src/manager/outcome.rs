//! What a call returns: the value with its [`Provenance`], and what became of a fresh value
//! ([`Retention`]). Every provenance is built here.

use std::time::Duration;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::key::IdempotencyKey;
use crate::record::{Record, RecordError, RecordStatus, Timestamp};
use crate::storage::Observed;

use super::attempt::Attempt;
use super::codec::Codec;

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
    /// [`max_result_bytes`](super::ManagerBuilder::max_result_bytes), its `Serialize` failed, or it
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

impl<R> Outcome<R> {
    /// The value of the finished record `obs`, decoded by `codec`, for the caller of `key`.
    ///
    /// # Errors
    /// [`Error::IncompatibleRecord`] when it does not decode; [`Error::ResultNotRetained`] for a
    /// "result not retained" marker; [`Error::CorruptRecord`] for a `Failed` record without an
    /// error.
    pub(super) fn replay<K: Codec<R>>(
        key: &IdempotencyKey,
        obs: &Observed,
        fingerprint_mismatch: bool,
        codec: &K,
    ) -> Result<Self> {
        let rec = &obs.record;
        let incompatible = |reason: String| Error::IncompatibleRecord {
            key: key.to_string(),
            reason,
        };
        let value = match (rec.status, &rec.error) {
            (RecordStatus::Success, _) => {
                codec.decode_success(&rec.result).map_err(incompatible)?
            }
            (_, Some(RecordError::Encoded(bytes))) => {
                codec.decode_failure(bytes).map_err(incompatible)?
            }
            (_, Some(RecordError::NotRetained(reason))) => {
                return Err(Error::ResultNotRetained {
                    key: key.clone(),
                    reason: reason.clone(),
                })
            }
            (_, None) => {
                return Err(Error::CorruptRecord {
                    key: key.to_string(),
                    reason: "a `Failed` record without an error".into(),
                })
            }
        };
        Ok(Outcome {
            value,
            provenance: Provenance::replayed(key, obs, fingerprint_mismatch),
        })
    }
}

impl Provenance {
    /// A value replayed from the finished record `obs`.
    pub(super) fn replayed(
        key: &IdempotencyKey,
        obs: &Observed,
        fingerprint_mismatch: bool,
    ) -> Self {
        let rec = &obs.record;
        Provenance {
            replayed: true,
            key: key.clone(),
            execution_id: rec.owner.execution_id,
            fencing_token: rec.owner.fencing_token,
            created_at: rec.created_at,
            expires_at: rec.expires_at,
            time_to_live: obs.time_to_live(),
            fingerprint_mismatch,
            takeover: false,
            unprotected: false,
            retention: Retention::Stored,
        }
    }

    /// A value computed now by `attempt`, which finished its claim as `finished` (`None` when
    /// it released it) and kept it for `time_to_live` from now.
    pub(super) fn fresh(
        attempt: &Attempt<'_>,
        finished: Option<&Record>,
        time_to_live: Duration,
        retention: Retention,
    ) -> Self {
        let (created_at, expires_at) =
            finished.map_or_else(Default::default, |r| (r.created_at, r.expires_at));
        Provenance {
            replayed: false,
            key: attempt.key().clone(),
            execution_id: attempt.owner().execution_id,
            fencing_token: attempt.owner().fencing_token,
            created_at,
            expires_at,
            time_to_live,
            fingerprint_mismatch: false,
            takeover: attempt.takeover(),
            unprotected: false,
            retention,
        }
    }

    /// A value computed without a claim: the store was unreachable and the policy is fail-open.
    pub(super) fn unprotected(key: &IdempotencyKey, execution_id: Uuid) -> Self {
        Provenance {
            replayed: false,
            key: key.clone(),
            execution_id,
            fencing_token: 0,
            created_at: Timestamp(0),
            expires_at: Timestamp(0),
            time_to_live: Duration::ZERO,
            fingerprint_mismatch: false,
            takeover: false,
            unprotected: true,
            retention: Retention::NotStored,
        }
    }
}
