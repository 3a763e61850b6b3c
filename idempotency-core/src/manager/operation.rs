//! The low-level operation API, for callers that run the operation themselves: claim with
//! [`begin_operation`](IdempotencyManager::begin_operation), then finish with
//! `complete_operation`, `fail_operation` or `release_operation`; and reads of the store.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, encode};
use crate::error::{Error, Result};
use crate::key::IdempotencyKey;
use crate::record::{Owner, Record, RecordError, RecordStatus, Timestamp};
use crate::storage::{Claim, Observed};

use super::options::{Call, FingerprintPolicy};
use super::IdempotencyManager;

/// A claim held through the low-level API ([`IdempotencyManager::begin_operation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationLease {
    /// The idempotency key.
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
    /// The live record for `call`'s key, if any: a finished record is a duplicate, a `Pending`
    /// one a conflict. Reads only; claims nothing.
    ///
    /// # Errors
    /// Store errors; `CorruptRecord`/`IncompatibleRecord`.
    pub async fn check_duplicate(&self, call: &Call) -> Result<Option<Observed>> {
        let key = &call.key;
        Ok(self
            .inner
            .storage
            .get(key)
            .await?
            .filter(|o| o.status() != RecordStatus::Expired))
    }

    /// The record of `key` as stored (expired records included until purged), with the store's
    /// time: status, TTL remaining, execution id.
    ///
    /// # Errors
    /// Store errors; `CorruptRecord`/`IncompatibleRecord`.
    pub async fn status(&self, key: &IdempotencyKey) -> Result<Option<Observed>> {
        self.inner.storage.get(key).await
    }

    /// Claims `call`'s key for a caller that runs the operation itself (the low-level API).
    ///
    /// # Errors
    /// Store errors; [`Error::FingerprintMismatch`] under the reject policy;
    /// `CorruptRecord`/`IncompatibleRecord`; [`Error::Config`].
    pub async fn begin_operation(&self, call: &Call) -> Result<Begin> {
        let settings = self.inner.config.resolve(call)?;
        let key = &call.key;
        let req = settings.request(call);
        match self.inner.storage.try_claim(key, &req).await? {
            Claim::Acquired {
                owner,
                lease_until,
                takeover,
            } => Ok(Begin::Acquired(OperationLease {
                key: key.clone(),
                owner,
                lease_until,
                takeover,
                ttl: settings.ttl,
                failure_ttl: settings.failure_ttl,
            })),
            Claim::Existing(obs) => {
                if obs.record.fingerprint != call.fingerprint
                    && settings.fingerprint == FingerprintPolicy::Reject
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
    ) -> Result<Record> {
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
    ) -> Result<Record> {
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
