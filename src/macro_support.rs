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
    note = "derive `serde::Serialize` and `serde::Deserialize` for `{Self}`"
)]
pub trait Storable: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Storable for T {}

/// What an error type needs when the macro stores failures without probing the type: a
/// generic error type (`-> Result<T, E>` with `E` a type parameter), or `cache_failures = true`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored as a failure of an `#[idempotent]` function",
    label = "failures are stored and replayed here (a generic error type, or `cache_failures = true`), so the error type must implement `Serialize` and `DeserializeOwned`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for the error type (for a type parameter, add the bound `{Self}: serde::Serialize + serde::de::DeserializeOwned`), or write `#[idempotent(cache_failures = false)]` so that failures are never stored and the next call runs again"
)]
pub trait StorableError: Serialize + DeserializeOwned {}

impl<E: Serialize + DeserializeOwned> StorableError for E {}

/// The return type `R` of a fallible function, for autoderef dispatch on its error type:
/// `(&&&ErrorProbe::<R>::new()).__idempotency_failures()` gives
/// - [`TransientFailures`] for `Result<T, idempotency::Error>` ([`ViaFrameworkError`]): a
///   framework error (a conflict, an unreachable store) is never the function's outcome;
/// - [`StoredFailures`] when the error type is `Serialize + DeserializeOwned` ([`ViaStoredError`]);
/// - [`TransientFailures`] for every other error type ([`ViaTransientError`]): `anyhow::Error`,
///   `Box<dyn Error + Send + Sync>`, `std::io::Error`, ...
#[allow(missing_debug_implementations)]
pub struct ErrorProbe<R: ?Sized>(core::marker::PhantomData<fn() -> Box<R>>);

impl<R: ?Sized> ErrorProbe<R> {
    /// The probe.
    #[inline]
    pub const fn new() -> Self {
        ErrorProbe(core::marker::PhantomData)
    }
}

impl<R: ?Sized> Default for ErrorProbe<R> {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

/// First choice: the error type is `idempotency::Error`, never stored.
pub trait ViaFrameworkError {
    /// How the function's failures are handled.
    fn __idempotency_failures(&self) -> TransientFailures;
}

impl<T> ViaFrameworkError for &&ErrorProbe<Result<T, Error>> {
    #[inline]
    fn __idempotency_failures(&self) -> TransientFailures {
        TransientFailures
    }
}

/// Second choice: the error type serializes, so failures are stored and replayed.
pub trait ViaStoredError {
    /// How the function's failures are handled.
    fn __idempotency_failures(&self) -> StoredFailures;
}

impl<T, E: Serialize + DeserializeOwned> ViaStoredError for &ErrorProbe<Result<T, E>> {
    #[inline]
    fn __idempotency_failures(&self) -> StoredFailures {
        StoredFailures
    }
}

/// Fallback: the error type does not serialize, so failures are never stored.
pub trait ViaTransientError {
    /// How the function's failures are handled.
    fn __idempotency_failures(&self) -> TransientFailures;
}

impl<R: ?Sized> ViaTransientError for ErrorProbe<R> {
    #[inline]
    fn __idempotency_failures(&self) -> TransientFailures {
        TransientFailures
    }
}

/// Failures are stored as `Failed` records for the failure TTL and replayed, unless failures
/// are not cached (`cache_failures = false` on the call or the manager) or the error carries an
/// `idempotency::Error` ([`Error::is_carried_by`]): those release the claim.
#[derive(Debug, Clone, Copy)]
pub struct StoredFailures;

/// Failures are never stored: every `Err` releases the claim and the next call runs again.
#[derive(Debug, Clone, Copy)]
pub struct TransientFailures;

/// Whether `call` caches failures, as the classifier that releases the claim for the others.
fn transient<E: Serialize>(
    manager: &IdempotencyManager,
    call: &Call,
) -> impl Fn(&E) -> bool + Send + Sync + 'static {
    let cache = call
        .options
        .cache_failures
        .unwrap_or(manager.config().cache_failures());
    move |e: &E| !cache || Error::is_carried_by(e)
}

/// The function's own result, or a framework error converted into `E`.
fn finish<T, E: FromFrameworkError>(r: Result<Outcome<Result<T, E>>, Error>) -> Result<T, E> {
    match r {
        Ok(outcome) => outcome.value,
        Err(e) => Err(E::from_framework_error(e)),
    }
}

// The entry points are inherent methods of the two policies, not a trait: the future of a
// trait method is opaque, and `#[async_trait]`'s `Send` check cannot see through it when the
// body borrows.

impl StoredFailures {
    /// Runs an async `-> Result<T, E>` function whose failures are stored: its own result, fresh
    /// or replayed, or a framework error converted into `E`.
    pub async fn try_run<T, E, F, Fut>(
        self,
        manager: Result<IdempotencyManager, Error>,
        call: Result<Call, Error>,
        f: F,
    ) -> Result<T, E>
    where
        T: Storable,
        E: StorableError + FromFrameworkError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let run = async move {
            let manager = manager?;
            let call = call?;
            let classify = transient::<E>(&manager, &call);
            manager.try_execute_with(&call, f, classify).await
        };
        finish(run.await)
    }

    /// The sync form of [`try_run`](Self::try_run).
    ///
    /// # Errors
    /// The function's own `Err`, or a framework error converted into `E`.
    pub fn try_run_sync<T, E, F>(
        self,
        manager: Result<IdempotencyManager, Error>,
        call: Result<Call, Error>,
        f: F,
    ) -> Result<T, E>
    where
        T: Storable,
        E: StorableError + FromFrameworkError,
        F: FnOnce() -> Result<T, E>,
    {
        let run = || {
            let manager = manager?;
            let call = call?;
            let classify = transient::<E>(&manager, &call);
            idempotency_core::block_on(manager.try_execute_with(
                &call,
                || std::future::ready(f()),
                classify,
            ))
        };
        finish(run())
    }
}

impl TransientFailures {
    /// Runs an async `-> Result<T, E>` function whose failures are never stored: its own
    /// result (an `Ok` value fresh or replayed), or a framework error converted into `E`.
    pub async fn try_run<T, E, F, Fut>(
        self,
        manager: Result<IdempotencyManager, Error>,
        call: Result<Call, Error>,
        f: F,
    ) -> Result<T, E>
    where
        T: Storable,
        E: FromFrameworkError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let run = async move {
            let manager = manager?;
            let call = call?;
            manager.try_execute_transient(&call, f).await
        };
        finish(run.await)
    }

    /// The sync form of [`try_run`](Self::try_run).
    ///
    /// # Errors
    /// The function's own `Err`, or a framework error converted into `E`.
    pub fn try_run_sync<T, E, F>(
        self,
        manager: Result<IdempotencyManager, Error>,
        call: Result<Call, Error>,
        f: F,
    ) -> Result<T, E>
    where
        T: Storable,
        E: FromFrameworkError,
        F: FnOnce() -> Result<T, E>,
    {
        let run = || {
            let manager = manager?;
            let call = call?;
            manager.try_execute_transient_sync(&call, f)
        };
        finish(run())
    }
}

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

/// Gives a `Duration` expression (`ttl = Duration::from_secs(60)`) its type, so that a wrong
/// type is reported at the expression.
#[inline]
pub fn duration(d: core::time::Duration) -> core::time::Duration {
    d
}
