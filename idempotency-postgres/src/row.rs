//! Between rows and records: the columns of a row as read ([`RawRow`]), the record they hold
//! (core's record format: the `body` column is the record's head from
//! [`Record::encode_head`], the typed columns the rest), and the conversions of keys, times and
//! tokens to and from their SQL types.

use std::time::Duration;

use idempotency_core::{
    hex, ClaimRequest, Error, Fingerprint, IdempotencyKey, Owner, Record, RecordColumns,
    RecordStatus, Result, Timestamp,
};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::sql::{STATUS_FAILED, STATUS_PENDING, STATUS_SUCCESS};

/// The longest TTL or lease kept, in ms (about 31 700 years): `now + MAX_MILLIS` stays far
/// inside `bigint`.
const MAX_MILLIS: u64 = 1_000_000_000_000_000;

/// A TTL or lease as a `bigint` of milliseconds, at least 1 and at most [`MAX_MILLIS`].
pub(crate) fn millis(d: Duration) -> i64 {
    let ms = u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MILLIS);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A time read from the database (milliseconds since the epoch); a negative one reads as the
/// epoch.
pub(crate) fn timestamp(ms: i64) -> Timestamp {
    Timestamp(u64::try_from(ms).unwrap_or(0))
}

/// An owner's fencing token as a `bigint`. Tokens past `i64::MAX` cannot be stored; such an
/// owner matches no row.
pub(crate) fn token_param(owner: &Owner) -> i64 {
    i64::try_from(owner.fencing_token).unwrap_or(-1)
}

/// The `key` column of `key`: its UTF-8 bytes.
pub(crate) fn key_bytes(key: &IdempotencyKey) -> &[u8] {
    key.as_str().as_bytes()
}

/// Where a row is, for `list` and `remove_unreadable`: its key in hex.
pub(crate) fn location_of(key: &[u8]) -> String {
    hex::encode(key)
}

/// The `key` column named by a location from [`location_of`].
pub(crate) fn key_at(location: &str) -> Option<Vec<u8>> {
    hex::decode(location)
}

pub(crate) fn status_code(s: RecordStatus) -> i16 {
    match s {
        RecordStatus::Success => STATUS_SUCCESS,
        RecordStatus::Failed => STATUS_FAILED,
        RecordStatus::Pending | RecordStatus::Expired => STATUS_PENDING,
    }
}

/// A record read for `key` must be that key's: anything else is corrupt, never answered.
pub(crate) fn check_key(record: &Record, key: &IdempotencyKey) -> Result<()> {
    if record.key != *key {
        return Err(Error::CorruptRecord {
            key: key.to_string(),
            reason: format!("the row holds the record of another key `{}`", record.key),
        });
    }
    Ok(())
}

/// The columns of one row, as read.
pub(crate) struct RawRow {
    pub(crate) key: Vec<u8>,
    pub(crate) status: i16,
    pub(crate) execution_id: Vec<u8>,
    pub(crate) fencing_token: i64,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) lease_until: Option<i64>,
    pub(crate) fingerprint: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

impl RawRow {
    pub(crate) fn from_row(row: &PgRow, with_key: bool) -> sqlx::Result<RawRow> {
        Ok(RawRow {
            key: if with_key {
                row.try_get("key")?
            } else {
                Vec::new()
            },
            status: row.try_get("status")?,
            execution_id: row.try_get("execution_id")?,
            fencing_token: row.try_get("fencing_token")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            lease_until: row.try_get("lease_until")?,
            fingerprint: row.try_get("fingerprint")?,
            body: row.try_get("body")?,
        })
    }

    /// The record: the `body` head and the typed columns, decoded by core
    /// ([`Record::from_columns`]), so an unreadable head is `CorruptRecord` and another format
    /// version `IncompatibleRecord`; a column out of its type's range, or a status column that
    /// disagrees with the head, is `CorruptRecord`. `location` names the row in errors.
    pub(crate) fn decode(&self, location: &dyn Fn() -> String) -> Result<Record> {
        let corrupt = |reason: &str| Error::CorruptRecord {
            key: location(),
            reason: reason.to_owned(),
        };
        let time = |v: i64| {
            u64::try_from(v)
                .map(Timestamp)
                .map_err(|_| corrupt("negative time"))
        };
        let columns = RecordColumns {
            created_at: time(self.created_at)?,
            expires_at: time(self.expires_at)?,
            owner: Owner {
                execution_id: uuid::Uuid::from_slice(&self.execution_id)
                    .map_err(|_| corrupt("an execution id is 16 bytes"))?,
                fencing_token: u64::try_from(self.fencing_token)
                    .map_err(|_| corrupt("negative fencing token"))?,
            },
            lease_until: self.lease_until.map(time).transpose()?,
            fingerprint: Fingerprint(
                self.fingerprint
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("a fingerprint is 32 bytes"))?,
            ),
        };
        let record = Record::from_columns(&self.body, &columns, location)?;
        if status_code(record.status) != self.status {
            return Err(corrupt("the status column disagrees with the record"));
        }
        Ok(record)
    }
}

impl RawRow {
    /// The record of a row read with its key (a listing), which must be that key's record;
    /// `location` names the row in errors.
    pub(crate) fn decode_keyed(&self, location: &str) -> Result<Record> {
        let record = self.decode(&|| location.to_owned())?;
        if key_bytes(&record.key) != self.key.as_slice() {
            return Err(Error::CorruptRecord {
                key: location.to_owned(),
                reason: format!("the row holds the record of another key `{}`", record.key),
            });
        }
        Ok(record)
    }
}

/// What a row of the claim statement says.
#[allow(clippy::large_enum_variant)] // As core's `Claim`: a record with its key inline.
pub(crate) enum ClaimRow {
    /// This claim wrote the row: its fencing token and lease deadline, and the database's time.
    Claimed {
        token: u64,
        lease_until: Timestamp,
        now: Timestamp,
    },
    /// A live record that this claim may not replace, with the database's time.
    Existing { record: Record, now: Timestamp },
    /// The statement's snapshot showed a claimable row, yet its conflict check wrote nothing:
    /// a newer version was committed meanwhile. Run the statement again.
    Stale,
}

impl ClaimRow {
    /// Reads a row of the claim statement for `key` and `req` (decoding the existing record,
    /// checked to be `key`'s).
    ///
    /// # Errors
    /// `Storage` for a row without the statement's columns; `CorruptRecord` (a negative
    /// token, another key's record) and `IncompatibleRecord` for a row that does not decode.
    pub(crate) fn read(row: &PgRow, key: &IdempotencyKey, req: &ClaimRequest) -> Result<ClaimRow> {
        let column = |e| Error::storage("claim", e);
        let now = timestamp(row.try_get("now").map_err(column)?);
        if row.try_get::<bool, _>("claimed").map_err(column)? {
            let token: i64 = row.try_get("fencing_token").map_err(column)?;
            let until: i64 = row.try_get("expires_at").map_err(column)?;
            let token = u64::try_from(token).map_err(|_| Error::CorruptRecord {
                key: key.to_string(),
                reason: format!("the row's fencing token {token} is negative"),
            })?;
            return Ok(ClaimRow::Claimed {
                token,
                lease_until: timestamp(until),
                now,
            });
        }
        let raw = RawRow::from_row(row, false).map_err(column)?;
        let record = raw.decode(&|| key.to_string())?;
        check_key(&record, key)?;
        if record.is_expired_at(now) || (req.refresh && record.status != RecordStatus::Pending) {
            return Ok(ClaimRow::Stale);
        }
        Ok(ClaimRow::Existing { record, now })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_plus_columns_is_the_record() {
        let key = IdempotencyKey::derive("op", 1, &"x").unwrap().key;
        let owner = Owner {
            execution_id: uuid::Uuid::new_v4(),
            fencing_token: 7,
        };
        let mut rec = Record::pending(
            key.clone(),
            Fingerprint([3; 32]),
            owner,
            Timestamp(1000),
            Duration::from_secs(1),
        );
        rec.finish(
            RecordStatus::Success,
            Timestamp(1500),
            Duration::from_secs(9),
        );
        rec.result = vec![1, 2, 3];
        let raw = RawRow {
            key: Vec::new(),
            status: STATUS_SUCCESS,
            execution_id: owner.execution_id.as_bytes().to_vec(),
            fencing_token: 7,
            created_at: 1000,
            expires_at: 10_500,
            lease_until: None,
            fingerprint: vec![3; 32],
            body: Record::encode_head(&key, RecordStatus::Success, &[1, 2, 3], None).unwrap(),
        };
        assert_eq!(raw.decode(&|| "l".into()).unwrap(), rec);
        let corrupt = |raw: &RawRow| raw.decode(&|| "l".into()).unwrap_err().kind();
        let mut bad = RawRow { ..raw };
        bad.status = STATUS_FAILED;
        assert_eq!(corrupt(&bad), idempotency_core::ErrorKind::CorruptRecord);
        bad.status = STATUS_SUCCESS;
        bad.fencing_token = -1;
        assert_eq!(corrupt(&bad), idempotency_core::ErrorKind::CorruptRecord);
    }

    #[test]
    fn locations_round_trip() {
        let k = b"op:\x00'\"\xff";
        assert_eq!(key_at(&location_of(k)).unwrap(), k.to_vec());
        assert!(key_at("abc").is_none());
        assert!(key_at("zz").is_none());
    }
}
