//! `#[derive(NormalizeKey)]`: mirrors serde's data model (same key as `Serialize` when nothing
//! is skipped), `skip` and `with` change only what they name, and `#[idempotent]` picks the
//! derived impl over `Serialize`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use idempotency::{
    idempotent, IdempotencyKey, IdempotencyManager, KeyEncoder, MemoryStorage, NormalizeKey,
};
use serde::Serialize;

fn via_normalize<T: NormalizeKey + ?Sized>(v: &T) -> IdempotencyKey {
    let mut enc = KeyEncoder::new("derive::test", 1);
    enc.arg_normalized(v);
    enc.finish().unwrap().key
}

fn via_serialize<T: Serialize + ?Sized>(v: &T) -> IdempotencyKey {
    IdempotencyKey::derive("derive::test", 1, v).unwrap().key
}

#[derive(Serialize, NormalizeKey)]
struct Named {
    a: u32,
    b: String,
    c: Option<Vec<u8>>,
    d: BTreeMap<String, i64>,
}

#[derive(Serialize, NormalizeKey)]
struct Newtype(u64);

#[derive(Serialize, NormalizeKey)]
struct Tuple(u8, &'static str, bool);

#[derive(Serialize, NormalizeKey)]
struct EmptyTuple();

#[derive(Serialize, NormalizeKey)]
struct Unit;

#[derive(Serialize, NormalizeKey)]
enum Shape {
    Unit,
    Newtype(i32),
    Tuple(u8, u8),
    Struct { x: f64, label: String },
}

#[derive(Serialize, NormalizeKey)]
struct Generic<T> {
    inner: T,
    nested: Named,
}

#[test]
fn scenario_17_derived_key_equals_the_serialize_key_for_every_shape() {
    let named = Named {
        a: 1,
        b: "b".into(),
        c: Some(vec![1, 2]),
        d: BTreeMap::from([("k".to_owned(), -3)]),
    };
    assert_eq!(via_normalize(&named), via_serialize(&named));
    assert_eq!(via_normalize(&Newtype(9)), via_serialize(&Newtype(9)));
    // A newtype struct is named in the key (key format 2), as serde presents it: it is not its
    // inner value.
    assert_ne!(via_normalize(&Newtype(9)), via_serialize(&9_u64));
    let t = Tuple(1, "x", true);
    assert_eq!(via_normalize(&t), via_serialize(&t));
    assert_eq!(via_normalize(&EmptyTuple()), via_serialize(&EmptyTuple()));
    assert_eq!(via_normalize(&Unit), via_serialize(&Unit));
    for s in [
        Shape::Unit,
        Shape::Newtype(-4),
        Shape::Tuple(1, 2),
        Shape::Struct {
            x: 0.5,
            label: "l".into(),
        },
    ] {
        assert_eq!(via_normalize(&s), via_serialize(&s));
    }
    let g = Generic {
        inner: Shape::Tuple(3, 4),
        nested: named,
    };
    assert_eq!(via_normalize(&g), via_serialize(&g));
    // And different values still differ.
    assert_ne!(
        via_normalize(&Shape::Tuple(1, 2)),
        via_normalize(&Shape::Tuple(2, 1))
    );
}

fn lowercase(s: &str) -> String {
    s.to_lowercase()
}

// The skipped fields exist only to show that they do not reach the key.
#[allow(dead_code)]
#[derive(NormalizeKey)]
struct Request {
    customer: String,
    #[idempotency(with = lowercase)]
    email: String,
    #[idempotency(skip)]
    trace_id: u128,
    #[idempotency(skip)]
    received_at: std::time::SystemTime,
}

#[derive(NormalizeKey)]
enum Command {
    Charge {
        cents: u64,
        #[idempotency(skip)]
        attempt: u32,
    },
    Cancel(#[idempotency(skip)] u64),
}

#[test]
fn scenario_17_skip_and_with_normalize_the_key() {
    let a = Request {
        customer: "c1".into(),
        email: "Ann@Example.com".into(),
        trace_id: 1,
        received_at: std::time::UNIX_EPOCH,
    };
    let b = Request {
        customer: "c1".into(),
        email: "ann@example.com".into(),
        trace_id: 2,
        received_at: std::time::SystemTime::now(),
    };
    assert_eq!(via_normalize(&a), via_normalize(&b));
    let c = Request {
        customer: "c2".into(),
        ..b
    };
    assert_ne!(via_normalize(&a), via_normalize(&c));

    let charge = |attempt| Command::Charge { cents: 5, attempt };
    assert_eq!(via_normalize(&charge(1)), via_normalize(&charge(2)));
    assert_eq!(
        via_normalize(&Command::Cancel(1)),
        via_normalize(&Command::Cancel(2))
    );
    assert_ne!(
        via_normalize(&charge(1)),
        via_normalize(&Command::Cancel(1))
    );
}

static MANAGER: LazyLock<IdempotencyManager> =
    LazyLock::new(|| IdempotencyManager::new(MemoryStorage::new()));
static RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn submit(req: &Request) -> String {
    RUNS.fetch_add(1, Ordering::SeqCst);
    req.customer.clone()
}

#[test]
fn scenario_17_idempotent_uses_the_derived_impl_for_parameters() {
    let retry = Request {
        customer: "c9".into(),
        email: "x@y.z".into(),
        trace_id: 11,
        received_at: std::time::SystemTime::now(),
    };
    let first = Request {
        customer: "c9".into(),
        email: "X@Y.z".into(),
        trace_id: 10,
        received_at: std::time::UNIX_EPOCH,
    };
    assert_eq!(submit(&first).unwrap(), "c9");
    assert_eq!(submit(&retry).unwrap(), "c9");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

/// A request type that also serializes (for logging, or a queue): its `NormalizeKey` impl, not
/// its `Serialize` impl, is its identity, also when it is wrapped or nested.
#[derive(Clone, Serialize, NormalizeKey)]
struct Traced {
    order: u64,
    #[idempotency(skip)]
    trace_id: u128,
}

#[derive(Serialize, NormalizeKey)]
struct Batch {
    first: Option<Traced>,
    rest: Vec<Traced>,
    boxed: Box<Traced>,
}

static WRAPPED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(manager = &*MANAGER)]
fn submit_wrapped(one: Option<Traced>, many: Vec<Traced>, boxed: Box<Traced>, batch: &Batch) {
    let _ = (one, many, boxed, batch);
    WRAPPED_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn scenario_17_wrapped_and_nested_values_use_the_derived_impl() {
    let t = |trace_id| Traced { order: 7, trace_id };
    let batch = |trace_id| Batch {
        first: Some(t(trace_id)),
        rest: vec![t(trace_id), t(trace_id)],
        boxed: Box::new(t(trace_id)),
    };
    // A retry with new trace ids is the same call: the body runs once.
    submit_wrapped(Some(t(1)), vec![t(1)], Box::new(t(1)), &batch(1)).unwrap();
    submit_wrapped(Some(t(2)), vec![t(2)], Box::new(t(2)), &batch(2)).unwrap();
    assert_eq!(WRAPPED_RUNS.load(Ordering::SeqCst), 1);
    // Wrapping keeps serde's shape: with nothing skipped the keys are the `Serialize` keys.
    let plain = Named {
        a: 1,
        b: "b".into(),
        c: None,
        d: BTreeMap::new(),
    };
    let wrapped = Some(vec![Box::new(plain)]);
    assert_eq!(via_normalize(&wrapped), via_serialize(&wrapped));
    assert_eq!(via_normalize(&None::<Named>), via_serialize(&None::<Named>));
    let array = [Newtype(1), Newtype(2)];
    assert_eq!(via_normalize(&array), via_serialize(&array));
    assert_eq!(via_normalize(&array[..]), via_serialize(&array[..]));
}
