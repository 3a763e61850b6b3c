//! Idempotency keys, fingerprints and key derivation (see [`IdempotencyKey`]).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrayvec::ArrayString;
use serde::Serialize;

use crate::error::{Error, Result};

mod encoder;
mod writer;

pub use encoder::KeyEncoder;
pub use writer::{KeyWriter, NormalizeKey};

/// Longest accepted caller-supplied idempotency key, in bytes (Stripe's limit).
pub const MAX_CUSTOM_KEY_BYTES: usize = 255;
/// Longest accepted operation name, in bytes.
pub const MAX_OPERATION_BYTES: usize = 200;

/// The key format version of this crate: the version of the [`canonical`](crate::canonical)
/// encoding and of the key and fingerprint derivation, hashed into every key (as the domain tags
/// `idempotency/key/v2` and `idempotency/fingerprint/v2`).
///
/// A new format version changes every key and fingerprint. Records written under an older format
/// are not found by the new keys: after a deploy that changes it, each operation whose record
/// is still within its TTL runs at most once more (its retry derives the new key, finds no
/// record and executes), and the old records expire on their own.
///
/// - 2: field names, skipped fields (`skip_serializing_if`), type and variant names and newtype
///   structs enter the encoding; maps sort by key, stably (issue 12).
/// - 1: the first format.
pub const KEY_FORMAT_VERSION: u32 = 2;

const KEY_DOMAIN: &[u8] = b"idempotency/key/v2\0";
const FINGERPRINT_DOMAIN: &[u8] = b"idempotency/fingerprint/v2\0";
// The domain tags spell the format version.
const _: () = assert!(
    KEY_DOMAIN[17] == b'0' + KEY_FORMAT_VERSION as u8
        && FINGERPRINT_DOMAIN[25] == b'0' + KEY_FORMAT_VERSION as u8
);

/// The identity of one logical operation: `operation_name:32_hex_chars`.
///
/// Made by [`KeyEncoder`] (or [`IdempotencyKey::derive`]).
///
/// An [`IdempotencyKey`] is `operation_name:32_hex_chars`: the operation name, a colon, then the
/// first 128 bits of a SHA-256, in lowercase hex. The SHA-256 input is, in this order:
///
/// 1. the domain tag `idempotency/key/v2\0` (v2 is [`KEY_FORMAT_VERSION`]);
/// 2. the operation name and the operation version (a `u32`), which is how type identity enters
///    the hash: the canonical encoding is not self-describing about Rust types, so two functions
///    (or two versions of one function) never share keys because their names or versions differ;
/// 3. the scope (tenant, org, user), canonically encoded, when one is given;
/// 4. either the canonical encoding of the arguments (derived keys), or the caller-supplied
///    idempotency key (custom keys, Stripe style), validated first.
///
/// The [`Fingerprint`] is the full SHA-256 of the canonical encoding of the arguments. For a
/// derived key it is the key's own digest; for a custom key it is a second hash of the
/// arguments, so that reusing one custom key with different inputs is detected (Stripe, the IETF
/// Idempotency-Key draft).
///
/// The canonical encoding is described in the [`canonical`](crate::canonical) module docs.
/// The raw inputs and any caller-supplied key never appear in it, so it is safe to log and to
/// use as a store key.
///
/// # What makes two calls the same
///
/// Two calls share a record (the second replays the first's result) exactly when their keys are
/// equal, and a derived key is equal exactly when all four of these are (the full rule, with what
/// may change without changing keys, is the "Call identity" section of the repository's
/// SEMANTICS.md):
///
/// 1. **operation identity**: the operation name (by default the function's full path, including
///    its `impl` type and trait) and, for a generic function or a method of a generic type or
///    trait impl, the Rust type names ([`std::any::type_name`]) of its generic arguments and
///    `Self`, so instantiations of a generic function and same-named methods of different types
///    never share a record. A pinned `name = "..."` replaces the path; the generic arguments
///    still count. A non-generic function's parameter and result types are not hashed;
/// 2. **the argument values as serde presents them**, canonically encoded: values, the names of
///    structs, fields, enums and variants, and every field serde skipped; only integer width,
///    `f32`/`f64`, `-0.0`, NaN payloads and map and set order are normalized away. A value that
///    serializes as a string keys by that string (`rust_decimal`'s `1.50` and `1.5` are
///    different keys unless normalized first). With a caller-supplied key, that key takes this
///    place and the arguments form only the [`Fingerprint`];
/// 3. **the scope**, when given;
/// 4. **the version**: the operation's version and this crate's [`KEY_FORMAT_VERSION`].
///
/// Renaming a local variable or a parameter, reordering map or set insertions, and moving the
/// function when `name` is set keep keys. Renaming a struct field, type or variant (as serde
/// presents it), changing a parameter's type so that its values encode differently (the result's
/// type is not part of the key: bump the version), serde attributes that change the
/// presentation, the version, the scope and the key format version change them. The canonical
/// encoding is pinned by golden vectors and does not depend on the compiler; `type_name` output
/// is not guaranteed across compiler versions, so a toolchain upgrade may change macro-derived
/// keys (each live key then runs once more). Pin `name` when keys must survive moving the
/// function or be shared by several binaries.
///
/// A key is a string. Keys of up to 80 bytes (operation names up to 47 bytes)
/// are held inline, so deriving and cloning one allocates nothing; longer keys share one heap
/// allocation between clones. Equality, order, hashing, `Display` and the serde form (a
/// newtype of a string) are those of the string, whichever way it is held.
#[derive(Clone)]
pub struct IdempotencyKey(Repr);

/// The longest key, in bytes, held inside an [`IdempotencyKey`] without a heap allocation.
const INLINE_KEY_BYTES: usize = 80;
// `IdempotencyKey`'s docs give the figure.
const _: () = assert!(INLINE_KEY_BYTES == 80);

#[derive(Clone)]
enum Repr {
    Inline(ArrayString<INLINE_KEY_BYTES>),
    Shared(Arc<str>),
}

impl IdempotencyKey {
    /// The key made of `parts`, one after the other.
    pub(crate) fn from_parts(parts: &[&str]) -> IdempotencyKey {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= INLINE_KEY_BYTES {
            let mut s = ArrayString::new();
            for p in parts {
                // Cannot fail: the parts fit (checked above).
                let _ = s.try_push_str(p);
            }
            IdempotencyKey(Repr::Inline(s))
        } else {
            IdempotencyKey(Repr::Shared(Arc::from(parts.concat())))
        }
    }
}

/// `dst.copy_from_slice(src)` (of equal lengths), with copies of up to 64 bytes done in two
/// overlapping loads and stores instead of a call to `memcpy`: short names, strings and
/// operation names are most of what key derivation copies.
#[inline]
pub(crate) fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if dst.len() != n {
        return dst.copy_from_slice(src);
    }
    match n {
        32..=64 => {
            dst[..32].copy_from_slice(&src[..32]);
            dst[n - 32..].copy_from_slice(&src[n - 32..]);
        }
        16..=31 => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..]);
        }
        8..=15 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        }
        _ => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        }
    }
}

impl PartialEq for IdempotencyKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for IdempotencyKey {}

impl PartialOrd for IdempotencyKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdempotencyKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for IdempotencyKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// As `#[derive(Serialize)]` on `struct IdempotencyKey(String)`: a newtype struct of a string.
impl Serialize for IdempotencyKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_newtype_struct("IdempotencyKey", self.as_str())
    }
}

/// As `#[derive(Deserialize)]` on `struct IdempotencyKey(String)`; the string is not validated.
impl<'de> serde::Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename = "IdempotencyKey")]
        struct Wire(String);
        let Wire(s) = Wire::deserialize(d)?;
        Ok(IdempotencyKey::from_parts(&[&s]))
    }
}

impl IdempotencyKey {
    /// Derives the key of `operation` (version `version`) for the arguments `args`, with no
    /// scope. Shorthand for a [`KeyEncoder`] with one argument.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty, over-long (over [`MAX_OPERATION_BYTES`]) or
    /// control-character operation name; [`Error::Encode`] when `args` fails to serialize.
    pub fn derive<A: Serialize + ?Sized>(
        operation: &str,
        version: u32,
        args: &A,
    ) -> Result<DerivedKey> {
        let mut enc = KeyEncoder::new(operation, version);
        enc.arg(args);
        enc.finish()
    }

    /// This key with `prefix` prepended to its operation name (a manager's namespace).
    pub fn with_prefix(&self, prefix: &str) -> IdempotencyKey {
        IdempotencyKey::from_parts(&[prefix, self.as_str()])
    }

    /// This key without `prefix` in front, or `None` when it does not start with it (the
    /// inverse of [`with_prefix`](Self::with_prefix), for [`Prefixed`](crate::Prefixed)).
    pub(crate) fn strip_prefix(&self, prefix: &str) -> Option<IdempotencyKey> {
        self.as_str()
            .strip_prefix(prefix)
            .map(|rest| IdempotencyKey::from_parts(&[rest]))
    }

    /// The key as a string: `operation_name:32_hex_chars`.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(s) => s.as_str(),
            Repr::Shared(s) => s,
        }
    }

    /// The operation name part.
    pub fn operation(&self) -> &str {
        let s = self.as_str();
        match s.rfind(':') {
            Some(i) => &s[..i],
            None => s,
        }
    }

    /// The 32 hex characters part.
    pub fn hash_hex(&self) -> &str {
        let s = self.as_str();
        match s.rfind(':') {
            Some(i) => &s[i + 1..],
            None => "",
        }
    }

    /// Parses a key printed by [`Display`](fmt::Display) (`operation_name:32_hex_chars`).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the string is not of that shape.
    pub fn parse(s: &str) -> Result<Self> {
        let Some(i) = s.rfind(':') else {
            return Err(Error::InvalidKey {
                reason: "expected `operation_name:32_hex_chars`",
            });
        };
        validate_operation(&s[..i])?;
        let hex = &s[i + 1..];
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::InvalidKey {
                reason: "expected 32 lowercase hex characters after the last `:`",
            });
        }
        Ok(IdempotencyKey::from_parts(&[s]))
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.as_str())
    }
}

/// The SHA-256 of the canonical encoding of an operation's inputs, stored in the record to
/// detect reuse of an idempotency key with different inputs (the IETF draft's "idempotency
/// fingerprint", Stripe's parameter comparison). 32 bytes; prints as 64 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A derived idempotency key and the fingerprint of the inputs it was derived from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DerivedKey {
    /// The idempotency key.
    pub key: IdempotencyKey,
    /// The fingerprint of the inputs.
    pub fingerprint: Fingerprint,
}

/// Checks an operation name: non-empty, at most [`MAX_OPERATION_BYTES`], no control characters.
pub(crate) fn validate_operation(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidKey {
            reason: "the operation name is empty",
        });
    }
    if name.len() > MAX_OPERATION_BYTES {
        return Err(Error::InvalidKey {
            reason: "the operation name is longer than 200 bytes",
        });
    }
    if has_control(name) {
        return Err(Error::InvalidKey {
            reason: "the operation name contains a control character",
        });
    }
    Ok(())
}

/// Whether `s` holds a control character (`char::is_control`: U+0000 to U+001F and U+007F to
/// U+009F). Printable ASCII (0x20 to 0x7E), what names and keys are made of, is recognised eight
/// bytes at a time; anything else is decoded and checked character by character.
pub(crate) fn has_control(s: &str) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = s.as_bytes().chunks_exact(8);
    let mut other = false;
    for chunk in &mut chunks {
        let w = <[u8; 8]>::try_from(chunk).map_or(HIGH, u64::from_le_bytes);
        // A byte under 0x20 (Mycroft's "has less"), or over 0x7E (its high bit is set, or
        // becomes set by adding 1).
        let under = w.wrapping_sub(0x20 * LOW) & !w & HIGH;
        let over = (w.wrapping_add(LOW) | w) & HIGH;
        other |= (under | over) != 0;
    }
    other |= chunks
        .remainder()
        .iter()
        .any(|&b| !(0x20..0x7f).contains(&b));
    other && s.chars().any(char::is_control)
}

/// Checks a caller-supplied idempotency key: non-empty, at most [`MAX_CUSTOM_KEY_BYTES`] bytes
/// (Stripe's limit), no control characters (the IETF draft asks servers to validate keys).
///
/// # Errors
/// [`Error::InvalidKey`] naming the rule that failed.
pub fn validate_custom_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey {
            reason: "the idempotency key is empty",
        });
    }
    if key.len() > MAX_CUSTOM_KEY_BYTES {
        return Err(Error::InvalidKey {
            reason: "the idempotency key is longer than 255 bytes",
        });
    }
    if has_control(key) {
        return Err(Error::InvalidKey {
            reason: "the idempotency key contains a control character",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{copy_short, has_control};

    #[test]
    fn copy_short_copies_every_length() {
        let src: Vec<u8> = (1..=100).collect();
        for n in 0..=100 {
            let mut dst = vec![0_u8; n];
            copy_short(&mut dst, &src[..n]);
            assert_eq!(dst, &src[..n]);
        }
    }

    #[test]
    fn has_control_is_char_is_control() {
        let chars = (0_u32..0x3000)
            .chain([0xfeff, 0xfffd, 0x1_f680, 0x10_ffff])
            .filter_map(char::from_u32);
        for c in chars {
            for at in 0..18 {
                // `c` at every position of the 8-byte chunks and of the remainder.
                let s: String = "abcdefghijklmnopq"
                    .chars()
                    .take(at)
                    .chain([c])
                    .chain("rstuvwxyz".chars())
                    .collect();
                assert_eq!(has_control(&s), s.chars().any(char::is_control), "{s:?}");
            }
        }
        assert!(!has_control(""));
        assert!(!has_control("billing::charge ~{}|"));
    }
}
