//! The runtime half of the code `#[idempotent]` and `#[derive(NormalizeKey)]` generate:
//! argument dispatch, compile-time checks with readable diagnostics, and small adapters.
//! Reached only through `__private`; not public API.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use idempotency_core::canonical::CanonicalError;
use std::future::Future;

use idempotency_core::{
    Call, CallOptions, Error, IdempotencyManager, KeyEncoder, KeyWriter, NormalizeKey, Outcome,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::scoped::Override;

/// Wraps a reference to a parameter or field for autoref dispatch: `(&KeyArg(&x))` calls
/// [`ViaNormalize`] when `x`'s type implements `NormalizeKey`, and [`ViaSerialize`] otherwise.
#[allow(missing_debug_implementations)]
pub struct KeyArg<'a, T: ?Sized>(pub &'a T);

/// Preferred: the value's type implements `NormalizeKey`.
pub trait ViaNormalize {
    /// Writes the value into the key.
    ///
    /// # Errors
    /// The value's serialization error.
    fn __idempotency_write(&self, w: &mut KeyWriter<'_>) -> Result<(), CanonicalError>;
}

impl<T: NormalizeKey + ?Sized> ViaNormalize for KeyArg<'_, T> {
    #[inline]
    fn __idempotency_write(&self, w: &mut KeyWriter<'_>) -> Result<(), CanonicalError> {
        self.0.normalize_key(w)
    }
}

/// What a value needs to enter an idempotency key through `Serialize`. Its own trait so that a
/// value with neither impl gets an error that names the fix.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of an idempotency key",
    label = "this value is neither `Serialize` nor `NormalizeKey`",
    note = "derive `serde::Serialize` or `idempotency::NormalizeKey` for `{Self}`, or leave the parameter out of the key with `#[idempotency(skip)]`"
)]
pub trait KeyPart: Serialize {}

impl<T: Serialize + ?Sized> KeyPart for T {}

/// Fallback: the value's type implements `Serialize`. Unbounded at the impl, bounded at the
/// method, so that a value with neither impl resolves here and reports [`KeyPart`].
pub trait ViaSerialize<T: ?Sized> {
    /// Writes the value into the key.
    ///
    /// # Errors
    /// The value's serialization error.
    fn __idempotency_write(&self, w: &mut KeyWriter<'_>) -> Result<(), CanonicalError>
    where
        T: KeyPart;
}

impl<T: ?Sized> ViaSerialize<T> for &KeyArg<'_, T> {
    #[inline]
    fn __idempotency_write(&self, w: &mut KeyWriter<'_>) -> Result<(), CanonicalError>
    where
        T: KeyPart,
    {
        w.value(self.0)
    }
}

/// What a function's result needs to be stored and replayed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored as the result of an `#[idempotent]` function",
    label = "the result is stored and replayed, so it must implement `Serialize` and `DeserializeOwned`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for the returned types (both the `Ok` and the `Err` type of a `Result`)"
)]
pub trait Storable: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Storable for T {}

/// What the error type of a fallible `#[idempotent]` function needs: framework errors (a
/// conflict, an unreachable store) are returned through it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry an `idempotency::Error`",
    label = "framework errors (a conflict, an unreachable store) are returned as this error type",
    note = "implement `From<idempotency::Error>` for `{Self}` (e.g. a variant `Idempotency(#[from] idempotency::Error)`), or return a plain value: `-> T` becomes `-> Result<T, idempotency::Error>`"
)]
pub trait FromFrameworkError {
    /// Converts a framework error.
    fn from_framework_error(e: Error) -> Self;
}

impl<E: From<Error>> FromFrameworkError for E {
    #[inline]
    fn from_framework_error(e: Error) -> Self {
        E::from(e)
    }
}

/// Where `manager = <expr>` gets its manager: an `IdempotencyManager`, a reference to one, or
/// an `Arc`/`Box` of one. Cloned (one reference-count increment) so the function's body may
/// move whatever the expression borrowed.
#[diagnostic::on_unimplemented(
    message = "`manager = ...` must give an `IdempotencyManager`, not `{Self}`",
    label = "expected an `IdempotencyManager`, a reference to one, or an `Arc` of one"
)]
pub trait ManagerSource {
    /// The manager.
    fn __idempotency_manager(&self) -> IdempotencyManager;
}

impl ManagerSource for IdempotencyManager {
    #[inline]
    fn __idempotency_manager(&self) -> IdempotencyManager {
        self.clone()
    }
}

impl<T: ManagerSource + ?Sized> ManagerSource for &T {
    #[inline]
    fn __idempotency_manager(&self) -> IdempotencyManager {
        (**self).__idempotency_manager()
    }
}

impl<T: ManagerSource + ?Sized> ManagerSource for Arc<T> {
    #[inline]
    fn __idempotency_manager(&self) -> IdempotencyManager {
        (**self).__idempotency_manager()
    }
}

impl<T: ManagerSource + ?Sized> ManagerSource for Box<T> {
    #[inline]
    fn __idempotency_manager(&self) -> IdempotencyManager {
        (**self).__idempotency_manager()
    }
}

/// What a caller-supplied idempotency key (`key = <expr>`, `#[idempotency(key)]`) may be: a
/// string, or an `Option` of one (`None` is a missing key: `Error::InvalidKey`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as an idempotency key",
    label = "expected a string (`&str`, `String`, `Cow<str>`, ...) or an `Option` of one"
)]
pub trait CustomKey {
    /// The key, or `None` when missing.
    fn __idempotency_key(&self) -> Option<&str>;
}

impl CustomKey for str {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        Some(self)
    }
}

impl CustomKey for String {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        Some(self)
    }
}

impl CustomKey for Cow<'_, str> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        Some(self)
    }
}

impl<T: CustomKey + ?Sized> CustomKey for &T {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey + ?Sized> CustomKey for &mut T {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey + ?Sized> CustomKey for Box<T> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey + ?Sized> CustomKey for Arc<T> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey + ?Sized> CustomKey for Rc<T> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        (**self).__idempotency_key()
    }
}

impl<T: CustomKey> CustomKey for Option<T> {
    #[inline]
    fn __idempotency_key(&self) -> Option<&str> {
        self.as_ref().and_then(CustomKey::__idempotency_key)
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

/// Finishes the key and builds the call with the attribute's options, applying a pending
/// [`refresh`](crate::refresh).
///
/// # Errors
/// As `KeyEncoder::finish`: `Error::InvalidKey`, `Error::Encode`.
#[inline]
pub fn finish_call(
    enc: KeyEncoder<'_>,
    ov: &Option<Override>,
    options: CallOptions,
) -> Result<Call, Error> {
    let mut call = Call::new(enc.finish()?);
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
    let manager = manager?;
    let call = call?;
    manager.execute(&call, f).await.map(Outcome::into_value)
}

/// Runs an async `-> Result<T, E>` function: its own result, fresh or replayed, or a framework
/// error converted into `E`.
pub async fn try_run<T, E, F, Fut>(
    manager: Result<IdempotencyManager, Error>,
    call: Result<Call, Error>,
    f: F,
) -> Result<T, E>
where
    T: Storable,
    E: Storable + FromFrameworkError,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let run = async move {
        let manager = manager?;
        let call = call?;
        manager.try_execute(&call, f).await
    };
    match run.await {
        Ok(outcome) => outcome.value,
        Err(e) => Err(E::from_framework_error(e)),
    }
}

/// The sync form of [`run`].
///
/// # Errors
/// The manager's, the store's or the key's `Error`.
pub fn run_sync<T, F>(
    manager: Result<IdempotencyManager, Error>,
    call: Result<Call, Error>,
    f: F,
) -> Result<T, Error>
where
    T: Storable,
    F: FnOnce() -> T,
{
    let manager = manager?;
    let call = call?;
    manager.execute_sync(&call, f).map(Outcome::into_value)
}

/// The sync form of [`try_run`].
///
/// # Errors
/// The function's own `Err`, or a framework error converted into `E`.
pub fn try_run_sync<T, E, F>(
    manager: Result<IdempotencyManager, Error>,
    call: Result<Call, Error>,
    f: F,
) -> Result<T, E>
where
    T: Storable,
    E: Storable + FromFrameworkError,
    F: FnOnce() -> Result<T, E>,
{
    let run = || {
        let manager = manager?;
        let call = call?;
        manager.try_execute_sync(&call, f)
    };
    match run() {
        Ok(outcome) => outcome.value,
        Err(e) => Err(E::from_framework_error(e)),
    }
}

/// Gives a `Duration` expression (`ttl = Duration::from_secs(60)`) its type, so that a wrong
/// type is reported at the expression.
#[inline]
pub fn duration(d: core::time::Duration) -> core::time::Duration {
    d
}
