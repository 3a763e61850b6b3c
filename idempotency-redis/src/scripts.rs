//! The Lua scripts behind the state transitions. Their sources are the `.lua` files in `lua/`
//! (read with `include_str!`), each prefixed at load by the shared helpers it calls
//! (`lua/prelude.lua`, and `pack` generated from the layout), with the layout's offsets
//! ([`layout::lua_constants`]) written in as literals, so the offsets they use are the Rust
//! ones by construction and cost a script nothing to name.
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
//! | `finish` | complete or fail, iff pending with this owner and token (or already finished by it with these bytes: a retry); writes the finished value and its expiry in one `SET` | `0` refused; the finished value's bytes `CREATED` through `FINGERPRINT` (its times and fingerprint) |
//! | `release` | owner-checked delete of a pending record | 1 deleted, 0 no key, -1 another value |
//! | `renew` | extends the lease iff the owner matches | `{0}` lost; `{1, until}` |
//! | `get` | the value with Redis's time and its resolved times | `{now[, value[, created, until]]}`; `{now, false, 1}` another Redis type |
//! | `touch` | writes a holder's record again unchanged, so a `WAIT` after it covers it (replicated claims) | 1 written, 0 not this holder's |
//! | `inspect` | what each of several keys holds (listing) | `{now, item, ...}` |
//! | `remove_unreadable` | compare-and-delete on content (listing) | 1 deleted, 0 not |

use std::sync::LazyLock;

use crate::layout;

/// A script: its source (helpers included, constants written in) and SHA-1, as `EVALSHA`
/// names it.
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

/// The helpers a script can use: the generated `pack`, then each paragraph of `lua/prelude.lua`
/// that defines a `local function`, by name, in order (a helper uses only those before it).
fn helpers() -> Vec<(String, String)> {
    let mut out = vec![("pack".to_owned(), layout::lua_pack())];
    for chunk in HELPERS.split("\n\n") {
        let name = chunk
            .lines()
            .find_map(|l| l.strip_prefix("local function "))
            .and_then(|rest| rest.split('(').next());
        if let Some(name) = name {
            out.push((name.to_owned(), format!("{}\n", chunk.trim_end())));
        }
    }
    out
}

/// Whether `code` calls the function `name` (`name(` not preceded by an identifier character).
fn calls(code: &str, name: &str) -> bool {
    let call = format!("{name}(");
    code.match_indices(&call).any(|(at, _)| {
        code[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

/// `code` with each identifier named in `constants` replaced by its value.
fn write_constants(code: &str, constants: &[(String, String)]) -> String {
    let mut out = String::with_capacity(code.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match constants.iter().find(|(name, _)| name == word) {
            Some((_, value)) => out.push_str(value),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in code.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The source of the script `body`: the helpers it uses (and those they use), then the body,
/// with the layout's constants written in as literals. A script's whole text runs on every
/// call, so it defines no helper it does not call and no local for a constant.
fn assemble(body: &str) -> String {
    let helpers = helpers();
    let mut used = vec![false; helpers.len()];
    // A helper uses only helpers defined before it: one pass from the last one finds them all.
    for i in (0..helpers.len()).rev() {
        let (name, _) = &helpers[i];
        used[i] = calls(body, name)
            || helpers
                .iter()
                .zip(&used)
                .skip(i + 1)
                .any(|((_, code), &u)| u && calls(code, name));
    }
    let mut source = String::with_capacity(body.len() + 1024);
    for ((_, code), _) in helpers.iter().zip(&used).filter(|(_, &u)| u) {
        source.push_str(code);
    }
    source.push_str(body);
    write_constants(&source, &layout::lua_constants())
}

fn load(name: &'static str, body: &str) -> Script {
    let source = assemble(body);
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

    /// Every upper-case name the scripts use is a generated constant, or is a field name as
    /// `pack` takes it (a field renamed on the Rust side fails here rather than as a nil at run
    /// time).
    #[test]
    fn scripts_use_only_generated_names() {
        let defined: Vec<String> = layout::lua_constants()
            .into_iter()
            .map(|(name, _)| name)
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
                        "{name}.lua uses `{word}`, which is not a generated constant"
                    );
                }
            }
        }
    }

    fn all() -> [&'static Script; 8] {
        [
            &CLAIM,
            &FINISH,
            &RELEASE,
            &RENEW,
            &GET,
            &TOUCH,
            &INSPECT,
            &REMOVE_UNREADABLE,
        ]
    }

    #[test]
    fn every_script_loads_with_its_sha() {
        for s in all() {
            assert_eq!(s.sha.len(), 40, "{}", s.name);
            assert_eq!(
                s.sha,
                redis::Script::new(&s.source).get_hash(),
                "{}",
                s.name
            );
        }
    }

    /// Every constant is written in: no script names one at run time (it would be a nil).
    #[test]
    fn loaded_scripts_carry_the_constants_as_literals() {
        let constants = layout::lua_constants();
        for s in all() {
            let code = code(&s.source);
            for word in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                assert!(
                    !constants.iter().any(|(name, _)| name == word),
                    "{} still names `{word}`",
                    s.name
                );
            }
        }
        assert!(FINISH
            .source
            .contains("'\\073\\068\\082\\002\\115' .. ARGV[2]"));
        assert!(FINISH.source.contains("string.sub(cur, 71, 134)"));
        assert_eq!(
            write_constants("x = META_LEN + METAX_LEN .. aMETA_LEN", &constants),
            "x = 134 + METAX_LEN .. aMETA_LEN"
        );
    }

    /// A script carries the helpers it calls and those they call, defined before use, and no
    /// other: its whole text runs on every call.
    #[test]
    fn scripts_carry_only_the_helpers_they_use() {
        let defines =
            |s: &Script, name: &str| s.source.contains(&format!("local function {name}("));
        // `claim` calls `times`, which calls `num`.
        for name in ["now_ms", "ours", "times", "num", "pack", "n16"] {
            assert!(defines(&CLAIM, name), "claim lacks {name}");
        }
        let times = CLAIM.source.find("local function times(").unwrap();
        assert!(CLAIM.source.find("local function num(").unwrap() < times);
        // `finish` calls only `ours`.
        assert!(defines(&FINISH, "ours"));
        for name in ["now_ms", "times", "num", "pack", "n16"] {
            assert!(!defines(&FINISH, name), "finish carries {name}");
        }
        for s in all() {
            for (name, _) in helpers() {
                let called = calls(&s.source.replace(&format!("function {name}("), ""), &name);
                assert_eq!(defines(s, &name), called, "{}: {name}", s.name);
            }
        }
        assert!(calls("x = num(v)", "num") && !calls("x = tonum(v)", "num"));
    }
}
