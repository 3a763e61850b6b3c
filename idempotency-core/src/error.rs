//! The one error type of the framework.

use std::path::PathBuf;

use crate::key::IdempotencyKey;
use crate::record::Timestamp;

/// A boxed error from a storage backend or an encoder, kept as the `source` of an [`Error`].
pub type BoxDynError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the framework's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong around an idempotent call.
///
/// The variants follow the outcomes listed in the specification (SEMANTICS.md, "Vocabulary"):
/// in progress (HTTP 409 in the IETF Idempotency-Key draft), fingerprint mismatch (422), invalid
/// key (400), store unavailable, lease lost, corrupt record, incompatible record, result not
/// retained. Use [`Error::kind`] to branch on the class of error without matching every field.
///
/// `Error` implements `Serialize` and `Deserialize` (as its kind, message and causes; it reads
/// back as [`Error::Decoded`] with the same kind), so a user's error enum can hold one in a
/// variant and still derive both; `std::io::Error` and `String` implement `From<Error>`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another caller holds a live lease on this idempotency key (the record is `Pending`).
    ///
    /// Returned at once under [`ConflictPolicy::Reject`](crate::ConflictPolicy::Reject), or after
    /// the wait bound under [`ConflictPolicy::Wait`](crate::ConflictPolicy::Wait). Stripe calls
    /// this `idempotency_key_in_use`; the IETF draft answers 409 Conflict.
    #[error("operation `{key}` is already in progress; its lease ends at {lease_until}")]
    InProgress {
        /// The idempotency key.
        key: IdempotencyKey,
        /// When the holder's lease ends (store clock, milliseconds since the Unix epoch).
        lease_until: Timestamp,
    },

    /// The idempotency key was reused with a different fingerprint (different inputs), and the
    /// fingerprint policy is [`FingerprintPolicy::Reject`](crate::FingerprintPolicy::Reject).
    /// The function did not run and the record is unchanged (Stripe, IETF draft: 422).
    #[error("idempotency key `{key}` was reused with different inputs (fingerprint mismatch)")]
    FingerprintMismatch {
        /// The idempotency key.
        key: IdempotencyKey,
    },

    /// A caller-supplied idempotency key, scope or operation name was rejected before any I/O:
    /// empty, longer than the limit, or containing control characters (IETF draft: 400).
    #[error("invalid idempotency key: {reason}")]
    InvalidKey {
        /// Why the key was rejected.
        reason: &'static str,
    },

    /// A configuration value was rejected (zero TTL, lease longer than the TTL, a bad store URL).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The store could not be reached or failed an operation (network, I/O, full disk, script
    /// error). Under the default fail-closed policy the function does not run.
    ///
    /// The message names the step, the store and why, e.g. `idempotency store unavailable during
    /// connect: redis 127.0.0.1:6379: connection refused` (never a password from the URL), so
    /// `{e}` alone is enough for a log line; [`source`](std::error::Error::source) is the
    /// backend's own error (a `redis::RedisError`, an `std::io::Error`, ...) with its details.
    #[error("idempotency store unavailable during {operation}: {reason}")]
    Storage {
        /// The store step that failed (`connect`, `claim`, `complete`, `get`, ...).
        operation: &'static str,
        /// Where and why, in a few words: the store (host and port; never a password) and the
        /// class of the cause (`connection refused`, `timed out`, `DNS lookup failed`, a bad
        /// database number, ...). Built by [`Error::storage_with_reason`], or from the source's
        /// message by [`Error::storage`].
        reason: String,
        /// The backend's error.
        #[source]
        source: BoxDynError,
    },

    /// A file-store I/O error, naming the path it concerns and the class of the cause
    /// (`permission denied`, `entity not found`, `storage full`, ...); `source` is the I/O error.
    #[error("idempotency file store: {operation} `{}`: {}", path.display(), io_reason(source))]
    Io {
        /// The step that failed.
        operation: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// This caller's lease was lost: another caller took the key over (its fencing token is
    /// newer), so this caller's complete, fail, release or renew was refused (Kleppmann's fencing
    /// tokens; SEMANTICS.md scenario 12).
    #[error("lease on `{key}` was lost to a newer holder; this caller's write was refused")]
    LeaseLost {
        /// The idempotency key.
        key: IdempotencyKey,
    },

    /// A stored record could not be decoded (truncated, invalid, unknown status). Fail closed:
    /// the function does not run. Remove the record with an explicit purge or delete.
    #[error("corrupt idempotency record for `{key}`: {reason}")]
    CorruptRecord {
        /// The idempotency key, or the store location when the key is unknown.
        key: String,
        /// What was wrong with it.
        reason: String,
    },

    /// A stored record was written by an incompatible format version, or its stored value no
    /// longer decodes as the function's result type. Bump the operation's `version` to start
    /// over; nothing re-runs silently (SEMANTICS.md scenario 29).
    #[error("incompatible idempotency record for `{key}`: {reason}")]
    IncompatibleRecord {
        /// The idempotency key.
        key: String,
        /// What did not match.
        reason: String,
    },

    /// A repeat of a call whose function ran but whose value could not be stored (it failed to
    /// encode, exceeded the size limit, or would not replay exactly), so the record was finished
    /// as a terminal "result not retained" failure: the function never re-runs for this key
    /// within the failure TTL, and repeats get this error. The caller that ran the function got
    /// its value, marked [`Retention::NotRetained`](crate::Retention::NotRetained).
    #[error("the result of `{key}` was not retained: {reason}")]
    ResultNotRetained {
        /// The idempotency key.
        key: IdempotencyKey,
        /// Why it could not be stored.
        reason: String,
    },

    /// The function ran and returned, but its result could not be recorded after bounded
    /// retries. The record stays `Pending` until its lease ends; a retry after that may run the
    /// function again (SEMANTICS.md scenario 24). The encoded value is attached.
    #[error("the result of `{key}` was computed but could not be recorded")]
    CompletionNotRecorded {
        /// The idempotency key.
        key: IdempotencyKey,
        /// The encoded result that could not be stored: CBOR (RFC 8949) bytes, as any CBOR
        /// decoder reads them (`ciborium::from_reader`).
        encoded: Vec<u8>,
        /// The last store error.
        #[source]
        source: Box<Error>,
    },

    /// Encoding an argument or a result failed (a `Serialize` impl returned an error).
    #[error("could not encode {what}: {message}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's message.
        message: String,
    },

    /// A framework error read back from its serialized form: `Error` serializes as its kind,
    /// message and the messages of its causes (so a user's error enum can hold one and derive
    /// `Serialize`/`Deserialize`), and reads back as this variant with the same
    /// [`kind`](Error::kind) and message.
    #[error("{message}")]
    Decoded {
        /// The kind of the original error.
        kind: ErrorKind,
        /// The original error's message (`Display`).
        message: String,
        /// The messages of the original error's `source` chain, outermost first.
        causes: Vec<String>,
    },
}

/// The class of an [`Error`], for callers that branch on it (as sqlx's `ErrorKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::InProgress`].
    InProgress,
    /// [`Error::FingerprintMismatch`].
    FingerprintMismatch,
    /// [`Error::InvalidKey`].
    InvalidKey,
    /// [`Error::Config`].
    Config,
    /// [`Error::Storage`] or [`Error::Io`]: the store is unavailable.
    StoreUnavailable,
    /// [`Error::LeaseLost`].
    LeaseLost,
    /// [`Error::CorruptRecord`].
    CorruptRecord,
    /// [`Error::IncompatibleRecord`].
    IncompatibleRecord,
    /// [`Error::ResultNotRetained`].
    ResultNotRetained,
    /// [`Error::CompletionNotRecorded`].
    CompletionNotRecorded,
    /// [`Error::Encode`].
    Encode,
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InProgress { .. } => ErrorKind::InProgress,
            Error::FingerprintMismatch { .. } => ErrorKind::FingerprintMismatch,
            Error::InvalidKey { .. } => ErrorKind::InvalidKey,
            Error::Config(_) => ErrorKind::Config,
            Error::Storage { .. } | Error::Io { .. } => ErrorKind::StoreUnavailable,
            Error::LeaseLost { .. } => ErrorKind::LeaseLost,
            Error::CorruptRecord { .. } => ErrorKind::CorruptRecord,
            Error::IncompatibleRecord { .. } => ErrorKind::IncompatibleRecord,
            Error::ResultNotRetained { .. } => ErrorKind::ResultNotRetained,
            Error::CompletionNotRecorded { .. } => ErrorKind::CompletionNotRecorded,
            Error::Encode { .. } => ErrorKind::Encode,
            Error::Decoded { kind, .. } => *kind,
        }
    }

    /// Wraps a backend error as [`Error::Storage`] for the store step `operation`; the message
    /// ends with the source's own message, so a reporter that prints the whole `source()` chain
    /// shows it twice. A backend that can say where and why in a few words (and keep the details
    /// in the source) uses [`storage_with_reason`](Self::storage_with_reason) instead.
    pub fn storage(operation: &'static str, source: impl Into<BoxDynError>) -> Self {
        let source = source.into();
        Error::Storage {
            operation,
            reason: source.to_string(),
            source,
        }
    }

    /// [`Error::Storage`] for the store step `operation`, with `reason` (the store, never a
    /// password, and the class of the cause, e.g. `redis 127.0.0.1:6379: connection refused`)
    /// in the message and `source` (the backend's error, with its details) as the
    /// [`source`](std::error::Error::source).
    pub fn storage_with_reason(
        operation: &'static str,
        reason: impl Into<String>,
        source: impl Into<BoxDynError>,
    ) -> Self {
        Error::Storage {
            operation,
            reason: reason.into(),
            source: source.into(),
        }
    }

    /// Whether the store could not be reached or failed ([`ErrorKind::StoreUnavailable`]).
    pub fn is_store_unavailable(&self) -> bool {
        self.kind() == ErrorKind::StoreUnavailable
    }
}

/// The class of an I/O error for [`Error::Io`]'s message (`permission denied`, `entity not
/// found`, `storage full`, ...): the source keeps the OS's own text. Errors of no known class
/// (custom ones, or OS errors std does not classify) use their own message.
fn io_reason(e: &std::io::Error) -> String {
    let kind = e.kind();
    let class = kind.to_string();
    if kind == std::io::ErrorKind::Other || class == "uncategorized error" {
        e.to_string()
    } else {
        class
    }
}
