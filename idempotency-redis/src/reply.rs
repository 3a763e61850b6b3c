//! Reading the scripts' replies.

use idempotency_core::Error;
use redis::Value;

/// A reply that does not have the shape a script returns (a script and client out of step).
#[derive(Debug)]
pub(crate) struct ReplyError(pub(crate) String);

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unexpected reply from Redis: {}", self.0)
    }
}

impl std::error::Error for ReplyError {}

impl ReplyError {
    pub(crate) fn into_error(self, operation: &'static str) -> Error {
        Error::storage(operation, self)
    }
}

type Result<T> = std::result::Result<T, ReplyError>;

pub(crate) fn array(v: &Value) -> Result<&[Value]> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(ReplyError(format!("expected an array, got {other:?}"))),
    }
}

pub(crate) fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        other => Err(ReplyError(format!("expected an integer, got {other:?}"))),
    }
}

pub(crate) fn int_at(items: &[Value], i: usize) -> Result<i64> {
    items
        .get(i)
        .ok_or_else(|| ReplyError(format!("missing element {i}")))
        .and_then(int)
}

pub(crate) fn u64_at(items: &[Value], i: usize) -> Result<u64> {
    let n = int_at(items, i)?;
    u64::try_from(n).map_err(|_| ReplyError(format!("negative time or count {n}")))
}

/// A byte string at `i`; a nil there reads as empty bytes (an empty `rec` field decodes as a
/// corrupt record, never as a missing one).
pub(crate) fn bytes_at(items: &[Value], i: usize) -> Result<&[u8]> {
    match items.get(i) {
        Some(Value::BulkString(b)) => Ok(b),
        Some(Value::Nil) => Ok(&[]),
        Some(other) => Err(ReplyError(format!("expected bytes, got {other:?}"))),
        None => Err(ReplyError(format!("missing element {i}"))),
    }
}
