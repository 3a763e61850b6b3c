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

/// The operation identity of one `#[idempotent]` function, read from the compiler.
///
/// The macro cannot see the `impl` block or the generic arguments of a call, so the generated
/// code asks the compiler at run time (these strings are constants of each instantiation):
///
/// - `item` is `std::any::type_name_of_val` of a `fn` item nested in the function:
///   `app::Users::get::__idempotency_fn`, `<app::Users as app::Tr>::get::__idempotency_fn`,
///   `app::W<_>::get::__idempotency_fn`, `app::m::free::__idempotency_fn`. Without its suffix
///   it is the function's path, the default operation name. A nested item has no generics, so
///   the name is the same for every instantiation.
/// - `closure` is the same for a closure in the function. A closure carries every generic
///   argument of its function, its `impl` and its trait, so it reads
///   `app::W<u32>::get::{{closure}}`, `app::echo<u64>::{{closure}}`,
///   `<app::Users as app::Tr>::get::{{closure}}` for a trait's default method.
///
/// Where the two differ the function is one instantiation among several, and the difference
/// enters the key's identity through [`KeyEncoder::instance`].
#[derive(Debug)]
pub struct Operation {
    /// The function's path: `item` without the nested item's segment and the `{{closure}}`
    /// segments of an `async` body.
    path: &'static str,
    /// The visible operation name when `path` is longer than an operation name may be.
    short: Option<String>,
    /// What identifies the instantiation: the generic arguments (`<u64>`) when the path
    /// carries none of its own, else the whole instantiated path; `None` when not generic.
    instance: Option<&'static str>,
}

/// The suffix `#[idempotent]`'s nested item adds to the function's path.
const ITEM_SUFFIX: &str = "::__idempotency_fn";

impl Operation {
    /// Reads the identity from the two type names described on [`Operation`].
    pub fn new(item: &'static str, closure: &'static str) -> Operation {
        let path = strip_closures(item.strip_suffix(ITEM_SUFFIX).unwrap_or(item));
        let here = strip_closures(closure);
        let instance = if here == path {
            None
        } else {
            // A free function (or a method of a non-generic type) shows its generic
            // arguments after its own path: keep only them, so that moving the function with
            // a pinned `name` keeps its keys. Otherwise (`app::W<u32>::get`, a trait's default
            // method) the instantiation is spread over the path: keep all of it. Within one
            // function every instantiation takes the same branch.
            Some(here.strip_prefix(path).unwrap_or(here))
        };
        let short = (path.len() > idempotency_core::MAX_OPERATION_BYTES).then(|| shorten(path));
        Operation {
            path,
            short,
            instance,
        }
    }

    /// The default operation name: the function's path, or, when that is longer than
    /// `MAX_OPERATION_BYTES`, its start, `~`, and 16 hex characters of a hash of the whole path.
    pub fn name(&self) -> &str {
        self.short.as_deref().unwrap_or(self.path)
    }

    /// Adds the instantiation to the key's identity, and, when the default name was shortened,
    /// the whole path (so two long paths with one shortened name never share a key).
    pub fn identify(&self, enc: &mut KeyEncoder<'_>, default_name: bool) {
        if default_name && self.short.is_some() {
            enc.instance(self.path);
        }
        if let Some(instance) = self.instance {
            enc.instance(instance);
        }
    }

    /// Checks that this compiler's `type_name` shows the generic arguments of closures, which
    /// [`Operation::new`] relies on to tell instantiations apart. `std::any::type_name` does not
    /// promise its format; should a compiler stop showing them, every `#[idempotent]` call fails
    /// with this error instead of letting two instantiations share records.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the compiler does not show them.
    pub fn check(&self) -> Result<(), Error> {
        static SHOWS_GENERICS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *SHOWS_GENERICS.get_or_init(probe::shows_generics) {
            Ok(())
        } else {
            Err(Error::InvalidKey {
                reason: "this compiler's `std::any::type_name` does not show the generic arguments of a closure, so `#[idempotent]` cannot tell the instantiations of a generic function apart; build with a compiler that does (every stable Rust since 1.76 does)",
            })
        }
    }
}

/// Where one `#[idempotent]` function is defined: a `static` each expansion declares, whose
/// address tells expansions apart (a `static` with interior mutability has its own address).
/// Functions of one name in two blocks or closures of one function have the same path as
/// `type_name` prints it (`app::outer::lookup`), so the same default operation name; the first
/// call of each site registers its path, and a second site with the same path is refused
/// ([`Operation::check_site`]) rather than sharing records.
#[allow(missing_debug_implementations)]
pub struct Site {
    /// The outcome of this site's registration, once made.
    registered: std::sync::OnceLock<bool>,
}

impl Site {
    /// A site not registered yet.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Site {
        Site {
            registered: std::sync::OnceLock::new(),
        }
    }
}

/// Registers `site` as the one definition whose default operation path is `path`; `false` when
/// another site registered the same path first.
fn register_site(path: &'static str, site: &'static Site) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};
    static SITES: std::sync::OnceLock<Mutex<HashMap<&'static str, usize>>> =
        std::sync::OnceLock::new();
    let addr = std::ptr::from_ref(site) as usize;
    let mut sites = SITES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    *sites.entry(path).or_insert(addr) == addr
}

impl Operation {
    /// [`check`](Self::check), and, for a default operation name, that no other `#[idempotent]`
    /// function in this process has the same path (two same-named functions in two blocks or
    /// closures of one function): such a second function is refused, never given the first's
    /// records.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] naming the fix (`name = "..."`), or [`check`](Self::check)'s error.
    pub fn check_site(&self, site: &'static Site, default_name: bool) -> Result<(), Error> {
        self.check()?;
        if default_name
            && !*site
                .registered
                .get_or_init(|| register_site(self.path, site))
        {
            return Err(Error::InvalidKey {
                reason: "two `#[idempotent]` functions have the same path (same-named functions in two blocks or closures of one function), so their default operation names would share records; give each its own `#[idempotent(name = \"...\")]`",
            });
        }
        Ok(())
    }
}

/// Removes trailing `{{closure}}` segments (the body of an `async fn` or `async` block). A
/// compiler that printed them differently would leave them in: a different name and instance,
/// the same for every call of one function, so keys change but are never shared.
fn strip_closures(mut path: &'static str) -> &'static str {
    while let Some(head) = path.strip_suffix("::{{closure}}") {
        path = head;
    }
    path
}

/// `path` cut to `MAX_OPERATION_BYTES`: its start, `~`, and the FNV-1a 64 hash of the whole of
/// it in hex. The hash only makes the visible name tell long paths apart at a glance; the whole
/// path also enters the key's identity (see [`Operation::identify`]).
fn shorten(path: &str) -> String {
    const HASH_LEN: usize = 1 + 16;
    let mut end = idempotency_core::MAX_OPERATION_BYTES - HASH_LEN;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{}~{hash:016x}", &path[..end])
}

/// The shapes [`Operation::new`] relies on, checked once per process.
mod probe {
    use std::any::type_name_of_val;

    // The parameter is the point: its argument must show in the closure's type name.
    #[allow(clippy::extra_unused_type_parameters)]
    fn free<T>() -> &'static str {
        type_name_of_val(&|| ())
    }

    struct Generic<T>(T);

    impl<T> Generic<T> {
        fn associated() -> &'static str {
            type_name_of_val(&|| ())
        }
    }

    trait Defaulted {
        fn provided() -> &'static str {
            type_name_of_val(&|| ())
        }
    }

    impl Defaulted for u8 {}
    impl Defaulted for u16 {}

    /// Whether closures in a generic function, in an associated function of a generic type and
    /// in a trait's provided method show the instantiation.
    pub(super) fn shows_generics() -> bool {
        let _ = Generic(());
        free::<u8>() != free::<u16>()
            && Generic::<u8>::associated() != Generic::<u16>::associated()
            && <u8 as Defaulted>::provided() != <u16 as Defaulted>::provided()
    }
}

/// The receiver of a method whose `#[idempotent]` does not say whether it is part of the key,
/// for autoref dispatch: `(&&&ReceiverCheck(&x)).receiver_is_not_in_the_key()` resolves to a
/// deprecated method (a warning at the receiver) when `x` is `NormalizeKey` or `Serialize`, and
/// to a silent one otherwise.
#[allow(missing_debug_implementations)]
pub struct ReceiverCheck<'a, T: ?Sized>(pub &'a T);

/// The receiver implements `NormalizeKey`.
pub trait NormalizeReceiver {
    /// Warns that the receiver is left out of the key.
    #[deprecated(
        note = "this method's receiver implements `NormalizeKey` but is not part of its idempotency key, so calls on different receivers with the same arguments share one record and replay its result; write `#[idempotent(include_self)]` to key by the receiver, or `#[idempotent(include_self = false)]` to leave it out"
    )]
    #[inline]
    fn receiver_is_not_in_the_key(&self) {}
}

impl<T: NormalizeKey + ?Sized> NormalizeReceiver for &&ReceiverCheck<'_, T> {}

/// The receiver implements `Serialize`.
pub trait SerializeReceiver {
    /// Warns that the receiver is left out of the key.
    #[deprecated(
        note = "this method's receiver implements `Serialize` but is not part of its idempotency key, so calls on different receivers with the same arguments share one record and replay its result; write `#[idempotent(include_self)]` to key by the receiver, or `#[idempotent(include_self = false)]` to leave it out"
    )]
    #[inline]
    fn receiver_is_not_in_the_key(&self) {}
}

impl<T: Serialize + ?Sized> SerializeReceiver for &ReceiverCheck<'_, T> {}

/// The receiver can be neither serialized nor normalized: nothing to say.
pub trait OtherReceiver {
    /// Does nothing.
    #[inline]
    fn receiver_is_not_in_the_key(&self) {}
}

impl<T: ?Sized> OtherReceiver for ReceiverCheck<'_, T> {}

#[cfg(test)]
mod tests {
    use super::{probe, strip_closures, Operation};
    use idempotency_core::{Error, KeyEncoder, MAX_OPERATION_BYTES};

    fn key(op: &Operation, default_name: bool) -> Result<String, Error> {
        let mut enc = KeyEncoder::new(if default_name { op.name() } else { "pinned" }, 1);
        op.identify(&mut enc, default_name);
        enc.arg(&1_u8);
        Ok(enc.finish()?.key.as_str().to_owned())
    }

    #[test]
    fn this_compiler_shows_the_generic_arguments_of_closures() {
        assert!(probe::shows_generics());
        assert!(
            Operation::new("a::f::__idempotency_fn", "a::f::{{closure}}")
                .check()
                .is_ok()
        );
    }

    #[test]
    fn the_path_loses_the_nested_item_and_async_closure_segments() {
        assert_eq!(strip_closures("a::f::{{closure}}::{{closure}}"), "a::f");
        // A closure among generic arguments is not a trailing segment.
        assert_eq!(
            strip_closures("a::f<a::main::{{closure}}>::{{closure}}"),
            "a::f<a::main::{{closure}}>"
        );
        let op = Operation::new(
            "a::W<_>::get::{{closure}}::__idempotency_fn",
            "a::W<u8>::get::{{closure}}::{{closure}}",
        );
        assert_eq!(op.name(), "a::W<_>::get");
        assert_eq!(op.instance, Some("a::W<u8>::get"));
    }

    #[test]
    fn a_free_function_keeps_only_its_generic_arguments() -> Result<(), Error> {
        let op = Operation::new("a::echo::__idempotency_fn", "a::echo<u32>::{{closure}}");
        assert_eq!(op.name(), "a::echo");
        assert_eq!(op.instance, Some("<u32>"));
        let plain = Operation::new("a::f::__idempotency_fn", "a::f::{{closure}}");
        assert_eq!(plain.instance, None);
        // Without instance parts the key is the one `KeyEncoder::new("a::f", 1)` derives.
        let mut enc = KeyEncoder::new("a::f", 1);
        enc.arg(&1_u8);
        assert_eq!(key(&plain, true)?, enc.finish()?.key.as_str());
        Ok(())
    }

    #[test]
    fn instantiations_differ_by_default_name_and_by_pinned_name() -> Result<(), Error> {
        let u32s = Operation::new("a::echo::__idempotency_fn", "a::echo<u32>::{{closure}}");
        let u64s = Operation::new("a::echo::__idempotency_fn", "a::echo<u64>::{{closure}}");
        assert_ne!(key(&u32s, true)?, key(&u64s, true)?);
        assert_ne!(key(&u32s, false)?, key(&u64s, false)?);
        let moved = Operation::new("b::echo::__idempotency_fn", "b::echo<u32>::{{closure}}");
        // A pinned name keeps a moved free function's keys.
        assert_eq!(key(&u32s, false)?, key(&moved, false)?);
        Ok(())
    }

    #[test]
    fn long_paths_are_shortened_to_distinct_valid_names_and_keys() -> Result<(), Error> {
        let long_a: &'static str =
            Box::leak(format!("{}::a::__idempotency_fn", "m".repeat(300)).into_boxed_str());
        let long_b: &'static str =
            Box::leak(format!("{}::b::__idempotency_fn", "m".repeat(300)).into_boxed_str());
        let a = Operation::new(long_a, &long_a[..long_a.len() - "::__idempotency_fn".len()]);
        let b = Operation::new(long_b, &long_b[..long_b.len() - "::__idempotency_fn".len()]);
        assert_eq!(a.name().len(), MAX_OPERATION_BYTES);
        assert_ne!(a.name(), b.name());
        assert!(a.name().starts_with("mmm") && a.name().contains('~'));
        assert_ne!(key(&a, true)?, key(&b, true)?);
        // Multi-byte characters are cut at a character boundary.
        let wide: &'static str =
            Box::leak(format!("{}::f::__idempotency_fn", "é".repeat(150)).into_boxed_str());
        let w = Operation::new(wide, "x");
        assert!(w.name().len() <= MAX_OPERATION_BYTES);
        assert!(KeyEncoder::new(w.name(), 1).finish().is_ok());
        Ok(())
    }
}
