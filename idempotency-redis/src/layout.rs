//! The value layout: where each field of a stored value lives. The one source of truth for the
//! offsets: the Rust side reads and writes values through [`Field`]s, and the Lua side receives
//! them as constants generated from the same table ([`lua_constants`]), written into each script's
//! source when it is loaded, so the two cannot disagree.
//!
//! Each record is one Redis string: a fixed-width *meta* part the scripts compare and rewrite
//! with `string.sub`, then the *body* (the idempotency key, the stored result and the stored
//! error, postcard-encoded; see `value.rs`):
//!
//! | bytes (0-based) | field | content |
//! |---|---|---|
//! | 0..5 | `MAGIC` | `IDR`, the record format version ([`Record::FORMAT_VERSION`]), the layout marker `s` |
//! | 5 | `STATUS` | `P` pending, `S` success, `F` failed |
//! | 6..22 | `OWNER` | the holder's execution id (the UUID's 16 bytes) |
//! | 22..38 | `TOKEN` | the fencing token, 16 decimal digits |
//! | 38..54 | `CREATED` | when the holder claimed the key, ms since the Unix epoch (Redis clock), 16 digits; 0 = not written (see below) |
//! | 54..70 | `UNTIL` | the lease deadline (`P`) or the end of retention (`S`/`F`), ms, 16 digits; 0 = not written |
//! | 70..86 | `LEASE` | the lease, ms, 16 digits |
//! | 86..102 | `RETENTION` | the fence retention, ms, 16 digits |
//! | 102..134 | `FINGERPRINT` | the fingerprint's 32 bytes |
//! | 134.. | `BODY` | postcard of (key, result, error) |
//!
//! A pending value written by the claim fast path (`SET ... NX PX`) holds `CREATED` and `UNTIL`
//! 0: its lease deadline is the key's expiry time (`PEXPIRETIME`) minus the stored retention,
//! and it was created one lease before that. The scripts resolve these whenever they read such
//! a value, and write them explicitly whenever they rewrite it.
//!
//! [`Record::FORMAT_VERSION`]: idempotency_core::Record::FORMAT_VERSION

use std::fmt::Write as _;
use std::ops::Range;

use idempotency_core::Record;

/// A fixed-width field of the meta part: bytes `start..start + len` of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) start: usize,
    pub(crate) len: usize,
}

impl Field {
    /// The field that follows `prev`, `len` bytes wide.
    const fn after(prev: Field, len: usize) -> Field {
        Field {
            start: prev.start + prev.len,
            len,
        }
    }

    /// One past the field's last byte.
    pub(crate) const fn end(self) -> usize {
        self.start + self.len
    }

    /// The field's bytes, as a range of a value.
    pub(crate) const fn range(self) -> Range<usize> {
        self.start..self.end()
    }
}

/// The width of the fixed-width decimal numbers (token, times, lease, retention).
pub(crate) const DIGITS: usize = 16;

pub(crate) const MAGIC: Field = Field { start: 0, len: 5 };
pub(crate) const STATUS: Field = Field::after(MAGIC, 1);
pub(crate) const OWNER: Field = Field::after(STATUS, 16);
pub(crate) const TOKEN: Field = Field::after(OWNER, DIGITS);
pub(crate) const CREATED: Field = Field::after(TOKEN, DIGITS);
pub(crate) const UNTIL: Field = Field::after(CREATED, DIGITS);
pub(crate) const LEASE: Field = Field::after(UNTIL, DIGITS);
pub(crate) const RETENTION: Field = Field::after(LEASE, DIGITS);
pub(crate) const FINGERPRINT: Field = Field::after(RETENTION, 32);

/// Length of the fixed-width meta part; the body starts here.
pub(crate) const META_LEN: usize = FINGERPRINT.end();

/// The numbers (token through retention), one contiguous run of digits.
pub(crate) const NUMBERS: Field = Field {
    start: TOKEN.start,
    len: RETENTION.end() - TOKEN.start,
};

/// The compare-and-set operand of the fenced scripts: the execution id, then the token.
pub(crate) const OWNER_TOKEN: Field = Field {
    start: OWNER.start,
    len: TOKEN.end() - OWNER.start,
};

/// Every field of the meta part, in order, with its name in the scripts.
pub(crate) const FIELDS: [(&str, Field); 9] = [
    ("MAGIC", MAGIC),
    ("STATUS", STATUS),
    ("OWNER", OWNER),
    ("TOKEN", TOKEN),
    ("CREATED", CREATED),
    ("UNTIL", UNTIL),
    ("LEASE", LEASE),
    ("RETENTION", RETENTION),
    ("FINGERPRINT", FINGERPRINT),
];

/// The fields a finish keeps after the times: the lease, the retention and the fingerprint.
pub(crate) const KEPT: Field = Field {
    start: LEASE.start,
    len: FINGERPRINT.end() - LEASE.start,
};

/// The spans that group fields, with their names in the scripts.
const SPANS: [(&str, Field); 3] = [
    ("NUMBERS", NUMBERS),
    ("OWNER_TOKEN", OWNER_TOKEN),
    ("KEPT", KEPT),
];

/// The layout marker, the last byte of the magic. `r` was the layout before this one (owner
/// and fingerprint postcard-encoded, the body a prefix of `Record::encode`).
pub(crate) const MARKER: u8 = b's';
/// The marker of the previous layout, read as an incompatible record.
pub(crate) const OLD_MARKER: u8 = b'r';

/// The magic every value of this layout starts with.
pub(crate) const fn magic() -> [u8; 5] {
    [b'I', b'D', b'R', Record::FORMAT_VERSION, MARKER]
}

/// The status bytes.
pub(crate) const PENDING: u8 = b'P';
pub(crate) const SUCCESS: u8 = b'S';
pub(crate) const FAILED: u8 = b'F';

/// The constants the scripts name, generated from [`FIELDS`] and [`SPANS`]: each field's
/// 1-based inclusive bounds as `NAME_FROM` and `NAME_TO` (as `string.sub` takes them),
/// `BODY_FROM`, `META_LEN`, and the magic as `MAGIC_VALUE` (a Lua string literal). The loader
/// (`scripts.rs`) writes each one into a script's source as its literal value, so a script pays
/// nothing to name them (no locals, and no upvalues in the closures that use them: a script's
/// whole body runs on every call). The scripts name fields only through these, never by number
/// (a test checks the `.lua` sources).
pub(crate) fn lua_constants() -> Vec<(String, String)> {
    let mut quoted = String::from("'");
    for b in magic() {
        let _ = write!(quoted, "\\{b:03}");
    }
    quoted.push('\'');
    let mut out = vec![("MAGIC_VALUE".to_owned(), quoted)];
    for (name, f) in FIELDS.iter().chain(&SPANS) {
        out.push((format!("{name}_FROM"), (f.start + 1).to_string()));
        out.push((format!("{name}_TO"), f.end().to_string()));
    }
    out.push(("BODY_FROM".to_owned(), (META_LEN + 1).to_string()));
    out.push(("META_LEN".to_owned(), META_LEN.to_string()));
    out
}

/// The generated helper `pack(t, v)`, which builds a value from the fields named in table `t`,
/// taking the others from value `v`, in layout order (by name: the loader writes in the
/// constants).
pub(crate) fn lua_pack() -> String {
    let mut lua = String::with_capacity(512);
    lua.push_str("local function pack(t, v)\n  return MAGIC_VALUE");
    for (name, _) in &FIELDS[1..] {
        let _ = write!(
            lua,
            "\n    .. (t.{name} or string.sub(v, {name}_FROM, {name}_TO))"
        );
    }
    lua.push_str("\n    .. (t.BODY or string.sub(v, BODY_FROM))\nend\n");
    lua
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the layout: changing an offset here without meaning to (and so without changing the
    /// test) fails.
    #[test]
    fn offsets_are_pinned() {
        let pinned = [
            ("MAGIC", 0, 5),
            ("STATUS", 5, 6),
            ("OWNER", 6, 22),
            ("TOKEN", 22, 38),
            ("CREATED", 38, 54),
            ("UNTIL", 54, 70),
            ("LEASE", 70, 86),
            ("RETENTION", 86, 102),
            ("FINGERPRINT", 102, 134),
        ];
        let actual: Vec<_> = FIELDS.iter().map(|(n, f)| (*n, f.start, f.end())).collect();
        assert_eq!(actual, pinned);
        assert_eq!(META_LEN, 134);
        assert_eq!((NUMBERS.start, NUMBERS.end()), (22, 102));
        assert_eq!((OWNER_TOKEN.start, OWNER_TOKEN.end()), (6, 38));
        assert_eq!(magic(), *b"IDR\x02s");
    }

    /// The fields tile the meta part with no gap or overlap, so `pack` (which concatenates
    /// them in order) writes each at its offset.
    #[test]
    fn fields_tile_the_meta_part() {
        let mut at = 0;
        for (name, f) in FIELDS {
            assert_eq!(f.start, at, "{name} starts where the previous field ends");
            assert!(f.len > 0, "{name}");
            at = f.end();
        }
        assert_eq!(at, META_LEN);
        for (_, f) in [("TOKEN", TOKEN), ("CREATED", CREATED), ("UNTIL", UNTIL)] {
            assert!(NUMBERS.start <= f.start && f.end() <= NUMBERS.end());
        }
    }

    /// The finish script writes a finished value as `MAGIC_VALUE .. status .. owner_token ..
    /// created .. until .. string.sub(cur, KEPT_FROM, KEPT_TO) .. body`: those parts tile the
    /// meta part in that order.
    #[test]
    fn the_finish_concatenation_tiles_the_meta_part() {
        let mut at = 0;
        for (name, f) in [
            ("MAGIC", MAGIC),
            ("STATUS", STATUS),
            ("OWNER_TOKEN", OWNER_TOKEN),
            ("CREATED", CREATED),
            ("UNTIL", UNTIL),
            ("KEPT", KEPT),
        ] {
            assert_eq!(f.start, at, "{name} starts where the previous part ends");
            at = f.end();
        }
        assert_eq!(at, META_LEN);
        assert_eq!(CREATED.len + UNTIL.len, 2 * DIGITS);
    }

    /// The Lua side's offsets, pinned as the scripts see them (1-based, inclusive): a change of
    /// the generator, or of an offset on the Rust side alone, fails here or in
    /// [`offsets_are_pinned`].
    #[test]
    fn the_lua_constants_carry_the_same_offsets() {
        let lua = lua_constants();
        let has = |name: &str, value: &str| {
            assert!(
                lua.iter().any(|(n, v)| n == name && v == value),
                "missing `{name} = {value}` in {lua:?}"
            );
        };
        has("MAGIC_VALUE", "'\\073\\068\\082\\002\\115'");
        for (name, value) in [
            ("MAGIC_FROM", "1"),
            ("MAGIC_TO", "5"),
            ("STATUS_FROM", "6"),
            ("STATUS_TO", "6"),
            ("OWNER_FROM", "7"),
            ("OWNER_TO", "22"),
            ("TOKEN_FROM", "23"),
            ("TOKEN_TO", "38"),
            ("CREATED_FROM", "39"),
            ("CREATED_TO", "54"),
            ("UNTIL_FROM", "55"),
            ("UNTIL_TO", "70"),
            ("LEASE_FROM", "71"),
            ("LEASE_TO", "86"),
            ("RETENTION_FROM", "87"),
            ("RETENTION_TO", "102"),
            ("FINGERPRINT_FROM", "103"),
            ("FINGERPRINT_TO", "134"),
            ("NUMBERS_FROM", "23"),
            ("NUMBERS_TO", "102"),
            ("OWNER_TOKEN_FROM", "7"),
            ("OWNER_TOKEN_TO", "38"),
            ("KEPT_FROM", "71"),
            ("KEPT_TO", "134"),
            ("BODY_FROM", "135"),
            ("META_LEN", "134"),
        ] {
            has(name, value);
        }
        // Each field's Lua bounds are derived from the Rust field, for all of them.
        for (name, f) in FIELDS {
            has(&format!("{name}_FROM"), &(f.start + 1).to_string());
            has(&format!("{name}_TO"), &f.end().to_string());
        }
        let pack = lua_pack();
        for (name, _) in &FIELDS[1..] {
            assert!(pack.contains(&format!(
                "(t.{name} or string.sub(v, {name}_FROM, {name}_TO))"
            )));
        }
    }
}
