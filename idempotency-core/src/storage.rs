//! The `Storage` trait every backend implements, and its object-safe twin `DynStorage`.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use uuid::Uuid;

use crate::error::Result;
use crate::key::{Fingerprint, IdempotencyKey};
use crate::record::{Owner, Record, RecordError, RecordStatus, Timestamp};

/// A boxed, `Send` future, as returned by [`DynStorage`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// One entry of a [`Storage::list`] page.
#[derive(Debug)]
pub enum Listed {
    /// A readable record (expired ones included until purged), with the store's time.
    Record(Observed),
    /// An entry that could not be read: corrupt bytes or a foreign format version.
    Unreadable {
        /// Where it lives in the store (a file path, a Redis key), for
        /// [`Storage::remove_unreadable`].
        location: String,
        /// Why it could not be read (`CorruptRecord` or `IncompatibleRecord`).
        error: crate::error::Error,
    },
}

/// A page of [`Storage::list`].
#[derive(Debug, Default)]
pub struct Page {
    /// The entries of this page, in no particular order.
    pub items: Vec<Listed>,
    /// The cursor of the next page, or `None` when this was the last one.
    pub cursor: Option<String>,
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

/// Shared claim logic for stores that read and write a record under one lock (memory, file):
/// given the current record, what the claim does.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // As `Claim`: never boxed on the claim path (issue 17).
pub enum ClaimDecision {
    /// Write this new `Pending` record and answer `Claim::Acquired`.
    Write(Record, Claim),
    /// Answer `Claim::Existing` (or `Acquired` for our own earlier claim) without writing.
    Keep(Claim),
}

/// Decides a claim of `key` against the `current` record at store time `now`: claim-if-absent-
/// or-expired (or finished, with `req.refresh`). A live `Pending` record holding this request's execution id is this caller's own
/// earlier claim (an ambiguous reply retried) and is answered as acquired.
pub fn decide_claim(
    key: &IdempotencyKey,
    current: Option<Record>,
    req: &ClaimRequest,
    now: Timestamp,
) -> ClaimDecision {
    let (token, takeover) = match current {
        None => (1, false),
        Some(rec) if !rec.is_expired_at(now) => {
            if rec.status == RecordStatus::Pending && rec.owner.execution_id == req.execution_id {
                let claim = Claim::Acquired {
                    owner: rec.owner,
                    lease_until: rec.expires_at,
                    takeover: false,
                };
                return ClaimDecision::Keep(claim);
            }
            if !(req.refresh && rec.status != RecordStatus::Pending) {
                return ClaimDecision::Keep(Claim::Existing(Observed { record: rec, now }));
            }
            (rec.owner.fencing_token.saturating_add(1), true)
        }
        Some(rec) => (rec.owner.fencing_token.saturating_add(1), true),
    };
    let owner = Owner {
        execution_id: req.execution_id,
        fencing_token: token,
    };
    let record = Record::pending(key.clone(), req.fingerprint, owner, now, req.lease);
    let claim = Claim::Acquired {
        owner,
        lease_until: record.expires_at,
        takeover,
    };
    ClaimDecision::Write(record, claim)
}

/// The terminal write a holder makes: `complete` (Success) or `fail` (Failed).
#[derive(Debug, Clone, Copy)]
pub enum Finish<'a> {
    /// Store the encoded value.
    Success(&'a [u8]),
    /// Store the error.
    Failed(&'a RecordError),
}

impl Finish<'_> {
    /// Whether `rec` is exactly what this finish by `owner` writes: finished with this status
    /// and these bytes by this execution id and fencing token (the finish was already applied).
    fn applied_in(&self, rec: &Record, owner: &Owner) -> bool {
        rec.owner == *owner
            && match *self {
                Finish::Success(bytes) => {
                    rec.status == RecordStatus::Success
                        && rec.result == bytes
                        && rec.error.is_none()
                }
                Finish::Failed(err) => {
                    rec.status == RecordStatus::Failed
                        && rec.result.is_empty()
                        && rec.error.as_ref() == Some(err)
                }
            }
    }
}

/// Applies a fenced finish to `current` at `now`: the record must exist and carry `owner`'s
/// execution id and fencing token, else `None` (the write is refused).
///
/// A finish that was already applied (the record is finished with this status and these bytes
/// by this same owner: a retry whose first reply was lost) returns the record unchanged, its
/// times included, so the retry is answered as the first attempt would have been (SEMANTICS.md
/// scenario 5). The caller need not write it again. Any other finished record is refused: a
/// stale holder (another execution id or fencing token) even with identical bytes, and this
/// owner with different bytes or the other status.
pub fn apply_finish(
    current: Option<Record>,
    owner: &Owner,
    finish: Finish<'_>,
    ttl: Duration,
    now: Timestamp,
) -> Option<Record> {
    let mut rec = current?;
    if finish.applied_in(&rec, owner) {
        return Some(rec);
    }
    if rec.owner != *owner || rec.status != RecordStatus::Pending {
        return None;
    }
    match finish {
        Finish::Success(bytes) => {
            rec.result = bytes.to_vec();
            rec.error = None;
            rec.finish(RecordStatus::Success, now, ttl);
        }
        Finish::Failed(err) => {
            rec.result = Vec::new();
            rec.error = Some(err.clone());
            rec.finish(RecordStatus::Failed, now, ttl);
        }
    }
    Some(rec)
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
/// Use [`DynStorage`] (implemented for every `Storage`) for dynamic dispatch. The conformance kit
/// in [`testing`](crate::testing) (feature `testing`) checks an implementation against the
/// scenarios of SEMANTICS.md.
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

    /// Removes records that are expired at the moment of removal, and nothing else: a record
    /// re-claimed between the scan and the removal survives (scenario 30). Returns how many
    /// were removed. Stores with native expiry (Redis) may return 0.
    ///
    /// # Errors
    /// Store errors.
    fn purge_expired(&self) -> impl Future<Output = Result<u64>> + Send + '_;

    /// Lists the store's entries a page at a time, for operators (the `idempotency` CLI):
    /// start with `cursor = None`, then pass the returned cursor until it is `None`. `limit`
    /// is a hint for the page size. Unreadable entries are listed as [`Listed::Unreadable`]
    /// rather than failing the page. Not atomic across pages: entries written meanwhile may or
    /// may not appear.
    ///
    /// # Errors
    /// Store errors; [`Error::Config`](crate::Error::Config) from stores that cannot list (the
    /// default).
    fn list<'a>(
        &'a self,
        _cursor: Option<&'a str>,
        _limit: usize,
    ) -> impl Future<Output = Result<Page>> + Send + 'a {
        async {
            Err(crate::error::Error::Config(
                "this store cannot list its records".into(),
            ))
        }
    }

    /// Removes an unreadable entry found by [`list`](Self::list), by its location. Returns
    /// whether something was removed. Readable records are never removed this way (use
    /// [`delete`](Self::delete)).
    ///
    /// # Errors
    /// Store errors; [`Error::Config`](crate::Error::Config) from stores that cannot list.
    fn remove_unreadable<'a>(
        &'a self,
        _location: &'a str,
    ) -> impl Future<Output = Result<bool>> + Send + 'a {
        async {
            Err(crate::error::Error::Config(
                "this store cannot list its records".into(),
            ))
        }
    }
}

/// The object-safe form of [`Storage`], implemented for every `Storage`; methods return boxed
/// futures. The manager holds its store as `Arc<dyn DynStorage>`.
#[allow(missing_docs)]
pub trait DynStorage: Send + Sync + Debug + 'static {
    fn try_claim<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        req: &'a ClaimRequest,
    ) -> BoxFuture<'a, Result<Claim>>;
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        result: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Record>>;
    fn fail<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        error: &'a RecordError,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Record>>;
    fn release<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
    ) -> BoxFuture<'a, Result<bool>>;
    fn renew<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Timestamp>>;
    fn get<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<Option<Observed>>>;
    fn delete<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<bool>>;
    fn exists<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<bool>>;
    fn purge_expired(&self) -> BoxFuture<'_, Result<u64>>;
    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> BoxFuture<'a, Result<Page>>;
    fn remove_unreadable<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<bool>>;
}

impl<S: Storage> DynStorage for S {
    fn try_claim<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        req: &'a ClaimRequest,
    ) -> BoxFuture<'a, Result<Claim>> {
        Box::pin(Storage::try_claim(self, key, req))
    }
    fn complete<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        result: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Record>> {
        Box::pin(Storage::complete(self, key, owner, result, ttl))
    }
    fn fail<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        error: &'a RecordError,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Record>> {
        Box::pin(Storage::fail(self, key, owner, error, ttl))
    }
    fn release<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Storage::release(self, key, owner))
    }
    fn renew<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        owner: &'a Owner,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Timestamp>> {
        Box::pin(Storage::renew(self, key, owner, lease))
    }
    fn get<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<Option<Observed>>> {
        Box::pin(Storage::get(self, key))
    }
    fn delete<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Storage::delete(self, key))
    }
    fn exists<'a>(&'a self, key: &'a IdempotencyKey) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Storage::exists(self, key))
    }
    fn purge_expired(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Storage::purge_expired(self))
    }
    fn list<'a>(&'a self, cursor: Option<&'a str>, limit: usize) -> BoxFuture<'a, Result<Page>> {
        Box::pin(Storage::list(self, cursor, limit))
    }
    fn remove_unreadable<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Storage::remove_unreadable(self, location))
    }
}
