//! The store traits: [`Storage`], the state transitions every store implements, and
//! [`StorageAdmin`], the operator's side (listing, removing unreadable entries, purging), with
//! their object-safe twins [`DynStorage`] and [`DynStorageAdmin`]; the shared claim and finish
//! rules of the lock-based stores ([`decide_claim`], [`apply_finish`]).

mod admin;
mod decide;
mod dynamic;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

pub use self::admin::{Listed, Page, StorageAdmin};
pub use self::decide::{apply_finish, decide_claim, ClaimDecision, Finish};
pub use self::dynamic::{BoxFuture, DynStorage, DynStorageAdmin};

use uuid::Uuid;

use crate::error::Result;
use crate::key::{Fingerprint, IdempotencyKey};
use crate::record::{Owner, Record, RecordError, RecordStatus, Timestamp};

/// What a caller asks for when it claims a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The execution id of this attempt, chosen before the claim is sent (a fresh v4 UUID), so
    /// that a retried claim whose first reply was lost finds its own record (scenario 5).
    pub execution_id: Uuid,
    /// The fingerprint of the call's inputs, stored in the record.
    pub fingerprint: Fingerprint,
    /// The lease (pending timeout): how long the claim blocks other callers before one of them
    /// may take over. Counted on the store's clock.
    pub lease: Duration,
    /// Cache bypass: also replace a live *finished* (`Success`/`Failed`) record, so the function
    /// runs again and its new result replaces the stored one. A live `Pending` record is still a
    /// conflict.
    pub refresh: bool,
}

/// A record as the store saw it, with the store's time at that moment (so callers reason about
/// expiry on the store's clock, never their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The record.
    pub record: Record,
    /// The store's clock when it was read.
    pub now: Timestamp,
}

impl Observed {
    /// The record's status at the time it was read (`Expired` once past `expires_at`).
    pub fn status(&self) -> RecordStatus {
        self.record.status_at(self.now)
    }
    /// Time left before the record expires, as of the read.
    pub fn time_to_live(&self) -> Duration {
        self.record.time_to_live_at(self.now)
    }
}

/// The answer to [`Storage::try_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // `Existing` holds a record with its key inline (issue 17).
pub enum Claim {
    /// This caller now holds the key: a `Pending` record with this owner was written.
    Acquired {
        /// This caller's execution id and fencing token (1 for a fresh key, the previous token
        /// + 1 when an expired record was taken over).
        owner: Owner,
        /// When the lease ends (store clock).
        lease_until: Timestamp,
        /// `true` when an expired record (a crashed holder's `Pending`, or a finished record past
        /// its TTL) was replaced.
        takeover: bool,
    },
    /// A live record exists (`Pending` within its lease, or `Success`/`Failed` within its TTL),
    /// and nothing was written.
    Existing(Observed),
}

/// A store of idempotency records.
///
/// Every state transition is atomic inside the store: no method reads, decides and then writes
/// without a compare-and-set. Times (`Duration`s) are lengths on the store's clock, with
/// millisecond resolution; leases and TTLs are decided with the store's clock, never the
/// caller's (SEMANTICS.md scenario 22). Writes after a claim are fenced: they take the holder's
/// [`Owner`] (execution id and fencing token) and are refused when the record no longer carries
/// it. The specification's `lock`/`unlock` are [`try_claim`](Self::try_claim) (a lease) and
/// [`release`](Self::release).
///
/// **Retried transitions are idempotent.** A call whose reply was lost (a time-out or a dropped
/// connection after the request was sent, a failed `fsync` after the write) may have been
/// applied, and its caller retries it. Re-applying a transition by the same owner (execution id
/// *and* fencing token) must answer as the first attempt would have, never as a refusal:
/// [`complete`](Self::complete) and [`fail`](Self::fail) find their own finished record and
/// return it unchanged; [`renew`](Self::renew) extends the lease again;
/// [`release`](Self::release) deletes nothing more and succeeds (SEMANTICS.md scenario 5).
/// Fencing is never weakened: a write by another execution id or an older fencing token is
/// refused whatever bytes it carries.
///
/// Methods return [`Error::Storage`](crate::Error::Storage) or [`Error::Io`](crate::Error::Io)
/// when the store cannot be reached or fails, and [`Error::CorruptRecord`](crate::Error::CorruptRecord)
/// or [`Error::IncompatibleRecord`](crate::Error::IncompatibleRecord) when a stored record cannot
/// be read; such a record is never overwritten implicitly.
///
/// # A minimal store
///
/// A custom store implements these state transitions and nothing else: [`try_claim`],
/// [`complete`], [`fail`], [`release`], [`renew`], [`get`] and [`delete`] ([`exists`] has a
/// default over `get`). That is all the manager, the macros and the HTTP middleware use. The
/// operator's side (listing every record, removing unreadable entries, purging expired
/// records, for the `idempotency` CLI and purge jobs) is the separate trait [`StorageAdmin`],
/// implemented on top when the store can walk its records. Namespacing is a wrapper, not a
/// store's concern: [`Prefixed`](crate::Prefixed) gives any store a key prefix.
///
/// Use [`DynStorage`] (implemented for every `Storage`) for dynamic dispatch. The conformance kit
/// in `idempotency_core::testing` (feature `testing`) checks an implementation against the
/// scenarios of SEMANTICS.md: its state-transition checks need only `Storage`, its admin checks
/// `StorageAdmin`.
///
/// [`try_claim`]: Self::try_claim
/// [`complete`]: Self::complete
/// [`fail`]: Self::fail
/// [`release`]: Self::release
/// [`renew`]: Self::renew
/// [`get`]: Self::get
/// [`delete`]: Self::delete
/// [`exists`]: Self::exists
pub trait Storage: Send + Sync + Debug + 'static {
    /// Claims `key` if it has no record, or only an expired one (claim-if-absent-or-expired).
    ///
    /// Compare-and-set: of any number of concurrent claims, exactly one gets
    /// [`Claim::Acquired`]; the others get [`Claim::Existing`] with the winner's `Pending`
    /// record. Taking over an expired record increments its fencing token. A live `Pending`
    /// record holding `req.execution_id` is answered as `Acquired` (a retried claim).
    ///
    /// # Errors
    /// Store errors, and `CorruptRecord`/`IncompatibleRecord` for an unreadable record (which
    /// is left in place).
    fn try_claim<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        req: &'a ClaimRequest,
    ) -> impl Future<Output = Result<Claim>> + Send + 'a;

    /// Finishes the holder's claim with the encoded value `result`: the record becomes `Success`,
    /// kept for `ttl` from now (store clock). Fenced: applied only if the record is `Pending` and
    /// still carries `owner`; a write after the lease ended succeeds only while no one has taken
    /// over (and, on stores with native expiry, while the record still exists).
    ///
    /// Idempotent for its owner: when the record is already `Success` with exactly `result`,
    /// written by this execution id and fencing token (a retry whose first reply was lost), it
    /// returns that record unchanged (its times as first written) and writes nothing.
    ///
    /// # Errors
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) when the write was refused: another holder
    /// took over (another execution id or a newer fencing token), the record is gone, or this
    /// owner already finished it differently (with other bytes, or as `Failed`); store errors.
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        result: &'a [u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<Record>> + Send + 'a;

    /// Finishes the holder's claim with a stored error: the record becomes `Failed`, kept for
    /// `ttl` (the failure TTL) from now. Fenced, and idempotent for its owner, exactly as
    /// [`complete`](Self::complete): a record already `Failed` with exactly `error` by this
    /// execution id and fencing token is returned unchanged.
    ///
    /// # Errors
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) when the write was refused (as
    /// [`complete`](Self::complete)); store errors.
    fn fail<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        error: &'a RecordError,
        ttl: Duration,
    ) -> impl Future<Output = Result<Record>> + Send + 'a;

    /// Deletes the holder's `Pending` record (a retryable failure, a panic), so the next caller
    /// runs the function. Compare-and-delete on `owner`: a stale holder's release deletes
    /// nothing (scenario 13). Returns whether a record was deleted.
    ///
    /// Idempotent: releasing again succeeds, deletes nothing and answers `false`. A store that
    /// retries a release whose reply was lost answers as the lost reply would have: `true` when
    /// the retry finds no record (the lost attempt deleted it), `false` when another holder's
    /// record is there (it cannot tell "released, then claimed again" from "fenced out", and
    /// `false`, "this caller may have lost its lease", is the answer that never overstates what
    /// the caller held).
    ///
    /// # Errors
    /// Store errors.
    fn release<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
    ) -> impl Future<Output = Result<bool>> + Send + 'a;

    /// Extends the holder's lease to `lease` from now (store clock), iff the record is `Pending`
    /// and still carries `owner` (scenario 14). Returns the new lease deadline.
    ///
    /// Idempotent for its owner: renewing again (a retry whose first reply was lost) extends the
    /// lease again, to `lease` from the retry's now, never earlier than the first renewal's.
    ///
    /// The manager's background renewals poll this future on its own renewal threads, not on
    /// the caller's runtime: like every future of a store used from sync code
    /// ([`block_on`](crate::block_on)), it must not need the caller's executor (a tokio timer
    /// or socket of the caller's runtime). If it panics, the call's lease counts as lost
    /// ([`Current::is_lease_lost`](crate::Current::is_lease_lost)).
    ///
    /// # Errors
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) when another caller holds the key now, or
    /// the record is gone; store errors.
    fn renew<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<Timestamp>> + Send + 'a;

    /// Reads the record of `key`, with the store's time. Expired records may be returned (read
    /// their status with [`Observed::status`]) until they are purged or, on stores with native
    /// expiry, vanish.
    ///
    /// # Errors
    /// Store errors; `CorruptRecord`/`IncompatibleRecord`.
    fn get<'a>(
        &'a self,
        key: &'a IdempotencyKey,
    ) -> impl Future<Output = Result<Option<Observed>>> + Send + 'a;

    /// Deletes the record of `key` whatever its status or owner (an administrator's action; a
    /// corrupt record is deleted too). Returns whether a record was deleted.
    ///
    /// # Errors
    /// Store errors.
    fn delete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
    ) -> impl Future<Output = Result<bool>> + Send + 'a;

    /// Appends this store's namespace to `out`: what the store adds around a caller's
    /// idempotency key so that stores sharing one backend never share a record (a
    /// [`Prefixed`](crate::Prefixed) prefix, the Redis store's key prefix, the PostgreSQL
    /// store's table). The manager reads it once, when it is built, and hashes it into
    /// [`Current::derived_key`](crate::Current::derived_key), so that two namespaces running
    /// the same call never hand a downstream API the same idempotency key. The default appends
    /// nothing: a store with one namespace (the memory and file stores; two file stores in two
    /// directories are two namespaces only if wrapped in `Prefixed`). A wrapper around another
    /// store must forward this (`self.inner.namespace(out)`), or a `Prefixed` store beneath it
    /// loses its namespace in derived keys.
    fn namespace(&self, out: &mut String) {
        let _ = out;
    }

    /// A live finished record of `key` (`Success` or `Failed`, within its TTL) that this store
    /// can read at once, without I/O and without waiting on anything but a short in-process lock:
    /// exactly what [`try_claim`](Self::try_claim) would answer as [`Claim::Existing`] at this
    /// moment (a claim of a live finished record writes nothing). The manager asks this before
    /// it claims (unless the call is a cache bypass) and replays what it returns, so that a
    /// replay needs no claim request: no execution id, no boxed claim future.
    ///
    /// `None` means "claim to find out": no record, a `Pending` or expired record, or a store
    /// that cannot answer without I/O. Answering `None` is always correct; answering `Some` for
    /// a record a claim would not have returned as a live finished record is not. The default
    /// answers `None`. [`MemoryStorage`](crate::MemoryStorage) answers from its map and
    /// [`Prefixed`](crate::Prefixed) forwards to the store it wraps; a wrapper that changes what
    /// a claim answers (a fault injector) must not forward it.
    fn peek_finished(&self, key: &IdempotencyKey) -> Option<Observed> {
        let _ = key;
        None
    }

    /// Whether a live (not expired) record exists for `key`.
    ///
    /// # Errors
    /// Store errors; `CorruptRecord`/`IncompatibleRecord`.
    fn exists<'a>(
        &'a self,
        key: &'a IdempotencyKey,
    ) -> impl Future<Output = Result<bool>> + Send + 'a {
        async move {
            Ok(match self.get(key).await? {
                Some(o) => o.status() != RecordStatus::Expired,
                None => false,
            })
        }
    }
}
