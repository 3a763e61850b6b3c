//! Finding a record from a user's own inputs: the `key` command and the selectors of `show` and
//! `delete` (`--operation NAME` with `--custom-key K`, `--args-json JSON` or `--value-json JSON`,
//! and `--scope`, `--version`, `--key-prefix`).
//!
//! The key is derived with the library's own [`KeyEncoder`], exactly as a call derives it:
//! `KeyEncoder::new(operation, version)`, then `scope`, then `custom_key`, then one
//! `KeyEncoder::arg` per argument, which is the order `#[idempotent]` writes them in (see its
//! expansion in idempotency-macros/src/idempotent/expand.rs).
//!
//! # How JSON maps to arguments
//!
//! `--args-json` is a JSON **array**: the function's key parameters, in order, one
//! `KeyEncoder::arg` each (a method with `include_self = true` has `self` first).
//! `--value-json V` is the single value of [`IdempotencyKey::derive`]`(operation, version, &V)`
//! (the same as `--args-json '[V]'`). Each JSON value is handed to the canonical encoder as these
//! serde calls:
//!
//! | JSON | serde | reproduces the key of |
//! |---|---|---|
//! | integer (`42`, `-7`) | an integer | every integer type (`u8` .. `i128`, `usize`); widths are one type in keys |
//! | number with a fraction or exponent (`2.5`, `1e3`, `5.0`) | `f64` | `f32`/`f64` (`5.0` is a float, `5` an integer) |
//! | string | `str` | `String`, `&str`, `Cow<str>`, and types that serialize as a string (`Uuid`, `Decimal`) |
//! | `true` / `false` | `bool` | `bool` |
//! | array | a sequence | `Vec<T>`, slices, `VecDeque<T>` (not tuples, arrays `[T; N]` or sets) |
//! | object | a map with string keys | `HashMap<String, V>`, `BTreeMap<String, V>` (any order) |
//! | `null` | `None` | `Option::None` |
//! | `{"$some": v}` | `Some(v)` | `Option::Some` (an object with the one key `$some` is always this) |
//!
//! Keys also hash the names of structs, fields, enums and variants (key format 2), so a struct
//! or enum argument, a tuple, a set, a `char`, `()` or bytes have no JSON form here; nor do the
//! instantiation of a generic function (`KeyEncoder::instance`) and a `NormalizeKey` impl.
//! Derive those keys with the library (README_CLI.md shows the three lines).

use clap::Args;
use idempotency::{IdempotencyKey, KeyEncoder};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::error::{CliError, Exit};

/// The key selectors shared by `key`, `show` and `delete`.
#[derive(Debug, Clone, Args)]
pub(crate) struct Selector {
    /// The operation name, as the key starts (`#[idempotent]`: the function's path with its
    /// `impl` type, `app::Users::get`, or the pinned `name`).
    #[arg(long, value_name = "NAME")]
    pub(crate) operation: Option<String>,
    /// The caller-supplied idempotency key (Stripe style) the call used.
    #[arg(
        long,
        value_name = "K",
        requires = "operation",
        allow_hyphen_values = true
    )]
    pub(crate) custom_key: Option<String>,
    /// The call's key arguments as a JSON array, in parameter order (see README_CLI.md for how
    /// JSON maps to Rust values). With `--custom-key`, they only form the fingerprint.
    #[arg(
        long,
        value_name = "JSON",
        requires = "operation",
        conflicts_with = "value_json",
        allow_hyphen_values = true
    )]
    pub(crate) args_json: Option<String>,
    /// The one value given to `IdempotencyKey::derive(operation, version, &value)`, as JSON.
    #[arg(
        long,
        value_name = "JSON",
        requires = "operation",
        allow_hyphen_values = true
    )]
    pub(crate) value_json: Option<String>,
    /// The call's scope (tenant, org, user) as a string.
    #[arg(
        long,
        value_name = "S",
        requires = "operation",
        conflicts_with = "scope_json",
        allow_hyphen_values = true
    )]
    pub(crate) scope: Option<String>,
    /// The call's scope as JSON, when it is not a string (`--scope-json 42`).
    #[arg(
        long,
        value_name = "JSON",
        requires = "operation",
        allow_hyphen_values = true
    )]
    pub(crate) scope_json: Option<String>,
    /// The operation's version (`#[idempotent(version = N)]`).
    #[arg(long, value_name = "V", default_value_t = 1, requires = "operation")]
    pub(crate) version: u32,
    /// The namespace prefix the records were written under (a `Prefixed` store's prefix), when
    /// there is one.
    #[arg(long, value_name = "P", requires = "operation")]
    pub(crate) key_prefix: Option<String>,
}

/// What a selector derived.
pub(crate) struct Selected {
    pub(crate) key: IdempotencyKey,
    /// The fingerprint, when the arguments were given (a derived key's is its own digest).
    pub(crate) fingerprint: Option<String>,
}

impl Selector {
    /// Derives the key the library derives for these inputs.
    pub(crate) fn derive(&self) -> Result<Selected, CliError> {
        let Some(operation) = self.operation.as_deref() else {
            return Err(usage(
                "give a KEY, or --operation NAME with --custom-key K or --args-json JSON",
            ));
        };
        let args: Option<Vec<Value>> = match (&self.args_json, &self.value_json) {
            (Some(text), _) => match parse_json("--args-json", text)? {
                Value::Array(items) => Some(items),
                _ => {
                    return Err(usage(
                        "--args-json takes a JSON array of the call's key arguments in order \
                         (`[42, \"EUR\"]`); for the one value of `IdempotencyKey::derive` use \
                         --value-json",
                    ))
                }
            },
            (None, Some(text)) => Some(vec![parse_json("--value-json", text)?]),
            (None, None) => None,
        };
        if args.is_none() && self.custom_key.is_none() {
            return Err(usage(
                "--operation needs --custom-key K, --args-json JSON or --value-json JSON",
            ));
        }
        let scope = match (&self.scope, &self.scope_json) {
            (Some(s), _) => Some(Value::String(s.clone())),
            (None, Some(text)) => Some(parse_json("--scope-json", text)?),
            (None, None) => None,
        };
        let mut enc = KeyEncoder::new(operation, self.version);
        if let Some(s) = &scope {
            enc.scope(&Json(s));
        }
        if let Some(k) = &self.custom_key {
            enc.custom_key(k);
        }
        for a in args.iter().flatten() {
            enc.arg(&Json(a));
        }
        let derived = enc.finish().map_err(|e| {
            CliError::new(
                Exit::Usage,
                "invalid_key",
                format!("cannot derive the key: {}", crate::error::describe(&e)),
            )
        })?;
        let key = match &self.key_prefix {
            Some(p) => idempotency::Prefixed::new((), p.as_str())
                .map_err(|e| usage(&crate::error::describe(&e)))?
                .stored_key(&derived.key),
            None => derived.key,
        };
        Ok(Selected {
            key,
            fingerprint: args.is_some().then(|| derived.fingerprint.to_string()),
        })
    }
}

fn usage(message: &str) -> CliError {
    CliError::new(Exit::Usage, "usage", message)
}

fn parse_json(flag: &str, text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text).map_err(|e| {
        CliError::new(
            Exit::Usage,
            "usage",
            format!("{flag}: `{text}` is not JSON: {e}"),
        )
    })
}

/// A JSON value presented to serde as the Rust value it stands for (the table in the module
/// docs).
struct Json<'a>(&'a Value);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    s.serialize_u64(u)
                } else if let Some(i) = n.as_i64() {
                    s.serialize_i64(i)
                } else if let Some(f) = n.as_f64() {
                    s.serialize_f64(f)
                } else {
                    Err(S::Error::custom(format!("unsupported number {n}")))
                }
            }
            Value::String(t) => s.serialize_str(t),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                if map.len() == 1 {
                    if let Some(inner) = map.get("$some") {
                        return s.serialize_some(&Json(inner));
                    }
                }
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, &Json(v))?;
                }
                m.end()
            }
        }
    }
}
