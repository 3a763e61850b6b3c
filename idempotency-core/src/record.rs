//! Records, their status and timestamps. The clocks live in [`time`](crate::time) and are
//! re-exported here, so `record::Clock` paths keep working.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::key::{Fingerprint, IdempotencyKey};
pub(crate) use crate::time::{Clock, SystemClock};

/// A point in time on the store's clock: milliseconds since the Unix epoch (wall time).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the far future.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// How long from `earlier` to `self`; zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// As RFC 3339 UTC with milliseconds: `2023-11-14T22:13:20.123Z` (proleptic Gregorian
    /// calendar; civil-from-days after Howard Hinnant's algorithm).
    pub fn to_rfc3339(self) -> String {
        let ms = self.0;
        let secs = ms / 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
            ms % 1000
        )
    }
}

/// Prints RFC 3339 UTC with milliseconds (see [`Timestamp::to_rfc3339`]).
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

/// The lifecycle state of a record (the specification's statuses; Powertools calls them
/// `INPROGRESS`, `COMPLETED`, `EXPIRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordStatus {
    /// Claimed; the function is running (or its holder crashed and the lease has not ended).
    Pending,
    /// Finished with a stored value; replayed until `expires_at`.
    Success,
    /// Finished with a stored error (or a "result not retained" marker); replayed until
    /// `expires_at` (the failure TTL).
    Failed,
    /// Past `expires_at` (for `Pending`: past the lease). Never stored: this is how
    /// [`Record::status_at`] reads a record whose time is up; the next claim replaces it.
    Expired,
}

impl fmt::Display for RecordStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordStatus::Pending => "pending",
            RecordStatus::Success => "success",
            RecordStatus::Failed => "failed",
            RecordStatus::Expired => "expired",
        })
    }
}

/// What a `Failed` record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordError {
    /// The function's own error value, CBOR-encoded (record format version 2); replays decode
    /// and return it.
    Encoded(Vec<u8>),
    /// The function ran but its result could not be stored (too large, its `Serialize` failed,
    /// or it would not replay exactly); replays get [`Error::ResultNotRetained`] with this
    /// reason.
    NotRetained(String),
}

/// The execution id and fencing token that identify one holder of a key. Every write after a
/// claim is conditional on both still matching the record (fencing, after Kleppmann).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// A fresh random (v4) UUID per attempt, chosen by the caller before the claim is sent, so
    /// an ambiguous claim reply can be resolved by reading it back (scenario 5).
    pub execution_id: Uuid,
    /// 1 for the first claim of a key, +1 for each takeover of an expired record.
    pub fencing_token: u64,
}

/// What a store holds per idempotency key.
///
/// Encoded on disk and in Redis as the 4-byte header `IDR` + [`Record::FORMAT_VERSION`], then
/// the postcard encoding of this struct; [`Record::decode`] refuses other versions with
/// [`Error::IncompatibleRecord`] so a newer writer's records are never misread. The stored value
/// inside ([`result`](Self::result), [`RecordError::Encoded`]) is CBOR; see
/// [`FORMAT_VERSION`](Self::FORMAT_VERSION).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The idempotency key.
    pub key: IdempotencyKey,
    /// The stored status: `Pending`, `Success` or `Failed` (never `Expired`; see
    /// [`status_at`](Self::status_at)).
    pub status: RecordStatus,
    /// For `Success`: the CBOR encoding (RFC 8949) of the function's value. Empty otherwise.
    pub result: Vec<u8>,
    /// For `Failed`: the stored error.
    pub error: Option<RecordError>,
    /// When the current holder claimed the key (store clock).
    pub created_at: Timestamp,
    /// When the record stops counting: for `Pending` the lease deadline, for `Success` and
    /// `Failed` the completion time plus the TTL (retention counts from completion).
    pub expires_at: Timestamp,
    /// The holder: execution id and fencing token.
    pub owner: Owner,
    /// For `Pending`: the lease deadline (equal to `expires_at`). `None` once finished.
    pub lease_until: Option<Timestamp>,
    /// The fingerprint of the inputs of the call that claimed the key.
    pub fingerprint: Fingerprint,
}

pub(crate) const MAGIC: &[u8; 3] = b"IDR";

impl Record {
    /// The record format version written by this build, and the only one it reads.
    ///
    /// - `2`: stored values (results and errors) are CBOR (RFC 8949), self-describing with
    ///   named struct fields, so every serde shape replays.
    /// - `1`: stored values were postcard, which cannot replay internally tagged or untagged
    ///   enums, flattened structs or `skip_serializing_if` fields. The record layout around the
    ///   value is unchanged, so the version byte is all that tells the two apart: this build reads
    ///   a version-1 record as [`Error::IncompatibleRecord`] (fail closed, nothing re-runs; it
    ///   expires with its TTL, or an explicit delete removes it) and never decodes its postcard
    ///   value as CBOR.
    pub const FORMAT_VERSION: u8 = 2;

    /// A new `Pending` record for `owner`, claimed at `now` with a lease of `lease`.
    pub fn pending(
        key: IdempotencyKey,
        fingerprint: Fingerprint,
        owner: Owner,
        now: Timestamp,
        lease: Duration,
    ) -> Record {
        let until = now.saturating_add(lease);
        Record {
            key,
            status: RecordStatus::Pending,
            result: Vec::new(),
            error: None,
            created_at: now,
            expires_at: until,
            owner,
            lease_until: Some(until),
            fingerprint,
        }
    }

    /// The status as read at `now`: the stored status, or `Expired` once `now >= expires_at`.
    pub fn status_at(&self, now: Timestamp) -> RecordStatus {
        if self.is_expired_at(now) {
            RecordStatus::Expired
        } else {
            self.status
        }
    }

    /// Whether the record's time is up at `now` (`now >= expires_at`).
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Whether the record's time is up by the system clock.
    pub fn is_expired(&self) -> bool {
        self.is_expired_at(SystemClock.now())
    }

    /// Time left before the record expires, by the system clock (zero once expired).
    pub fn time_to_live(&self) -> Duration {
        self.time_to_live_at(SystemClock.now())
    }

    /// Time left before the record expires, at `now` (zero once expired).
    pub fn time_to_live_at(&self, now: Timestamp) -> Duration {
        self.expires_at.saturating_since(now)
    }

    /// Marks the record finished with `status` at `now`, kept for `ttl` from now.
    pub fn finish(&mut self, status: RecordStatus, now: Timestamp, ttl: Duration) {
        self.status = status;
        self.lease_until = None;
        self.expires_at = now.saturating_add(ttl);
    }

    /// Encodes the record: header then postcard.
    ///
    /// # Errors
    /// [`Error::Encode`] if postcard fails (it does not for this type in practice).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(96 + self.result.len());
        out.extend_from_slice(MAGIC);
        out.push(Self::FORMAT_VERSION);
        postcard::to_io(self, &mut out).map_err(|e| Error::Encode {
            what: "a record",
            message: e.to_string(),
        })?;
        Ok(out)
    }

    /// Decodes a record written by [`encode`](Self::encode). `location` names where the bytes
    /// came from, for the error.
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] for bytes that are empty, truncated, not a record or do not
    /// decode; [`Error::IncompatibleRecord`] for another format version.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Record> {
        Self::decode_at(bytes, || location.to_owned())
    }

    /// As [`decode`](Self::decode), building the location only when there is an error.
    ///
    /// # Errors
    /// As [`decode`](Self::decode).
    pub fn decode_at(bytes: &[u8], location: impl Fn() -> String) -> Result<Record> {
        if bytes.len() < 4 || &bytes[..3] != MAGIC {
            return Err(Error::CorruptRecord {
                key: location(),
                reason: if bytes.is_empty() {
                    "empty record".to_owned()
                } else {
                    "missing the `IDR` record header".to_owned()
                },
            });
        }
        if bytes[3] != Self::FORMAT_VERSION {
            return Err(Error::IncompatibleRecord {
                key: location(),
                reason: format!(
                    "record format version {} (this build reads {})",
                    bytes[3],
                    Self::FORMAT_VERSION
                ),
            });
        }
        let (record, rest): (Record, &[u8]) =
            postcard::take_from_bytes(&bytes[4..]).map_err(|e| Error::CorruptRecord {
                key: location(),
                reason: format!("undecodable record: {e}"),
            })?;
        if !rest.is_empty() {
            return Err(Error::CorruptRecord {
                key: location(),
                reason: format!("{} trailing bytes after the record", rest.len()),
            });
        }
        if record.status == RecordStatus::Expired {
            return Err(Error::CorruptRecord {
                key: location(),
                reason: "a stored record cannot have status `Expired`".to_owned(),
            });
        }
        Ok(record)
    }
}
