//! Replay fidelity (issue 12, items 5 and 6): a stored value replays exactly whatever its serde
//! shape, and a value that cannot be stored still reaches the caller that computed it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{call, kind, manager, manager_with, must, Harness, PayError};
use crate::{ErrorKind, IdempotencyManager, RecordStatus, Retention};

/// Item 5: with `max_result_bytes(1024)`, a body returning 4096 bytes runs once; the caller
/// that ran it gets its value, marked not retained; later callers get `ResultNotRetained` and
/// the body does not run again. The same holds for a stored error over the limit.
pub async fn issue_12_item_5_result_over_the_limit_reaches_its_caller<H: Harness>(h: &H) {
    let m = manager_with(h, |b| b.max_result_bytes(1024));
    let c = call("kit::issue12-item5", &"big");
    let big = "x".repeat(4096);
    let count = AtomicUsize::new(0);
    let first = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            big.clone()
        })
        .await,
    );
    assert_eq!(first.value, big, "item 5: the first caller gets its value");
    assert!(!first.is_replayed());
    assert!(!first.is_retained(), "item 5: marked not retained");
    match &first.provenance.retention {
        Retention::NotRetained { reason } => {
            assert!(
                reason.contains("1024"),
                "item 5: the reason names the limit: {reason}"
            )
        }
        other => panic!("item 5: expected NotRetained, got {other:?}"),
    }
    for _ in 0..3 {
        let r = m
            .execute(&c, || async {
                count.fetch_add(1, Ordering::SeqCst);
                String::new()
            })
            .await;
        assert_eq!(
            kind(r),
            ErrorKind::ResultNotRetained,
            "item 5: later callers"
        );
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "item 5: the body ran once");
    let obs = must(m.status(&c.key).await).unwrap_or_else(|| panic!("item 5: no record"));
    assert_eq!(
        obs.status(),
        RecordStatus::Failed,
        "item 5: a terminal marker"
    );

    // A permanent error over the limit: the same rule.
    let c = call("kit::issue12-item5", &"big error");
    let first = must(
        m.try_execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            Err::<u8, _>(PayError::Declined(big.clone()))
        })
        .await,
    );
    assert_eq!(first.value, Err(PayError::Declined(big.clone())));
    assert!(
        !first.is_retained(),
        "item 5: a stored error over the limit"
    );
    let r = m
        .try_execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<u8, PayError>(1)
        })
        .await;
    assert_eq!(kind(r), ErrorKind::ResultNotRetained);
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "item 5: each body ran once"
    );
}

/// The issue's internally tagged response type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Tagged {
    /// The issue's variant.
    New {
        /// An id.
        id: u32,
    },
    /// A variant with a renamed field.
    Renamed {
        /// An id.
        id: u32,
        /// A renamed field.
        #[serde(rename = "n")]
        name: String,
    },
    /// A unit variant.
    Unit,
    /// A newtype variant around a struct.
    Wrapped(Skipped),
}

/// Optional fields that are left out when `None` (the issue's struct), plus skipped fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Skipped {
    /// Left out when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<u32>,
    /// Left out when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<u32>,
    /// Left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<u8>,
    /// Never serialized (replays as its default).
    #[serde(skip)]
    pub cache: u32,
}

/// Item 6: the internally tagged enum and the struct with a `None` field left out replay.
pub async fn issue_12_item_6_tagged_enum_and_skipped_field_replay<H: Harness>(h: &H) {
    let m = manager(h);
    let count = AtomicUsize::new(0);
    let c = call("kit::issue12-item6", &"tagged");
    let first = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            Tagged::New { id: 42 }
        })
        .await,
    );
    assert_eq!(first.value, Tagged::New { id: 42 });
    assert!(
        first.is_retained(),
        "item 6: {:?}",
        first.provenance.retention
    );
    let again = must(
        m.execute(&c, || async {
            count.fetch_add(1, Ordering::SeqCst);
            Tagged::Unit
        })
        .await,
    );
    assert!(again.is_replayed());
    assert_eq!(
        again.value,
        Tagged::New { id: 42 },
        "item 6: the tagged enum replays"
    );
    for (i, s) in [
        Skipped {
            a: Some(5),
            ..Skipped::default()
        },
        Skipped {
            b: Some(5),
            ..Skipped::default()
        },
    ]
    .into_iter()
    .enumerate()
    {
        let c = call("kit::issue12-item6", &i);
        must(
            m.execute(&c, || async {
                count.fetch_add(1, Ordering::SeqCst);
                s.clone()
            })
            .await,
        );
        let again = must(
            m.execute(&c, || async {
                count.fetch_add(1, Ordering::SeqCst);
                Skipped::default()
            })
            .await,
        );
        assert!(again.is_replayed());
        assert_eq!(again.value, s, "item 6: a skipped `None` field replays");
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "item 6: each body ran once"
    );
}

/// Adjacently tagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "c")]
pub enum Adjacent {
    /// Newtype.
    Num(u64),
    /// Tuple.
    Pair(u8, String),
    /// Struct.
    Named {
        /// A field.
        x: i32,
    },
    /// Unit.
    Nothing,
}

/// Untagged, with variants a self-describing format tells apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Untagged {
    /// A struct.
    Named {
        /// A field.
        id: u32,
        /// A field.
        label: String,
    },
    /// A string.
    Text(String),
    /// A list.
    Numbers(Vec<i64>),
}

/// A flattened struct and a flattened map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flat {
    /// A field.
    pub id: u32,
    /// Flattened into the outer map.
    #[serde(flatten)]
    pub meta: Meta,
    /// Every other entry.
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

/// The flattened part of [`Flat`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// A field.
    pub kind: String,
    /// A field.
    pub rank: u8,
}

/// An enum with a variant serde never serializes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WithSkippedVariant {
    /// Kept.
    A,
    /// Never serialized.
    #[serde(skip)]
    B,
    /// Kept.
    C(u8),
}

/// A unit struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker;

/// A newtype and a tuple struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Id(pub u64);

/// A tuple struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point(pub i32, pub i32);

/// A byte string (serde's `bytes` type, as `serde_bytes` writes it).
#[derive(Debug, Clone, PartialEq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Floats, compared bit for bit (`-0.0` is not `0.0`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Floats {
    /// `f32` values.
    pub single: Vec<f32>,
    /// `f64` values.
    pub double: Vec<f64>,
}

impl PartialEq for Floats {
    fn eq(&self, other: &Self) -> bool {
        let bits32 = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let bits64 = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        bits32(&self.single) == bits32(&other.single)
            && bits64(&self.double) == bits64(&other.double)
    }
}

/// Runs `value` as a result and as a stored error under keys named `name`; both must be
/// retained, replayed without running again, and equal the original.
async fn replays<T>(m: &IdempotencyManager, name: &str, value: T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + Clone,
{
    let count = AtomicUsize::new(0);
    let c = call("kit::issue12-shapes", &(name, "result"));
    let run = || async {
        count.fetch_add(1, Ordering::SeqCst);
        value.clone()
    };
    let first = must(m.execute(&c, run).await);
    assert!(
        first.is_retained(),
        "{name}: retained as a result: {:?}",
        first.provenance.retention
    );
    let again = must(m.execute(&c, run).await);
    assert!(again.is_replayed(), "{name}: replayed");
    assert_eq!(again.value, value, "{name}: the result replays exactly");

    let c = call("kit::issue12-shapes", &(name, "error"));
    let fail = || async {
        count.fetch_add(1, Ordering::SeqCst);
        Err::<(), T>(value.clone())
    };
    let first = must(m.try_execute(&c, fail).await);
    assert!(
        first.is_retained(),
        "{name}: retained as a stored error: {:?}",
        first.provenance.retention
    );
    let again = must(m.try_execute(&c, fail).await);
    assert!(again.is_replayed(), "{name}: replayed");
    assert_eq!(
        again.value,
        Err(value),
        "{name}: the stored error replays exactly"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "{name}: each body ran once"
    );
}

/// Runs `value`, which cannot replay exactly; the caller gets it, marked not retained, and a
/// repeat gets `ResultNotRetained` without running.
async fn not_retained<T>(m: &IdempotencyManager, name: &str, value: T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + Clone,
{
    let count = AtomicUsize::new(0);
    let c = call("kit::issue12-lossy", &name);
    let run = || async {
        count.fetch_add(1, Ordering::SeqCst);
        value.clone()
    };
    let first = must(m.execute(&c, run).await);
    assert_eq!(first.value, value, "{name}: the caller gets its value");
    assert!(!first.is_retained(), "{name}: marked not retained");
    assert_eq!(
        kind(m.execute(&c, run).await),
        ErrorKind::ResultNotRetained,
        "{name}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "{name}: ran once");
}

/// Every serde shape replays exactly, as a result and as a stored error: tagged, adjacently
/// tagged and untagged enums, skipped and flattened fields, maps with non-string keys, nested
/// options, unit structs, 128-bit integers, floats (`-0.0`, NaN), bytes and chars. The values
/// no self-describing format can tell apart (`Some(None)`, `Some(())`) are found before they
/// are stored and are not retained.
pub async fn issue_12_every_serde_shape_replays<H: Harness>(h: &H) {
    let m = manager(h);
    replays(&m, "tagged/new", Tagged::New { id: 42 }).await;
    replays(
        &m,
        "tagged/renamed",
        Tagged::Renamed {
            id: 1,
            name: "n".into(),
        },
    )
    .await;
    replays(&m, "tagged/unit", Tagged::Unit).await;
    replays(
        &m,
        "tagged/wrapped",
        Tagged::Wrapped(Skipped {
            a: None,
            b: Some(0),
            list: vec![1, 2],
            cache: 0,
        }),
    )
    .await;
    replays(&m, "adjacent/num", Adjacent::Num(u64::MAX)).await;
    replays(&m, "adjacent/pair", Adjacent::Pair(7, "seven".into())).await;
    replays(&m, "adjacent/named", Adjacent::Named { x: -3 }).await;
    replays(&m, "adjacent/nothing", Adjacent::Nothing).await;
    replays(
        &m,
        "untagged/named",
        Untagged::Named {
            id: 9,
            label: "nine".into(),
        },
    )
    .await;
    replays(&m, "untagged/text", Untagged::Text("t".into())).await;
    replays(&m, "untagged/numbers", Untagged::Numbers(vec![-1, 0, 1])).await;
    replays(&m, "skipped/none", Skipped::default()).await;
    replays(
        &m,
        "skipped/some",
        Skipped {
            a: Some(1),
            b: Some(2),
            list: vec![3],
            cache: 0,
        },
    )
    .await;
    replays(
        &m,
        "flatten",
        Flat {
            id: 1,
            meta: Meta {
                kind: "k".into(),
                rank: 3,
            },
            extra: BTreeMap::from([("z".to_owned(), "last".to_owned())]),
        },
    )
    .await;
    replays(&m, "skipped variant/a", WithSkippedVariant::A).await;
    replays(&m, "skipped variant/c", WithSkippedVariant::C(3)).await;
    replays(
        &m,
        "map/tuple keys",
        BTreeMap::from([((1_u32, 2_u32), "a".to_owned()), ((0, 9), "b".to_owned())]),
    )
    .await;
    replays(
        &m,
        "map/u64 keys",
        (0..32_u64)
            .map(|i| (i * 7919, format!("v{i}")))
            .collect::<HashMap<_, _>>(),
    )
    .await;
    replays(
        &m,
        "map/nested",
        BTreeMap::from([(-1_i8, vec![Some(1_u8), None]), (1, vec![])]),
    )
    .await;
    replays(
        &m,
        "set",
        (0..32).map(|i| format!("s{i}")).collect::<HashSet<_>>(),
    )
    .await;
    replays(&m, "option/none", None::<Option<u32>>).await;
    replays(&m, "option/some some", Some(Some(0_u32))).await;
    replays(&m, "option/vec", vec![None, Some(Some(1_u8))]).await;
    replays(&m, "unit struct", Marker).await;
    replays(&m, "unit", ()).await;
    replays(&m, "newtype", Id(u64::MAX)).await;
    replays(&m, "tuple struct", Point(-1, i32::MAX)).await;
    replays(&m, "tuple", (1_u8, "two".to_owned(), 3.5_f64)).await;
    replays(&m, "u128", [0, u128::from(u64::MAX) + 1, u128::MAX]).await;
    replays(&m, "i128", [i128::MIN, -1, i128::MAX]).await;
    replays(&m, "integers", (u64::MAX, i64::MIN, u8::MAX, i16::MIN)).await;
    replays(
        &m,
        "floats",
        Floats {
            single: vec![
                -0.0,
                0.0,
                f32::MIN_POSITIVE,
                f32::MAX,
                1.1,
                f32::NAN,
                f32::NEG_INFINITY,
            ],
            double: vec![
                -0.0,
                0.0,
                f64::MIN_POSITIVE,
                f64::MAX,
                0.1,
                f64::NAN,
                f64::INFINITY,
            ],
        },
    )
    .await;
    replays(&m, "bytes", Bytes(vec![0, 1, 255])).await;
    replays(&m, "empty bytes", Bytes(vec![])).await;
    replays(&m, "chars", ['a', '\0', 'é', '🦀']).await;
    replays(&m, "strings", ["".to_owned(), "é\u{301}".to_owned()]).await;

    // A value serde refuses to serialize, and values CBOR (like JSON) cannot tell apart from
    // `None`: each reaches its caller and is not retained, never a `Success` replaying `None`.
    not_retained(&m, "skipped variant/b", WithSkippedVariant::B).await;
    not_retained(&m, "option/some none", Some(None::<u32>)).await;
    not_retained(&m, "option/some unit", Some(())).await;
}
