//! Key derivation: golden vectors, canonical-encoding rules, insertion-order independence, and
//! identical keys across processes (SEMANTICS.md scenarios 17, 18, 19, 32).

use std::collections::{BTreeMap, HashMap, HashSet};

use idempotency_core::{canonical, ErrorKind, IdempotencyKey, KeyEncoder, KEY_FORMAT_VERSION};
use proptest::prelude::*;
use rust_decimal::Decimal;
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

/// Optional fields that serde skips when `None` (issue 12, item 3).
#[derive(Serialize)]
struct Sparse {
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<u32>,
}

#[derive(Serialize)]
struct Flattened {
    id: u8,
    #[serde(flatten)]
    sparse: Sparse,
    #[serde(flatten)]
    extra: BTreeMap<String, u32>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Untagged {
    Card { last4: u16 },
    Iban { suffix: u16 },
    Meters(Meters),
    Plain(u32),
}

#[derive(Serialize)]
struct Meters(u32);

#[derive(Serialize)]
struct Marker;

#[derive(Serialize)]
#[serde(tag = "type")]
enum Tagged {
    New { id: u32 },
    Gone,
}

/// The vectors every build must reproduce: any change to key derivation fails this test. To
/// change derivation on purpose, bump `KEY_FORMAT_VERSION` and the domain tags in key.rs, and
/// regenerate these (`IDEMPOTENCY_PRINT_GOLDEN=1 cargo test -p idempotency-core --test keys
/// golden -- --nocapture`). Key format 2 regenerated every vector below (issue 12).
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
        (
            "skipped_b",
            key(
                "golden::sparse",
                &Sparse {
                    a: Some(5),
                    b: None,
                },
            ),
        ),
        (
            "skipped_a",
            key(
                "golden::sparse",
                &Sparse {
                    a: None,
                    b: Some(5),
                },
            ),
        ),
        (
            "flatten",
            key(
                "golden::flatten",
                &Flattened {
                    id: 1,
                    sparse: Sparse {
                        a: None,
                        b: Some(2),
                    },
                    extra: BTreeMap::from([("id".to_owned(), 3)]),
                },
            ),
        ),
        (
            "untagged_struct",
            key("golden::untagged", &Untagged::Iban { suffix: 1234 }),
        ),
        (
            "untagged_newtype",
            key("golden::untagged", &Untagged::Meters(Meters(5))),
        ),
        (
            "untagged_plain",
            key("golden::untagged", &Untagged::Plain(5)),
        ),
        (
            "internally_tagged",
            key("golden::tagged", &(Tagged::New { id: 42 }, Tagged::Gone)),
        ),
        ("unit_struct", key("golden::unit_struct", &Marker)),
        (
            "nested_options",
            key(
                "golden::nested_opt",
                &(None::<Option<u8>>, Some(None::<u8>), Some(Some(())), ()),
            ),
        ),
        (
            "decimal_1_50",
            key("golden::decimal", &Decimal::new(150, 2)),
        ),
        ("decimal_1_5", key("golden::decimal", &Decimal::new(15, 1))),
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
    ("unit", "golden::unit:2674d3b91c03bf69272852fc19612869"),
    ("u64", "golden::int:6c2e627af00883a96be5fc6ad8c92664"),
    ("string", "golden::str:c7e1f9a2eed931a9a8eb3058823a0ee4"),
    ("unicode", "golden::str:ca06e3cdab8c8c91163499ba1029f3b2"),
    ("floats", "golden::float:429da2b878929fe76ce1e2406cebd16b"),
    ("options", "golden::opt:246b186104a5e12f818bf413537d7309"),
    ("uuid", "golden::uuid:d443d68b41eb5b7801e257bbd6ef8a3e"),
    ("nested", "golden::nested:2251a42239ba9bb93da5a03505b0093f"),
    (
        "struct_with_map",
        "golden::order:22a6d14a6f05c9ab5257a172904bcbb3",
    ),
    ("enum_text", "golden::enum:fd0fc80dc03f3df094a541d43da11982"),
    (
        "enum_number",
        "golden::enum:4a1c49d8aa7d431ef72fe484dab29166",
    ),
    (
        "enum_struct",
        "golden::enum:fd1e6b3746f44bd37568d38125aaa842",
    ),
    ("set", "golden::set:cba2194509a410c252f4fdec6e115581"),
    (
        "skipped_b",
        "golden::sparse:bb2a1b0f6ab9a6e6e8feb92eb8151bc3",
    ),
    (
        "skipped_a",
        "golden::sparse:34ff9abf65117f0d589e7d92897b0f7b",
    ),
    (
        "flatten",
        "golden::flatten:cee28ebfc4424f6b3aad0bd4e4e59ce7",
    ),
    (
        "untagged_struct",
        "golden::untagged:f7f2acf5833b2c8bb723ff8d19bd3166",
    ),
    (
        "untagged_newtype",
        "golden::untagged:a8756ed2e39b98bb9864bed0692514f4",
    ),
    (
        "untagged_plain",
        "golden::untagged:878fa3ae04a36dfa0a50b8b179d8b891",
    ),
    (
        "internally_tagged",
        "golden::tagged:9b2be988d9820542f0be2b6525599e07",
    ),
    (
        "unit_struct",
        "golden::unit_struct:51cf2b2a7163a1ca94e7c1049df8de3a",
    ),
    (
        "nested_options",
        "golden::nested_opt:d5aeafa96ace50d2eecd43c72f63b087",
    ),
    (
        "decimal_1_50",
        "golden::decimal:41c0f1a953c4552083af2ea9ba51c098",
    ),
    (
        "decimal_1_5",
        "golden::decimal:79a84f167423e915538604da888299c1",
    ),
    ("scoped", "golden::scoped:aa0cc2871ddd9c9e8f256881ffbd72a3"),
    ("custom", "golden::custom:e11100f22bf183a6b33a16c01f18a589"),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encoding<T: Serialize + ?Sized>(v: &T) -> String {
    hex(&canonical::to_bytes(v).unwrap_or_else(|e| panic!("{e}")))
}

/// The bytes of key format 2, derived by hand from the tag table in canonical.rs: names are
/// length-prefixed, a skipped field leaves `16 <name>`, a newtype struct is named.
#[test]
fn golden_encoding_bytes() {
    // STRUCT "Sparse", FIELD "a" SOME INT(5), SKIPPED "b", END.
    assert_eq!(
        encoding(&Sparse {
            a: Some(5),
            b: None
        }),
        "0f065370617273651501610a030a16016211"
    );
    // STRUCT "Tagged", FIELD "type" STR "New", FIELD "id" INT(42), END.
    assert_eq!(
        encoding(&Tagged::New { id: 42 }),
        "0f0654616767656415047479706507034e657715026964035411",
    );
    // NEWTYPE_STRUCT "Meters" INT(5): not the bare number.
    assert_eq!(encoding(&Meters(5)), "13064d6574657273030a");
    assert_eq!(encoding(&5_u32), "030a");
    // NEWTYPE_VARIANT "Payload" #0 "Text", STR "10".
    assert_eq!(
        encoding(&Payload::Text("10".into())),
        "18075061796c6f616400045465787407023130",
    );
    // A decimal is its string: 1.50 and 1.5 are different keys.
    assert_eq!(encoding(&Decimal::new(150, 2)), "0704312e3530");
    assert_eq!(encoding(&Decimal::new(15, 1)), "0703312e35");
}

#[test]
fn golden_key_vectors() {
    let actual = golden_inputs();
    if std::env::var_os("IDEMPOTENCY_PRINT_GOLDEN").is_some() {
        for (name, k) in &actual {
            println!("    (\"{name}\", \"{k}\"),");
        }
    }
    assert_eq!(KEY_FORMAT_VERSION, 2, "the vectors pin key format 2");
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

/// Issue 12, item 3: `skip_serializing_if` fields leave a trace, so two structs that each skip a
/// different field never share a key.
#[test]
fn scenario_17_skipped_fields_never_share_a_key() {
    #[derive(Serialize)]
    struct S {
        #[serde(skip_serializing_if = "Option::is_none")]
        a: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<u32>,
    }
    let a_set = IdempotencyKey::derive(
        "t::s",
        1,
        &S {
            a: Some(5),
            b: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let b_set = IdempotencyKey::derive(
        "t::s",
        1,
        &S {
            a: None,
            b: Some(5),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(a_set.key, b_set.key);
    assert_ne!(a_set.fingerprint, b_set.fingerprint);
}

/// `rust_decimal` serializes as a string by default: `1.50` and `1.5` are equal numbers but
/// different strings, so different keys (the key follows serde's presentation). Normalizing
/// first makes them one key.
#[test]
fn scenario_17_decimal_keys_follow_the_string_serde_presents() {
    let (a, b) = (Decimal::new(150, 2), Decimal::new(15, 1));
    assert_eq!(a, b, "equal numbers");
    assert_ne!(
        key("t", &a),
        key("t", &b),
        "different strings, different keys"
    );
    assert_eq!(key("t", &a.normalize()), key("t", &b.normalize()));
    assert_eq!(key("t", &a.normalize()), key("t", "1.5"));
}

/// Issue 12's "Build" list: flattened structs, tagged and untagged enums, skipped variants,
/// newtypes, unit structs and nested options keep distinct values apart.
#[test]
fn scenario_17_serde_shapes_never_share_a_key() {
    // Flattened: the map carries field names; a flattened map's entry that repeats a field's
    // name keeps serde's order instead of being sorted into the same place.
    let flat = |id, extra: u32| Flattened {
        id,
        sparse: Sparse { a: None, b: None },
        extra: BTreeMap::from([("id".to_owned(), extra)]),
    };
    assert_ne!(key("t", &flat(1, 2)), key("t", &flat(2, 1)));
    let flat_sparse = |a, b| Flattened {
        id: 0,
        sparse: Sparse { a, b },
        extra: BTreeMap::new(),
    };
    assert_ne!(
        key("t", &flat_sparse(Some(5), None)),
        key("t", &flat_sparse(None, Some(5)))
    );
    // Untagged: field names and newtype struct names keep variants apart.
    assert_ne!(
        key("t", &Untagged::Card { last4: 1 }),
        key("t", &Untagged::Iban { suffix: 1 })
    );
    assert_ne!(
        key("t", &Untagged::Meters(Meters(5))),
        key("t", &Untagged::Plain(5))
    );
    // The documented limit (canonical.rs): serde presents an untagged enum's struct variants
    // under the enum's name, so variants with the same fields are presented alike (JSON: both
    // `{"last4":1}`), and no serializer can tell them apart. Tag the enum to keep them apart.
    #[derive(Serialize)]
    #[serde(untagged)]
    enum SameFields {
        Card { last4: u16 },
        Iban { last4: u16 },
    }
    assert_eq!(
        key("t", &SameFields::Card { last4: 1 }),
        key("t", &SameFields::Iban { last4: 1 })
    );
    // Internally tagged: the tag is a field.
    assert_ne!(key("t", &Tagged::New { id: 0 }), key("t", &Tagged::Gone));
    // Newtype vs its value, unit struct vs unit, nested options, unit vs None.
    assert_ne!(key("t", &Meters(5)), key("t", &5_u32));
    assert_ne!(key("t", &Marker), key("t", &()));
    assert_ne!(key("t", &None::<Option<u8>>), key("t", &Some(None::<u8>)));
    assert_ne!(key("t", &Some(())), key("t", &Some(None::<()>)));
    assert_ne!(key("t", &()), key("t", &None::<()>));
    // Renaming a field changes the key (serde presents the name); `rename` keeps it.
    #[derive(Serialize)]
    struct Before {
        amount: u32,
    }
    #[derive(Serialize)]
    #[serde(rename = "Before")]
    struct Renamed {
        #[serde(rename = "amount")]
        cents: u32,
    }
    #[derive(Serialize)]
    #[serde(rename = "Before")]
    struct NewName {
        cents: u32,
    }
    assert_eq!(
        key("t", &Before { amount: 1 }),
        key("t", &Renamed { cents: 1 })
    );
    assert_ne!(
        key("t", &Before { amount: 1 }),
        key("t", &NewName { cents: 1 })
    );
}

/// A variant serde refuses to serialize is an error, never a key shared with another value.
#[test]
fn scenario_17_skipped_variants_are_errors() {
    // The payload exists only to be refused; nothing reads it.
    #[allow(dead_code)]
    #[derive(Serialize)]
    enum E {
        Shown(u8),
        #[serde(skip_serializing)]
        Hidden(u8),
        #[serde(skip)]
        Gone,
    }
    assert!(IdempotencyKey::derive("t", 1, &E::Shown(1)).is_ok());
    for v in [E::Hidden(1), E::Gone] {
        assert_eq!(
            IdempotencyKey::derive("t", 1, &v)
                .map_err(|e| e.kind())
                .err(),
            Some(ErrorKind::Encode)
        );
    }
}
