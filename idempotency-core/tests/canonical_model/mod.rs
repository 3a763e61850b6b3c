//! A model of serde's shapes for the canonical encoder's property test, built from bytes so that
//! the same generator serves proptest (`tests/canonical.rs`, in `cargo test`) and the
//! `canonical_injectivity` fuzz target (`fuzz/src/targets.rs`, also run by the stable fallback
//! `tests/fuzz_fallback.rs`).
//!
//! Each choice reads one byte and picks among a few small values, so a one-byte change of the
//! input is a near miss: the same value with one field, variant, option or entry changed, which
//! is where encodings collide (key format 1 gave `S { a: Some(5), b: None }` and
//! `S { a: None, b: Some(5) }` one encoding). The model's `PartialEq` is "serde presents them
//! alike, up to the encoder's documented normalizations" (integer width, `f32`/`f64`, `-0.0`,
//! NaN payloads, map and set order, fields serde never presents), so the property is exact:
//! `a == b` if and only if their encodings are equal.
//!
//! The shapes: structs with `skip_serializing_if` and `skip` fields, nested options, unit and
//! `None`; externally tagged enums with unit, newtype, tuple and struct variants and with
//! `skip_serializing`/`skip` variants (which must fail to encode); an `untagged` enum whose
//! variants serde presents differently (unit, `None`, integer, float, string, newtype struct,
//! tuple, two struct variants with different fields, sequence); internally and adjacently
//! tagged enums; a struct with a flattened struct and a flattened map; maps; sets.

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::HashSet;

use serde::{Serialize, Serializer};

/// Reads choices from bytes; past the end every choice is 0.
#[derive(Debug)]
pub struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Choices<'a> {
    /// Choices read from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data, pos: 0 }
    }
    fn pick(&mut self, n: u8) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b % n
    }
    fn bool(&mut self) -> bool {
        self.pick(2) == 1
    }
    fn small(&mut self) -> u8 {
        self.pick(3)
    }
    fn opt(&mut self) -> Option<u8> {
        match self.pick(4) {
            0 => None,
            n => Some(n - 1),
        }
    }
}

thread_local! {
    /// Maps and sets serialize their entries in reverse insertion order while this is set.
    static REVERSED: Cell<bool> = const { Cell::new(false) };
}

/// An integer that serializes as a `u8` or as an `i64`: equal whatever its width.
#[derive(Debug, Clone)]
pub struct AnyInt {
    v: u8,
    wide: bool,
}

impl PartialEq for AnyInt {
    fn eq(&self, o: &Self) -> bool {
        self.v == o.v
    }
}

impl Serialize for AnyInt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.wide {
            s.serialize_i64(i64::from(self.v))
        } else {
            s.serialize_u8(self.v)
        }
    }
}

impl AnyInt {
    fn gen(c: &mut Choices<'_>) -> Self {
        AnyInt {
            v: c.small(),
            wide: c.bool(),
        }
    }
}

/// A float: `0.0`/`-0.0`, two NaNs, `0.5` as `f32`/`f64`, `1.5`, infinity. Equal within each
/// pair.
#[derive(Debug, Clone)]
pub struct F(u8);

impl F {
    fn class(&self) -> u8 {
        match self.0 {
            0 | 1 => 0,
            2 | 3 => 1,
            4 | 5 => 2,
            6 => 3,
            _ => 4,
        }
    }
    fn gen(c: &mut Choices<'_>) -> Self {
        F(c.pick(8))
    }
}

impl PartialEq for F {
    fn eq(&self, o: &Self) -> bool {
        self.class() == o.class()
    }
}

impl Serialize for F {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            0 => s.serialize_f64(0.0),
            1 => s.serialize_f64(-0.0),
            2 => s.serialize_f64(f64::NAN),
            3 => s.serialize_f64(f64::from_bits(0xfff0_0000_0000_0001)),
            4 => s.serialize_f32(0.5),
            5 => s.serialize_f64(0.5),
            6 => s.serialize_f64(1.5),
            _ => s.serialize_f64(f64::INFINITY),
        }
    }
}

/// A field serde never presents (`#[serde(skip)]`): any two are equal.
#[derive(Debug, Clone)]
pub struct Ignored(u8);

impl PartialEq for Ignored {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn text(c: &mut Choices<'_>) -> String {
    ["", "1", "a", "\u{e9}", "e\u{301}"][usize::from(c.pick(5))].to_owned()
}

/// Entries with distinct keys, serialized through `collect_map` in insertion order (or its
/// reverse); equal as maps.
#[derive(Debug, Clone)]
pub struct OrderMap<K, V>(Vec<(K, V)>);

impl<K: PartialEq, V: PartialEq> PartialEq for OrderMap<K, V> {
    fn eq(&self, o: &Self) -> bool {
        self.0.len() == o.0.len()
            && self
                .0
                .iter()
                .all(|(k, v)| o.0.iter().any(|(ok, ov)| ok == k && ov == v))
    }
}

impl<K: Serialize, V: Serialize> Serialize for OrderMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if REVERSED.with(Cell::get) {
            s.collect_map(self.0.iter().rev().map(|(k, v)| (k, v)))
        } else {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }
}

impl<K: PartialEq, V> OrderMap<K, V> {
    fn gen(
        c: &mut Choices<'_>,
        key: impl Fn(&mut Choices<'_>) -> K,
        value: impl Fn(&mut Choices<'_>) -> V,
    ) -> Self {
        let mut entries: Vec<(K, V)> = Vec::new();
        for _ in 0..c.pick(4) {
            let k = key(c);
            let v = value(c);
            if !entries.iter().any(|(e, _)| *e == k) {
                entries.push((k, v));
            }
        }
        OrderMap(entries)
    }
}

/// Distinct elements, serialized as a `HashSet` (a fresh hasher each time) built in insertion
/// order (or its reverse); equal as sets.
#[derive(Debug, Clone)]
pub struct OrderSet(Vec<(u8, Option<u8>)>);

impl PartialEq for OrderSet {
    fn eq(&self, o: &Self) -> bool {
        self.0.len() == o.0.len() && self.0.iter().all(|e| o.0.contains(e))
    }
}

impl Serialize for OrderSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let set: HashSet<(u8, Option<u8>)> = if REVERSED.with(Cell::get) {
            self.0.iter().rev().copied().collect()
        } else {
            self.0.iter().copied().collect()
        };
        s.collect_seq(&set)
    }
}

impl OrderSet {
    fn gen(c: &mut Choices<'_>) -> Self {
        let mut v = Vec::new();
        for _ in 0..c.pick(4) {
            let e = (c.small(), c.opt());
            if !v.contains(&e) {
                v.push(e);
            }
        }
        OrderSet(v)
    }
}

/// Optional fields serde skips when `None`, a field it never presents, nested options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sparse {
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<u8>,
    #[serde(skip)]
    trace: Ignored,
    nested: Option<Option<()>>,
}

impl Sparse {
    fn gen(c: &mut Choices<'_>) -> Self {
        Sparse {
            a: c.opt(),
            b: c.opt(),
            trace: Ignored(c.pick(255)),
            nested: match c.pick(3) {
                0 => None,
                1 => Some(None),
                _ => Some(Some(())),
            },
        }
    }
}

/// A newtype struct: not its inner value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meters(u8);

/// Externally tagged (serde's default), with variants serde refuses to serialize.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Ext {
    Unit,
    Other,
    New(AnyInt),
    Tup(u8, Option<u8>),
    Rec {
        x: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        y: Option<u8>,
    },
    #[serde(skip_serializing)]
    Hidden(u8),
    #[serde(skip)]
    Gone,
}

impl Ext {
    fn gen(c: &mut Choices<'_>) -> Self {
        // Unserializable variants are rare, so most values encode.
        match c.pick(12) {
            0 | 1 => Ext::Unit,
            2 | 3 => Ext::Other,
            4 | 5 => Ext::New(AnyInt::gen(c)),
            6 | 7 => Ext::Tup(c.small(), c.opt()),
            8..=9 => Ext::Rec {
                x: c.small(),
                y: c.opt(),
            },
            10 => Ext::Hidden(c.small()),
            _ => Ext::Gone,
        }
    }
    fn serializable(&self) -> bool {
        !matches!(self, Ext::Hidden(_) | Ext::Gone)
    }
}

/// Untagged: every variant is presented differently (unit, `None`, integer, float, string,
/// newtype struct, tuple, struct with field `x`, struct with field `y`, sequence).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Loose {
    Unit,
    Maybe(Option<u8>),
    Int(AnyInt),
    Float(F),
    Str(String),
    Meters(Meters),
    Pair(u8, u8),
    Rec { x: u8 },
    Rec2 { y: u8 },
    List(Vec<u8>),
}

impl Loose {
    fn gen(c: &mut Choices<'_>) -> Self {
        match c.pick(10) {
            0 => Loose::Unit,
            1 => Loose::Maybe(c.opt()),
            2 => Loose::Int(AnyInt::gen(c)),
            3 => Loose::Float(F::gen(c)),
            4 => Loose::Str(text(c)),
            5 => Loose::Meters(Meters(c.small())),
            6 => Loose::Pair(c.small(), c.small()),
            7 => Loose::Rec { x: c.small() },
            8 => Loose::Rec2 { y: c.small() },
            _ => Loose::List((0..c.pick(3)).map(|_| c.small()).collect()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inner {
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<u8>,
    q: u8,
}

/// Internally tagged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Tagged {
    A {
        id: u8,
    },
    B {
        id: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<u8>,
    },
    C,
    D(Inner),
}

impl Tagged {
    fn gen(c: &mut Choices<'_>) -> Self {
        match c.pick(4) {
            0 => Tagged::A { id: c.small() },
            1 => Tagged::B {
                id: c.small(),
                note: c.opt(),
            },
            2 => Tagged::C,
            _ => Tagged::D(Inner {
                p: c.opt(),
                q: c.small(),
            }),
        }
    }
}

/// Adjacently tagged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "t", content = "c")]
pub enum Adjacent {
    A(u8),
    B { x: u8 },
    C,
    D(u8, u8),
}

impl Adjacent {
    fn gen(c: &mut Choices<'_>) -> Self {
        match c.pick(4) {
            0 => Adjacent::A(c.small()),
            1 => Adjacent::B { x: c.small() },
            2 => Adjacent::C,
            _ => Adjacent::D(c.small(), c.small()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<u8>,
}

/// A flattened struct and a flattened map, whose keys may repeat the outer field's name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flat {
    id: u8,
    #[serde(flatten)]
    pair: Pair,
    #[serde(flatten)]
    extra: OrderMap<String, u8>,
}

impl Flat {
    fn gen(c: &mut Choices<'_>) -> Self {
        Flat {
            id: c.small(),
            pair: Pair {
                a: c.opt(),
                b: c.opt(),
            },
            extra: OrderMap::gen(
                c,
                |c: &mut Choices<'_>| ["id", "a", "z"][usize::from(c.pick(3))].to_owned(),
                |c: &mut Choices<'_>| c.small(),
            ),
        }
    }
}

/// One value of any of the shapes above (externally tagged, so the shape is presented).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Item {
    Sparse(Sparse),
    Ext(Ext),
    Loose(Loose),
    Tagged(Tagged),
    Adjacent(Adjacent),
    Flat(Flat),
    Map(OrderMap<u8, Loose>),
    Set(OrderSet),
    Nested(Option<Option<Option<u8>>>),
    Unit(()),
    None(Option<()>),
}

impl Item {
    fn gen(c: &mut Choices<'_>) -> Self {
        match c.pick(11) {
            0 => Item::Sparse(Sparse::gen(c)),
            1 => Item::Ext(Ext::gen(c)),
            2 => Item::Loose(Loose::gen(c)),
            3 => Item::Tagged(Tagged::gen(c)),
            4 => Item::Adjacent(Adjacent::gen(c)),
            5 => Item::Flat(Flat::gen(c)),
            6 => Item::Map(OrderMap::gen(
                c,
                |c: &mut Choices<'_>| c.small(),
                |c: &mut Choices<'_>| Loose::gen(c),
            )),
            7 => Item::Set(OrderSet::gen(c)),
            8 => Item::Nested(match c.pick(4) {
                0 => None,
                1 => Some(None),
                2 => Some(Some(None)),
                _ => Some(Some(Some(c.small()))),
            }),
            9 => Item::Unit(()),
            _ => Item::None(None),
        }
    }
    fn serializable(&self) -> bool {
        match self {
            Item::Ext(e) => e.serializable(),
            _ => true,
        }
    }
}

/// The value under test: a sequence of items, and a sequence of untagged values (whose
/// boundaries only the encoding's own structure marks).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    items: Vec<Item>,
    loose: Vec<Loose>,
    sparse: Sparse,
}

impl Model {
    /// The value `data` describes.
    pub fn from_bytes(data: &[u8]) -> Self {
        let c = &mut Choices::new(data);
        let sparse = Sparse::gen(c);
        let items = (0..c.pick(4)).map(|_| Item::gen(c)).collect();
        let loose = (0..c.pick(3)).map(|_| Loose::gen(c)).collect();
        Model {
            items,
            loose,
            sparse,
        }
    }
    /// Whether serde can serialize it (no `skip_serializing`/`skip` variant).
    pub fn serializable(&self) -> bool {
        self.items.iter().all(Item::serializable)
    }
}

fn encode(m: &Model, reversed: bool) -> Option<Vec<u8>> {
    REVERSED.with(|r| r.set(reversed));
    let out = idempotency_core::canonical::to_bytes(m);
    REVERSED.with(|r| r.set(false));
    out.ok()
}

/// The property, for the values `a` and `b` describe: each encodes exactly when serde can
/// serialize it; the encoding does not depend on map or set order; and two encodings are
/// equal exactly when the values are equal. Returns whether the pair was compared (both
/// encode). Panics with both values when a property fails.
pub fn check_pair(a: &[u8], b: &[u8]) -> bool {
    let (va, vb) = (Model::from_bytes(a), Model::from_bytes(b));
    let (ea, eb) = (encode(&va, false), encode(&vb, false));
    assert_eq!(
        ea.is_some(),
        va.serializable(),
        "encodes iff serializable: {va:?}"
    );
    assert_eq!(
        eb.is_some(),
        vb.serializable(),
        "encodes iff serializable: {vb:?}"
    );
    let (Some(ea), Some(eb)) = (ea, eb) else {
        return false;
    };
    assert_eq!(
        encode(&va, true).as_ref(),
        Some(&ea),
        "map/set order changed the encoding of {va:?}"
    );
    assert_eq!(
        va == vb,
        ea == eb,
        "values equal: {}, encodings equal: {}\na = {va:?}\nb = {vb:?}",
        va == vb,
        ea == eb
    );
    true
}
