//! The canonical serializer: serde's data model written as the tagged byte code described in
//! the [module docs](super).

use serde::ser::{self, Serialize};

use super::{
    tag, write_field, write_int, write_int_i64, write_len_prefixed, write_name, write_variant,
    write_varint_u128, write_varint_u64, CanonicalError, Sink,
};

/// The width markers [`encode_exact_into`](super::encode_exact_into) writes before a number (never part of a key).
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

/// The canonical serializer (see the module docs for the rules).
pub(crate) struct Canonical<'a, O: Sink = Vec<u8>> {
    pub(crate) out: &'a mut O,
    /// Keep numbers' widths and the sign of zero ([`encode_exact_into`](super::encode_exact_into)).
    pub(crate) exact: bool,
}

impl<O: Sink> Canonical<'_, O> {
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
pub(crate) struct Sorted<'a, O: Sink> {
    out: &'a mut O,
    scratch: Vec<u8>,
    /// Per entry: its start, the end of its key, its end (in `scratch`).
    bounds: Vec<(usize, usize, usize)>,
    entry_start: usize,
    key_end: Option<usize>,
    exact: bool,
}

impl<'a, O: Sink> Sorted<'a, O> {
    fn new(out: &'a mut O, open: u8, exact: bool) -> Self {
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
        v.serialize(&mut Canonical::<Vec<u8>> {
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

impl<'a, O: Sink> ser::Serializer for &'a mut Canonical<'_, O> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Sorted<'a, O>;
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
        write_int_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.width(width::I16);
        write_int_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.width(width::I32);
        write_int_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        self.width(width::I64);
        write_int_i64(self.out, v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        self.width(width::I128);
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.width(width::U8);
        write_int_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.width(width::U16);
        write_int_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.width(width::U32);
        write_int_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        self.width(width::U64);
        match i64::try_from(v) {
            Ok(v) => write_int_i64(self.out, v),
            Err(_) => write_int(self.out, i128::from(v)),
        }
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
        write_varint_u64(self.out, u64::from(u32::from(v)));
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
    fn serialize_map(self, _len: Option<usize>) -> Result<Sorted<'a, O>, CanonicalError> {
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
        impl<O: Sink> ser::$trait for &mut Canonical<'_, O> {
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
        impl<O: Sink> ser::$trait for &mut Canonical<'_, O> {
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

impl<O: Sink> ser::SerializeMap for Sorted<'_, O> {
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
