//! The Lua scripts behind the state transitions. Their sources are the `.lua` files in `lua/`
//! (read with `include_str!`), each prefixed at load by the prelude generated from the layout
//! ([`layout::lua_prelude`]) and the shared helpers (`lua/prelude.lua`), so the offsets they
//! use are the Rust ones by construction.
//!
//! A script runs atomically (Redis executes one script at a time), so each transition is a
//! compare-and-set, with time from `redis.call('TIME')` (never the caller's clock, SEMANTICS.md
//! scenario 22). A finished record's key expires at its `UNTIL` (`SET ... PXAT`, in the same
//! command as the write, so a record never loses its expiry, scenario 21); a pending record's
//! key at its lease deadline plus the retention, so the fencing token survives a crashed
//! holder's lease (scenario 10). Scripts are sent as `EVALSHA`, and as `EVAL` with the source
//! when Redis answers `NOSCRIPT` (see `conn.rs`).
//!
//! | script | does | returns |
//! |---|---|---|
//! | `claim` | get-or-claim: returns a live record, or claims (token 1, or old token + 1 on takeover of an expired record) with `until = now + lease` | `{0, now, value[, created, until]}` existing; `{1, now, until, takeover, token}` claimed; `{2, now, until, token}` the caller's own live claim; `{3, now}` another Redis type |
//! | `finish` | complete or fail, iff pending with this owner and token (or already finished by it with these bytes: a retry); writes the finished value and its expiry in one `SET` | `{0}` refused; `{1, created, until, fingerprint}` |
//! | `release` | owner-checked delete of a pending record | 1 deleted, 0 no key, -1 another value |
//! | `renew` | extends the lease iff the owner matches | `{0}` lost; `{1, until}` |
//! | `get` | the value with Redis's time and its resolved times | `{now[, value[, created, until]]}`; `{now, false, 1}` another Redis type |
//! | `touch` | writes a holder's record again unchanged, so a `WAIT` after it covers it (replicated claims) | 1 written, 0 not this holder's |
//! | `inspect` | what each of several keys holds (listing) | `{now, item, ...}` |
//! | `remove_unreadable` | compare-and-delete on content (listing) | 1 deleted, 0 not |

use std::sync::LazyLock;

use crate::layout;

/// A script: its source (prelude included) and SHA-1, as `EVALSHA` names it.
pub(crate) struct Script {
    pub(crate) name: &'static str,
    pub(crate) source: String,
    pub(crate) sha: String,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Script({})", self.name)
    }
}

const HELPERS: &str = include_str!("lua/prelude.lua");

fn load(name: &'static str, body: &str) -> Script {
    let source = format!("{}{HELPERS}{body}", layout::lua_prelude());
    let sha = redis::Script::new(&source).get_hash().to_owned();
    Script { name, source, sha }
}

macro_rules! scripts {
    ($($(#[$doc:meta])* $name:ident = $file:literal;)*) => {$(
        $(#[$doc])*
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| load($file, include_str!(concat!("lua/", $file, ".lua"))));
    )*
        #[cfg(test)]
        const SOURCES: &[(&str, &str)] = &[
            ("prelude", HELPERS),
            $(($file, include_str!(concat!("lua/", $file, ".lua"))),)*
        ];
    };
}

scripts! {
    /// Get-or-claim (`lua/claim.lua`).
    CLAIM = "claim";
    /// Complete or fail (`lua/finish.lua`).
    FINISH = "finish";
    /// Owner-checked release (`lua/release.lua`).
    RELEASE = "release";
    /// Lease renewal (`lua/renew.lua`).
    RENEW = "renew";
    /// Read with Redis's time (`lua/get.lua`).
    GET = "get";
    /// Replicated claims: write the holder's record again before `WAIT` (`lua/touch.lua`).
    TOUCH = "touch";
    /// Listing: what keys hold (`lua/inspect.lua`).
    INSPECT = "inspect";
    /// Listing: compare-and-delete (`lua/remove_unreadable.lua`).
    REMOVE_UNREADABLE = "remove_unreadable";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lua code without its comments and string literals.
    fn code(source: &str) -> String {
        let mut out = String::new();
        for line in source.lines() {
            let line = line.split("--").next().unwrap_or_default();
            let mut quoted = false;
            for c in line.chars() {
                if c == '\'' {
                    quoted = !quoted;
                } else if !quoted {
                    out.push(c);
                }
            }
            out.push('\n');
        }
        out
    }

    /// The calls in `source` that name an offset by number instead of by field.
    fn numbered_offsets(source: &str) -> Vec<String> {
        let code = code(source);
        let mut found = Vec::new();
        for call in ["string.sub(", "field(", "num("] {
            let mut rest = code.as_str();
            while let Some(at) = rest.find(call) {
                let whole = rest[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
                rest = &rest[at + call.len()..];
                let args: String = rest.chars().take_while(|c| *c != ')').collect();
                // `f[1]`, `f[2]`: the bounds of a field passed in, as the helpers take them.
                let bare = args.replace("[1]", "").replace("[2]", "");
                if whole && bare.chars().any(|c| c.is_ascii_digit()) {
                    found.push(format!("{call}{args})"));
                }
            }
        }
        found
    }

    /// The `.lua` sources never name an offset by number: every `string.sub` takes a field from
    /// the generated prelude. A hard-coded offset (the layout changed on one side only) fails.
    #[test]
    fn scripts_name_no_offsets() {
        for (name, source) in SOURCES {
            let found = numbered_offsets(source);
            assert!(
                found.is_empty(),
                "{name}.lua names offsets by number: {found:?}"
            );
        }
        // The check sees one.
        let bad = "local s = string.sub(cur, 6, 6) -- status\nlocal t = num(v, {23, 38})";
        assert_eq!(numbered_offsets(bad).len(), 2);
        assert!(numbered_offsets("local n = tonumber(ARGV[3])").is_empty());
    }

    /// Every upper-case name the scripts use is defined by the generated prelude, or is a
    /// field name as `pack` takes it (a field renamed on the Rust side fails here rather than
    /// as a nil at run time).
    #[test]
    fn scripts_use_only_generated_names() {
        let prelude = layout::lua_prelude();
        let defined: Vec<String> = prelude
            .lines()
            .filter_map(|l| l.strip_prefix("local "))
            .filter_map(|l| l.split('=').next())
            .flat_map(|names| names.split(','))
            .map(|n| n.trim().to_owned())
            // The keys `pack` takes: the field names, and `BODY`.
            .chain(layout::FIELDS.iter().map(|(name, _)| (*name).to_owned()))
            .chain(["BODY".to_owned()])
            .collect();
        for (name, source) in SOURCES {
            let code = code(source);
            for word in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let upper = word.len() > 1
                    && word.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    && word.chars().next().is_some_and(|c| c.is_ascii_uppercase());
                if upper && !matches!(word, "KEYS" | "ARGV") {
                    assert!(
                        defined.iter().any(|d| d == word),
                        "{name}.lua uses `{word}`, which the prelude does not define"
                    );
                }
            }
        }
    }

    #[test]
    fn every_script_loads_with_its_sha() {
        for s in [
            &CLAIM,
            &FINISH,
            &RELEASE,
            &RENEW,
            &GET,
            &INSPECT,
            &REMOVE_UNREADABLE,
        ] {
            assert_eq!(s.sha.len(), 40, "{}", s.name);
            assert!(s.source.starts_with("local MAGIC_VALUE"), "{}", s.name);
        }
    }
}
