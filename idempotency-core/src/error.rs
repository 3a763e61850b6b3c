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
    #[error("idempotency store unavailable during {operation}")]
    Storage {
        /// The store step that failed (`claim`, `complete`, `get`, ...).
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxDynError,
    },

    /// A file-store I/O error, naming the path it concerns.
    #[error("idempotency file store: {operation} `{}`", path.display())]
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
        }
    }

    /// Wraps a backend error as [`Error::Storage`] for the store step `operation`.
    pub fn storage(operation: &'static str, source: impl Into<BoxDynError>) -> Self {
        Error::Storage {
            operation,
            source: source.into(),
        }
    }

    /// Whether the store could not be reached or failed ([`ErrorKind::StoreUnavailable`]).
    pub fn is_store_unavailable(&self) -> bool {
        self.kind() == ErrorKind::StoreUnavailable
    }
}
