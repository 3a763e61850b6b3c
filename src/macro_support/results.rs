//! What the result of an `#[idempotent]` function needs, and which policy stores its failures
//! (autoderef dispatch on the error type), and the two policies' runners.

use std::future::Future;

use idempotency_core::{Call, Error, IdempotencyManager, Outcome};
use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// The classifier of stored failures: an error that carries a framework error is transient
/// (the manager's `try_execute_with` adds "every error, when failures are not cached").
fn transient<E: Serialize>() -> impl Fn(&E) -> bool {
    |e: &E| Error::is_carried_by(e)
}

/// The function's own result, or a framework error converted into `E`.
fn finish<T, E: FromFrameworkError>(r: Result<Outcome<Result<T, E>>, Error>) -> Result<T, E> {
    match r {
        Ok(outcome) => outcome.value,
        Err(e) => {
            // Also a framework error raised before the manager ran (no default manager, a key
            // that fails to derive): an enclosing idempotent body's failure is then not stored.
            idempotency_core::framework_error_seen();
            Err(E::from_framework_error(e))
        }
    }
}

// The entry points are inherent methods of the two policies, not a trait: the future of a
// trait method is opaque, and `#[async_trait]`'s `Send` check cannot see through it when the
// body borrows.

impl StoredFailures {
    /// Runs an async `-> Result<T, E>` function whose failures are stored: its own result, fresh
    /// or replayed, or a framework error converted into `E`.
    ///
    /// # Errors
    /// The function's own `Err`, or a framework error converted into `E`.
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
            let (manager, call) = (manager?, call?);
            let classify = transient::<E>();
            manager.try_execute_with(&call, f, classify).await
        };
        finish(run.await)
    }

    /// The sync form of [`try_run`](Self::try_run).
    ///
    /// # Errors
    /// As [`try_run`](Self::try_run).
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
        // The manager's sync entry point, with no future of this crate around it (issue 17).
        let run = || {
            let (manager, call) = (manager?, call?);
            manager.try_execute_with_sync(&call, f, transient::<E>())
        };
        finish(run())
    }
}

impl TransientFailures {
    /// Runs an async `-> Result<T, E>` function whose failures are never stored: its own
    /// result (an `Ok` value fresh or replayed), or a framework error converted into `E`.
    ///
    /// # Errors
    /// The function's own `Err`, or a framework error converted into `E`.
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
            let (manager, call) = (manager?, call?);
            manager.try_execute_transient(&call, f).await
        };
        finish(run.await)
    }

    /// The sync form of [`try_run`](Self::try_run).
    ///
    /// # Errors
    /// As [`try_run`](Self::try_run).
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
            let (manager, call) = (manager?, call?);
            manager.try_execute_transient_sync(&call, f)
        };
        finish(run())
    }
}
