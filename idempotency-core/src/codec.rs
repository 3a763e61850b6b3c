//! The encoding of stored results and stored errors, and the check that a value replays before
//! its record claims `Success` (or `Failed` with the error).
//!
//! Values are CBOR (RFC 8949) through `ciborium`: self-describing, structs as maps keyed by field
//! name, enums by variant name. Every serde shape that needs `deserialize_any` or changes its
//! field layout per value therefore decodes: internally, adjacently tagged and untagged enums,
//! `#[serde(flatten)]`, `skip_serializing_if`, maps with non-string keys, `u128`/`i128`, `-0.0`.
//! (Record format version 1 stored values as postcard, which is not self-describing; see
//! [`Record::FORMAT_VERSION`](crate::Record::FORMAT_VERSION).) Keys do not use this encoding:
//! they hash the canonical encoding of [`canonical`](crate::canonical).
//!
//! A few values still cannot be replayed by any self-describing format that serde drives:
//! `Some(None)` and `Some(())` encode as `null`, exactly like `None`, and an untagged enum's
//! `Big(5u64)` encodes as the number 5, which decodes as an earlier `Small(u8)` variant.
//! [`retain`] finds such a loss before the value is stored, by decoding the bytes back as the
//! caller's type and comparing the two values as serde presents them, numbers with their width;
//! the value is then "not retained" rather than a `Success` that replays something else. What no
//! serializer sees, no check can find: the variants of an `#[serde(untagged)]` enum that serde
//! presents with the very same calls (two unit variants, two struct variants with the same
//! fields) replay as the first one that decodes. Tag such enums in results.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The initial capacity of [`encode`]'s buffer, in bytes.
const ENCODE_CAPACITY: usize = 128;
/// The scratch space of [`decode`]'s first attempt, in bytes.
const SMALL_SCRATCH: usize = 256;
/// The scratch space of `ciborium::from_reader`, used by [`decode`]'s second attempt.
const FULL_SCRATCH: usize = 4096;

/// Encodes a value for a record (CBOR).
///
/// # Errors
/// The value's own serialization error, as text.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    // Most results are small: one allocation instead of four to six doublings from empty.
    let mut out = Vec::with_capacity(ENCODE_CAPACITY);
    ciborium::into_writer(value, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Decodes a value stored by [`encode`]; trailing bytes are an error (another type's value).
///
/// # Errors
/// Why the bytes do not decode as `T`, as text.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut rest = bytes;
    // `ciborium::from_reader` zeroes a 4 KiB scratch array on every call (about a quarter of a
    // memory-store replay). The scratch only holds strings and byte strings short enough to be
    // visited borrowed; a longer one is read into an owned buffer instead, except where serde
    // asks for a borrowed `str` or an identifier (`deserialize_str`, `deserialize_identifier`),
    // which fail when longer than the scratch. So decode with a small scratch first and, only if
    // that fails, again with ciborium's own 4 KiB: every value decodes or fails exactly as it
    // would through `from_reader`.
    let mut small = [0_u8; SMALL_SCRATCH];
    let value = match ciborium::de::from_reader_with_buffer(&mut rest, &mut small) {
        Ok(value) => value,
        Err(_) => {
            rest = bytes;
            let mut scratch = [0_u8; FULL_SCRATCH];
            ciborium::de::from_reader_with_buffer(&mut rest, &mut scratch).map_err(|e| match e {
                ciborium::de::Error::Semantic(_, msg) => msg,
                other => other.to_string(),
            })?
        }
    };
    if !rest.is_empty() {
        return Err(format!(
            "{} bytes left over: the stored value has another type",
            rest.len()
        ));
    }
    Ok(value)
}

/// Encodes `value` for a record and proves that it replays: at most `max` bytes, decodable as
/// `T`, and the decoded value is the same value. `Err` holds why it cannot be stored (the
/// reason of a "result not retained" record).
///
/// # Errors
/// The reason the value cannot be stored: it fails to serialize, is over `max` bytes, does not
/// decode as `T`, or decodes as a different value.
///
/// "The same value" compares the exact canonical encodings of the value and of its decoded copy
/// (the encoder keys hash, [`canonical`](crate::canonical), with numbers keeping their width and
/// the sign of zero): every value serde presents, `None` apart from `Some(None)`, `5u8` apart
/// from `5u64`, integers apart from floats, maps and sets (`HashMap`, `HashSet`) in any
/// iteration order, so two equal hash maps with different hashers still compare equal. Byte
/// equality of two CBOR encodings would refuse those; a decode check alone would accept an
/// untagged enum that decodes as another variant, or a `Some(None)` that decodes as `None`.
pub fn retain<T: Serialize + DeserializeOwned>(value: &T, max: usize) -> Result<Vec<u8>, String> {
    let bytes = encode(value).map_err(|e| format!("the value failed to serialize: {e}"))?;
    if bytes.len() > max {
        return Err(format!(
            "the encoded result is {} bytes, over the {max}-byte limit",
            bytes.len()
        ));
    }
    let back: T = decode(&bytes).map_err(|e| {
        format!("the encoded value does not deserialize as its own type, so it could never be replayed: {e}")
    })?;
    let canonical = |v: &T| {
        let mut out = Vec::new();
        crate::canonical::encode_exact_into(&mut out, v).map(|()| out)
    };
    match (canonical(value), canonical(&back)) {
        (Ok(a), Ok(b)) if a == b => Ok(bytes),
        (Ok(_), Ok(_)) => Err(
            "the encoded value deserializes as a different value (an untagged enum that \
             decodes as another variant, `Some(None)` or `Some(())` read back as `None`, a \
             `Deserialize` that drops data), so it could never be replayed exactly"
                .to_owned(),
        ),
        (Err(e), _) | (_, Err(e)) => Err(format!(
            "the value could not be compared with its decoded copy: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A string that deserializes through `deserialize_str` (a borrowed `str`), as `Uuid`,
    /// `IpAddr` or chrono's dates do.
    #[derive(Debug, PartialEq, Serialize)]
    struct Borrowed(String);

    impl<'de> Deserialize<'de> for Borrowed {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Borrowed;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Borrowed, E> {
                    Ok(Borrowed(v.to_owned()))
                }
            }
            d.deserialize_str(V)
        }
    }

    #[test]
    fn strings_longer_than_the_small_scratch_decode_as_before() {
        // Up to ciborium's 4 KiB scratch a borrowed `str` decodes; past it, it never did.
        for len in [0, SMALL_SCRATCH, SMALL_SCRATCH + 1, FULL_SCRATCH] {
            let value = Borrowed("x".repeat(len));
            let bytes = encode(&value).unwrap_or_default();
            assert_eq!(decode::<Borrowed>(&bytes), Ok(value), "{len} bytes");
        }
        let too_long = encode(&Borrowed("x".repeat(FULL_SCRATCH + 1))).unwrap_or_default();
        assert!(decode::<Borrowed>(&too_long).is_err());
        // Owned strings of any length, and a value with an error, as before.
        let long = "y".repeat(3 * FULL_SCRATCH);
        let bytes = encode(&long).unwrap_or_default();
        assert_eq!(decode::<String>(&bytes), Ok(long));
        assert!(decode::<u32>(&bytes).is_err());
    }

    #[test]
    fn untagged_enum_decoding_as_another_variant_is_refused() {
        #[derive(Serialize, Deserialize)]
        #[serde(untagged)]
        enum Amount {
            Float(f64),
            Int(u32),
        }
        // `Int(5)` encodes as the integer 5, which the first variant accepts as `Float(5.0)`.
        assert!(retain(&Amount::Int(5), usize::MAX).is_err());
        assert!(retain(&Amount::Float(5.5), usize::MAX).is_ok());
    }

    #[test]
    fn some_none_is_refused_and_plain_options_are_kept() {
        assert!(retain(&Some(None::<u32>), usize::MAX).is_err());
        assert!(retain(&Some(()), usize::MAX).is_err());
        for v in [None, Some(Some(0_u32))] {
            let bytes = retain(&v, usize::MAX).unwrap();
            assert_eq!(decode::<Option<Option<u32>>>(&bytes).unwrap(), v);
        }
    }

    #[test]
    fn hash_maps_and_sets_compare_in_any_order() {
        let map: std::collections::HashMap<u64, String> =
            (0..64).map(|i| (i, i.to_string())).collect();
        let set: std::collections::HashSet<String> = (0..64).map(|i| i.to_string()).collect();
        assert!(retain(&map, usize::MAX).is_ok());
        assert!(retain(&set, usize::MAX).is_ok());
    }

    #[test]
    fn untagged_variants_that_differ_only_in_number_width_are_refused() {
        #[derive(Serialize, Deserialize)]
        #[serde(untagged)]
        enum Width {
            Small(u8),
            Big(u64),
        }
        // `Big(5)` encodes as the integer 5, which decodes as `Small(5)`: the keys' canonical
        // encoding normalizes integer widths, so comparing it would accept the wrong variant.
        assert!(retain(&Width::Big(5), usize::MAX).is_err());
        assert!(retain(&Width::Small(5), usize::MAX).is_ok());
        assert!(retain(&Width::Big(300), usize::MAX).is_ok());
        #[derive(Serialize, Deserialize)]
        #[serde(untagged)]
        enum Float {
            Single(f32),
            Double(f64),
        }
        assert!(retain(&Float::Double(1.5), usize::MAX).is_err());
        assert!(retain(&Float::Single(1.5), usize::MAX).is_ok());
        #[derive(Serialize, Deserialize)]
        #[serde(untagged)]
        enum Signed {
            Unsigned(u32),
            Signed(i64),
        }
        assert!(retain(&Signed::Signed(7), usize::MAX).is_err());
        assert!(retain(&Signed::Signed(-7), usize::MAX).is_ok());
    }

    #[test]
    fn negative_zero_replays_with_its_sign() {
        let bytes = retain(&-0.0_f64, usize::MAX).unwrap();
        assert!(decode::<f64>(&bytes).unwrap().is_sign_negative());
        let bytes = retain(&-0.0_f32, usize::MAX).unwrap();
        assert!(decode::<f32>(&bytes).unwrap().is_sign_negative());
    }

    #[test]
    fn trailing_bytes_are_another_type() {
        let mut bytes = encode(&1_u32).unwrap();
        bytes.push(0);
        assert!(decode::<u32>(&bytes).is_err());
    }
}

#[cfg(test)]
mod manager_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde::{Deserialize, Serialize};

    use crate::{
        Call, ErrorKind, IdempotencyKey, IdempotencyManager, MemoryStorage, RecordStatus, Retention,
    };

    /// Serializes as a string that its own `Deserialize` refuses.
    #[derive(Debug, Clone, PartialEq)]
    struct OneWay(u32);

    impl Serialize for OneWay {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&self.0.to_string())
        }
    }

    impl<'de> Deserialize<'de> for OneWay {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u32::deserialize(d).map(OneWay)
        }
    }

    #[test]
    fn issue_12_item_6_a_value_its_own_type_cannot_decode_is_not_retained() {
        let m = IdempotencyManager::new(MemoryStorage::new());
        let c = Call::new(IdempotencyKey::derive("codec::one_way", 1, &1_u8).unwrap());
        let count = AtomicUsize::new(0);
        let run = || {
            count.fetch_add(1, Ordering::SeqCst);
            OneWay(7)
        };
        let first = m.execute_sync(&c, run).unwrap();
        assert_eq!(first.value, OneWay(7), "the first caller gets its value");
        assert!(!first.is_retained());
        assert!(matches!(
            &first.provenance.retention,
            Retention::NotRetained { reason } if reason.contains("does not deserialize")
        ));
        let obs = crate::block_on(m.status(&c.key)).unwrap().unwrap();
        assert_eq!(
            obs.status(),
            RecordStatus::Failed,
            "never stored as Success"
        );
        assert!(obs.record.result.is_empty());
        let again = m.execute_sync(&c, run);
        assert_eq!(again.unwrap_err().kind(), ErrorKind::ResultNotRetained);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
