//! [`KeyWriter`] and [`NormalizeKey`]: a value's identity written by hand.

use serde::Serialize;

use super::encoder::KeyBuf;
use crate::canonical::{self, tag, CanonicalError, Sink};

/// Writes a value into the canonical encoding by hand, for [`NormalizeKey`] impls.
///
/// The structure calls mirror serde's data model, names included, so a type whose
/// `NormalizeKey` impl writes every field with serde's names (as `#[derive(NormalizeKey)]` does
/// without `skip`, `with` or serde attributes that rename) gets the same key as through its
/// `Serialize` impl. Names are the names serde presents (after `#[serde(rename)]`); every call
/// that opens a struct, tuple or struct/tuple variant is closed with [`end`](Self::end).
#[derive(Debug)]
pub struct KeyWriter<'a> {
    out: &'a mut KeyBuf,
}

impl<'a> KeyWriter<'a> {
    pub(super) fn new(out: &'a mut KeyBuf) -> Self {
        KeyWriter { out }
    }

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
