//! Issue 13: every error type a Rust service returns works with `#[idempotent]`, compiled in a
//! crate outside the library's own. Errors that serialize are stored as `Failed` records and
//! replayed without running the body (SEMANTICS.md scenario 7); every other error type, and
//! `idempotency::Error` itself, is never cached: the claim is released and the next call runs
//! the body again (scenario 8). Each function counts its body's runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use idempotency::{idempotent, ErrorKind, IdempotencyManager, MemoryStorage};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

static MANAGER: LazyLock<IdempotencyManager> =
    LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));

/// A manager whose default is not to cache failures.
static NO_CACHE: LazyLock<IdempotencyManager> = LazyLock::new(|| {
    IdempotencyManager::builder(MemoryStorage::new())
        .cache_failures(false)
        .build()
        .expect("valid settings")
});

fn runs(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

// ---- anyhow::Error: never cached --------------------------------------------------------------

static ANYHOW: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn fetch_anyhow(id: u32) -> Result<String, anyhow::Error> {
    ANYHOW.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        anyhow::bail!("upstream timed out");
    }
    Ok(format!("page-{id}"))
}

#[test]
fn issue_13_anyhow_ok_is_replayed_and_err_is_never_cached() {
    assert_eq!(fetch_anyhow(1).unwrap(), "page-1");
    assert_eq!(fetch_anyhow(1).unwrap(), "page-1");
    assert_eq!(runs(&ANYHOW), 1, "the Ok value is replayed");
    assert_eq!(
        fetch_anyhow(0).unwrap_err().to_string(),
        "upstream timed out"
    );
    assert_eq!(
        fetch_anyhow(0).unwrap_err().to_string(),
        "upstream timed out"
    );
    assert_eq!(
        runs(&ANYHOW),
        3,
        "an anyhow error is not cached: the body ran again"
    );
}

static ANYHOW_NO_CACHE: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER, cache_failures = false)]
fn fetch_anyhow_no_cache(id: u32) -> Result<u32, anyhow::Error> {
    ANYHOW_NO_CACHE.fetch_add(1, Ordering::SeqCst);
    anyhow::ensure!(id != 0, "bad id");
    Ok(id)
}

#[test]
fn issue_13_anyhow_with_cache_failures_false_compiles_and_reruns() {
    assert_eq!(fetch_anyhow_no_cache(2).unwrap(), 2);
    assert_eq!(fetch_anyhow_no_cache(2).unwrap(), 2);
    assert!(fetch_anyhow_no_cache(0).is_err());
    assert!(fetch_anyhow_no_cache(0).is_err());
    assert_eq!(runs(&ANYHOW_NO_CACHE), 3);
}

// ---- Box<dyn Error + Send + Sync>: never cached -----------------------------------------------

static BOXED: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn parse_boxed(s: &str) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    BOXED.fetch_add(1, Ordering::SeqCst);
    Ok(s.parse::<u64>()?)
}

#[test]
fn issue_13_boxed_dyn_error_ok_is_replayed_and_err_is_never_cached() {
    assert_eq!(parse_boxed("42").unwrap(), 42);
    assert_eq!(parse_boxed("42").unwrap(), 42);
    assert_eq!(runs(&BOXED), 1);
    assert!(parse_boxed("x").is_err());
    assert!(parse_boxed("x").is_err());
    assert_eq!(runs(&BOXED), 3, "a boxed error is not cached");
}

// ---- std::io::Result<T>: never cached; framework errors keep their kind ---------------------

static IO: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn read_io(name: &str) -> std::io::Result<String> {
    IO.fetch_add(1, Ordering::SeqCst);
    if name.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no name"));
    }
    Ok(name.to_uppercase())
}

#[test]
fn issue_13_io_result_ok_is_replayed_and_err_is_never_cached() {
    assert_eq!(read_io("a").unwrap(), "A");
    assert_eq!(read_io("a").unwrap(), "A");
    assert_eq!(runs(&IO), 1);
    assert_eq!(
        read_io("").unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    assert_eq!(
        read_io("").unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    assert_eq!(runs(&IO), 3, "an io::Error is not cached");
}

static IO_REENTER: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn reenter_io(name: &str) -> std::io::Result<String> {
    IO_REENTER.fetch_add(1, Ordering::SeqCst);
    // The same call again, while this one holds the key: a conflict, returned at once (the
    // inner body does not run).
    reenter_io(name)
}

#[test]
fn issue_13_io_result_carries_the_framework_error_and_its_kind() {
    let err = reenter_io("a").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy);
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<idempotency::Error>())
        .expect("the io::Error wraps the idempotency::Error");
    assert_eq!(inner.kind(), ErrorKind::InProgress);
    // The conflict was the body's own `Err`: not cached, so the next call runs again.
    assert!(reenter_io("a").is_err());
    assert_eq!(runs(&IO_REENTER), 2);
}

// ---- Result<T, idempotency::Error> written by hand: never cached ----------------------------

static FRAMEWORK: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn nested(n: u32) -> Result<String, idempotency::Error> {
    FRAMEWORK.fetch_add(1, Ordering::SeqCst);
    if n == 0 {
        // A conflict with itself: the body's own `Err` is a framework error.
        return nested(n);
    }
    Ok(n.to_string())
}

#[test]
fn issue_13_idempotency_error_by_hand_is_never_replayed_as_the_result() {
    assert_eq!(nested(5).unwrap(), "5");
    assert_eq!(nested(5).unwrap(), "5");
    assert_eq!(runs(&FRAMEWORK), 1);
    assert_eq!(nested(0).unwrap_err().kind(), ErrorKind::InProgress);
    assert_eq!(nested(0).unwrap_err().kind(), ErrorKind::InProgress);
    assert_eq!(
        runs(&FRAMEWORK),
        3,
        "InProgress was not stored: the outer body ran on each call"
    );
}

// ---- Result<T, String>: String serializes, so failures are stored ---------------------------

static STRING: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn charge_string(cents: u64) -> Result<u64, String> {
    STRING.fetch_add(1, Ordering::SeqCst);
    if cents == 0 {
        return Err(format!("declined: {cents}"));
    }
    Ok(cents)
}

#[test]
fn issue_13_string_error_is_stored_and_replayed() {
    assert_eq!(charge_string(7), Ok(7));
    assert_eq!(charge_string(7), Ok(7));
    assert_eq!(runs(&STRING), 1);
    assert_eq!(charge_string(0), Err("declined: 0".to_owned()));
    assert_eq!(charge_string(0), Err("declined: 0".to_owned()));
    assert_eq!(
        runs(&STRING),
        2,
        "the String error was replayed without running"
    );
}

#[test]
fn issue_13_string_error_carries_a_framework_error_as_its_message() {
    #[idempotent(manager = &*MANAGER)]
    fn again(n: u32) -> Result<u32, String> {
        if n == 0 {
            return again(n);
        }
        Ok(n)
    }
    let msg = again(0).unwrap_err();
    assert!(msg.contains("already in progress"), "{msg}");
}

// ---- A user's enum that carries the framework's error with its kind --------------------------

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
enum PaymentError {
    #[error("card declined: {0}")]
    Declined(String),
    #[error(transparent)]
    Idempotency(#[from] idempotency::Error),
}

static PAY: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn pay(order: u64, cents: u64) -> Result<u64, PaymentError> {
    PAY.fetch_add(1, Ordering::SeqCst);
    if cents == 0 {
        return Err(PaymentError::Declined(format!("order {order}")));
    }
    Ok(cents)
}

static PAY_CONFLICT: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn pay_conflict(order: u64) -> Result<u64, PaymentError> {
    PAY_CONFLICT.fetch_add(1, Ordering::SeqCst);
    // A nested call that conflicts: the framework error travels in the user's enum.
    pay_conflict(order)
}

/// What a web handler does with it: 409 for a conflict, 422 for a fingerprint mismatch, 400
/// for an invalid key.
fn status(e: &PaymentError) -> u16 {
    match e {
        PaymentError::Declined(_) => 402,
        PaymentError::Idempotency(e) => match e.kind() {
            ErrorKind::InProgress => 409,
            ErrorKind::FingerprintMismatch => 422,
            ErrorKind::InvalidKey => 400,
            _ => 503,
        },
    }
}

#[test]
fn issue_13_user_enum_declined_is_stored_and_replayed() {
    assert_eq!(pay(1, 500).unwrap(), 500);
    assert_eq!(pay(1, 500).unwrap(), 500);
    let first = pay(2, 0).unwrap_err();
    let again = pay(2, 0).unwrap_err();
    assert!(matches!(&first, PaymentError::Declined(m) if m == "order 2"));
    assert!(matches!(&again, PaymentError::Declined(m) if m == "order 2"));
    assert_eq!(status(&again), 402);
    assert_eq!(
        runs(&PAY),
        2,
        "the Ok value and the Declined error were replayed"
    );
}

#[test]
fn issue_13_user_enum_keeps_the_framework_error_kind_and_never_caches_it() {
    let e = pay_conflict(3).unwrap_err();
    assert!(matches!(&e, PaymentError::Idempotency(i) if i.kind() == ErrorKind::InProgress));
    assert_eq!(status(&e), 409);
    // The body returned a failure carrying `InProgress`: never stored, so it runs again.
    let e = pay_conflict(3).unwrap_err();
    assert_eq!(status(&e), 409);
    assert_eq!(runs(&PAY_CONFLICT), 2, "the outer body ran on each call");
}

#[test]
fn issue_13_user_enum_reports_400_and_422() {
    #[idempotent(manager = &*MANAGER, fingerprint = "reject")]
    fn refund(#[idempotency(key)] key: &str, cents: u64) -> Result<u64, PaymentError> {
        Ok(cents)
    }
    assert_eq!(status(&refund("", 1).unwrap_err()), 400);
    assert_eq!(refund("r-1", 1).unwrap(), 1);
    assert_eq!(status(&refund("r-1", 2).unwrap_err()), 422);
}

static PAY_NO_CACHE: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER, cache_failures = false)]
fn pay_no_cache(cents: u64) -> Result<u64, PaymentError> {
    PAY_NO_CACHE.fetch_add(1, Ordering::SeqCst);
    if cents == 0 {
        return Err(PaymentError::Declined("zero".into()));
    }
    Ok(cents)
}

#[test]
fn issue_13_cache_failures_false_reruns_a_serializable_error() {
    assert!(pay_no_cache(0).is_err());
    assert!(pay_no_cache(0).is_err());
    assert_eq!(runs(&PAY_NO_CACHE), 2);
}

static PAY_MANAGER_NO_CACHE: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*NO_CACHE)]
fn pay_manager_no_cache(cents: u64) -> Result<u64, PaymentError> {
    PAY_MANAGER_NO_CACHE.fetch_add(1, Ordering::SeqCst);
    if cents == 0 {
        return Err(PaymentError::Declined("zero".into()));
    }
    Ok(cents)
}

#[test]
fn issue_13_the_managers_cache_failures_default_applies() {
    assert!(pay_manager_no_cache(0).is_err());
    assert!(pay_manager_no_cache(0).is_err());
    assert_eq!(runs(&PAY_MANAGER_NO_CACHE), 2);
}

// An alias whose error type the macro cannot see: the probe still finds it.
type AppResult<T> = Result<T, PaymentError>;

static ALIAS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn pay_alias(cents: u64) -> AppResult<u64> {
    ALIAS.fetch_add(1, Ordering::SeqCst);
    Err(PaymentError::Declined(cents.to_string()))
}

#[test]
fn issue_13_alias_of_a_serializable_error_is_stored() {
    assert!(pay_alias(3).is_err());
    assert!(matches!(pay_alias(3), Err(PaymentError::Declined(m)) if m == "3"));
    assert_eq!(runs(&ALIAS), 1);
}

// ---- Generic error types ---------------------------------------------------------------------

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Rejected(String);

impl From<idempotency::Error> for Rejected {
    fn from(e: idempotency::Error) -> Self {
        Rejected(e.to_string())
    }
}

static GENERIC: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn validate<E>(n: i64) -> Result<i64, E>
where
    E: From<idempotency::Error> + From<String> + Serialize + DeserializeOwned,
{
    GENERIC.fetch_add(1, Ordering::SeqCst);
    if n < 0 {
        return Err(E::from(format!("negative: {n}")));
    }
    Ok(n)
}

impl From<String> for Rejected {
    fn from(s: String) -> Self {
        Rejected(s)
    }
}

#[test]
fn issue_13_generic_serializable_error_is_stored() {
    assert_eq!(
        validate::<Rejected>(-1),
        Err(Rejected("negative: -1".into()))
    );
    assert_eq!(
        validate::<Rejected>(-1),
        Err(Rejected("negative: -1".into()))
    );
    assert_eq!(validate::<Rejected>(4), Ok(4));
    assert_eq!(validate::<Rejected>(4), Ok(4));
    assert_eq!(runs(&GENERIC), 2);
}

static GENERIC_NO_CACHE: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER, cache_failures = false)]
fn validate_any<E: From<idempotency::Error> + From<&'static str>>(n: i64) -> Result<i64, E> {
    GENERIC_NO_CACHE.fetch_add(1, Ordering::SeqCst);
    if n < 0 {
        return Err(E::from("negative"));
    }
    Ok(n)
}

#[test]
fn issue_13_generic_error_with_cache_failures_false_needs_no_serialize() {
    type Boxed = Box<dyn std::error::Error + Send + Sync>;
    assert_eq!(
        validate_any::<Boxed>(-1).unwrap_err().to_string(),
        "negative"
    );
    assert!(validate_any::<Boxed>(-1).is_err());
    assert_eq!(validate_any::<Boxed>(1).unwrap(), 1);
    assert_eq!(validate_any::<Boxed>(1).unwrap(), 1);
    assert_eq!(runs(&GENERIC_NO_CACHE), 3);
}

// ---- async, and futures that stay `Send` ------------------------------------------------------

static ASYNC_ANYHOW: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
async fn fetch_async(id: u32) -> anyhow::Result<u32> {
    ASYNC_ANYHOW.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    anyhow::ensure!(id != 0, "timeout");
    Ok(id)
}

static ASYNC_PAY: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
async fn pay_async(cents: u64) -> Result<u64, PaymentError> {
    ASYNC_PAY.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    if cents == 0 {
        return Err(PaymentError::Declined("async".into()));
    }
    Ok(cents)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_async_functions_follow_the_same_rule_and_stay_send() {
    let a = tokio::spawn(fetch_async(0)).await.unwrap();
    let b = tokio::spawn(fetch_async(0)).await.unwrap();
    assert!(a.is_err() && b.is_err());
    assert_eq!(tokio::spawn(fetch_async(9)).await.unwrap().unwrap(), 9);
    assert_eq!(tokio::spawn(fetch_async(9)).await.unwrap().unwrap(), 9);
    assert_eq!(
        runs(&ASYNC_ANYHOW),
        3,
        "anyhow errors reran; the Ok value was replayed"
    );

    let a = tokio::spawn(pay_async(0)).await.unwrap();
    let b = tokio::spawn(pay_async(0)).await.unwrap();
    assert!(matches!(a, Err(PaymentError::Declined(_))));
    assert!(matches!(b, Err(PaymentError::Declined(_))));
    assert_eq!(runs(&ASYNC_PAY), 1, "the Declined error was replayed");
}
