//! A record split in two, for a store that keeps part of it in typed columns (the PostgreSQL
//! store): the head as record-format bytes, the times, owner and fingerprint as values
//! ([`RecordColumns`]). The head followed by the encoded columns is exactly
//! [`Record::encode`], so the split depends on no field order outside this module.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::key::{Fingerprint, IdempotencyKey};
use crate::record::{Owner, Record, RecordError, RecordStatus, Timestamp, MAGIC};

/// The fields of a [`Record`] after its head, in the order the record format writes them:
/// what a store may keep in typed columns (and compare or compute in its own language, such as
/// an expiry on the database's clock) next to the head from [`Record::encode_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecordColumns {
    /// [`Record::created_at`].
    pub created_at: Timestamp,
    /// [`Record::expires_at`].
    pub expires_at: Timestamp,
    /// [`Record::owner`].
    pub owner: Owner,
    /// [`Record::lease_until`].
    pub lease_until: Option<Timestamp>,
    /// [`Record::fingerprint`].
    pub fingerprint: Fingerprint,
}

/// The head's fields, borrowed, in the record format's order.
#[derive(Serialize)]
struct Head<'a> {
    key: &'a IdempotencyKey,
    status: RecordStatus,
    result: &'a [u8],
    error: Option<&'a RecordError>,
}

/// The head's fields, as read back.
type OwnedHead = (IdempotencyKey, RecordStatus, Vec<u8>, Option<RecordError>);

impl Record {
    /// The head of a record with these fields: everything [`encode`](Self::encode) writes
    /// before the [`RecordColumns`] (the header `IDR` + [`FORMAT_VERSION`](Self::FORMAT_VERSION),
    /// then the key, status, result and error), for a store that keeps the columns apart.
    ///
    /// # Errors
    /// [`Error::Encode`] if postcard fails (it does not for these types in practice).
    pub fn encode_head(
        key: &IdempotencyKey,
        status: RecordStatus,
        result: &[u8],
        error: Option<&RecordError>,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16 + key.as_str().len() + result.len());
        out.extend_from_slice(MAGIC);
        out.push(Self::FORMAT_VERSION);
        let head = Head {
            key,
            status,
            result,
            error,
        };
        postcard::to_extend(&head, out).map_err(|e| Error::Encode {
            what: "a record",
            message: e.to_string(),
        })
    }

    /// The record whose head (from [`encode_head`](Self::encode_head)) is `head` and whose
    /// other fields are `columns`, decoded with the rules of [`decode`](Self::decode).
    /// `location` names where the head came from, for the error, and is built only then.
    ///
    /// The head must be a whole head on its own: one that is empty, short, foreign or of
    /// another format version is reported as [`decode`](Self::decode) reports those bytes, and
    /// one that does not end exactly where the columns begin is corrupt (never decoded across
    /// the boundary).
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] for a head that is not a record head, does not decode or has
    /// trailing bytes; [`Error::IncompatibleRecord`] for another format version.
    pub fn from_columns(
        head: &[u8],
        columns: &RecordColumns,
        location: impl Fn() -> String,
    ) -> Result<Record> {
        let corrupt = |reason: String| Error::CorruptRecord {
            key: location(),
            reason,
        };
        if head.len() < 4 || &head[..3] != MAGIC || head[3] != Self::FORMAT_VERSION {
            return Err(Record::decode_at(head, &location)
                .err()
                .unwrap_or_else(|| corrupt("not a record head".to_owned())));
        }
        match postcard::take_from_bytes::<OwnedHead>(&head[4..]) {
            Ok((_, [])) => {}
            Ok((_, rest)) => {
                return Err(corrupt(format!(
                    "{} trailing bytes after the record head",
                    rest.len()
                )))
            }
            Err(e) => return Err(corrupt(format!("undecodable record head: {e}"))),
        }
        let bytes = postcard::to_extend(columns, head.to_vec()).map_err(|e| Error::Encode {
            what: "a record",
            message: e.to_string(),
        })?;
        Record::decode_at(&bytes, location)
    }

    /// This record's [`RecordColumns`].
    pub fn columns(&self) -> RecordColumns {
        RecordColumns {
            created_at: self.created_at,
            expires_at: self.expires_at,
            owner: self.owner,
            lease_until: self.lease_until,
            fingerprint: self.fingerprint,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ErrorKind;

    fn finished(status: RecordStatus) -> Record {
        let key = IdempotencyKey::derive("op", 1, &"x").unwrap().key;
        let owner = Owner {
            execution_id: uuid::Uuid::new_v4(),
            fencing_token: 7,
        };
        let mut rec = Record::pending(
            key,
            Fingerprint([3; 32]),
            owner,
            Timestamp(1000),
            Duration::from_secs(1),
        );
        rec.finish(status, Timestamp(1500), Duration::from_secs(9));
        match status {
            RecordStatus::Failed => rec.error = Some(RecordError::Encoded(vec![9, 8])),
            _ => rec.result = vec![1, 2, 3],
        }
        rec
    }

    fn head_of(rec: &Record) -> Vec<u8> {
        Record::encode_head(&rec.key, rec.status, &rec.result, rec.error.as_ref()).unwrap()
    }

    #[test]
    fn head_then_columns_is_the_record_encoding() {
        for status in [
            RecordStatus::Pending,
            RecordStatus::Success,
            RecordStatus::Failed,
        ] {
            let mut rec = finished(status);
            if status == RecordStatus::Pending {
                rec = Record::pending(
                    rec.key,
                    rec.fingerprint,
                    rec.owner,
                    Timestamp(5),
                    Duration::from_secs(1),
                );
            }
            let head = head_of(&rec);
            let mut whole = head.clone();
            whole.extend(postcard::to_stdvec(&rec.columns()).unwrap());
            assert_eq!(whole, rec.encode().unwrap(), "{status:?}");
            let back = Record::from_columns(&head, &rec.columns(), || "l".into()).unwrap();
            assert_eq!(back, rec);
        }
    }

    #[test]
    fn a_head_that_is_not_a_whole_head_is_refused() {
        let rec = finished(RecordStatus::Success);
        let cols = rec.columns();
        let head = head_of(&rec);
        let kind = |h: &[u8]| {
            Record::from_columns(h, &cols, || "l".into())
                .unwrap_err()
                .kind()
        };
        assert_eq!(kind(b""), ErrorKind::CorruptRecord);
        assert_eq!(kind(b"IDR"), ErrorKind::CorruptRecord);
        assert_eq!(kind(b"XYZ\x02rest"), ErrorKind::CorruptRecord);
        assert_eq!(kind(b"IDR\x63rest"), ErrorKind::IncompatibleRecord);
        assert_eq!(kind(&head[..head.len() - 1]), ErrorKind::CorruptRecord);
        let mut longer = head.clone();
        longer.push(0);
        assert_eq!(kind(&longer), ErrorKind::CorruptRecord);
    }
}
