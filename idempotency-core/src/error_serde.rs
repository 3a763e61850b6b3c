//! [`Error`] and [`ErrorKind`] as data: `Serialize`/`Deserialize` (so a user's error enum can
//! carry the framework's error with its kind), the conversions into `std::io::Error` and
//! `String` (so `-> io::Result<T>` and `-> Result<T, String>` can carry it), and the check that
//! a value carries a framework error (which is never stored as a function's failure).

use std::cell::Cell;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, ErrorKind};

impl ErrorKind {
    /// The kind's stable `snake_case` name (`"in_progress"`, `"fingerprint_mismatch"`, ...), as
    /// it is serialized. The names are a storage format: they never change.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InProgress => "in_progress",
            ErrorKind::FingerprintMismatch => "fingerprint_mismatch",
            ErrorKind::InvalidKey => "invalid_key",
            ErrorKind::Config => "config",
            ErrorKind::StoreUnavailable => "store_unavailable",
            ErrorKind::LeaseLost => "lease_lost",
            ErrorKind::CorruptRecord => "corrupt_record",
            ErrorKind::IncompatibleRecord => "incompatible_record",
            ErrorKind::ResultNotRetained => "result_not_retained",
            ErrorKind::CompletionNotRecorded => "completion_not_recorded",
            ErrorKind::Encode => "encode",
        }
    }

    /// The kind named `name` (as [`as_str`](Self::as_str) gives it), or `None` for an unknown
    /// name.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Some(match name {
            "in_progress" => ErrorKind::InProgress,
            "fingerprint_mismatch" => ErrorKind::FingerprintMismatch,
            "invalid_key" => ErrorKind::InvalidKey,
            "config" => ErrorKind::Config,
            "store_unavailable" => ErrorKind::StoreUnavailable,
            "lease_lost" => ErrorKind::LeaseLost,
            "corrupt_record" => ErrorKind::CorruptRecord,
            "incompatible_record" => ErrorKind::IncompatibleRecord,
            "result_not_retained" => ErrorKind::ResultNotRetained,
            "completion_not_recorded" => ErrorKind::CompletionNotRecorded,
            "encode" => ErrorKind::Encode,
            _ => return None,
        })
    }
}

/// Serialized as its [`as_str`](ErrorKind::as_str) name, so that the encoding does not depend on
/// the order of the variants.
impl Serialize for ErrorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ErrorKind::from_name(&name).ok_or_else(|| {
            de::Error::custom(format_args!("unknown idempotency error kind `{name}`"))
        })
    }
}

/// The serialized form of an [`Error`]. The name contains `::`, so no derived type can share it.
#[derive(Serialize)]
#[serde(rename = "idempotency::Error")]
struct WireRef<'a> {
    kind: ErrorKind,
    message: &'a str,
    causes: &'a [String],
}

#[derive(Deserialize)]
#[serde(rename = "idempotency::Error")]
struct Wire {
    kind: ErrorKind,
    message: String,
    #[serde(default)]
    causes: Vec<String>,
}

thread_local! {
    /// Set by `Error::serialize`; read by [`Error::is_carried_by`].
    static SERIALIZED: Cell<bool> = const { Cell::new(false) };
}

/// Serialized as a struct of its [`kind`](Error::kind) (by name), its message (`Display`) and
/// the messages of its `source` chain, so that a user's error enum can hold an `Error` and still
/// derive `Serialize` and `Deserialize`. It reads back as [`Error::Decoded`], with the same kind,
/// message and causes.
impl Serialize for Error {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SERIALIZED.with(|seen| seen.set(true));
        let (message, causes) = match self {
            Error::Decoded {
                message, causes, ..
            } => (message.clone(), causes.clone()),
            _ => (self.to_string(), cause_chain(self)),
        };
        WireRef {
            kind: self.kind(),
            message: &message,
            causes: &causes,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(Error::Decoded {
            kind: w.kind,
            message: w.message,
            causes: w.causes,
        })
    }
}

fn cause_chain(e: &Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        out.push(cause.to_string());
        next = cause.source();
    }
    out
}

impl Error {
    /// Whether serializing `value` serializes an [`Error`] somewhere inside it: a user's error
    /// such as `PaymentError::Idempotency(InProgress)` that carries a framework error.
    ///
    /// `#[idempotent]` never stores such a failure: a conflict, an unreachable store or a lost
    /// lease says nothing about the function's own outcome, so it is not replayed as one (the
    /// claim is released and the next call runs again). A value whose `Serialize` fails before
    /// reaching the error counts as not carrying one.
    pub fn is_carried_by<V: Serialize + ?Sized>(value: &V) -> bool {
        let before = SERIALIZED.with(|seen| seen.replace(false));
        // Only the walk matters; an error simply ends it early. The canonical encoder walks
        // every shape serde presents, maps and sequences of unknown length (`flatten`) included,
        // where postcard stops at the first one.
        let _ = crate::canonical::to_bytes(value);
        SERIALIZED.with(|seen| seen.replace(before || seen.get()))
    }
}

/// `-> std::io::Result<T>` carries framework errors as an `io::Error` that wraps the [`Error`]
/// (recover it with `get_ref()` / `into_inner()` and `downcast`), of `io::ErrorKind`:
/// `ResourceBusy` for [`ErrorKind::InProgress`], `InvalidInput` for a fingerprint mismatch, an
/// invalid key or a bad configuration, the store's own kind for a file-store I/O error, and
/// `Other` for the rest.
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match &e {
            Error::Io { source, .. } => source.kind(),
            _ => match e.kind() {
                ErrorKind::InProgress => Io::ResourceBusy,
                ErrorKind::FingerprintMismatch | ErrorKind::InvalidKey | ErrorKind::Config => {
                    Io::InvalidInput
                }
                _ => Io::Other,
            },
        };
        std::io::Error::new(kind, e)
    }
}

/// `-> Result<T, String>` carries framework errors as their message (`Display`); the
/// [`ErrorKind`] is lost, so prefer an error enum with an `Idempotency(idempotency::Error)`
/// variant when callers branch on it.
impl From<Error> for String {
    fn from(e: Error) -> Self {
        e.to_string()
    }
}
