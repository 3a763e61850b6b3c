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

pub(crate) fn write_varint_u128(out: &mut Vec<u8>, mut v: u128) {
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

pub(crate) fn write_int(out: &mut Vec<u8>, v: i128) {
    out.push(tag::INT);
    // Zigzag, as postcard does for signed integers.
    let zz = ((v << 1) ^ (v >> 127)) as u128;
    write_varint_u128(out, zz);
}

pub(crate) fn write_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    write_varint_u128(out, bytes.len() as u128);
    out.extend_from_slice(bytes);
}

/// Encodes `value` canonically, appending to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
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

/// The width markers [`encode_exact_into`] writes before a number (never part of a key).
mod width {
    pub(super) const I8: u8 = 0x30;
    pub(super) const I16: u8 = 0x31;
    pub(super) const I32: u8 = 0x32;
    pub(super) const I64: u8 = 0x33;
    pub(super) const I128: u8 = 0x34;
    pub(super) const U8: u8 = 0x35;
    pub(super) const U16: u8 = 0x36;
    pub(super) const U32: u8 = 0x37;
    pub(super) const U64: u8 = 0x38;
    pub(super) const U128: u8 = 0x39;
    pub(super) const F32: u8 = 0x3a;
    pub(super) const F64: u8 = 0x3b;
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
pub(crate) fn write_name(out: &mut Vec<u8>, name: &str) {
    write_len_prefixed(out, name.as_bytes());
}

/// Writes an enum variant's header: `kind` (one of the `*_VARIANT` tags), the enum name, the
/// variant index and the variant name.
pub(crate) fn write_variant(out: &mut Vec<u8>, kind: u8, name: &str, index: u32, variant: &str) {
    out.push(kind);
    write_name(out, name);
    write_varint_u128(out, u128::from(index));
    write_name(out, variant);
}

/// Writes a struct field's header: `FIELD` and its name (the value follows), or `SKIPPED` and
/// its name.
pub(crate) fn write_field(out: &mut Vec<u8>, kind: u8, name: &str) {
    out.push(kind);
    write_name(out, name);
}

/// The canonical serializer (see the module docs for the rules).
pub(crate) struct Canonical<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    /// Keep numbers' widths and the sign of zero ([`encode_exact_into`]).
    pub(crate) exact: bool,
}

impl Canonical<'_> {
    /// Writes a float: NaNs as one quiet NaN, and `-0.0` as `0.0` except in exact mode.
    fn float(&mut self, v: f64) {
        let bits = if v.is_nan() {
            0x7ff8_0000_0000_0000_u64
        } else if v == 0.0 && !self.exact {
            0 // -0.0 == 0.0
        } else {
            v.to_bits()
        };
        self.out.push(tag::FLOAT);
        self.out.extend_from_slice(&bits.to_le_bytes());
    }

    /// In exact mode, marks the width serde presented a number with.
    fn width(&mut self, marker: u8) {
        if self.exact {
            self.out.push(marker);
        }
    }
}

/// Is the collection serde hands to `collect_seq` a set, whose order carries no meaning?
///
/// Only the outermost type counts (after references): `Vec<HashSet<u8>>` is a sequence whose
/// order matters, even though its type name mentions a set.
fn is_set_type<I: ?Sized>() -> bool {
    is_set_type_name(std::any::type_name::<I>())
}

fn is_set_type_name(name: &str) -> bool {
    let outer = name.trim_start_matches(['&', ' ']);
    let outer = outer.strip_prefix("mut ").unwrap_or(outer);
    let path = outer.split('<').next().unwrap_or(outer);
    let last = path.rsplit("::").next().unwrap_or(path);
    matches!(last, "HashSet" | "BTreeSet" | "IndexSet")
}

/// Collects the encodings of entries, then writes them sorted by their keys: the order of a map
/// or set never depends on insertion or hashing. The sort is stable, so entries whose keys
/// encode alike (a flattened struct's field and a flattened map's entry of the same name) keep
/// serde's order.
pub(crate) struct Sorted<'a> {
    out: &'a mut Vec<u8>,
    scratch: Vec<u8>,
    /// Per entry: its start, the end of its key, its end (in `scratch`).
    bounds: Vec<(usize, usize, usize)>,
    entry_start: usize,
    key_end: Option<usize>,
    exact: bool,
}

impl<'a> Sorted<'a> {
    fn new(out: &'a mut Vec<u8>, open: u8, exact: bool) -> Self {
        out.push(open);
        Sorted {
            exact,
            out,
            scratch: Vec::new(),
            bounds: Vec::new(),
            entry_start: 0,
            key_end: None,
        }
    }

    fn push_part<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonicalError> {
        v.serialize(&mut Canonical {
            out: &mut self.scratch,
            exact: self.exact,
        })
    }

    fn end_key(&mut self) {
        self.key_end = Some(self.scratch.len());
    }

    fn close_entry(&mut self) {
        let end = self.scratch.len();
        let key_end = self.key_end.take().unwrap_or(end);
        self.bounds.push((self.entry_start, key_end, end));
        self.entry_start = end;
    }

    fn finish(mut self) {
        let scratch = &self.scratch;
        // Stable: entries with equal keys keep serde's order.
        self.bounds
            .sort_by(|a, b| scratch[a.0..a.1].cmp(&scratch[b.0..b.1]));
        for &(start, _, end) in &self.bounds {
            self.out.extend_from_slice(&scratch[start..end]);
        }
        // Bytes written after the last complete entry (a key without its value) still count.
        self.out.extend_from_slice(&scratch[self.entry_start..]);
        self.out.push(tag::END);
    }
}

impl<'a> ser::Serializer for &'a mut Canonical<'_> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Sorted<'a>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.out.push(if v { tag::TRUE } else { tag::FALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.width(width::I8);
        write_int(self.out, i128::from(v));
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.width(width::I16);
        write_int(self.out, i128::from(v));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.width(width::I32);
        write_int(self.out, i128::from(v));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        self.width(width::I64);
        write_int(self.out, i128::from(v));
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        self.width(width::I128);
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.width(width::U8);
        write_int(self.out, i128::from(v));
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.width(width::U16);
        write_int(self.out, i128::from(v));
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.width(width::U32);
        write_int(self.out, i128::from(v));
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        self.width(width::U64);
        write_int(self.out, i128::from(v));
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        self.width(width::U128);
        match i128::try_from(v) {
            Ok(v) => {
                write_int(self.out, v);
                Ok(())
            }
            Err(_) => {
                self.out.push(tag::UINT_BIG);
                write_varint_u128(self.out, v);
                Ok(())
            }
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        self.width(width::F32);
        self.float(f64::from(v));
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        self.width(width::F64);
        self.float(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        self.out.push(tag::CHAR);
        write_varint_u128(self.out, u128::from(u32::from(v)));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        self.out.push(tag::STR);
        write_len_prefixed(self.out, v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        self.out.push(tag::BYTES);
        write_len_prefixed(self.out, v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.out.push(tag::NONE);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        self.out.push(tag::SOME);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.out.push(tag::UNIT);
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), CanonicalError> {
        self.out.push(tag::UNIT_STRUCT);
        write_name(self.out, name);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        write_variant(self.out, tag::UNIT_VARIANT, name, variant_index, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.out.push(tag::NEWTYPE_STRUCT);
        write_name(self.out, name);
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        write_variant(self.out, tag::NEWTYPE_VARIANT, name, variant_index, variant);
        value.serialize(self)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, CanonicalError> {
        self.out.push(tag::SEQ);
        Ok(self)
    }
    fn collect_seq<I>(self, iter: I) -> Result<(), CanonicalError>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        if is_set_type::<I>() {
            let mut sorted = Sorted::new(self.out, tag::SET, self.exact);
            for item in iter {
                sorted.push_part(&item)?;
                sorted.close_entry();
            }
            sorted.finish();
            Ok(())
        } else {
            self.out.push(tag::SEQ);
            for item in iter {
                item.serialize(&mut *self)?;
            }
            self.out.push(tag::END);
            Ok(())
        }
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self, CanonicalError> {
        self.out.push(tag::TUPLE);
        Ok(self)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Self, CanonicalError> {
        self.out.push(tag::TUPLE_STRUCT);
        write_name(self.out, name);
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, CanonicalError> {
        write_variant(self.out, tag::TUPLE_VARIANT, name, variant_index, variant);
        Ok(self)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Sorted<'a>, CanonicalError> {
        Ok(Sorted::new(self.out, tag::MAP, self.exact))
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Self, CanonicalError> {
        self.out.push(tag::STRUCT);
        write_name(self.out, name);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, CanonicalError> {
        write_variant(self.out, tag::STRUCT_VARIANT, name, variant_index, variant);
        Ok(self)
    }
}

macro_rules! sequence_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Canonical<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.out.push(tag::END);
                Ok(())
            }
        }
    )*};
}

sequence_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Canonical<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), CanonicalError> {
                write_field(self.out, tag::FIELD, key);
                value.serialize(&mut **self)
            }
            /// serde skipped this field (`skip_serializing_if`): it leaves its name as a trace.
            fn skip_field(&mut self, key: &'static str) -> Result<(), CanonicalError> {
                write_field(self.out, tag::SKIPPED, key);
                Ok(())
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.out.push(tag::END);
                Ok(())
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Sorted<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonicalError> {
        self.push_part(key)?;
        self.end_key();
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        self.push_part(value)?;
        self.close_entry();
        Ok(())
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish();
        Ok(())
    }
}
