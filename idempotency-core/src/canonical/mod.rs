//! The canonical encoding that idempotency keys and fingerprints hash (key format version 2, see
//! [`KEY_FORMAT_VERSION`](crate::KEY_FORMAT_VERSION)).
//!
//! A `serde::Serializer` that writes one byte string per logical value, identical in every
//! process and on every platform. It is a self-describing, prefix-free code of the calls serde
//! makes (serde's data model): every value, field and variant starts with a one-byte tag that
//! says how the bytes after it are read, so the encoding could be parsed back into those calls.
//! Two values therefore encode alike **exactly when serde presents them alike**, up to the
//! normalizations listed below, and nothing else:
//!
//! - every value starts with a type tag, so values a user would call different never share an
//!   encoding (the string `"10"` and the number `10`, `None` and `()`, a newtype struct and its
//!   inner value, a unit variant and the next field);
//! - *normalized:* integers of every width and sign are one type: the value as an `i128`,
//!   zigzag-encoded with postcard's varint (LEB128); `10u8`, `10usize` and `10i64` encode alike,
//!   and `usize` is never platform-sized. A `u128` above `i128::MAX` has its own tag;
//! - *normalized:* floats are one type: an `f32` is widened to `f64` exactly; `-0.0` encodes as
//!   `0.0`; every NaN encodes as the one quiet NaN `0x7ff8_0000_0000_0000` (so all NaNs are equal
//!   for keys);
//! - strings and byte strings are length-prefixed (varint) and kept byte for byte: no Unicode
//!   normalization, no case folding (`"é"` in NFC and NFD are different keys). A value that
//!   serializes as a string keys by that string: `rust_decimal`'s `1.50` and `1.5` are equal
//!   numbers but different strings, so different keys (normalize them first, with
//!   `Decimal::normalize` or a [`NormalizeKey`](crate::NormalizeKey) impl, to make them one key);
//! - *normalized:* maps (every type serde serializes as a map: `HashMap`, `BTreeMap`, a struct
//!   with a `#[serde(flatten)]` field) and sets (`HashSet`, `BTreeSet`, `IndexSet`, recognised by
//!   the outermost type serde hands to `collect_seq`) are written in the byte order of their
//!   encoded keys (set: elements), whatever their insertion or iteration order. Entries whose
//!   keys encode alike (a struct's field and a flattened map's entry of the same name) keep
//!   serde's order;
//! - names are encoded as serde presents them (after `#[serde(rename)]`): struct, tuple-struct,
//!   unit-struct, newtype-struct and enum names, field names and variant names, plus variant
//!   *indexes*. Renaming any of them, or reordering fields or variants, changes keys; a
//!   `#[serde(rename = "old")]` keeps the old key;
//! - a field serde skips with `#[serde(skip_serializing_if = ...)]` is written as "skipped"
//!   with its name (serde calls `SerializeStruct::skip_field`), so `S { a: Some(5), b: None }`
//!   and `S { a: None, b: Some(5) }` never share a key. A field skipped always
//!   (`#[serde(skip)]`, `skip_serializing`) is not part of the value serde presents and leaves
//!   no trace: it is not in the key. A variant marked `skip_serializing` fails to serialize, so
//!   a key derived from it is an error (`Error::Encode`), never a shared key;
//! - sequences, tuples, structs, maps and sets are terminated by an end tag.
//!
//! What serde does not show, no serializer can tell apart. Values that serde presents with the
//! very same calls (up to the normalizations above) share a key:
//!
//! - the variants of an `#[serde(untagged)]` enum are presented as their contents only: unit
//!   variants all as `()`, `A(u32)` and `B(u64)` as the same number, and struct variants as
//!   structs named after the *enum*, so `A { id: u8 }` and `B { id: u8 }` alike. Contents of
//!   different shapes, field names or newtype struct names stay apart;
//! - a `#[serde(flatten)]` field's own structure is merged into the outer map: a flattened
//!   `Option` that is `None` and one that is `Some` of a struct whose fields are all skipped
//!   present as nothing; an entry that moves from one flattened map to another presents alike.
//!   A struct with a flattened field is presented as a map, where serde leaves no trace of a
//!   field that `skip_serializing_if` skipped: `{ note: None, extra: {"note": "x"} }` and
//!   `{ note: Some("x"), extra: {} }` present alike.
//!
//! Tag such enums (`#[serde(tag = "...")]` or the default external tagging) or write a
//! [`NormalizeKey`](crate::NormalizeKey) impl when these values must have their own records.
//!
//! Version 1 of this encoding (before this crate's key format version 2) wrote neither names
//! nor skipped fields, so structs that skipped different fields shared keys.

use serde::ser::{self, Serialize};

mod serializer;

pub(crate) use serializer::Canonical;

/// Type tags of the canonical encoding. Stable: changing one changes every key.
pub(crate) mod tag {
    pub(crate) const UNIT: u8 = 0x00;
    pub(crate) const FALSE: u8 = 0x01;
    pub(crate) const TRUE: u8 = 0x02;
    pub(crate) const INT: u8 = 0x03;
    pub(crate) const UINT_BIG: u8 = 0x04;
    pub(crate) const FLOAT: u8 = 0x05;
    pub(crate) const CHAR: u8 = 0x06;
    pub(crate) const STR: u8 = 0x07;
    pub(crate) const BYTES: u8 = 0x08;
    pub(crate) const NONE: u8 = 0x09;
    pub(crate) const SOME: u8 = 0x0a;
    pub(crate) const SEQ: u8 = 0x0b;
    pub(crate) const MAP: u8 = 0x0c;
    pub(crate) const SET: u8 = 0x0d;
    pub(crate) const TUPLE: u8 = 0x0e;
    /// A struct: its name, then `FIELD`/`SKIPPED` entries, then `END`.
    pub(crate) const STRUCT: u8 = 0x0f;
    // 0x10 was key format 1's variant tag (index only); not reused.
    pub(crate) const END: u8 = 0x11;
    /// A unit struct: its name.
    pub(crate) const UNIT_STRUCT: u8 = 0x12;
    /// A newtype struct: its name, then the value.
    pub(crate) const NEWTYPE_STRUCT: u8 = 0x13;
    /// A tuple struct: its name, the values, then `END`.
    pub(crate) const TUPLE_STRUCT: u8 = 0x14;
    /// A struct field serde wrote: its name, then the value.
    pub(crate) const FIELD: u8 = 0x15;
    /// A struct field serde skipped (`skip_serializing_if`): its name.
    pub(crate) const SKIPPED: u8 = 0x16;
    /// A unit variant: the enum name, the variant index, the variant name.
    pub(crate) const UNIT_VARIANT: u8 = 0x17;
    /// A newtype variant: the variant header as for a unit variant, then the value.
    pub(crate) const NEWTYPE_VARIANT: u8 = 0x18;
    /// A tuple variant: the variant header, the values, then `END`.
    pub(crate) const TUPLE_VARIANT: u8 = 0x19;
    /// A struct variant: the variant header, `FIELD`/`SKIPPED` entries, then `END`.
    pub(crate) const STRUCT_VARIANT: u8 = 0x1a;
}

/// The error a `Serialize` impl raised while being encoded canonically.
#[derive(Debug)]
pub struct CanonicalError(pub(crate) String);

impl std::fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CanonicalError {}

impl ser::Error for CanonicalError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CanonicalError(msg.to_string())
    }
}

/// Where the canonical encoding is written: a `Vec<u8>`, or the key encoder's buffer (which
/// keeps short encodings on the stack, `key::encoder::KeyBuf`).
pub(crate) trait Sink {
    /// Appends one byte.
    fn push(&mut self, byte: u8);
    /// Appends bytes.
    fn extend_from_slice(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }
    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }
}

/// Writes `v` as a varint (LEB128, as postcard).
#[inline]
pub(crate) fn write_varint_u64(out: &mut impl Sink, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes `v` as a varint (LEB128, as postcard), the same bytes as [`write_varint_u64`] for
/// values that fit in a `u64`.
pub(crate) fn write_varint_u128(out: &mut impl Sink, v: u128) {
    if let Ok(small) = u64::try_from(v) {
        return write_varint_u64(out, small);
    }
    let mut v = v;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Writes an integer: `INT`, then the value zigzag-encoded (as postcard does for signed
/// integers) as a varint.
#[inline]
pub(crate) fn write_int(out: &mut impl Sink, v: i128) {
    out.push(tag::INT);
    let zz = ((v << 1) ^ (v >> 127)) as u128;
    write_varint_u128(out, zz);
}

/// Writes an integer that fits in an `i64`, as [`write_int`] does (the same bytes).
#[inline]
pub(crate) fn write_int_i64(out: &mut impl Sink, v: i64) {
    out.push(tag::INT);
    let zz = ((v << 1) ^ (v >> 63)) as u64;
    write_varint_u64(out, zz);
}

/// Writes `bytes` prefixed by their length (a varint).
// Always: left to the compiler, a change elsewhere in the crate (another partition into
// codegen units) once made it an out-of-line call on every name of every key (+120
// instructions per key derivation, callgrind).
#[inline(always)]
pub(crate) fn write_len_prefixed(out: &mut impl Sink, bytes: &[u8]) {
    write_varint_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes `value` canonically, appending to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized, O: Sink>(
    out: &mut O,
    value: &T,
) -> Result<(), CanonicalError> {
    value.serialize(&mut Canonical { out, exact: false })
}

/// Encodes `value` as [`encode_into`] does, but without normalizing numbers: each integer and
/// float keeps the width and sign serde presented it with (`5u8` and `5u64`, `1.5f32` and
/// `1.5f64`, `0.0` and `-0.0` all differ; NaNs are still one value). Never hashed into a key:
/// the replay check ([`crate::codec`]) compares a value with its decoded copy in this form, so
/// that an untagged enum's `Big(5u64)` read back as `Small(5u8)` is a different value.
pub(crate) fn encode_exact_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), CanonicalError> {
    value.serialize(&mut Canonical { out, exact: true })
}

/// The canonical encoding of `value` (see the module docs), as hashed into idempotency keys and
/// fingerprints: for inspecting what a value contributes to its key, and for tests.
///
/// # Errors
/// The error `value`'s `Serialize` impl raised (for example a `#[serde(skip_serializing)]`
/// variant, or a map key serde refuses).
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(64);
    encode_into(&mut out, value)?;
    Ok(out)
}

/// Writes a name (of a type, field or variant) as serde presents it: length-prefixed bytes.
#[inline]
pub(crate) fn write_name(out: &mut impl Sink, name: &str) {
    write_len_prefixed(out, name.as_bytes());
}

/// Writes an enum variant's header: `kind` (one of the `*_VARIANT` tags), the enum name, the
/// variant index and the variant name.
pub(crate) fn write_variant(out: &mut impl Sink, kind: u8, name: &str, index: u32, variant: &str) {
    out.push(kind);
    write_name(out, name);
    write_varint_u64(out, u64::from(index));
    write_name(out, variant);
}

/// Writes a struct field's header: `FIELD` and its name (the value follows), or `SKIPPED` and
/// its name.
#[inline]
pub(crate) fn write_field(out: &mut impl Sink, kind: u8, name: &str) {
    out.push(kind);
    write_name(out, name);
}
