//! The canonical encoding that idempotency keys and fingerprints hash.
//!
//! A `serde::Serializer` that writes one byte string per logical value, identical in every
//! process and on every platform:
//!
//! - every value starts with a one-byte type tag, so values a user would call different never
//!   share an encoding (the string `"10"` and the number `10`, `None` and `()`, a unit variant and
//!   the next field);
//! - integers of every width and sign are one type: the value as an `i128`, zigzag-encoded with
//!   postcard's varint (LEB128); `10u8`, `10usize` and `10i64` encode alike, and `usize` is never
//!   platform-sized. A `u128` above `i128::MAX` has its own tag;
//! - floats are one type: an `f32` is widened to `f64` exactly; `-0.0` encodes as `0.0`; every NaN
//!   encodes as the one quiet NaN `0x7ff8_0000_0000_0000` (so all NaNs are equal for keys);
//! - strings and byte strings are length-prefixed (varint) and kept byte for byte: no Unicode
//!   normalization, no case folding (`"é"` in NFC and NFD are different keys);
//! - maps (every type serde serializes as a map, `HashMap` included) and sets (`HashSet`,
//!   `BTreeSet`, recognised by the iterator type serde hands to `collect_seq`) are written in the
//!   byte order of their encoded entries, whatever their insertion or iteration order;
//! - sequences, tuples and structs are terminated by an end tag; struct field names and enum
//!   variant names are not encoded (variant *indexes* are), so renaming a field keeps keys while
//!   reordering fields or variants changes them. Bump the operation's version after such a change.
//! - newtype structs are transparent, as in serde's data model.

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
    pub(crate) const STRUCT: u8 = 0x0f;
    pub(crate) const VARIANT: u8 = 0x10;
    pub(crate) const END: u8 = 0x11;
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
    value.serialize(&mut Canonical { out })
}

/// The canonical serializer (see the module docs for the rules).
pub(crate) struct Canonical<'a> {
    pub(crate) out: &'a mut Vec<u8>,
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

/// Collects the encodings of entries, then writes them sorted: the order of a map or set never
/// depends on insertion or hashing.
pub(crate) struct Sorted<'a> {
    out: &'a mut Vec<u8>,
    scratch: Vec<u8>,
    bounds: Vec<(usize, usize)>,
    entry_start: usize,
}

impl<'a> Sorted<'a> {
    fn new(out: &'a mut Vec<u8>, open: u8) -> Self {
        out.push(open);
        Sorted {
            out,
            scratch: Vec::new(),
            bounds: Vec::new(),
            entry_start: 0,
        }
    }

    fn push_part<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonicalError> {
        v.serialize(&mut Canonical {
            out: &mut self.scratch,
        })
    }

    fn close_entry(&mut self) {
        self.bounds.push((self.entry_start, self.scratch.len()));
        self.entry_start = self.scratch.len();
    }

    fn finish(mut self) {
        let scratch = &self.scratch;
        self.bounds
            .sort_unstable_by(|a, b| scratch[a.0..a.1].cmp(&scratch[b.0..b.1]));
        for &(start, end) in &self.bounds {
            self.out.extend_from_slice(&scratch[start..end]);
        }
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
        self.serialize_i128(i128::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.serialize_i128(i128::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.serialize_i128(i128::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        self.serialize_i128(i128::from(v))
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.serialize_i128(i128::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.serialize_i128(i128::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.serialize_i128(i128::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        self.serialize_i128(i128::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        match i128::try_from(v) {
            Ok(v) => self.serialize_i128(v),
            Err(_) => {
                self.out.push(tag::UINT_BIG);
                write_varint_u128(self.out, v);
                Ok(())
            }
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        let bits = if v.is_nan() {
            0x7ff8_0000_0000_0000_u64
        } else if v == 0.0 {
            0 // -0.0 == 0.0
        } else {
            v.to_bits()
        };
        self.out.push(tag::FLOAT);
        self.out.extend_from_slice(&bits.to_le_bytes());
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
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
    ) -> Result<(), CanonicalError> {
        write_variant(self.out, variant_index);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        write_variant(self.out, variant_index);
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
            let mut sorted = Sorted::new(self.out, tag::SET);
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
        _name: &'static str,
        _len: usize,
    ) -> Result<Self, CanonicalError> {
        self.out.push(tag::TUPLE);
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, CanonicalError> {
        write_variant(self.out, variant_index);
        self.out.push(tag::TUPLE);
        Ok(self)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Sorted<'a>, CanonicalError> {
        Ok(Sorted::new(self.out, tag::MAP))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, CanonicalError> {
        self.out.push(tag::STRUCT);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, CanonicalError> {
        write_variant(self.out, variant_index);
        self.out.push(tag::STRUCT);
        Ok(self)
    }
}

pub(crate) fn write_variant(out: &mut Vec<u8>, index: u32) {
    out.push(tag::VARIANT);
    write_varint_u128(out, u128::from(index));
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
                _key: &'static str,
                value: &T,
            ) -> Result<(), CanonicalError> {
                value.serialize(&mut **self)
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
        self.push_part(key)
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
