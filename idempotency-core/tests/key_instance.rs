//! `KeyEncoder::instance`: parts of an operation's identity beyond its name and version
//! (SEMANTICS.md scenario 18; what `#[idempotent]` uses to tell generic instantiations apart).

use idempotency_core::{IdempotencyKey, KeyEncoder};

fn derived(parts: &[&str]) -> (String, [u8; 32]) {
    let mut enc = KeyEncoder::new("app::echo", 1);
    for p in parts {
        enc.instance(p);
    }
    enc.arg(&5_u32);
    let d = enc.finish().unwrap();
    (d.key.as_str().to_owned(), d.fingerprint.0)
}

fn custom(parts: &[&str], arg: u32) -> (String, [u8; 32]) {
    let mut enc = KeyEncoder::new("app::echo", 1);
    for p in parts {
        enc.instance(p);
    }
    enc.custom_key("req-1").arg(&arg);
    let d = enc.finish().unwrap();
    (d.key.as_str().to_owned(), d.fingerprint.0)
}

#[test]
fn scenario_18_without_parts_the_key_is_unchanged() {
    let plain = IdempotencyKey::derive("app::echo", 1, &5_u32).unwrap();
    assert_eq!(derived(&[]).0, plain.key.as_str());
    assert_eq!(derived(&[]).1, plain.fingerprint.0);
}

#[test]
fn scenario_18_parts_separate_derived_keys() {
    let none = derived(&[]);
    let a = derived(&["<u32>"]);
    let b = derived(&["<u64>"]);
    assert_ne!(none.0, a.0);
    assert_ne!(a.0, b.0);
    assert_ne!(a.1, b.1);
    // The visible part is still the operation name; parts never appear in clear.
    assert!(a.0.starts_with("app::echo:") && !a.0.contains("u32"));
    // Deterministic.
    assert_eq!(derived(&["<u32>"]), a);
}

#[test]
fn scenario_18_parts_are_length_prefixed_and_ordered() {
    assert_ne!(derived(&["ab", "c"]).0, derived(&["a", "bc"]).0);
    assert_ne!(derived(&["a", "b"]).0, derived(&["b", "a"]).0);
    assert_ne!(derived(&["ab"]).0, derived(&["a", "b"]).0);
    assert_ne!(derived(&[""]).0, derived(&[]).0);
}

#[test]
fn scenario_18_parts_separate_caller_supplied_keys_and_enter_the_fingerprint() {
    let none = custom(&[], 5);
    let a = custom(&["<u32>"], 5);
    let b = custom(&["<u64>"], 5);
    assert_ne!(none.0, a.0);
    assert_ne!(a.0, b.0);
    assert_ne!(none.1, a.1);
    assert_ne!(a.1, b.1);
    // Same part and key, other inputs: same key, other fingerprint (reuse is detected).
    let a6 = custom(&["<u32>"], 6);
    assert_eq!(a.0, a6.0);
    assert_ne!(a.1, a6.1);
}
