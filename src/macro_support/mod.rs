//! The runtime half of the code `#[idempotent]` and `#[derive(NormalizeKey)]` generate:
//! argument dispatch, compile-time checks with readable diagnostics, and small adapters.
//! Reached only through `__private`; not public API.
//!
//! - [`args`]: what parameters, keys and `manager = ...` may be;
//! - [`results`]: what results need, and which policy stores failures;
//! - [`operation`]: the operation identity read from the compiler;
//! - here: building the call and running the body. A sync function runs through the manager's
//!   sync entry points (`execute_sync`, ...): the same engine as an async one, its body wrapped
//!   in a ready future and driven by `block_on`.

mod args;
mod operation;
mod results;

use std::future::Future;

use idempotency_core::{Call, CallOptions, Error, IdempotencyManager, KeyEncoder, Outcome};

use crate::scoped::Override;

pub use args::{
    CustomKey, KeyArg, KeyPart, ManagerSource, NormalizeReceiver, OtherReceiver, ReceiverCheck,
    SerializeReceiver, ViaNormalize, ViaSerialize,
};
pub use operation::{Operation, Site};
pub use results::{
    ErrorProbe, FromFrameworkError, Storable, StorableError, StoredFailures, TransientFailures,
    ViaFrameworkError, ViaStoredError, ViaTransientError,
};

/// Runs an async `-> T` function: `Ok(value)`, fresh or replayed, or the framework error.
///
/// # Errors
/// The manager's, the store's or the key's `Error`.
pub async fn run<T, F, Fut>(
    manager: Result<IdempotencyManager, Error>,
    call: Result<Call, Error>,
    f: F,
) -> Result<T, Error>
where
    T: Storable,
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let (manager, call) = both(manager, call)?;
    manager.execute(&call, f).await.map(Outcome::into_value)
}

/// The sync form of [`run`].
///
/// # Errors
/// As [`run`].
pub fn run_sync<T, F>(
    manager: Result<IdempotencyManager, Error>,
    call: Result<Call, Error>,
    f: F,
) -> Result<T, Error>
where
    T: Storable,
    F: FnOnce() -> T,
{
    // The manager's own sync entry point (its future driven by `block_on`), with no future of
    // this crate around it: a replay moves less (issue 17).
    let (manager, call) = both(manager, call)?;
    manager.execute_sync(&call, f).map(Outcome::into_value)
}

/// The manager and the call, or the first framework error raised before the manager ran (no
/// default manager, a key that fails to derive), reported to an enclosing idempotent body so
/// that its failure is not stored, as for the manager's own errors.
///
/// # Errors
/// The manager's or the call's `Error`.
#[inline]
fn both(
    manager: Result<IdempotencyManager, Error>,
    call: Result<Call, Error>,
) -> Result<(IdempotencyManager, Call), Error> {
    match (manager, call) {
        (Ok(manager), Ok(call)) => Ok((manager, call)),
        (Err(e), _) | (_, Err(e)) => {
            idempotency_core::framework_error_seen();
            Err(e)
        }
    }
}

/// The key a caller supplied, as `KeyEncoder::custom_key` takes it: a missing key becomes the
/// empty string, which `KeyEncoder::finish` rejects with `Error::InvalidKey`.
#[inline]
pub fn custom_key<K: CustomKey + ?Sized>(key: &K) -> &str {
    key.__idempotency_key().unwrap_or("")
}

/// The explicit key of a [`with_key`](crate::with_key) scope, if one is pending.
#[inline]
pub fn override_key(ov: &Option<Override>) -> Option<&str> {
    ov.as_ref().and_then(Override::key)
}

/// Finishes the key (in place: the encoder is a few hundred bytes, see
/// `KeyEncoder::finish_by_ref`) and builds the call with the attribute's options, applying a pending
/// [`refresh`](crate::refresh).
///
/// # Errors
/// As `KeyEncoder::finish`: `Error::InvalidKey`, `Error::Encode`.
#[inline]
pub fn finish_call(
    enc: &mut KeyEncoder<'_>,
    ov: &Option<Override>,
    options: CallOptions,
) -> Result<Call, Error> {
    let mut call = Call::new(enc.finish_by_ref()?);
    call.options = options;
    if ov.as_ref().is_some_and(Override::refresh) {
        call.options.refresh = true;
    }
    Ok(call)
}

/// The manager of `manager = <expr>`.
///
/// # Errors
/// Never; a `Result` to match [`default_manager`](crate::default_manager).
#[inline]
pub fn manager_from<M: ManagerSource + ?Sized>(m: &M) -> Result<IdempotencyManager, Error> {
    Ok(m.__idempotency_manager())
}

/// Gives a `Duration` expression (`ttl = Duration::from_secs(60)`) its type, so that a wrong
/// type is reported at the expression.
#[inline]
pub fn duration(d: core::time::Duration) -> core::time::Duration {
    d
}
