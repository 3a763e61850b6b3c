//! Key derivation: golden vectors, canonical-encoding rules, insertion-order independence, and
//! identical keys across processes (SEMANTICS.md scenarios 17, 18, 19, 32).

use std::collections::{BTreeMap, HashMap, HashSet};

use idempotency_core::{ErrorKind, IdempotencyKey, KeyEncoder};
use proptest::prelude::*;
use serde::Serialize;
use uuid::Uuid;

#[derive(Serialize)]
struct Order {
    id: u64,
    lines: Vec<Line>,
    tags: HashMap<String, String>,
    note: Option<String>,
}

#[derive(Serialize)]
struct Line {
    sku: String,
    qty: u32,
    price: f64,
}

#[derive(Serialize)]
enum Payload {
    Text(String),
    Number(u32),
    Pair { a: i64, b: Option<bool> },
}

fn key<A: Serialize + ?Sized>(op: &str, args: &A) -> String {
    IdempotencyKey::derive(op, 1, args)
        .unwrap_or_else(|e| panic!("{e}"))
        .key
        .to_string()
}

fn order() -> Order {
    let mut tags = HashMap::new();
    tags.insert("channel".to_string(), "web".to_string());
    tags.insert("region".to_string(), "eu-west".to_string());
    tags.insert("priority".to_string(), "high".to_string());
    Order {
        id: 42,
        lines: vec![
            Line {
                sku: "A-1".into(),
                qty: 2,
                price: 9.99,
            },
            Line {
                sku: "B-7".into(),
                qty: 1,
                price: -0.0,
            },
        ],
        tags,
        note: None,
    }
}

/// The vectors every build must reproduce: any change to key derivation fails this test. To
/// change derivation on purpose, bump the domain tag in key.rs and regenerate these.
fn golden_inputs() -> Vec<(&'static str, String)> {
    let uuid = Uuid::from_u128(0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c8);
    let mut nested = BTreeMap::new();
    nested.insert("z", vec![vec![1_u8, 2], vec![]]);
    nested.insert("a", vec![vec![3]]);
    let set: HashSet<&str> = ["x", "y", "z"].into_iter().collect();
    vec![
        ("unit", key("golden::unit", &())),
        ("u64", key("golden::int", &42_u64)),
        ("string", key("golden::str", "hello")),
        ("unicode", key("golden::str", "Grüße, 世界 🚀")),
        (
            "floats",
            key("golden::float", &(1.5_f64, -0.0_f64, f64::NAN, 0.1_f32)),
        ),
        (
            "options",
            key("golden::opt", &(Some(0_u8), None::<u8>, Some(""))),
        ),
        ("uuid", key("golden::uuid", &uuid)),
        ("nested", key("golden::nested", &nested)),
        ("struct_with_map", key("golden::order", &order())),
        (
            "enum_text",
            key("golden::enum", &Payload::Text("10".into())),
        ),
        ("enum_number", key("golden::enum", &Payload::Number(10))),
        (
            "enum_struct",
            key(
                "golden::enum",
                &Payload::Pair {
                    a: -5,
                    b: Some(true),
                },
            ),
        ),
        ("set", key("golden::set", &set)),
        ("scoped", {
            let mut e = KeyEncoder::new("golden::scoped", 3);
            e.scope("tenant-42").arg(&1200_u64).arg("EUR");
            e.finish().unwrap_or_else(|e| panic!("{e}")).key.to_string()
        }),
        ("custom", {
            let mut e = KeyEncoder::new("golden::custom", 1);
            e.custom_key("order-2026-0001").arg(&7_u8);
            e.finish().unwrap_or_else(|e| panic!("{e}")).key.to_string()
        }),
    ]
}

const GOLDEN: &[(&str, &str)] = &[
    ("unit", "golden::unit:7ff05489ed4552e5314bfa9061621fe5"),
    ("u64", "golden::int:a630ba50c21957554064d55752b09ccd"),
    ("string", "golden::str:ad593394b560ab715fc79497c83dcc41"),
    ("unicode", "golden::str:632efa45a830d6c87ba8b2f4b23bfdb1"),
    ("floats", "golden::float:57737ee9949ac1455a6edf01b735b40a"),
    ("options", "golden::opt:0fad3de4993fe11788bffe5453add68a"),
    ("uuid", "golden::uuid:4adf7c44bae4d634a3f85c8479d9df9a"),
    ("nested", "golden::nested:6f7ae93a1bfc6a0158a8da6e0a1cea3a"),
    (
        "struct_with_map",
        "golden::order:05c9d24e5ea30ee1666dfa08faefb4c9",
    ),
    ("enum_text", "golden::enum:a9bafc27a6b90fdb51f967428d1b0b4f"),
    (
        "enum_number",
        "golden::enum:ff2cad1d0d1cc71f4fef7a437c998f47",
    ),
    (
        "enum_struct",
        "golden::enum:e6e01372b13eada40f2c399f44dc8aaa",
    ),
    ("set", "golden::set:be02416d313c586bea690ea86bc17c6a"),
    ("scoped", "golden::scoped:32de60a0a7f77c5b7fa7fe9d94c69d6a"),
    ("custom", "golden::custom:84237e104ef41c13f165dfc851786b06"),
];

#[test]
fn golden_key_vectors() {
    let actual = golden_inputs();
    if std::env::var_os("IDEMPOTENCY_PRINT_GOLDEN").is_some() {
        for (name, k) in &actual {
            println!("    (\"{name}\", \"{k}\"),");
        }
    }
    assert!(GOLDEN.len() >= 10, "at least 10 golden vectors");
    for (name, expected) in GOLDEN {
        let got = actual
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.as_str())
            .unwrap_or_else(|| panic!("no input named {name}"));
        assert_eq!(got, *expected, "golden vector `{name}` changed");
    }
}

#[test]
fn key_shape_is_operation_then_32_hex() {
    let k = IdempotencyKey::derive("billing::charge", 1, &1_u8)
        .unwrap_or_else(|e| panic!("{e}"))
        .key;
    assert_eq!(k.operation(), "billing::charge");
    assert_eq!(k.hash_hex().len(), 32);
    assert!(k
        .hash_hex()
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(
        IdempotencyKey::parse(k.as_str()).unwrap_or_else(|e| panic!("{e}")),
        k
    );
    assert_eq!(
        IdempotencyKey::parse("op:xyz").map_err(|e| e.kind()).err(),
        Some(ErrorKind::InvalidKey)
    );
}

#[test]
fn scenario_17_canonical_fingerprint_rules() {
    // Integer widths and signs are one type; usize is never platform-sized.
    assert_eq!(key("t", &10_u8), key("t", &10_i64));
    assert_eq!(key("t", &10_usize), key("t", &10_u64));
    // -0.0 equals 0.0; every NaN is one NaN; f32 widens exactly.
    assert_eq!(key("t", &-0.0_f64), key("t", &0.0_f64));
    assert_eq!(key("t", &f64::NAN), key("t", &-f64::NAN));
    assert_eq!(key("t", &0.5_f32), key("t", &0.5_f64));
    // Values a user calls different never share a key.
    assert_ne!(key("t", "10"), key("t", &10_u32));
    assert_ne!(
        key("t", &Payload::Text("10".into())),
        key("t", &Payload::Number(10))
    );
    assert_ne!(key("t", &None::<()>), key("t", &()));
    assert_ne!(
        key("t", &(vec![1_u8], vec![2_u8])),
        key("t", &(vec![1_u8, 2], Vec::<u8>::new()))
    );
    assert_ne!(key("t", "Key"), key("t", "key"));
    assert_ne!(
        key("t", "\u{e9}"),
        key("t", "e\u{301}"),
        "NFC and NFD are not normalized"
    );
    // Any change to an included field changes the key.
    let mut o = order();
    let base = key("t", &o);
    o.lines[0].qty = 3;
    assert_ne!(key("t", &o), base);
    // Sets and maps: order-free.
    let a: HashSet<u32> = (0..50).collect();
    let b: HashSet<u32> = (0..50).rev().collect();
    assert_eq!(key("t", &a), key("t", &b));
    assert_ne!(
        key("t", &vec![1, 2]),
        key("t", &vec![2, 1]),
        "sequences keep their order"
    );
}

#[test]
fn scenario_18_operation_and_version_enter_the_key() {
    assert_ne!(key("charge", "k"), key("refund", "k"));
    let v2 = IdempotencyKey::derive("charge", 2, "k").unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(v2.key.to_string(), key("charge", "k"));
}

#[test]
fn scenario_19_scope_enters_the_key() {
    let scoped = |t: &str| {
        let mut e = KeyEncoder::new("op", 1);
        e.scope(t).custom_key("order-1");
        e.finish().unwrap_or_else(|e| panic!("{e}")).key
    };
    assert_ne!(scoped("T1"), scoped("T2"));
    let mut unscoped = KeyEncoder::new("op", 1);
    unscoped.custom_key("order-1");
    assert_ne!(
        unscoped.finish().unwrap_or_else(|e| panic!("{e}")).key,
        scoped("T1")
    );
}

#[test]
fn custom_key_separates_identity_from_fingerprint() {
    let derive = |args: u32| {
        let mut e = KeyEncoder::new("op", 1);
        e.custom_key("order-1").arg(&args);
        e.finish().unwrap_or_else(|e| panic!("{e}"))
    };
    let (a, b) = (derive(1), derive(2));
    assert_eq!(a.key, b.key);
    assert_ne!(a.fingerprint, b.fingerprint);
    assert!(
        !a.key.as_str().contains("order-1"),
        "the raw custom key never appears"
    );
}

#[test]
fn scenario_32_invalid_keys_and_operations() {
    for bad in ["", "a\nb", "tab\there", "nul\0", &"k".repeat(256)] {
        let mut e = KeyEncoder::new("op", 1);
        e.custom_key(bad);
        assert_eq!(
            e.finish().map_err(|e| e.kind()).err(),
            Some(ErrorKind::InvalidKey),
            "{bad:?}"
        );
    }
    let ok = "k".repeat(255);
    let mut e = KeyEncoder::new("op", 1);
    e.custom_key(&ok);
    assert!(e.finish().is_ok());
    for bad_op in ["", "op\n", &"o".repeat(201)] {
        assert_eq!(
            IdempotencyKey::derive(bad_op, 1, &())
                .map_err(|e| e.kind())
                .err(),
            Some(ErrorKind::InvalidKey)
        );
    }
}

#[test]
fn serialize_errors_are_reported_not_panicked() {
    struct Bad;
    impl Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }
    assert_eq!(
        IdempotencyKey::derive("op", 1, &Bad)
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::Encode)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn hashmap_insertion_order_never_changes_a_key(
        entries in proptest::collection::vec((any::<String>(), any::<i64>()), 0..40),
        nested in proptest::collection::vec(any::<u16>(), 0..20),
        seed in any::<u64>(),
    ) {
        let forward: HashMap<String, (i64, HashSet<u16>)> = entries
            .iter()
            .map(|(k, v)| (k.clone(), (*v, nested.iter().copied().collect())))
            .collect();
        // Rebuild in a shuffled order (a different insertion order and capacity).
        let mut shuffled: Vec<_> = forward.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let n = shuffled.len().max(1);
        shuffled.rotate_left((seed as usize) % n);
        shuffled.reverse();
        let mut backward: HashMap<String, (i64, HashSet<u16>)> = HashMap::with_capacity(200);
        for (k, v) in shuffled {
            backward.insert(k, v);
        }
        let wrap = |m: &HashMap<String, (i64, HashSet<u16>)>| key("prop", &vec![(1_u8, m.clone())]);
        prop_assert_eq!(wrap(&forward), wrap(&backward));
    }
}

/// Two processes derive identical keys: the test binary re-executes itself and prints its keys.
#[test]
fn keys_are_identical_across_processes() {
    const CHILD: &str = "IDEMPOTENCY_KEYS_CHILD";
    let mine: Vec<String> = golden_inputs()
        .into_iter()
        .map(|(n, k)| format!("{n}={k}"))
        .collect();
    if std::env::var_os(CHILD).is_some() {
        for line in &mine {
            println!("KEY {line}");
        }
        return;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "keys_are_identical_across_processes",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap_or_else(|e| panic!("re-exec: {e}"));
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let theirs: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.find("KEY ").map(|i| l[i + 4..].to_owned()))
        .collect();
    assert_eq!(theirs, mine);
}

#[test]
fn scenario_17_sequences_of_sets_keep_their_order() {
    // Only the set itself is order-free: a sequence *of* sets (or of anything whose type name
    // mentions a set) keeps its order, so different inputs never share a key.
    use std::collections::BTreeSet;
    let a: BTreeSet<u8> = [1].into_iter().collect();
    let b: BTreeSet<u8> = [2].into_iter().collect();
    assert_ne!(
        key("t", &vec![a.clone(), b.clone()]),
        key("t", &vec![b.clone(), a.clone()]),
        "Vec<BTreeSet<_>> keeps its order"
    );
    let ha: HashSet<u8> = [1].into_iter().collect();
    let hb: HashSet<u8> = [2].into_iter().collect();
    assert_ne!(
        key("t", &vec![ha.clone(), hb.clone()]),
        key("t", &vec![hb, ha]),
        "Vec<HashSet<_>> keeps its order"
    );
    assert_ne!(
        key("t", &vec![(1_u8, a.clone()), (2, b.clone())]),
        key("t", &vec![(2_u8, b), (1, a)]),
        "Vec<(u8, BTreeSet<_>)> keeps its order"
    );
    // A set of sets is still order-free at both levels.
    let s1: BTreeSet<BTreeSet<u8>> = [[1_u8].into(), [2_u8].into()].into_iter().collect();
    let mut hs: HashSet<Vec<u8>> = HashSet::new();
    hs.insert(vec![1]);
    hs.insert(vec![2]);
    let mut hs2: HashSet<Vec<u8>> = HashSet::new();
    hs2.insert(vec![2]);
    hs2.insert(vec![1]);
    assert_eq!(key("t", &hs), key("t", &hs2));
    assert_eq!(key("t", &s1), key("t", &s1.clone()));
}
