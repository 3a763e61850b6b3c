//! Pinned fingerprints and full digests of every derivation path (plain, scoped, with instance
//! parts, caller-supplied key), next to the golden keys of `keys.rs`: a change to how the key
//! is hashed that kept the printed key but moved the fingerprint would make every stored record
//! a fingerprint mismatch after a deploy.

use idempotency_core::{DerivedKey, IdempotencyKey, KeyEncoder};

fn derived(op: &str, f: impl FnOnce(&mut KeyEncoder<'_>)) -> DerivedKey {
    let mut e = KeyEncoder::new(op, 1);
    f(&mut e);
    e.finish().unwrap_or_else(|e| panic!("{e}"))
}

fn cases() -> Vec<(&'static str, DerivedKey)> {
    let long_op = "vectors::".repeat(20);
    // The key's SHA-256 input is 40 bytes of header and string tag, then the string: these
    // lengths put the message at 55, 56, 63, 64, 119, 120 and 128 bytes, around the padding's
    // block boundaries.
    let mut padded: Vec<(&'static str, DerivedKey)> = [15, 16, 23, 24, 79, 80, 88]
        .into_iter()
        .zip([
            "pad_55", "pad_56", "pad_63", "pad_64", "pad_119", "pad_120", "pad_128",
        ])
        .map(|(n, name)| {
            let s = "p".repeat(n);
            (
                name,
                derived("vectors::pad", |e| {
                    e.arg(s.as_str());
                }),
            )
        })
        .collect();
    let mut all = vec![
        (
            "plain",
            derived("vectors::plain", |e| {
                e.arg(&(42_u64, "EUR"));
            }),
        ),
        ("empty_args", derived("vectors::empty", |_| {})),
        (
            "two_blocks",
            derived("vectors::two", |e| {
                e.arg(&"x".repeat(40));
            }),
        ),
        (
            "many_blocks",
            derived("vectors::many", |e| {
                e.arg(&"y".repeat(1000));
            }),
        ),
        ("long_op", {
            let mut e = KeyEncoder::new(&long_op, 7);
            e.arg(&1_u8);
            e.finish().unwrap_or_else(|e| panic!("{e}"))
        }),
        (
            "scoped",
            derived("vectors::scoped", |e| {
                e.scope("tenant-42").arg(&1200_u64);
            }),
        ),
        (
            "scope_after_args",
            derived("vectors::scoped", |e| {
                e.arg(&1200_u64).scope("tenant-42");
            }),
        ),
        (
            "instance",
            derived("vectors::inst", |e| {
                e.instance("<u32>").arg(&5_u32);
            }),
        ),
        (
            "custom",
            derived("vectors::custom", |e| {
                e.custom_key("order-1").arg(&7_u8);
            }),
        ),
        (
            "custom_instance",
            derived("vectors::custom", |e| {
                e.custom_key("order-1").instance("<u64>").arg(&7_u8);
            }),
        ),
        (
            "custom_scoped",
            derived("vectors::custom", |e| {
                e.scope(&3_u8).custom_key("order-1").arg(&7_u8);
            }),
        ),
        (
            "derive",
            IdempotencyKey::derive("vectors::derive", 2, &[1_u8, 2, 3])
                .unwrap_or_else(|e| panic!("{e}")),
        ),
    ];
    all.append(&mut padded);
    all
}

/// `(case, key, fingerprint)`, derived by key format 2 before the derivation was rewritten for
/// speed (issue 17).
const PINNED: &[(&str, &str, &str)] = &[
    ("plain", "vectors::plain:d3a98179cab863ae71cb43fa2ae4c802", "d3a98179cab863ae71cb43fa2ae4c802427a277ab16ff1ebfb6f5fd2826cae44"),
    ("empty_args", "vectors::empty:4b6ea57c30eea941bf4d3eb4d4fa06f7", "4b6ea57c30eea941bf4d3eb4d4fa06f7a3af92e48be0817ef7a20be9fe818975"),
    ("two_blocks", "vectors::two:d26aff8051f0291be994bf52879830ec", "d26aff8051f0291be994bf52879830ecd171b5ddf5ec8f82ec56ad1a226c6bd0"),
    ("many_blocks", "vectors::many:4c34a57f406b8d3c6a3772b1d8f9367a", "4c34a57f406b8d3c6a3772b1d8f9367af4d4fa712c8b48ab88e21263ff047149"),
    ("long_op", "vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors::vectors:::0a27a014d8eaab3164180094391fd1dc", "0a27a014d8eaab3164180094391fd1dc4af8779e8642bfd21767f3b304c2dadb"),
    ("scoped", "vectors::scoped:c674f93eca4f531be9bbe74320e1c77b", "c674f93eca4f531be9bbe74320e1c77bacd0c90c7881667f6a285e540aeb1593"),
    ("scope_after_args", "vectors::scoped:c674f93eca4f531be9bbe74320e1c77b", "c674f93eca4f531be9bbe74320e1c77bacd0c90c7881667f6a285e540aeb1593"),
    ("instance", "vectors::inst:5e0a5c4addefc58a27791c0bd3ee8d7b", "5e0a5c4addefc58a27791c0bd3ee8d7b38c51a315e6861064f26eed86c032e34"),
    ("custom", "vectors::custom:af07bc2864da399016ecf22f41489727", "f60dca89bcc8c6a1b8daf51b9f4b1ee5de22fad42fb99024910406e9ae7aa96e"),
    ("custom_instance", "vectors::custom:2f1ad741f2d7647b8c460bcc99f6878e", "77e261219d5b9b9c306c46a31ad118b2989a701d6454cbc5a0ed87f181d68ce5"),
    ("custom_scoped", "vectors::custom:902ebb8aee6c620596137af7ef2820eb", "f60dca89bcc8c6a1b8daf51b9f4b1ee5de22fad42fb99024910406e9ae7aa96e"),
    ("derive", "vectors::derive:027203e35f2db119f993174ba2f268c3", "027203e35f2db119f993174ba2f268c3f80dde3e3162c111ec0b4ad8fa243619"),
    ("pad_55", "vectors::pad:e68d24d5d2658da8756914c755a30646", "e68d24d5d2658da8756914c755a3064643f54b35be03f0b5e86f1f6edc2bd9d5"),
    ("pad_56", "vectors::pad:a7df66437622c5ccd2eb4bbb7e2a9388", "a7df66437622c5ccd2eb4bbb7e2a9388b9d07f3e8074679d978726270e5a8e2e"),
    ("pad_63", "vectors::pad:84aa67242d6cdd4439a7564c4981034c", "84aa67242d6cdd4439a7564c4981034cd667a5936ce9d5ff5fae350cbc7b35f6"),
    ("pad_64", "vectors::pad:bcb9a4769989751f4f7a569cf56cd95f", "bcb9a4769989751f4f7a569cf56cd95f0a973efd99a6ad2d253f323b195706ad"),
    ("pad_119", "vectors::pad:72429985dba5a0359eb4e5a7f6a97b13", "72429985dba5a0359eb4e5a7f6a97b136e474523ab55e7926ebc21f0a4b0e4d9"),
    ("pad_120", "vectors::pad:9c17356ba75d6532e172d2fe0e2ba036", "9c17356ba75d6532e172d2fe0e2ba0365bd3c143f39edf93a9f7c20c080acd6e"),
    ("pad_128", "vectors::pad:1a85803e1f4c12d1870c1d63e15d6381", "1a85803e1f4c12d1870c1d63e15d6381e699977298575a2908bc30f4c9973036"),
];

#[test]
fn fingerprints_and_keys_of_every_derivation_path_are_pinned() {
    let actual = cases();
    assert_eq!(actual.len(), PINNED.len());
    for ((name, d), (pinned, key, fingerprint)) in actual.iter().zip(PINNED) {
        assert_eq!(name, pinned);
        assert_eq!(d.key.as_str(), *key, "key of `{name}` changed");
        assert_eq!(
            d.fingerprint.to_string(),
            *fingerprint,
            "fingerprint of `{name}` changed"
        );
        // A derived key's hex is the first half of its fingerprint (its own digest).
        if !name.starts_with("custom") {
            assert_eq!(d.key.hash_hex(), &fingerprint[..32]);
        }
    }
}

/// The key's wire form (in every stored record) is a string: a newtype of `String` to serde.
#[test]
fn a_key_serializes_as_its_string() {
    for (_, d) in cases() {
        let as_key = postcard::to_stdvec(&d.key).unwrap_or_else(|e| panic!("{e}"));
        let as_string =
            postcard::to_stdvec(&d.key.as_str().to_owned()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(as_key, as_string);
        let back: IdempotencyKey = postcard::from_bytes(&as_key).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, d.key);
        assert_eq!(back.as_str(), d.key.as_str());
    }
}

/// Keys of every length (inline or not) behave as their strings: equality, order, hashing,
/// prefixes, parsing.
#[test]
fn keys_of_every_length_behave_as_their_strings() {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    let hash = |k: &IdempotencyKey| {
        let mut h = DefaultHasher::new();
        k.hash(&mut h);
        h.finish()
    };
    let keys: Vec<IdempotencyKey> = (1..=200)
        .map(|n| {
            IdempotencyKey::derive(&"o".repeat(n), 1, &n)
                .unwrap_or_else(|e| panic!("{e}"))
                .key
        })
        .collect();
    for (i, a) in keys.iter().enumerate() {
        assert_eq!(a.operation().len(), i + 1);
        assert_eq!(a.hash_hex().len(), 32);
        let parsed = IdempotencyKey::parse(a.as_str()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&parsed, a);
        assert_eq!(hash(&parsed), hash(a));
        assert_eq!(parsed.to_string(), a.as_str());
        let prefixed = a.with_prefix("tenant-7/");
        assert_eq!(prefixed.as_str(), format!("tenant-7/{}", a.as_str()));
        assert_eq!(prefixed.clone(), prefixed);
        for b in &keys[i.saturating_sub(2)..(i + 2).min(keys.len())] {
            assert_eq!(a == b, a.as_str() == b.as_str());
            assert_eq!(a.cmp(b), a.as_str().cmp(b.as_str()));
        }
    }
}
