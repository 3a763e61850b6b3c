//! Building and reading stored values (the layout is in [`layout`](crate::layout)): the Rust
//! side of the format, through the named fields only.
//!
//! The body is this crate's own encoding of the record's variable part, postcard of
//! `(key, result, error)`; the record is assembled from the meta fields and the body by field
//! name, so nothing here depends on the field order of core's `Record` or of its encoding.

use idempotency_core::{
    Error, Fingerprint, IdempotencyKey, Owner, Record, RecordError, RecordStatus, Result, Timestamp,
};
use uuid::Uuid;

use crate::layout::{
    self, Field, CREATED, DIGITS, FINGERPRINT, LEASE, MAGIC, META_LEN, OWNER, RETENTION, STATUS,
    TOKEN, UNTIL,
};

/// `n` as the fixed-width decimal digits of the layout (saturating at all nines).
pub(crate) fn n16(n: u64) -> [u8; DIGITS] {
    let mut n = n.min(9_999_999_999_999_999);
    let mut out = [b'0'; DIGITS];
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// The fixed-width decimal digits `b` as a number (`None` unless exactly 16 digits).
pub(crate) fn parse16(b: &[u8]) -> Option<u64> {
    if b.len() != DIGITS || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The status byte of `status` (`Expired` is never stored; it reads as pending).
pub(crate) fn status_byte(status: RecordStatus) -> u8 {
    match status {
        RecordStatus::Success => layout::SUCCESS,
        RecordStatus::Failed => layout::FAILED,
        RecordStatus::Pending | RecordStatus::Expired => layout::PENDING,
    }
}

/// The execution id followed by the fencing token: the fenced scripts' compare-and-set operand
/// (the `OWNER_TOKEN` span).
pub(crate) fn owner_token(owner: &Owner) -> Vec<u8> {
    let mut out = Vec::with_capacity(layout::OWNER_TOKEN.len);
    out.extend_from_slice(owner.execution_id.as_bytes());
    out.extend_from_slice(&n16(owner.fencing_token));
    out
}

/// The body: postcard of (key, result, error).
pub(crate) fn body(
    key: &IdempotencyKey,
    result: &[u8],
    error: Option<&RecordError>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(8 + key.as_str().len() + result.len());
    write_body(&mut out, key, result, error)?;
    Ok(out)
}

/// Appends the body: postcard of the tuple `(key, result, error)`, written field by field as
/// postcard writes it (a string and a byte sequence are a varint length and the bytes; an
/// `Option` is a `0` or a `1` and the value), with postcard itself only for a stored error.
/// The same bytes as `postcard::to_extend(&(key, result, error))`, a test checks, in a
/// fraction of the time (this runs on every claim).
fn write_body(
    out: &mut Vec<u8>,
    key: &IdempotencyKey,
    result: &[u8],
    error: Option<&RecordError>,
) -> Result<()> {
    write_len_prefixed(out, key.as_str().as_bytes());
    write_len_prefixed(out, result);
    match error {
        None => out.push(0),
        Some(error) => {
            out.push(1);
            let v = postcard::to_extend(error, std::mem::take(out)).map_err(|e| Error::Encode {
                what: "a Redis record",
                message: e.to_string(),
            })?;
            *out = v;
        }
    }
    Ok(())
}

/// `bytes` as postcard writes a string or a byte sequence: the length as a varint (LEB128),
/// then the bytes.
fn write_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut n = bytes.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(bytes);
}

/// The body as read back, borrowed from the value: (key, result, error).
type Body<'a> = (&'a str, &'a [u8], Option<RecordError>);

/// The value the claim fast path writes on an absent key: pending, token 1, `CREATED` and
/// `UNTIL` 0 (resolved from the key's expiry, see [`layout`](crate::layout)).
pub(crate) fn fast_pending(
    key: &IdempotencyKey,
    execution_id: &Uuid,
    fp: &Fingerprint,
    lease_ms: u64,
    retention_ms: u64,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(META_LEN + 8 + key.as_str().len());
    out.resize(META_LEN, 0);
    put(&mut out, MAGIC, &layout::magic());
    put(&mut out, STATUS, &[layout::PENDING]);
    put(&mut out, OWNER, execution_id.as_bytes());
    put(&mut out, TOKEN, &n16(1));
    put(&mut out, CREATED, &n16(0));
    put(&mut out, UNTIL, &n16(0));
    put(&mut out, LEASE, &n16(lease_ms));
    put(&mut out, RETENTION, &n16(retention_ms));
    put(&mut out, FINGERPRINT, &fp.0);
    write_body(&mut out, key, &[], None)?;
    Ok(out)
}

fn put(value: &mut [u8], f: Field, bytes: &[u8]) {
    value[f.range()].copy_from_slice(bytes);
}

/// Whether `value` starts with this layout's magic.
pub(crate) fn is_ours(value: &[u8]) -> bool {
    value.get(MAGIC.range()) == Some(&layout::magic()[..])
}

/// The stored status byte of a value in this layout.
pub(crate) fn stored_status(value: &[u8]) -> Option<u8> {
    if is_ours(value) {
        value.get(STATUS.start).copied()
    } else {
        None
    }
}

/// Reads a stored value as the record of `key`. `times` are its `CREATED` and `UNTIL` as a
/// script resolved them (needed for a fast-path value, whose fields hold 0); `location` names
/// the value for errors.
///
/// # Errors
/// [`Error::CorruptRecord`] for a value of this layout that does not read (bad numbers or
/// status, an undecodable body, another key's record) and for any value that is not in this
/// layout (a raw `Record::encode`, garbage); [`Error::IncompatibleRecord`] for a value written
/// in another format version or in the previous layout.
pub(crate) fn decode(
    key: &IdempotencyKey,
    value: &[u8],
    times: Option<(u64, u64)>,
    location: &dyn Fn() -> String,
) -> Result<Record> {
    let (meta, body) = decode_meta(value, times, location)?;
    // The body borrowed: the key compared in place, the result copied once.
    let (stored, result, error): Body<'_> = decode_body(body, location)?;
    if stored != key.as_str() {
        // Copied or restored under another key: never this call's record.
        return Err(corrupt(
            location,
            format!("the value holds the record of another key (`{stored}`)"),
        ));
    }
    Ok(meta.record(key.clone(), result.to_vec(), error))
}

/// As [`decode`], whatever key the value holds (listing).
pub(crate) fn decode_any(
    value: &[u8],
    times: Option<(u64, u64)>,
    location: &dyn Fn() -> String,
) -> Result<Record> {
    let (meta, body) = decode_meta(value, times, location)?;
    let (key, result, error): (IdempotencyKey, &[u8], Option<RecordError>) =
        decode_body(body, location)?;
    Ok(meta.record(key, result.to_vec(), error))
}

/// The fixed-width part of a value, read.
struct Meta {
    status: RecordStatus,
    token: u64,
    created: u64,
    until: u64,
    execution_id: Uuid,
    fingerprint: [u8; 32],
}

impl Meta {
    fn record(self, key: IdempotencyKey, result: Vec<u8>, error: Option<RecordError>) -> Record {
        Record {
            key,
            status: self.status,
            result,
            error,
            created_at: Timestamp(self.created),
            expires_at: Timestamp(self.until),
            owner: Owner {
                execution_id: self.execution_id,
                fencing_token: self.token,
            },
            lease_until: (self.status == RecordStatus::Pending).then_some(Timestamp(self.until)),
            fingerprint: Fingerprint(self.fingerprint),
        }
    }
}

/// Reads the fixed-width part of `value` and returns it with the body (the bytes after it).
fn decode_meta<'a>(
    value: &'a [u8],
    times: Option<(u64, u64)>,
    location: &dyn Fn() -> String,
) -> Result<(Meta, &'a [u8])> {
    if !is_ours(value) {
        return Err(foreign(value, location));
    }
    if value.len() < META_LEN {
        return Err(corrupt(
            location,
            "a value shorter than its fixed part".into(),
        ));
    }
    let number = |f: Field| {
        parse16(&value[f.range()]).ok_or_else(|| corrupt(location, "undecodable numbers".into()))
    };
    let token = number(TOKEN)?;
    let (created, until) = match times {
        Some(t) => t,
        None => (number(CREATED)?, number(UNTIL)?),
    };
    if until == 0 {
        return Err(corrupt(location, "unresolved times".into()));
    }
    let status = match value[STATUS.start] {
        layout::PENDING => RecordStatus::Pending,
        layout::SUCCESS => RecordStatus::Success,
        layout::FAILED => RecordStatus::Failed,
        other => return Err(corrupt(location, format!("unknown status byte {other}"))),
    };
    let execution_id = Uuid::from_slice(&value[OWNER.range()])
        .map_err(|_| corrupt(location, "undecodable execution id".into()))?;
    let mut fingerprint = [0; 32];
    fingerprint.copy_from_slice(&value[FINGERPRINT.range()]);
    let meta = Meta {
        status,
        token,
        created,
        until,
        execution_id,
        fingerprint,
    };
    Ok((meta, &value[META_LEN..]))
}

/// Reads a body (postcard of `(key, result, error)`, see [`write_body`]) as `T`, refusing
/// trailing bytes.
fn decode_body<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
    location: &dyn Fn() -> String,
) -> Result<T> {
    let (parts, rest): (T, &[u8]) = postcard::take_from_bytes(body)
        .map_err(|e| corrupt(location, format!("undecodable record: {e}")))?;
    if !rest.is_empty() {
        return Err(corrupt(
            location,
            format!("{} trailing bytes after the record", rest.len()),
        ));
    }
    Ok(parts)
}

fn corrupt(location: &dyn Fn() -> String, reason: String) -> Error {
    Error::CorruptRecord {
        key: location(),
        reason,
    }
}

/// The error for a value that is not in this layout: the previous layout or another format
/// version is incompatible; anything else (garbage, a raw `Record::encode`) is corrupt.
fn foreign(value: &[u8], location: &dyn Fn() -> String) -> Error {
    let magic = layout::magic();
    if value.len() >= MAGIC.len && value[..3] == magic[..3] {
        if value[3] != Record::FORMAT_VERSION {
            // Core's reading of the version byte (its message names both versions).
            return match Record::decode_at(value, location) {
                Err(e) => e,
                Ok(_) => corrupt(location, "not a record of this store's layout".into()),
            };
        }
        if value[4] == layout::OLD_MARKER {
            return Error::IncompatibleRecord {
                key: location(),
                reason: "a Redis value in the previous layout (`r`; this build writes `s`)".into(),
            };
        }
    }
    match Record::decode_at(value, location) {
        Err(e) => e,
        Ok(_) => corrupt(location, "not a record of this store's layout".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> Record {
        let key = IdempotencyKey::derive("redis::value", 1, &"x").unwrap().key;
        let owner = Owner {
            execution_id: Uuid::new_v4(),
            fencing_token: 300,
        };
        Record::pending(
            key,
            Fingerprint([7; 32]),
            owner,
            Timestamp(1_700_000_000_123),
            Duration::from_millis(300),
        )
    }

    #[test]
    fn the_body_is_postcard_of_key_result_and_error() {
        #[derive(serde::Serialize)]
        struct Postcard<'a>(&'a IdempotencyKey, &'a [u8], Option<&'a RecordError>);
        let short = sample().key;
        // A key whose length takes a two-byte varint.
        let long = IdempotencyKey::derive(&"o".repeat(140), 1, &"x")
            .unwrap()
            .key;
        assert!(long.as_str().len() >= 128);
        let errors = [
            RecordError::Encoded(vec![1, 2, 3]),
            RecordError::NotRetained("too large".into()),
        ];
        // Lengths across the varint's one-, two- and three-byte forms.
        for key in [&short, &long] {
            for len in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
                let result = vec![0xa5_u8; len];
                for error in [None, Some(&errors[0]), Some(&errors[1])] {
                    let ours = body(key, &result, error).unwrap();
                    let theirs = postcard::to_stdvec(&Postcard(key, &result, error)).unwrap();
                    assert_eq!(ours, theirs, "length {len}, error {error:?}");
                    let (k, r, e): Body<'_> = decode_body(&ours, &|| "t".into()).unwrap();
                    assert_eq!((k, r, e.as_ref()), (key.as_str(), &result[..], error));
                }
            }
        }
        // The bytes of one body, as every build so far wrote them.
        let key = IdempotencyKey::parse("a::f:0123456789abcdef0123456789abcdef").unwrap();
        let mut golden = vec![37];
        golden.extend_from_slice(key.as_str().as_bytes());
        golden.extend_from_slice(&[2, 7, 9, 0]);
        assert_eq!(body(&key, &[7, 9], None).unwrap(), golden);
    }

    #[test]
    fn a_body_that_does_not_read_is_corrupt_never_another_record() {
        let r = sample();
        let location = || "loc".to_owned();
        let good = value_of(&r);
        // Another key's record, a key that is not UTF-8, a cut body, a byte too many.
        let other = IdempotencyKey::derive("redis::value", 1, &"y").unwrap().key;
        let mut theirs = good[..META_LEN].to_vec();
        theirs.extend(body(&other, &[], None).unwrap());
        let mut not_utf8 = good.clone();
        not_utf8[META_LEN + 1] = 0xff;
        let cut = good[..good.len() - 1].to_vec();
        let mut longer = good.clone();
        longer.push(0);
        for (what, v) in [
            ("another key", theirs),
            ("not UTF-8", not_utf8),
            ("cut", cut),
            ("trailing", longer),
        ] {
            let e = decode(&r.key, &v, None, &location).unwrap_err();
            assert!(matches!(e, Error::CorruptRecord { .. }), "{what}: {e:?}");
        }
        assert_eq!(decode(&r.key, &good, None, &location).unwrap(), r);
    }

    /// The value the scripts write for `r` (explicit times), built field by field.
    fn value_of(r: &Record) -> Vec<u8> {
        let mut v = vec![0; META_LEN];
        put(&mut v, MAGIC, &layout::magic());
        put(&mut v, STATUS, &[status_byte(r.status)]);
        put(&mut v, layout::OWNER_TOKEN, &owner_token(&r.owner));
        put(&mut v, CREATED, &n16(r.created_at.0));
        put(&mut v, UNTIL, &n16(r.expires_at.0));
        put(&mut v, LEASE, &n16(300));
        put(&mut v, RETENTION, &n16(3_600_000));
        put(&mut v, FINGERPRINT, &r.fingerprint.0);
        v.extend(body(&r.key, &r.result, r.error.as_ref()).unwrap());
        v
    }

    fn here() -> String {
        "test".into()
    }

    #[test]
    fn values_read_back_as_the_record_for_every_status() {
        let pending = sample();
        let mut success = pending.clone();
        success.result = vec![1, 2, 3, 200];
        success.finish(
            RecordStatus::Success,
            Timestamp(1_700_000_000_200),
            Duration::from_secs(3600),
        );
        let mut failed = pending.clone();
        failed.error = Some(RecordError::NotRetained("too large".into()));
        failed.finish(
            RecordStatus::Failed,
            Timestamp(1_700_000_000_200),
            Duration::from_secs(300),
        );
        for r in [pending, success, failed] {
            let v = value_of(&r);
            assert_eq!(
                decode(&r.key, &v, None, &here).unwrap(),
                r,
                "{:?}",
                r.status
            );
        }
    }

    #[test]
    fn the_fast_path_value_resolves_to_the_pending_record() {
        let r = sample();
        let v = fast_pending(
            &r.key,
            &r.owner.execution_id,
            &r.fingerprint,
            300,
            3_600_000,
        )
        .unwrap();
        // Unresolved times are not a record.
        let e = decode(&r.key, &v, None, &here).unwrap_err();
        assert_eq!(e.kind(), idempotency_core::ErrorKind::CorruptRecord);
        let mut r1 = r.clone();
        r1.owner.fencing_token = 1;
        let read = decode(&r.key, &v, Some((r.created_at.0, r.expires_at.0)), &here).unwrap();
        assert_eq!(read, r1);
        assert_eq!(stored_status(&v), Some(layout::PENDING));
    }

    #[test]
    fn foreign_values_are_corrupt_or_incompatible() {
        let r = sample();
        let key = &r.key;
        let kind = |v: &[u8]| decode(key, v, None, &here).unwrap_err().kind();
        use idempotency_core::ErrorKind::{CorruptRecord, IncompatibleRecord};
        assert_eq!(kind(b""), CorruptRecord);
        assert_eq!(kind(b"garbage"), CorruptRecord);
        assert_eq!(kind(&r.encode().unwrap()), CorruptRecord);
        let mut old = value_of(&r);
        old[4] = layout::OLD_MARKER;
        assert_eq!(kind(&old), IncompatibleRecord);
        let mut newer = value_of(&r);
        newer[3] = Record::FORMAT_VERSION + 1;
        assert_eq!(kind(&newer), IncompatibleRecord);
        let mut bad = value_of(&r);
        bad[TOKEN.start] = b'x';
        assert_eq!(kind(&bad), CorruptRecord);
        let other = IdempotencyKey::derive("redis::value", 1, &"y").unwrap().key;
        assert_eq!(
            decode(&other, &value_of(&r), None, &here)
                .unwrap_err()
                .kind(),
            CorruptRecord
        );
    }

    #[test]
    fn fixed_width_fields() {
        assert_eq!(owner_token(&sample().owner).len(), layout::OWNER_TOKEN.len);
        assert_eq!(&n16(1_700_000_000_123), b"0001700000000123");
        assert_eq!(parse16(&n16(42)), Some(42));
        assert_eq!(parse16(b"00000000000000x1"), None);
    }
}
