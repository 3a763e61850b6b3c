//! The replies of the claim pipeline and of the scripts, decoded into typed values. A reply of
//! another shape (a script and client out of step) is a [`ReplyError`], which the store reports
//! as [`Error::Storage`](idempotency_core::Error::Storage) for the step.

use redis::Value;

use crate::{layout, value};

/// A reply that does not have the shape its command or script returns.
#[derive(Debug)]
pub(crate) struct ReplyError(pub(crate) String);

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unexpected reply from Redis: {}", self.0)
    }
}

impl std::error::Error for ReplyError {}

type Result<T> = std::result::Result<T, ReplyError>;

/// The `CREATED` and `UNTIL` of a stored value, resolved by a script (ms, Redis clock).
pub(crate) type Times = Option<(u64, u64)>;

/// The claim fast path: `TIME` then `SET key value NX PX ms GET`.
#[derive(Debug)]
pub(crate) enum FastClaim {
    /// Redis's time (ms, just before the `SET`) and the previous value: `None` when the key
    /// was absent (and is now claimed).
    Done { now: u64, previous: Option<Vec<u8>> },
    /// The key holds another Redis type (`WRONGTYPE`).
    WrongType,
}

/// The `claim` script.
#[derive(Debug)]
pub(crate) enum ClaimReply {
    /// A live record (or a value not in this layout, without times): nothing written.
    Existing { value: Vec<u8>, times: Times },
    /// Claimed now: token 1 on a fresh key, or the old token + 1 on a takeover.
    Claimed {
        until: u64,
        takeover: bool,
        token: u64,
    },
    /// The caller's own live claim (a retried claim whose first reply was lost).
    Own { until: u64, token: u64 },
    /// The key holds another Redis type.
    WrongType,
}

/// The `finish` script.
#[derive(Debug)]
pub(crate) enum FinishReply {
    /// Refused: the record is not pending with this owner and token.
    Refused,
    /// Finished (now, or by this same call before): the stored times and fingerprint.
    Finished {
        created: u64,
        until: u64,
        fingerprint: Vec<u8>,
    },
}

/// The `release` script.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReleaseReply {
    /// Deleted now.
    Deleted,
    /// No key: nothing to delete.
    Absent,
    /// The key holds something else (another holder's record, a finished record, a type).
    Other,
}

/// The `renew` script: `None` when the lease was lost, else the new lease deadline (ms).
pub(crate) type RenewReply = Option<u64>;

/// The `get` script.
#[derive(Debug)]
pub(crate) enum GetReply {
    /// No record.
    Absent,
    /// A value, with its times when it is in this layout.
    Value {
        now: u64,
        value: Vec<u8>,
        times: Times,
    },
    /// The key holds another Redis type.
    WrongType,
}

/// What one key held, from the `inspect` script.
#[derive(Debug)]
pub(crate) struct Held {
    /// 0 gone, 1 a string, 3 another Redis type.
    pub(crate) code: i64,
    /// The string, or the type's name.
    pub(crate) value: Vec<u8>,
    pub(crate) times: Times,
}

fn array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(ReplyError(format!("expected an array, got {other:?}"))),
    }
}

fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        other => Err(ReplyError(format!("expected an integer, got {other:?}"))),
    }
}

/// The reply's elements, with typed access by position.
struct Items(Vec<Value>);

impl Items {
    fn of(v: Value) -> Result<Items> {
        array(v).map(Items)
    }

    fn int(&self, i: usize) -> Result<i64> {
        self.0
            .get(i)
            .ok_or_else(|| ReplyError(format!("missing element {i}")))
            .and_then(int)
    }

    fn u64(&self, i: usize) -> Result<u64> {
        let n = self.int(i)?;
        u64::try_from(n).map_err(|_| ReplyError(format!("negative time or count {n}")))
    }

    /// A byte string at `i`, moved out; a nil there reads as empty bytes (decoded as a corrupt
    /// record, never as a missing one).
    fn bytes(&mut self, i: usize) -> Result<Vec<u8>> {
        match self.0.get_mut(i).map(std::mem::take) {
            Some(Value::BulkString(b)) => Ok(b),
            Some(Value::Nil) => Ok(Vec::new()),
            Some(other) => Err(ReplyError(format!("expected bytes, got {other:?}"))),
            None => Err(ReplyError(format!("missing element {i}"))),
        }
    }

    /// The resolved times at `i` and `i + 1`, when present.
    fn times(&self, i: usize) -> Result<Times> {
        match self.0.len() > i + 1 {
            true => Ok(Some((self.u64(i)?, self.u64(i + 1)?))),
            false => Ok(None),
        }
    }
}

impl FastClaim {
    /// From the pipeline's two replies, `TIME`'s and the `SET`'s, server errors already taken
    /// out (the caller answers `WRONGTYPE` as [`FastClaim::WrongType`]).
    pub(crate) fn parse(time: Value, set: Value) -> Result<FastClaim> {
        let time = Items::of(time)?;
        let secs = time_part(&time, 0)?;
        let micros = time_part(&time, 1)?;
        let previous = match set {
            Value::Nil => None,
            Value::BulkString(b) => Some(b),
            other => return Err(ReplyError(format!("expected bytes, got {other:?}"))),
        };
        Ok(FastClaim::Done {
            now: secs.saturating_mul(1000).saturating_add(micros / 1000),
            previous,
        })
    }
}

/// A part of `TIME`'s reply (seconds, microseconds), sent as a bulk string.
fn time_part(items: &Items, i: usize) -> Result<u64> {
    match items.0.get(i) {
        Some(Value::BulkString(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ReplyError(format!("a TIME part that is not a number: {b:?}"))),
        Some(Value::Int(n)) => u64::try_from(*n).map_err(|_| ReplyError(format!("TIME {n}"))),
        other => Err(ReplyError(format!("expected a TIME part, got {other:?}"))),
    }
}

impl ClaimReply {
    pub(crate) fn parse(v: Value) -> Result<(u64, ClaimReply)> {
        let mut items = Items::of(v)?;
        let now = items.u64(1)?;
        let reply = match items.int(0)? {
            0 => ClaimReply::Existing {
                times: items.times(3)?,
                value: items.bytes(2)?,
            },
            1 => ClaimReply::Claimed {
                until: items.u64(2)?,
                takeover: items.int(3)? == 1,
                token: items.u64(4)?,
            },
            2 => ClaimReply::Own {
                until: items.u64(2)?,
                token: items.u64(3)?,
            },
            3 => ClaimReply::WrongType,
            code => return Err(ReplyError(format!("claim code {code}"))),
        };
        Ok((now, reply))
    }
}

impl FinishReply {
    /// From `0` (refused) or the finished value's bytes from `CREATED` through `FINGERPRINT`.
    pub(crate) fn parse(v: Value) -> Result<FinishReply> {
        const FROM: usize = layout::CREATED.start;
        let b = match v {
            Value::Int(0) => return Ok(FinishReply::Refused),
            Value::BulkString(b) if b.len() == layout::FINGERPRINT.end() - FROM => b,
            other => {
                return Err(ReplyError(format!(
                    "expected 0 or the finished times, got {other:?}"
                )))
            }
        };
        let field = |f: layout::Field| &b[f.start - FROM..f.end() - FROM];
        let number = |f: layout::Field| {
            value::parse16(field(f))
                .filter(|n| *n > 0)
                .ok_or_else(|| ReplyError(format!("a finished time that is not a number: {b:?}")))
        };
        Ok(FinishReply::Finished {
            created: number(layout::CREATED)?,
            until: number(layout::UNTIL)?,
            fingerprint: field(layout::FINGERPRINT).to_vec(),
        })
    }
}

impl ReleaseReply {
    pub(crate) fn parse(v: Value) -> Result<ReleaseReply> {
        Ok(match int(&v)? {
            1 => ReleaseReply::Deleted,
            0 => ReleaseReply::Absent,
            _ => ReleaseReply::Other,
        })
    }
}

pub(crate) fn parse_renew(v: Value) -> Result<RenewReply> {
    let items = Items::of(v)?;
    Ok(match items.int(0)? {
        0 => None,
        _ => Some(items.u64(1)?),
    })
}

impl GetReply {
    pub(crate) fn parse(v: Value) -> Result<GetReply> {
        let mut items = Items::of(v)?;
        let now = items.u64(0)?;
        Ok(match items.0.get(1) {
            None => GetReply::Absent,
            Some(Value::BulkString(_)) => GetReply::Value {
                now,
                times: items.times(2)?,
                value: items.bytes(1)?,
            },
            // `{now, false, 1}`: another Redis type at the record key.
            Some(Value::Nil | Value::Boolean(false)) if items.int(2)? == 1 => GetReply::WrongType,
            Some(other) => return Err(ReplyError(format!("expected a value, got {other:?}"))),
        })
    }
}

/// The `inspect` script: Redis's time and what each key held.
pub(crate) fn parse_inspect(v: Value) -> Result<(u64, Vec<Held>)> {
    let items = Items::of(v)?;
    let now = items.u64(0)?;
    let mut held = Vec::with_capacity(items.0.len().saturating_sub(1));
    for item in items.0.into_iter().skip(1) {
        let mut pair = Items::of(item)?;
        held.push(Held {
            code: pair.int(0)?,
            times: pair.times(2)?,
            value: pair.bytes(1)?,
        });
    }
    Ok((now, held))
}

/// An integer reply (`DEL`, `remove_unreadable`).
pub(crate) fn parse_int(v: Value) -> Result<i64> {
    int(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn claim_replies_decode_by_code() {
        let v = Value::Array(vec![
            Value::Int(1),
            Value::Int(10),
            Value::Int(20),
            Value::Int(1),
            Value::Int(3),
        ]);
        assert!(matches!(
            ClaimReply::parse(v).unwrap(),
            (
                10,
                ClaimReply::Claimed {
                    until: 20,
                    takeover: true,
                    token: 3
                }
            )
        ));
        let v = Value::Array(vec![Value::Int(0), Value::Int(10), bulk("x")]);
        assert!(matches!(
            ClaimReply::parse(v).unwrap(),
            (10, ClaimReply::Existing { times: None, .. })
        ));
        let v = Value::Array(vec![
            Value::Int(0),
            Value::Int(10),
            bulk("x"),
            Value::Int(1),
            Value::Int(2),
        ]);
        assert!(matches!(
            ClaimReply::parse(v).unwrap(),
            (
                10,
                ClaimReply::Existing {
                    times: Some((1, 2)),
                    ..
                }
            )
        ));
        assert!(ClaimReply::parse(Value::Array(vec![Value::Int(9), Value::Int(1)])).is_err());
        assert!(ClaimReply::parse(Value::Int(1)).is_err());
    }

    #[test]
    fn finish_replies_are_zero_or_the_finished_times() {
        assert!(matches!(
            FinishReply::parse(Value::Int(0)).unwrap(),
            FinishReply::Refused
        ));
        let mut b = Vec::new();
        b.extend_from_slice(&value::n16(1_700_000_000_123));
        b.extend_from_slice(&value::n16(1_700_000_360_123));
        b.extend_from_slice(&value::n16(30_000));
        b.extend_from_slice(&value::n16(3_600_000));
        b.extend_from_slice(&[7; 32]);
        match FinishReply::parse(Value::BulkString(b.clone())).unwrap() {
            FinishReply::Finished {
                created,
                until,
                fingerprint,
            } => {
                assert_eq!((created, until), (1_700_000_000_123, 1_700_000_360_123));
                assert_eq!(fingerprint, [7; 32]);
            }
            FinishReply::Refused => panic!("refused"),
        }
        // Another shape, a short string, unresolved or non-digit times: errors, never a record.
        let mut zero = b.clone();
        zero[16..32].copy_from_slice(&value::n16(0));
        let mut letters = b.clone();
        letters[3] = b'x';
        for v in [
            Value::Int(1),
            Value::Array(vec![Value::Int(0)]),
            Value::BulkString(b[..95].to_vec()),
            Value::BulkString(zero),
            Value::BulkString(letters),
        ] {
            assert!(FinishReply::parse(v).is_err());
        }
    }

    #[test]
    fn the_fast_claim_reads_time_and_the_previous_value() {
        let time = Value::Array(vec![bulk("1700000000"), bulk("123456")]);
        assert!(matches!(
            FastClaim::parse(time.clone(), Value::Nil).unwrap(),
            FastClaim::Done {
                now: 1_700_000_000_123,
                previous: None
            }
        ));
        assert!(matches!(
            FastClaim::parse(time.clone(), bulk("old")).unwrap(),
            FastClaim::Done { previous: Some(p), .. } if p == b"old"
        ));
        // Malformed replies are errors, never a panic.
        assert!(FastClaim::parse(Value::Array(vec![]), Value::Nil).is_err());
        assert!(FastClaim::parse(time, Value::Int(1)).is_err());
    }

    #[test]
    fn other_replies() {
        assert_eq!(
            ReleaseReply::parse(Value::Int(-1)).unwrap(),
            ReleaseReply::Other
        );
        assert_eq!(
            parse_renew(Value::Array(vec![Value::Int(0)])).unwrap(),
            None
        );
        assert_eq!(
            parse_renew(Value::Array(vec![Value::Int(1), Value::Int(5)])).unwrap(),
            Some(5)
        );
        assert!(matches!(
            GetReply::parse(Value::Array(vec![Value::Int(4)])).unwrap(),
            GetReply::Absent
        ));
        assert!(matches!(
            GetReply::parse(Value::Array(vec![Value::Int(4), Value::Nil, Value::Int(1)])).unwrap(),
            GetReply::WrongType
        ));
    }
}
