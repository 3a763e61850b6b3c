//! How a function's output is stored and replayed: one [`Codec`] per shape of entry point
//! (`execute`, `try_execute_with`, `try_execute_transient`), chosen at compile time.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, retain};

/// What becomes of a body's value.
#[derive(Debug)]
pub(super) enum Disposition {
    /// Stored as the `Success` record's result.
    Success(Vec<u8>),
    /// Stored as the `Failed` record's error.
    Failure(Vec<u8>),
    /// Not stored: the claim is released, the next call runs again.
    Release,
    /// Not storable so that it replays exactly: finished as a "result not retained" marker.
    NotRetained(String),
}

/// Encodes, checks and decodes the output `R` of one entry point. The user's `Serialize`,
/// `Deserialize` and error classifier run in [`dispose`](Self::dispose), after the body.
pub(super) trait Codec<R> {
    /// What becomes of `value`: `max` is `max_result_bytes`; `nested` says a nested idempotent
    /// call in the body failed with a framework error, so an `Err` is never stored, whatever
    /// its size or shape (see `Attempt::run`).
    fn dispose(&self, value: &R, max: usize, nested: bool) -> Disposition;
    /// The value of a `Success` record.
    ///
    /// # Errors
    /// Why the bytes do not decode, as text.
    fn decode_success(&self, bytes: &[u8]) -> Result<R, String>;
    /// The value of a `Failed` record's stored error.
    ///
    /// # Errors
    /// Why the bytes do not decode (or cannot be a stored error here), as text.
    fn decode_failure(&self, bytes: &[u8]) -> Result<R, String>;
}

/// The disposition of a value that is stored when it replays exactly ([`retain`]), and is
/// otherwise not retained.
fn retained<T: Serialize + DeserializeOwned>(
    value: &T,
    max: usize,
    stored: fn(Vec<u8>) -> Disposition,
) -> Disposition {
    match retain(value, max) {
        Ok(bytes) => stored(bytes),
        Err(reason) => Disposition::NotRetained(reason),
    }
}

/// `execute`: an infallible function's value.
pub(super) struct Value;

impl<T: Serialize + DeserializeOwned> Codec<T> for Value {
    fn dispose(&self, value: &T, max: usize, _nested: bool) -> Disposition {
        retained(value, max, Disposition::Success)
    }
    fn decode_success(&self, bytes: &[u8]) -> Result<T, String> {
        decode(bytes)
    }
    fn decode_failure(&self, _: &[u8]) -> Result<T, String> {
        Err("a stored error, but this operation cannot fail".to_owned())
    }
}

/// `try_execute_with`: errors are stored unless the classifier calls them transient.
pub(super) struct Classified<C>(pub(super) C);

impl<T, E, C> Codec<Result<T, E>> for Classified<C>
where
    T: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
    C: Fn(&E) -> bool,
{
    fn dispose(&self, value: &Result<T, E>, max: usize, nested: bool) -> Disposition {
        match value {
            Ok(v) => retained(v, max, Disposition::Success),
            Err(e) if nested || (self.0)(e) => Disposition::Release,
            Err(e) => retained(e, max, Disposition::Failure),
        }
    }
    fn decode_success(&self, bytes: &[u8]) -> Result<Result<T, E>, String> {
        decode(bytes).map(Ok)
    }
    fn decode_failure(&self, bytes: &[u8]) -> Result<Result<T, E>, String> {
        decode(bytes).map(Err)
    }
}

/// `try_execute_transient`: errors are never stored (and need not serialize).
pub(super) struct Transient;

impl<T: Serialize + DeserializeOwned, E> Codec<Result<T, E>> for Transient {
    fn dispose(&self, value: &Result<T, E>, max: usize, _nested: bool) -> Disposition {
        match value {
            Ok(v) => retained(v, max, Disposition::Success),
            Err(_) => Disposition::Release,
        }
    }
    fn decode_success(&self, bytes: &[u8]) -> Result<Result<T, E>, String> {
        decode(bytes).map(Ok)
    }
    fn decode_failure(&self, _: &[u8]) -> Result<Result<T, E>, String> {
        Err(
            "a stored error, but this operation's errors are never stored (its error type changed?)"
                .to_owned(),
        )
    }
}
