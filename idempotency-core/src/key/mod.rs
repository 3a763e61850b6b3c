//! Idempotency keys, fingerprints and key derivation (see [`IdempotencyKey`]).

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::canonical::{self, tag, CanonicalError};
use crate::error::{Error, Result};

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
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct IdempotencyKey(String);

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
        let mut s = String::with_capacity(prefix.len() + self.0.len());
        s.push_str(prefix);
        s.push_str(&self.0);
        IdempotencyKey(s)
    }

    /// The key as a string: `operation_name:32_hex_chars`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The operation name part.
    pub fn operation(&self) -> &str {
        match self.0.rfind(':') {
            Some(i) => &self.0[..i],
            None => &self.0,
        }
    }

    /// The 32 hex characters part.
    pub fn hash_hex(&self) -> &str {
        match self.0.rfind(':') {
            Some(i) => &self.0[i + 1..],
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
        Ok(IdempotencyKey(s.to_owned()))
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.0)
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
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidKey {
            reason: "the operation name contains a control character",
        });
    }
    Ok(())
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
    if key.chars().any(char::is_control) {
        return Err(Error::InvalidKey {
            reason: "the idempotency key contains a control character",
        });
    }
    Ok(())
}

/// Builds an [`IdempotencyKey`] and [`Fingerprint`] from an operation name, a version, an optional
/// scope, the arguments and an optional caller-supplied key.
///
/// Arguments are appended in call order; each is canonically encoded (see
/// [`canonical`](crate::canonical)).
/// Encoding errors are remembered and reported by [`finish`](Self::finish), so building never
/// fails half-way.
///
/// ```
/// # use idempotency_core as idempotency;
/// use idempotency::KeyEncoder;
/// let mut enc = KeyEncoder::new("billing::charge", 1);
/// enc.scope(&"tenant-42").arg(&1200_u64).arg(&"EUR");
/// let derived = enc.finish()?;
/// assert!(derived.key.as_str().starts_with("billing::charge:"));
/// assert_eq!(derived.key.hash_hex().len(), 32);
/// # Ok::<(), idempotency_core::Error>(())
/// ```
#[derive(Debug)]
pub struct KeyEncoder<'a> {
    operation: &'a str,
    version: u32,
    scope: Option<Vec<u8>>,
    args: Vec<u8>,
    custom: Option<&'a str>,
    /// The hash of the [`instance`](Self::instance) parts, when any were given.
    instance: Option<Sha256>,
    error: Option<Error>,
}

impl<'a> KeyEncoder<'a> {
    /// Starts a key for `operation` at `version`.
    pub fn new(operation: &'a str, version: u32) -> Self {
        KeyEncoder {
            operation,
            version,
            scope: None,
            args: Vec::with_capacity(64),
            custom: None,
            instance: None,
            error: None,
        }
    }

    /// Adds `part` to the operation's identity: which instance of the operation this is, when
    /// one operation name covers several distinct functions. `#[idempotent]` passes the
    /// instantiated path of a generic function or method (`<u32>` for `echo::<u32>`,
    /// `app::Repo<app::User>::load`), so that two instantiations never share a record.
    ///
    /// Each part is hashed length-prefixed, in call order, into the key's identity (next to the
    /// operation name, the version and the scope), so it separates derived keys and
    /// caller-supplied keys alike; it also enters the [`Fingerprint`]. Parts never appear in the
    /// key in clear. Without any part, the key and fingerprint are exactly those derived without
    /// this method, so keys that never used it keep their records.
    pub fn instance(&mut self, part: &str) -> &mut Self {
        let h = self.instance.get_or_insert_with(Sha256::new);
        update_len_prefixed(h, part.as_bytes());
        self
    }

    fn remember(&mut self, what: &'static str, r: std::result::Result<(), CanonicalError>) {
        if let Err(e) = r {
            if self.error.is_none() {
                self.error = Some(Error::Encode { what, message: e.0 });
            }
        }
    }

    /// Sets the scope (tenant, org, user): keys of different scopes never collide, and a caller in
    /// one scope can never read another scope's record (SEMANTICS.md scenario 19).
    pub fn scope<S: Serialize + ?Sized>(&mut self, scope: &S) -> &mut Self {
        let mut buf = Vec::with_capacity(32);
        let r = canonical::encode_into(&mut buf, scope);
        self.remember("the scope", r);
        self.scope = Some(buf);
        self
    }

    /// Appends one argument, encoded through its `Serialize` impl.
    pub fn arg<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        let r = canonical::encode_into(&mut self.args, value);
        self.remember("an argument", r);
        self
    }

    /// Appends one argument through its [`NormalizeKey`] impl.
    pub fn arg_normalized<T: NormalizeKey + ?Sized>(&mut self, value: &T) -> &mut Self {
        let r = value.normalize_key(&mut KeyWriter {
            out: &mut self.args,
        });
        self.remember("an argument", r);
        self
    }

    /// Direct access to the argument writer, for generated code.
    #[doc(hidden)]
    pub fn writer(&mut self) -> KeyWriter<'_> {
        KeyWriter {
            out: &mut self.args,
        }
    }

    /// Records an encoding error raised through [`writer`](Self::writer).
    #[doc(hidden)]
    pub fn record_error(&mut self, r: std::result::Result<(), CanonicalError>) {
        self.remember("an argument", r);
    }

    /// Uses a caller-supplied idempotency key (Stripe style): the key then identifies the
    /// operation, and the arguments only form the fingerprint. The key is validated by
    /// [`finish`](Self::finish) and only ever enters the store hashed.
    pub fn custom_key(&mut self, key: &'a str) -> &mut Self {
        self.custom = Some(key);
        self
    }

    /// Hashes everything into the key and fingerprint.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a bad operation name or custom key (see
    /// [`validate_custom_key`]); [`Error::Encode`] when an argument or the scope failed to
    /// serialize.
    pub fn finish(mut self) -> Result<DerivedKey> {
        if let Some(e) = self.error {
            return Err(e);
        }
        validate_operation(self.operation)?;
        let instance: Option<[u8; 32]> = self.instance.take().map(|i| i.finalize().into());
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        self.hash_identity(&mut h);
        if let Some(i) = &instance {
            // After the scope comes `C` or `A` otherwise: the tag keeps the two apart.
            h.update([b'I']);
            h.update(i);
        }
        let fingerprint = match self.custom {
            Some(custom) => {
                validate_custom_key(custom)?;
                h.update([b'C']);
                update_len_prefixed(&mut h, custom.as_bytes());
                let mut f = Sha256::new();
                match &instance {
                    None => f.update(FINGERPRINT_DOMAIN),
                    Some(_) => f.update(FINGERPRINT_INSTANCE_DOMAIN),
                }
                self.hash_operation(&mut f);
                if let Some(i) = &instance {
                    f.update(i);
                }
                f.update(&self.args);
                Some(Fingerprint(f.finalize().into()))
            }
            None => {
                h.update([b'A']);
                h.update(&self.args);
                None
            }
        };
        let digest: [u8; 32] = h.finalize().into();
        // A derived key's fingerprint is its own digest: same key, same inputs.
        let fingerprint = fingerprint.unwrap_or(Fingerprint(digest));
        Ok(DerivedKey {
            key: IdempotencyKey(format_key(self.operation, &digest)),
            fingerprint,
        })
    }

    fn hash_operation(&self, h: &mut Sha256) {
        update_len_prefixed(h, self.operation.as_bytes());
        h.update(self.version.to_le_bytes());
    }

    fn hash_identity(&self, h: &mut Sha256) {
        self.hash_operation(h);
        match &self.scope {
            Some(s) => {
                h.update([1]);
                update_len_prefixed(h, s);
            }
            None => h.update([0]),
        }
    }
}

/// The fingerprint's domain tag when [`KeyEncoder::instance`] parts were given (a distinct tag,
/// so that no argument encoding can imitate the instance digest).
const FINGERPRINT_INSTANCE_DOMAIN: &[u8] = b"idempotency/fingerprint/v1/instance\0";

/// Hashes `bytes` prefixed by their length as a varint (the canonical encoding's length
/// prefix), without allocating.
fn update_len_prefixed(h: &mut Sha256, bytes: &[u8]) {
    let mut len = [0_u8; 10];
    let mut n = bytes.len() as u64;
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            len[i] = byte;
            i += 1;
            break;
        }
        len[i] = byte | 0x80;
        i += 1;
    }
    h.update(&len[..i]);
    h.update(bytes);
}

fn format_key(operation: &str, digest: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(operation.len() + 33);
    s.push_str(operation);
    s.push(':');
    for &b in &digest[..16] {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Writes a value into the canonical encoding by hand, for [`NormalizeKey`] impls.
///
/// The structure calls mirror serde's data model, names included, so a type whose
/// `NormalizeKey` impl writes every field with serde's names (as `#[derive(NormalizeKey)]` does
/// without `skip`, `with` or serde attributes that rename) gets the same key as through its
/// `Serialize` impl. Names are the names serde presents (after `#[serde(rename)]`); every call
/// that opens a struct, tuple or struct/tuple variant is closed with [`end`](Self::end).
#[derive(Debug)]
pub struct KeyWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl KeyWriter<'_> {
    /// Writes a value through its `Serialize` impl.
    ///
    /// # Errors
    /// The serializer's error.
    pub fn value<T: Serialize + ?Sized>(
        &mut self,
        v: &T,
    ) -> std::result::Result<(), CanonicalError> {
        canonical::encode_into(self.out, v)
    }
    /// Writes a value through its [`NormalizeKey`] impl.
    ///
    /// # Errors
    /// The impl's error.
    pub fn normalized<T: NormalizeKey + ?Sized>(
        &mut self,
        v: &T,
    ) -> std::result::Result<(), CanonicalError> {
        v.normalize_key(self)
    }
    /// Opens a struct with named fields (serde `serialize_struct`); write each field with
    /// [`field`](Self::field) and its value, and close it with [`end`](Self::end).
    pub fn begin_struct(&mut self, name: &str) {
        self.out.push(tag::STRUCT);
        canonical::write_name(self.out, name);
    }
    /// Starts a field of a struct or struct variant (serde `serialize_field`); write its value
    /// next.
    pub fn field(&mut self, name: &str) {
        canonical::write_field(self.out, tag::FIELD, name);
    }
    /// Marks a field as skipped (serde `skip_field`, from `skip_serializing_if`): it leaves its
    /// name in the key, so values that skip different fields never share a key.
    pub fn skip_field(&mut self, name: &str) {
        canonical::write_field(self.out, tag::SKIPPED, name);
    }
    /// Opens a tuple struct (serde `serialize_tuple_struct`); write each value, then close it
    /// with [`end`](Self::end).
    pub fn begin_tuple_struct(&mut self, name: &str) {
        self.out.push(tag::TUPLE_STRUCT);
        canonical::write_name(self.out, name);
    }
    /// Writes a newtype struct's header (serde `serialize_newtype_struct`); write its one value
    /// next.
    pub fn newtype_struct(&mut self, name: &str) {
        self.out.push(tag::NEWTYPE_STRUCT);
        canonical::write_name(self.out, name);
    }
    /// Writes a unit struct (serde `serialize_unit_struct`).
    pub fn unit_struct(&mut self, name: &str) {
        self.out.push(tag::UNIT_STRUCT);
        canonical::write_name(self.out, name);
    }
    /// Writes a unit variant (serde `serialize_unit_variant`): the enum's name, the variant's
    /// index (serde's `variant_index`, its position among all variants) and its name.
    pub fn unit_variant(&mut self, name: &str, index: u32, variant: &str) {
        canonical::write_variant(self.out, tag::UNIT_VARIANT, name, index, variant);
    }
    /// Writes a newtype variant's header (serde `serialize_newtype_variant`); write its one value
    /// next.
    pub fn newtype_variant(&mut self, name: &str, index: u32, variant: &str) {
        canonical::write_variant(self.out, tag::NEWTYPE_VARIANT, name, index, variant);
    }
    /// Opens a tuple variant (serde `serialize_tuple_variant`); write each value, then close it
    /// with [`end`](Self::end).
    pub fn begin_tuple_variant(&mut self, name: &str, index: u32, variant: &str) {
        canonical::write_variant(self.out, tag::TUPLE_VARIANT, name, index, variant);
    }
    /// Opens a struct variant (serde `serialize_struct_variant`); write each field with
    /// [`field`](Self::field) and its value, then close it with [`end`](Self::end).
    pub fn begin_struct_variant(&mut self, name: &str, index: u32, variant: &str) {
        canonical::write_variant(self.out, tag::STRUCT_VARIANT, name, index, variant);
    }
    /// Closes a struct, tuple struct, tuple variant or struct variant.
    pub fn end(&mut self) {
        self.out.push(tag::END);
    }
}

/// How a type enters an idempotency key, when its `Serialize` impl is not the right identity:
/// leave out trace ids and request timestamps, or normalize a field (SEMANTICS.md scenario 17,
/// Powertools' `payload_validation_jmespath`).
///
/// Derive it with `#[derive(NormalizeKey)]` from the `idempotency` crate, with the field
/// attributes `#[idempotency(skip)]` and `#[idempotency(with = path)]`. `#[idempotent]`
/// functions use this impl for a parameter when the type has one, and `Serialize` otherwise.
pub trait NormalizeKey {
    /// Writes this value's identity into `w`.
    ///
    /// # Errors
    /// A serialization error from a field's `Serialize` impl.
    fn normalize_key(&self, w: &mut KeyWriter<'_>) -> std::result::Result<(), CanonicalError>;
}

impl<T: NormalizeKey + ?Sized> NormalizeKey for &T {
    fn normalize_key(&self, w: &mut KeyWriter<'_>) -> std::result::Result<(), CanonicalError> {
        (**self).normalize_key(w)
    }
}

// Containers carry their elements' identity: an `Option`, `Vec`, slice, array or `Box` of a
// type with a `NormalizeKey` impl is written with serde's shape for the container (so a type
// that skips nothing keeps its `Serialize` key) and each element through its own impl (so a
// skipped trace id stays out of the key when the value is wrapped or nested).

/// As serde writes an `Option`: `None`, or `Some` and the value.
impl<T: NormalizeKey> NormalizeKey for Option<T> {
    fn normalize_key(&self, w: &mut KeyWriter<'_>) -> std::result::Result<(), CanonicalError> {
        match self {
            None => {
                w.out.push(tag::NONE);
                Ok(())
            }
            Some(v) => {
                w.out.push(tag::SOME);
                v.normalize_key(w)
            }
        }
    }
}

/// As serde writes a slice (and a `Vec`): a sequence of the elements.
impl<T: NormalizeKey> NormalizeKey for [T] {
    fn normalize_key(&self, w: &mut KeyWriter<'_>) -> std::result::Result<(), CanonicalError> {
        w.out.push(tag::SEQ);
        for v in self {
            v.normalize_key(w)?;
        }
        w.end();
        Ok(())
    }
}

/// As serde writes a `Vec`: a sequence of the elements.
impl<T: NormalizeKey> NormalizeKey for Vec<T> {
    fn normalize_key(&self, w: &mut KeyWriter<'_>) -> std::result::Result<(), CanonicalError> {
        self.as_slice().normalize_key(w)
    }
}

/// As serde writes an array: a tuple of the elements.
impl<T: NormalizeKey, const N: usize> NormalizeKey for [T; N] {
    fn normalize_key(&self, w: &mut KeyWriter<'_>) -> std::result::Result<(), CanonicalError> {
        w.out.push(tag::TUPLE);
        for v in self {
            v.normalize_key(w)?;
        }
        w.end();
        Ok(())
    }
}

/// As serde writes a `Box`: the value itself.
impl<T: NormalizeKey + ?Sized> NormalizeKey for Box<T> {
    fn normalize_key(&self, w: &mut KeyWriter<'_>) -> std::result::Result<(), CanonicalError> {
        (**self).normalize_key(w)
    }
}
