//! The claim and finish rules as pure functions, for stores that read a record, decide and
//! write it back under one lock (the memory and file stores): [`decide_claim`] and
//! [`apply_finish`]. A store whose transitions are single statements or scripts (PostgreSQL,
//! Redis) states the same rules in its own language.

use std::time::Duration;

use super::{Claim, ClaimRequest, Observed};
use crate::key::IdempotencyKey;
use crate::record::{Owner, Record, RecordError, RecordStatus, Timestamp};

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
/// or-expired (or finished, with `req.refresh`). A live `Pending` record holding this request's
/// execution id is this caller's own earlier claim (an ambiguous reply retried) and is answered
/// as acquired.
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
