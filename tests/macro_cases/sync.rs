use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use idempotency::{
    idempotent, Error, ErrorKind, IdempotencyManager, ManualClock, MemoryStorage, Timestamp,
};
use serde::{Deserialize, Serialize};

fn memory() -> IdempotencyManager {
    crate::common::store::manager()
}

static MANAGER: LazyLock<IdempotencyManager> = LazyLock::new(memory);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PayError(String);

impl From<Error> for PayError {
    fn from(e: Error) -> Self {
        PayError(format!("framework: {e}"))
    }
}

static FREE: AtomicUsize = AtomicUsize::new(0);

/// A doc comment that must survive.
#[idempotent(manager = &*MANAGER)]
pub fn free_fn(a: u32, b: &str) -> String {
    FREE.fetch_add(1, Ordering::SeqCst);
    format!("{a}-{b}")
}

#[test]
fn scenario_06_replay_after_success_sync_free_fn() {
    assert_eq!(free_fn(1, "x").unwrap(), "1-x");
    assert_eq!(free_fn(1, "x").unwrap(), "1-x");
    assert_eq!(FREE.load(Ordering::SeqCst), 1);
    assert_eq!(free_fn(2, "x").unwrap(), "2-x");
    assert_eq!(FREE.load(Ordering::SeqCst), 2);
}

static CHARGES: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn charge(cents: u64) -> Result<u64, PayError> {
    CHARGES.fetch_add(1, Ordering::SeqCst);
    if cents == 0 {
        return Err(PayError("zero".into()));
    }
    Ok(cents * 2)
}

#[test]
fn scenario_07_permanent_failure_is_cached_via_macro() {
    assert_eq!(charge(5), Ok(10));
    assert_eq!(charge(5), Ok(10));
    assert_eq!(CHARGES.load(Ordering::SeqCst), 1);
    assert_eq!(charge(0), Err(PayError("zero".into())));
    assert_eq!(charge(0), Err(PayError("zero".into())));
    assert_eq!(CHARGES.load(Ordering::SeqCst), 2);
}

static TRANSIENT: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER, cache_failures = false)]
fn flaky(n: u32) -> Result<u32, PayError> {
    TRANSIENT.fetch_add(1, Ordering::SeqCst);
    Err(PayError(format!("timeout {n}")))
}

#[test]
fn scenario_08_transient_failure_is_not_cached_with_cache_failures_false() {
    assert!(flaky(1).is_err());
    assert!(flaky(1).is_err());
    assert_eq!(TRANSIENT.load(Ordering::SeqCst), 2);
}

// ---- methods: the receiver is not part of the key unless `include_self` ----

#[derive(Serialize)]
struct Account {
    id: u32,
    #[serde(skip)]
    runs: AtomicUsize,
}

impl Account {
    #[idempotent(manager = &*MANAGER, include_self = false)]
    fn by_ref(&self, amount: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.id + amount
    }

    #[idempotent(manager = &*MANAGER, include_self)]
    fn keyed_by_self(&self, amount: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.id + amount
    }

    #[idempotent(manager = &*MANAGER, include_self = false)]
    fn by_mut(&mut self, amount: u32) -> u32 {
        *self.runs.get_mut() += 1;
        self.id += amount;
        self.id
    }

    #[idempotent(manager = &*MANAGER, include_self = false)]
    fn by_value(self, amount: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.id * amount
    }
}

fn account(id: u32) -> Account {
    Account {
        id,
        runs: AtomicUsize::new(0),
    }
}

#[test]
fn scenario_18_methods_leave_the_receiver_out_unless_include_self() {
    let a = account(10);
    let b = account(20);
    assert_eq!(a.by_ref(1).unwrap(), 11);
    // Same argument, other receiver: same key, so b replays a's result.
    assert_eq!(b.by_ref(1).unwrap(), 11);
    assert_eq!(
        a.runs.load(Ordering::SeqCst) + b.runs.load(Ordering::SeqCst),
        1
    );

    let c = account(30);
    let d = account(40);
    assert_eq!(c.keyed_by_self(1).unwrap(), 31);
    assert_eq!(d.keyed_by_self(1).unwrap(), 41);
    assert_eq!(c.keyed_by_self(1).unwrap(), 31);
    assert_eq!(c.runs.load(Ordering::SeqCst), 1);
    assert_eq!(d.runs.load(Ordering::SeqCst), 1);
}

#[test]
fn scenario_06_mut_self_and_self_by_value() {
    let mut a = account(1);
    assert_eq!(a.by_mut(5).unwrap(), 6);
    assert_eq!(a.by_mut(5).unwrap(), 6); // replayed: the body did not run again
    assert_eq!(a.id, 6);
    assert_eq!(*a.runs.get_mut(), 1);

    let runs = account(3).by_value(7).unwrap();
    assert_eq!(runs, 21);
    assert_eq!(account(4).by_value(7).unwrap(), 21); // replayed across receivers
}

// ---- parameters: generics, impl Trait, patterns, references, skip ----

static GENERIC: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn generic<T, U>(t: T, u: &U, items: &[u8], s: &str, extra: impl Serialize) -> usize
where
    T: Serialize + Clone,
    U: Serialize + ?Sized,
{
    let _ = (t.clone(), u, &extra);
    GENERIC.fetch_add(1, Ordering::SeqCst);
    items.len() + s.len()
}

#[test]
fn scenario_17_generics_where_clauses_impl_trait_and_references() {
    assert_eq!(generic(1_u8, "u", &[1, 2], "abc", 9_i64).unwrap(), 5);
    assert_eq!(generic(1_u8, "u", &[1, 2], "abc", 9_i64).unwrap(), 5);
    assert_eq!(GENERIC.load(Ordering::SeqCst), 1);
    assert_eq!(generic(1_u8, "u", &[1, 2], "abc", 10_i64).unwrap(), 5);
    assert_eq!(GENERIC.load(Ordering::SeqCst), 2);
}

static PATTERNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn patterns((a, b): (u32, u32), mut c: Vec<u32>, _: u8) -> u32 {
    PATTERNS.fetch_add(1, Ordering::SeqCst);
    c.push(a);
    c.push(b);
    c.iter().sum()
}

#[test]
fn scenario_17_pattern_parameters_and_mut_bindings() {
    assert_eq!(patterns((1, 2), vec![3], 0).unwrap(), 6);
    assert_eq!(patterns((1, 2), vec![3], 0).unwrap(), 6);
    assert_eq!(PATTERNS.load(Ordering::SeqCst), 1);
    // The wildcard parameter is still part of the key.
    assert_eq!(patterns((1, 2), vec![3], 1).unwrap(), 6);
    assert_eq!(PATTERNS.load(Ordering::SeqCst), 2);
}

struct Logger(AtomicUsize);

static SKIPPED: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn with_skip(
    order: u32,
    #[idempotency(skip)] log: &Logger,
    #[idempotency(skip)] trace_id: u64,
) -> u32 {
    log.0.fetch_add(1, Ordering::SeqCst);
    SKIPPED.fetch_add(1, Ordering::SeqCst);
    let _ = trace_id;
    order
}

#[test]
fn scenario_17_skipped_parameters_do_not_change_the_key() {
    let log = Logger(AtomicUsize::new(0));
    assert_eq!(with_skip(1, &log, 100).unwrap(), 1);
    assert_eq!(with_skip(1, &log, 200).unwrap(), 1);
    assert_eq!(SKIPPED.load(Ordering::SeqCst), 1);
}

// ---- control flow ----

static EARLY: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn early(input: &str) -> Result<u32, PayError> {
    EARLY.fetch_add(1, Ordering::SeqCst);
    if input.is_empty() {
        return Ok(0);
    }
    let n: u32 = input.parse().map_err(|_| PayError("nan".into()))?;
    Ok(n + 1)
}

#[test]
fn scenario_07_early_return_and_question_mark_in_the_body() {
    assert_eq!(early(""), Ok(0));
    assert_eq!(early("41"), Ok(42));
    assert_eq!(early("x"), Err(PayError("nan".into())));
    assert_eq!(early("x"), Err(PayError("nan".into())));
    assert_eq!(early("41"), Ok(42));
    assert_eq!(EARLY.load(Ordering::SeqCst), 3);
}

static FIB: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn fib(n: u64) -> Result<u64, PayError> {
    FIB.fetch_add(1, Ordering::SeqCst);
    if n < 2 {
        return Ok(n);
    }
    Ok(fib(n - 1)? + fib(n - 2)?)
}

#[test]
fn scenario_06_recursion_runs_each_input_once() {
    assert_eq!(fib(20), Ok(6765));
    // Each n in 0..=20 ran once; every other call was a replay.
    assert_eq!(FIB.load(Ordering::SeqCst), 21);
}

static OUTER: AtomicUsize = AtomicUsize::new(0);
static INNER: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn inner(x: u32) -> u32 {
    INNER.fetch_add(1, Ordering::SeqCst);
    x * 10
}

#[idempotent(manager = &*MANAGER)]
fn outer(x: u32) -> Result<u32, PayError> {
    OUTER.fetch_add(1, Ordering::SeqCst);
    Ok(inner(x)? + inner(x + 1)?)
}

#[test]
fn scenario_06_nested_idempotent_calls() {
    assert_eq!(outer(1), Ok(30));
    assert_eq!(outer(1), Ok(30));
    assert_eq!(inner(2).unwrap(), 20); // stored by the nested call
    assert_eq!(OUTER.load(Ordering::SeqCst), 1);
    assert_eq!(INNER.load(Ordering::SeqCst), 2);
}

static MUTATED: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn mutates(mut list: Vec<u32>, mut n: u32) -> Vec<u32> {
    MUTATED.fetch_add(1, Ordering::SeqCst);
    n += 1;
    list.push(n);
    list
}

#[test]
fn scenario_06_key_is_computed_before_the_body_mutates_its_arguments() {
    assert_eq!(mutates(vec![1], 1).unwrap(), vec![1, 2]);
    assert_eq!(mutates(vec![1], 1).unwrap(), vec![1, 2]);
    assert_eq!(MUTATED.load(Ordering::SeqCst), 1);
}

static REENTRANT: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER, on_conflict = reject)]
fn reenters(x: u32) -> Result<u32, PayError> {
    REENTRANT.fetch_add(1, Ordering::SeqCst);
    // Calling itself with the same input while its own record is `Pending`.
    match reenters(x) {
        Err(PayError(msg)) if msg.contains("already in progress") => Ok(x),
        other => other,
    }
}

#[test]
fn scenario_01_conflict_reject_while_pending() {
    assert_eq!(reenters(3), Ok(3));
    assert_eq!(REENTRANT.load(Ordering::SeqCst), 1);
}

// ---- options ----

static TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = m, ttl = 60, pending_timeout = 30)]
fn ttl_seconds(#[idempotency(skip)] m: &IdempotencyManager) -> usize {
    let _ = m;
    TTL_RUNS.fetch_add(1, Ordering::SeqCst)
}

static TTL_DURATION_RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(
    manager = m,
    ttl = Duration::from_millis(1500),
    pending_timeout = Duration::from_secs(1)
)]
fn ttl_duration(#[idempotency(skip)] m: &IdempotencyManager) -> usize {
    let _ = m;
    TTL_DURATION_RUNS.fetch_add(1, Ordering::SeqCst)
}

#[test]
fn scenario_21_ttl_in_seconds_and_as_a_duration() {
    let clock = ManualClock::new(Timestamp(1_000_000));
    let m = IdempotencyManager::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
    assert_eq!(ttl_seconds(&m).unwrap(), 0);
    clock.advance(Duration::from_millis(59_999));
    assert_eq!(ttl_seconds(&m).unwrap(), 0); // within the TTL: replayed
    clock.advance(Duration::from_millis(2));
    assert_eq!(ttl_seconds(&m).unwrap(), 1); // expired: ran again
    assert_eq!(TTL_RUNS.load(Ordering::SeqCst), 2);

    assert_eq!(ttl_duration(&m).unwrap(), 0);
    clock.advance(Duration::from_millis(1499));
    assert_eq!(ttl_duration(&m).unwrap(), 0);
    clock.advance(Duration::from_millis(2));
    assert_eq!(ttl_duration(&m).unwrap(), 1);
}

static FAILURE_TTL: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = m, failure_ttl = 5)]
fn fails(#[idempotency(skip)] m: &IdempotencyManager) -> Result<(), PayError> {
    let _ = m;
    FAILURE_TTL.fetch_add(1, Ordering::SeqCst);
    Err(PayError("declined".into()))
}

#[test]
fn scenario_21_failure_ttl_is_separate() {
    let clock = ManualClock::new(Timestamp(1_000_000));
    let m = IdempotencyManager::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
    assert!(fails(&m).is_err());
    clock.advance(Duration::from_millis(4_999));
    assert!(fails(&m).is_err());
    assert_eq!(FAILURE_TTL.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_millis(2));
    assert!(fails(&m).is_err());
    assert_eq!(FAILURE_TTL.load(Ordering::SeqCst), 2);
}

static NAMED_A: AtomicUsize = AtomicUsize::new(0);

mod first {
    use super::*;
    #[idempotent(manager = &*MANAGER, name = "billing::refund")]
    pub fn refund(order: u32) -> u32 {
        NAMED_A.fetch_add(1, Ordering::SeqCst);
        order
    }
}

mod second {
    use super::*;
    #[idempotent(manager = &*MANAGER, name = "billing::refund")]
    pub fn refund_renamed(order: u32) -> u32 {
        NAMED_A.fetch_add(1, Ordering::SeqCst);
        order + 1000
    }

    #[idempotent(manager = &*MANAGER, name = "billing::refund", version = 2)]
    pub fn refund_v2(order: u32) -> u32 {
        NAMED_A.fetch_add(1, Ordering::SeqCst);
        order + 2000
    }
}

#[test]
fn scenario_18_name_pins_the_operation_and_version_separates_it() {
    assert_eq!(first::refund(7).unwrap(), 7);
    // Moved and renamed, but `name` pins the identity: replayed.
    assert_eq!(second::refund_renamed(7).unwrap(), 7);
    assert_eq!(NAMED_A.load(Ordering::SeqCst), 1);
    // A new version is a new operation.
    assert_eq!(second::refund_v2(7).unwrap(), 2007);
    assert_eq!(NAMED_A.load(Ordering::SeqCst), 2);
}

static CHARGE_DEFAULT: AtomicUsize = AtomicUsize::new(0);
static REFUND_DEFAULT: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER, key = request_id)]
fn charge_with_key(request_id: &str, cents: u64) -> u64 {
    CHARGE_DEFAULT.fetch_add(1, Ordering::SeqCst);
    cents
}

#[idempotent(manager = &*MANAGER, key = request_id)]
fn refund_with_key(request_id: &str, cents: u64) -> u64 {
    REFUND_DEFAULT.fetch_add(1, Ordering::SeqCst);
    cents
}

#[test]
fn scenario_18_same_user_key_in_two_functions_runs_both() {
    assert_eq!(charge_with_key("k", 5).unwrap(), 5);
    assert_eq!(refund_with_key("k", 5).unwrap(), 5);
    assert_eq!(charge_with_key("k", 5).unwrap(), 5);
    assert_eq!(CHARGE_DEFAULT.load(Ordering::SeqCst), 1);
    assert_eq!(REFUND_DEFAULT.load(Ordering::SeqCst), 1);
}

static GROUPED: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER, key = format!("{group}"))]
fn grouped(group: &str, cents: u64) -> u64 {
    GROUPED.fetch_add(1, Ordering::SeqCst);
    cents
}

#[test]
fn scenario_16_custom_key_with_different_inputs_replays_by_default() {
    assert_eq!(grouped("grouped", 10).unwrap(), 10);
    // Same key, different amount: the stored result is replayed (the default policy).
    assert_eq!(grouped("grouped", 99).unwrap(), 10);
    assert_eq!(GROUPED.load(Ordering::SeqCst), 1);
}

static EMPTY: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER, key = request_id)]
fn empty_key(request_id: String) -> u64 {
    EMPTY.fetch_add(1, Ordering::SeqCst);
    1
}

#[test]
fn scenario_32_empty_custom_key_is_invalid() {
    let err = empty_key(String::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
    assert_eq!(EMPTY.load(Ordering::SeqCst), 0);
}

static KEY_PARAM: AtomicUsize = AtomicUsize::new(0);

#[derive(Serialize)]
struct Payment {
    cents: u64,
    currency: &'static str,
}

#[idempotent(manager = &*MANAGER, fingerprint = "reject")]
fn pay(
    #[idempotency(key)] idempotency_key: Option<&str>,
    payment: &Payment,
) -> Result<u64, PayError> {
    KEY_PARAM.fetch_add(1, Ordering::SeqCst);
    Ok(payment.cents)
}

#[test]
fn scenario_16_key_parameter_with_fingerprint_reject() {
    let p = Payment {
        cents: 100,
        currency: "EUR",
    };
    assert_eq!(pay(Some("stripe-1"), &p), Ok(100));
    assert_eq!(pay(Some("stripe-1"), &p), Ok(100));
    assert_eq!(KEY_PARAM.load(Ordering::SeqCst), 1);
    let other = Payment {
        cents: 999,
        currency: p.currency,
    };
    let err = pay(Some("stripe-1"), &other).unwrap_err();
    assert!(err.0.contains("different inputs"), "{err:?}");
    assert_eq!(KEY_PARAM.load(Ordering::SeqCst), 1);
}

#[test]
fn scenario_32_missing_key_parameter_is_invalid() {
    let p = Payment {
        cents: 1,
        currency: "EUR",
    };
    let err = pay(None, &p).unwrap_err();
    assert!(err.0.contains("invalid idempotency key"), "{err:?}");
}

static SCOPED: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER, scope = tenant, key = order_id)]
fn place(tenant: &str, order_id: &str) -> String {
    SCOPED.fetch_add(1, Ordering::SeqCst);
    format!("{tenant}/{order_id}")
}

#[test]
fn scenario_19_scope_isolates_tenants() {
    assert_eq!(place("t1", "order-1").unwrap(), "t1/order-1");
    assert_eq!(place("t2", "order-1").unwrap(), "t2/order-1");
    assert_eq!(place("t1", "order-1").unwrap(), "t1/order-1");
    assert_eq!(SCOPED.load(Ordering::SeqCst), 2);
}

// ---- per-call overrides ----

static OVERRIDDEN: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn overridable(x: u32) -> u32 {
    OVERRIDDEN.fetch_add(1, Ordering::SeqCst);
    x + inner_counted(x).unwrap_or(0)
}

static NESTED_OVERRIDE: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn inner_counted(x: u32) -> u32 {
    NESTED_OVERRIDE.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn scenario_06_with_key_and_refresh_apply_to_one_call_only() {
    assert_eq!(
        idempotency::with_key_sync("explicit", || overridable(1)).unwrap(),
        2
    );
    assert_eq!(
        idempotency::with_key_sync("explicit", || overridable(1)).unwrap(),
        2
    );
    assert_eq!(OVERRIDDEN.load(Ordering::SeqCst), 1);
    // The nested call did not inherit the explicit key: a plain call replays it.
    assert_eq!(inner_counted(1).unwrap(), 1);
    assert_eq!(NESTED_OVERRIDE.load(Ordering::SeqCst), 1);
    // Without the override the derived key is another identity.
    assert_eq!(overridable(1).unwrap(), 2);
    assert_eq!(OVERRIDDEN.load(Ordering::SeqCst), 2);
    // Refresh runs again (the nested call is not refreshed: it replays).
    assert_eq!(idempotency::refresh_sync(|| overridable(1)).unwrap(), 2);
    assert_eq!(OVERRIDDEN.load(Ordering::SeqCst), 3);
    assert_eq!(NESTED_OVERRIDE.load(Ordering::SeqCst), 1);
    // An empty explicit key is refused.
    let err = idempotency::with_key_sync("", || overridable(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
}

// ---- the default manager ----

static DEFAULTED: AtomicUsize = AtomicUsize::new(0);

#[idempotent]
fn uses_default_manager(x: u32) -> u32 {
    DEFAULTED.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn scenario_06_default_manager_is_used_without_manager_argument() {
    let _ = idempotency::set_default_manager(memory());
    assert_eq!(uses_default_manager(4).unwrap(), 4);
    assert_eq!(uses_default_manager(4).unwrap(), 4);
    assert_eq!(DEFAULTED.load(Ordering::SeqCst), 1);
}

#[test]
fn the_store_under_test_is_the_one_this_binary_names() {
    let debug = format!("{:?}", MANAGER.storage());
    let expected = if crate::common::store::ON_FILE_STORE {
        "FileStorage"
    } else {
        "MemoryStorage"
    };
    assert!(debug.contains(expected), "{expected} expected, got {debug}");
}

// ---- operation identity: paths, instantiations and the receiver (issue 12) ----

/// The operation names of every record in `store`, sorted.
fn operations(store: &dyn idempotency::DynStorageAdmin) -> Vec<String> {
    let page = idempotency::block_on(store.list(None, 1000)).unwrap();
    assert!(page.cursor.is_none());
    let mut names: Vec<String> = page
        .items
        .iter()
        .map(|l| match l {
            idempotency::Listed::Record(o) => o.record.key.operation().to_owned(),
            idempotency::Listed::Unreadable { error, .. } => panic!("unreadable record: {error}"),
        })
        .collect();
    names.sort();
    names
}

static ECHO: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = m)]
fn echo<T: Serialize + serde::de::DeserializeOwned>(
    #[idempotency(skip)] m: &IdempotencyManager,
    x: T,
) -> T {
    ECHO.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn scenario_18_instantiations_of_a_generic_function_never_share_a_record() {
    let (m, store) = crate::common::store::manager_and_store();
    assert_eq!(echo(&m, 5_u32).unwrap(), 5_u32);
    // Another instantiation, same serialized argument: the body runs.
    assert_eq!(echo(&m, 5_u64).unwrap(), 5_u64);
    assert_eq!(ECHO.load(Ordering::SeqCst), 2);
    assert_eq!(echo(&m, 5_u32).unwrap(), 5_u32);
    assert_eq!(echo(&m, 5_u64).unwrap(), 5_u64);
    assert_eq!(ECHO.load(Ordering::SeqCst), 2);
    // Free functions keep `module_path!()::name` as their operation name.
    let name = concat!(module_path!(), "::echo").to_owned();
    assert_eq!(operations(&*store), vec![name.clone(), name]);
}

static TWICE: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = m)]
fn twice<T: Serialize + serde::de::DeserializeOwned + Clone>(
    #[idempotency(skip)] m: &IdempotencyManager,
    x: T,
) -> Vec<T> {
    TWICE.fetch_add(1, Ordering::SeqCst);
    vec![x.clone(), x]
}

#[test]
fn scenario_18_instantiation_only_in_the_result_type_never_shares_a_record() {
    let m = memory();
    assert_eq!(twice(&m, 200_u8).unwrap(), vec![200_u8, 200]);
    // `Vec<u16>` would not decode from the `Vec<u8>` record: it must not be read.
    assert_eq!(twice(&m, 200_u16).unwrap(), vec![200_u16, 200]);
    assert_eq!(twice(&m, 200_u16).unwrap(), vec![200_u16, 200]);
    assert_eq!(TWICE.load(Ordering::SeqCst), 2);
}

static PAGES: AtomicUsize = AtomicUsize::new(0);

/// A type parameter that appears in no parameter and no result.
#[idempotent(manager = m)]
fn page_size<T>(#[idempotency(skip)] m: &IdempotencyManager, pages: usize) -> usize {
    PAGES.fetch_add(1, Ordering::SeqCst);
    pages * std::mem::size_of::<T>()
}

/// A const parameter.
#[idempotent(manager = m)]
fn chunks<const N: usize>(#[idempotency(skip)] m: &IdempotencyManager, len: usize) -> usize {
    PAGES.fetch_add(1, Ordering::SeqCst);
    len.div_ceil(N)
}

#[test]
fn scenario_18_type_and_const_parameters_outside_the_signature_never_share_a_record() {
    let m = memory();
    assert_eq!(page_size::<u16>(&m, 3).unwrap(), 6);
    assert_eq!(page_size::<u64>(&m, 3).unwrap(), 24);
    assert_eq!(chunks::<2>(&m, 9).unwrap(), 5);
    assert_eq!(chunks::<3>(&m, 9).unwrap(), 3);
    assert_eq!(page_size::<u16>(&m, 3).unwrap(), 6);
    assert_eq!(chunks::<3>(&m, 9).unwrap(), 3);
    assert_eq!(PAGES.load(Ordering::SeqCst), 4);
}

static GETS: AtomicUsize = AtomicUsize::new(0);

struct Users;
struct Orders;

impl Users {
    #[idempotent(manager = m)]
    fn get(&self, #[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        GETS.fetch_add(1, Ordering::SeqCst);
        format!("user-{id}")
    }
}

impl Orders {
    #[idempotent(manager = m)]
    fn get(&self, #[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        GETS.fetch_add(1, Ordering::SeqCst);
        format!("order-{id}")
    }
}

#[test]
fn scenario_18_methods_of_two_types_in_one_module_never_share_a_record() {
    let (m, store) = crate::common::store::manager_and_store();
    assert_eq!(Users.get(&m, 1).unwrap(), "user-1");
    assert_eq!(Orders.get(&m, 1).unwrap(), "order-1");
    assert_eq!(GETS.load(Ordering::SeqCst), 2);
    assert_eq!(Users.get(&m, 1).unwrap(), "user-1");
    assert_eq!(Orders.get(&m, 1).unwrap(), "order-1");
    assert_eq!(GETS.load(Ordering::SeqCst), 2);
    // The default operation name is the method's path, type included.
    assert_eq!(
        operations(&*store),
        vec![
            concat!(module_path!(), "::Orders::get").to_owned(),
            concat!(module_path!(), "::Users::get").to_owned(),
        ]
    );
}

static FINDS: AtomicUsize = AtomicUsize::new(0);

trait Lookup {
    fn find(&self, m: &IdempotencyManager, id: u64) -> Result<String, Error>;

    /// A provided method with neither a receiver nor `Self` in its signature.
    #[idempotent(manager = m)]
    fn describe(#[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        FINDS.fetch_add(1, Ordering::SeqCst);
        format!(
            "{}-{id}",
            std::any::type_name::<Self>()
                .rsplit("::")
                .next()
                .unwrap_or("")
        )
    }

    /// A provided method with a receiver (`Self: ?Sized` here).
    #[idempotent(manager = m)]
    fn label(&self, #[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        FINDS.fetch_add(1, Ordering::SeqCst);
        let name = std::any::type_name::<Self>();
        format!("{}#{id}", name.rsplit("::").next().unwrap_or(""))
    }
}

impl Lookup for Users {
    #[idempotent(manager = m)]
    fn find(&self, #[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        FINDS.fetch_add(1, Ordering::SeqCst);
        format!("user-{id}")
    }
}

impl Lookup for Orders {
    #[idempotent(manager = m)]
    fn find(&self, #[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        FINDS.fetch_add(1, Ordering::SeqCst);
        format!("order-{id}")
    }
}

#[test]
fn scenario_18_trait_impls_and_provided_methods_for_two_types_never_share_a_record() {
    let m = memory();
    assert_eq!(Users.find(&m, 1).unwrap(), "user-1");
    assert_eq!(Orders.find(&m, 1).unwrap(), "order-1");
    assert_eq!(<Users as Lookup>::describe(&m, 1).unwrap(), "Users-1");
    assert_eq!(<Orders as Lookup>::describe(&m, 1).unwrap(), "Orders-1");
    assert_eq!(FINDS.load(Ordering::SeqCst), 4);
    assert_eq!(Orders.find(&m, 1).unwrap(), "order-1");
    assert_eq!(<Orders as Lookup>::describe(&m, 1).unwrap(), "Orders-1");
    assert_eq!(FINDS.load(Ordering::SeqCst), 4);
    assert_eq!(Users.label(&m, 1).unwrap(), "Users#1");
    assert_eq!(Orders.label(&m, 1).unwrap(), "Orders#1");
    assert_eq!(Orders.label(&m, 1).unwrap(), "Orders#1");
    assert_eq!(FINDS.load(Ordering::SeqCst), 6);
}

trait Table {
    const NAME: &'static str;
}

struct UserRow;
struct OrderRow;

impl Table for UserRow {
    const NAME: &'static str = "users";
}

impl Table for OrderRow {
    const NAME: &'static str = "orders";
}

struct Repo<T>(std::marker::PhantomData<T>);

static REPO: AtomicUsize = AtomicUsize::new(0);

impl<T: Table> Repo<T> {
    /// An associated function of a generic type whose parameter is in no parameter, no result
    /// and no receiver.
    #[idempotent(manager = m)]
    fn count(#[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
        REPO.fetch_add(1, Ordering::SeqCst);
        format!("{}-{id}", T::NAME)
    }

    /// A generic method of a generic type.
    #[idempotent(manager = m)]
    fn tagged<U: Serialize + serde::de::DeserializeOwned>(
        &self,
        #[idempotency(skip)] m: &IdempotencyManager,
        value: U,
    ) -> (String, U) {
        REPO.fetch_add(1, Ordering::SeqCst);
        (T::NAME.to_owned(), value)
    }
}

impl<T: Table> Repo<T> {
    fn new() -> Self {
        Repo(std::marker::PhantomData)
    }
}

#[test]
fn scenario_18_methods_of_a_generic_type_never_share_a_record_across_instantiations() {
    let (m, store) = crate::common::store::manager_and_store();
    assert_eq!(Repo::<UserRow>::count(&m, 1).unwrap(), "users-1");
    assert_eq!(Repo::<OrderRow>::count(&m, 1).unwrap(), "orders-1");
    assert_eq!(REPO.load(Ordering::SeqCst), 2);
    let users = Repo::<UserRow>::new();
    let orders = Repo::<OrderRow>::new();
    assert_eq!(users.tagged(&m, 7_u8).unwrap(), ("users".to_owned(), 7_u8));
    assert_eq!(users.tagged(&m, 7_i8).unwrap(), ("users".to_owned(), 7_i8));
    assert_eq!(
        orders.tagged(&m, 7_u8).unwrap(),
        ("orders".to_owned(), 7_u8)
    );
    assert_eq!(REPO.load(Ordering::SeqCst), 5);
    assert_eq!(Repo::<OrderRow>::count(&m, 1).unwrap(), "orders-1");
    assert_eq!(
        orders.tagged(&m, 7_u8).unwrap(),
        ("orders".to_owned(), 7_u8)
    );
    assert_eq!(REPO.load(Ordering::SeqCst), 5);
    // The visible name is the path with the type's parameters as `_` (stores accept `<`, `>`
    // and spaces: they hash the key into file names and Redis keys).
    let ops = operations(&*store);
    let count = concat!(module_path!(), "::Repo<_>::count");
    assert_eq!(ops.iter().filter(|o| *o == count).count(), 2, "{ops:?}");
}

static PINNED: AtomicUsize = AtomicUsize::new(0);

/// A pinned name replaces the path, not the instantiation.
#[idempotent(manager = m, name = "pinned::echo")]
fn pinned_echo<T: Serialize + serde::de::DeserializeOwned>(
    #[idempotency(skip)] m: &IdempotencyManager,
    x: T,
) -> T {
    PINNED.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn scenario_18_a_pinned_name_still_separates_instantiations() {
    let (m, store) = crate::common::store::manager_and_store();
    assert_eq!(pinned_echo(&m, 5_u32).unwrap(), 5_u32);
    assert_eq!(pinned_echo(&m, 5_u64).unwrap(), 5_u64);
    assert_eq!(pinned_echo(&m, 5_u64).unwrap(), 5_u64);
    assert_eq!(PINNED.load(Ordering::SeqCst), 2);
    assert_eq!(operations(&*store), vec!["pinned::echo", "pinned::echo"]);
}

static BILLED: AtomicUsize = AtomicUsize::new(0);

#[derive(Serialize)]
struct Billing {
    fee: u64,
}

impl Billing {
    #[idempotent(manager = m, include_self)]
    fn charge(&self, #[idempotency(skip)] m: &IdempotencyManager, amount: u64) -> u64 {
        BILLED.fetch_add(1, Ordering::SeqCst);
        self.fee + amount
    }

    #[idempotent(manager = m, include_self = false)]
    fn charge_any(&self, #[idempotency(skip)] m: &IdempotencyManager, amount: u64) -> u64 {
        BILLED.fetch_add(1, Ordering::SeqCst);
        self.fee + amount
    }
}

#[test]
fn scenario_18_receiver_in_the_key_with_include_self_and_out_with_include_self_false() {
    let m = memory();
    assert_eq!(Billing { fee: 5 }.charge(&m, 1).unwrap(), 6);
    assert_eq!(Billing { fee: 100 }.charge(&m, 1).unwrap(), 101);
    assert_eq!(BILLED.load(Ordering::SeqCst), 2);
    assert_eq!(Billing { fee: 5 }.charge(&m, 1).unwrap(), 6);
    assert_eq!(BILLED.load(Ordering::SeqCst), 2);
    // Left out on purpose: the documented behaviour is that the second receiver replays the
    // first one's result.
    assert_eq!(Billing { fee: 5 }.charge_any(&m, 1).unwrap(), 6);
    assert_eq!(Billing { fee: 100 }.charge_any(&m, 1).unwrap(), 6);
    assert_eq!(BILLED.load(Ordering::SeqCst), 3);
}

static BLOCKS: AtomicUsize = AtomicUsize::new(0);

/// Two functions of one name in two blocks of one function (or two closures) have the same
/// path as the compiler prints it, so the same default operation name: the second must never
/// replay the first's record. It is refused with an error that names the fix.
#[test]
fn scenario_18_same_named_functions_in_two_blocks_never_share_a_record() {
    let m = memory();
    let first = {
        #[idempotent(manager = m)]
        fn lookup(#[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
            BLOCKS.fetch_add(1, Ordering::SeqCst);
            format!("first-{id}")
        }
        (lookup(&m, 1), lookup(&m, 1))
    };
    let second = {
        #[idempotent(manager = m)]
        fn lookup(#[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
            BLOCKS.fetch_add(1, Ordering::SeqCst);
            format!("second-{id}")
        }
        lookup(&m, 1)
    };
    assert_eq!(first.0.unwrap(), "first-1");
    assert_eq!(first.1.unwrap(), "first-1");
    let err = second.expect_err("the second function must not get the first's result");
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
    assert!(err.to_string().contains("name = "), "{err}");
    assert_eq!(BLOCKS.load(Ordering::SeqCst), 1);
    // A pinned name is the user's choice of identity, and is honoured.
    let pinned = {
        #[idempotent(manager = m, name = "blocks::pinned")]
        fn lookup(#[idempotency(skip)] m: &IdempotencyManager, id: u64) -> String {
            format!("pinned-{id}")
        }
        lookup(&m, 1)
    };
    assert_eq!(pinned.unwrap(), "pinned-1");
}

static STR_INNER: AtomicUsize = AtomicUsize::new(0);
static STR_OUTER: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = m)]
fn str_inner(#[idempotency(skip)] m: &IdempotencyManager, n: u64) -> Result<u64, String> {
    STR_INNER.fetch_add(1, Ordering::SeqCst);
    Ok(n)
}

#[idempotent(manager = m)]
fn str_outer(#[idempotency(skip)] m: &IdempotencyManager, n: u64) -> Result<u64, String> {
    STR_OUTER.fetch_add(1, Ordering::SeqCst);
    // `?` turns a nested call's framework error into a plain `String`.
    let v = str_inner(m, n)?;
    Ok(v + 1)
}

/// A nested call's conflict, converted by `?` into an error type that cannot hold an
/// `idempotency::Error` (`String`, a user's `Idempotency(String)` variant), is not the outer
/// function's outcome: it is never stored, and the next call runs again.
#[test]
fn scenario_08_a_nested_framework_error_turned_into_a_string_is_not_cached() {
    let m = memory();
    let mut enc = idempotency::KeyEncoder::new(concat!(module_path!(), "::str_inner"), 1);
    enc.arg(&1_u64);
    let call = idempotency::Call::new(enc.finish().unwrap());
    let idempotency::Begin::Acquired(held) =
        idempotency::block_on(m.begin_operation(&call)).unwrap()
    else {
        panic!("the inner key is free");
    };
    let first = str_outer(&m, 1).unwrap_err();
    assert!(first.contains("in progress"), "{first}");
    assert_eq!(STR_OUTER.load(Ordering::SeqCst), 1);
    assert!(idempotency::block_on(m.release_operation(&held)).unwrap());
    assert_eq!(str_outer(&m, 1), Ok(2), "the conflict was not cached");
    assert_eq!(STR_OUTER.load(Ordering::SeqCst), 2);
    assert_eq!(STR_INNER.load(Ordering::SeqCst), 1);
}

static EMPTY_KEY_OUTER: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = m, key = id)]
fn keyed_plain(#[idempotency(skip)] m: &IdempotencyManager, id: &str) -> u64 {
    id.len() as u64
}

#[idempotent(manager = m)]
fn keyed_outer(
    #[idempotency(skip)] m: &IdempotencyManager,
    #[idempotency(skip)] id: &str,
    n: u64,
) -> Result<u64, String> {
    EMPTY_KEY_OUTER.fetch_add(1, Ordering::SeqCst);
    // A nested `-> T` call whose key fails before its manager runs (an empty key), its error
    // turned into a `String` by the body.
    let v = keyed_plain(m, id).map_err(|e| e.to_string())?;
    Ok(v + n)
}

/// A framework error that a nested `-> T` function raises before its manager runs (here an
/// empty caller-supplied key) is a framework error like any other: the enclosing function's
/// failure is not stored, and its next call runs again.
#[test]
fn scenario_08_a_nested_plain_fns_early_framework_error_is_not_cached() {
    let m = memory();
    let first = keyed_outer(&m, "", 1).unwrap_err();
    assert!(first.contains("key"), "{first}");
    assert_eq!(EMPTY_KEY_OUTER.load(Ordering::SeqCst), 1);
    // The same call again runs again (nothing was stored), and fails the same way.
    assert!(keyed_outer(&m, "", 1).is_err());
    assert_eq!(
        EMPTY_KEY_OUTER.load(Ordering::SeqCst),
        2,
        "the failure was cached"
    );
}
