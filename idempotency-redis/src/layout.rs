//! The value layout: where each field of a stored value lives. The one source of truth for the
//! offsets: the Rust side reads and writes values through [`Field`]s, and the Lua side receives
//! them in a prelude generated from the same table ([`lua_prelude`]), so the two cannot disagree.
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

/// The spans that group fields, with their names in the scripts.
const SPANS: [(&str, Field); 2] = [("NUMBERS", NUMBERS), ("OWNER_TOKEN", OWNER_TOKEN)];

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

/// The Lua prepended to every script, generated from [`FIELDS`]: each field's 1-based
/// inclusive bounds as `NAME_FROM, NAME_TO` (as `string.sub` takes them; plain numbers, so a
/// script pays nothing for them), `BODY_FROM`, `META_LEN`, the magic as `MAGIC_VALUE`, and
/// `pack(t, v)`, which builds a value from the fields named in table `t`, taking the others
/// from value `v`, in layout order. The scripts name fields only through these, never by
/// number (a test checks the `.lua` sources).
pub(crate) fn lua_prelude() -> String {
    let mut lua = String::with_capacity(1024);
    let mut quoted = String::new();
    for b in magic() {
        let _ = write!(quoted, "\\{b:03}");
    }
    let _ = writeln!(lua, "local MAGIC_VALUE = '{quoted}'");
    for (name, f) in FIELDS.iter().chain(&SPANS) {
        let _ = writeln!(
            lua,
            "local {name}_FROM, {name}_TO = {}, {}",
            f.start + 1,
            f.end()
        );
    }
    let _ = writeln!(lua, "local BODY_FROM = {}", META_LEN + 1);
    let _ = writeln!(lua, "local META_LEN = {META_LEN}");
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

    /// The Lua side's offsets, pinned as the scripts see them (1-based, inclusive): a change of
    /// the generator, or of an offset on the Rust side alone, fails here or in
    /// [`offsets_are_pinned`].
    #[test]
    fn the_lua_prelude_carries_the_same_offsets() {
        let lua = lua_prelude();
        for line in [
            "local MAGIC_VALUE = '\\073\\068\\082\\002\\115'",
            "local MAGIC_FROM, MAGIC_TO = 1, 5",
            "local STATUS_FROM, STATUS_TO = 6, 6",
            "local OWNER_FROM, OWNER_TO = 7, 22",
            "local TOKEN_FROM, TOKEN_TO = 23, 38",
            "local CREATED_FROM, CREATED_TO = 39, 54",
            "local UNTIL_FROM, UNTIL_TO = 55, 70",
            "local LEASE_FROM, LEASE_TO = 71, 86",
            "local RETENTION_FROM, RETENTION_TO = 87, 102",
            "local FINGERPRINT_FROM, FINGERPRINT_TO = 103, 134",
            "local NUMBERS_FROM, NUMBERS_TO = 23, 102",
            "local OWNER_TOKEN_FROM, OWNER_TOKEN_TO = 7, 38",
            "local BODY_FROM = 135",
            "local META_LEN = 134",
        ] {
            assert!(lua.lines().any(|l| l == line), "missing `{line}` in\n{lua}");
        }
        // Each field's Lua bounds are derived from the Rust field, for all of them.
        for (name, f) in FIELDS {
            let line = format!(
                "local {name}_FROM, {name}_TO = {}, {}",
                f.start + 1,
                f.end()
            );
            assert!(lua.lines().any(|l| l == line), "{line}");
        }
    }
}
