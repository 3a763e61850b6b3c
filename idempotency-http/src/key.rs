//! Parsing the `Idempotency-Key` request header (IETF draft-ietf-httpapi-idempotency-key-header,
//! section 2: an Item Structured Header Field whose value is a String, RFC 8941 section 3.3.3).

use http::header::GetAll;
use http::HeaderValue;

/// The longest idempotency key accepted, in bytes (after unquoting): Stripe's limit, the same as
/// the core's [`validate_custom_key`](idempotency_core::validate_custom_key).
pub const MAX_KEY_BYTES: usize = idempotency_core::MAX_CUSTOM_KEY_BYTES;

/// Why an `Idempotency-Key` header was refused (each answered with 400 and problem+json).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The header appears on more than one line (RFC 9110 would join them into a list).
    SeveralLines,
    /// The value is a list of several members (a top-level `,`).
    List,
    /// The key is the empty string.
    Empty,
    /// The key is longer than [`MAX_KEY_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The value is neither an sf-string nor an accepted bare token.
    Malformed {
        /// What is wrong, for the problem's `detail`.
        reason: &'static str,
    },
}

impl KeyError {
    /// A short machine-readable name, the problem body's `reason` member.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::SeveralLines => "several-header-lines",
            KeyError::List => "list",
            KeyError::Empty => "empty",
            KeyError::TooLong { .. } => "too-long",
            KeyError::Malformed { .. } => "malformed",
        }
    }

    /// A sentence for the problem's `detail`.
    pub fn detail(&self) -> String {
        match self {
            KeyError::SeveralLines => {
                "the Idempotency-Key header appears on more than one line; send exactly one".into()
            }
            KeyError::List => {
                "the Idempotency-Key header holds a list; its value must be one string".into()
            }
            KeyError::Empty => "the idempotency key is empty".into(),
            KeyError::TooLong { len } => {
                format!(
                    "the idempotency key is {len} bytes long; at most {MAX_KEY_BYTES} are accepted"
                )
            }
            KeyError::Malformed { reason } => {
                format!("the Idempotency-Key header is not a structured-field string: {reason}")
            }
        }
    }
}

/// Parses the `Idempotency-Key` header lines of a request: `Ok(None)` when there is none.
///
/// The value must be one RFC 8941 sf-string (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`; inside
/// the quotes printable ASCII, with `\"` and `\\` as the only escapes), optionally surrounded by
/// spaces. With `lenient`, a bare value of visible ASCII without quotes, backslashes, commas or
/// semicolons is also accepted as the key (clients that send `Idempotency-Key: 8e03978e-...`
/// unquoted, as Stripe's clients do); the bare value is the key, so `abc` and `"abc"` are the
/// same key. Parameters (`;a=1`) are refused as malformed.
///
/// # Errors
/// [`KeyError`]: several lines, a list, empty, longer than [`MAX_KEY_BYTES`], or malformed.
pub fn parse_key_header(
    lines: GetAll<'_, HeaderValue>,
    lenient: bool,
) -> Result<Option<String>, KeyError> {
    let mut iter = lines.iter();
    let Some(first) = iter.next() else {
        return Ok(None);
    };
    if iter.next().is_some() {
        return Err(KeyError::SeveralLines);
    }
    parse_key_value(first.as_bytes(), lenient).map(Some)
}

/// Parses one `Idempotency-Key` field value (see [`parse_key_header`]).
///
/// # Errors
/// As [`parse_key_header`], except [`KeyError::SeveralLines`].
pub fn parse_key_value(raw: &[u8], lenient: bool) -> Result<String, KeyError> {
    let v = trim_sp(raw);
    if v.is_empty() {
        return Err(KeyError::Empty);
    }
    let (key, rest) = if v[0] == b'"' {
        parse_sf_string(v)?
    } else {
        if !lenient {
            return Err(KeyError::Malformed {
                reason: "the value is not quoted (an sf-string starts with '\"')",
            });
        }
        let end = v
            .iter()
            .position(|&b| matches!(b, b',' | b';' | b' ' | b'\t'))
            .unwrap_or(v.len());
        let bare = &v[..end];
        if bare
            .iter()
            .any(|&b| !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'\\')
        {
            return Err(KeyError::Malformed {
                reason: "a bare key may hold only visible ASCII without quotes or backslashes",
            });
        }
        (String::from_utf8_lossy(bare).into_owned(), &v[end..])
    };
    let rest = trim_sp(rest);
    match rest.first() {
        None => {}
        Some(b',') => return Err(KeyError::List),
        Some(b';') => {
            return Err(KeyError::Malformed {
                reason: "parameters are not accepted on the key",
            })
        }
        Some(_) => {
            return Err(KeyError::Malformed {
                reason: "characters follow the key",
            })
        }
    }
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong { len: key.len() });
    }
    Ok(key)
}

fn trim_sp(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// RFC 8941 section 4.2.5: `v` starts with `"`; returns the unescaped string and the rest.
fn parse_sf_string(v: &[u8]) -> Result<(String, &[u8]), KeyError> {
    let mut out = String::new();
    let mut i = 1;
    while i < v.len() {
        match v[i] {
            b'\\' => {
                match v.get(i + 1) {
                    Some(&c @ (b'"' | b'\\')) => out.push(char::from(c)),
                    _ => {
                        return Err(KeyError::Malformed {
                            reason: "only \\\" and \\\\ may be escaped",
                        })
                    }
                }
                i += 2;
            }
            b'"' => return Ok((out, &v[i + 1..])),
            c @ 0x20..=0x7e => {
                out.push(char::from(c));
                i += 1;
            }
            _ => {
                return Err(KeyError::Malformed {
                    reason: "a string holds only printable ASCII",
                })
            }
        }
    }
    Err(KeyError::Malformed {
        reason: "the string has no closing quote",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sf_strings_tokens_and_refusals() {
        assert_eq!(parse_key_value(b"\"abc\"", false), Ok("abc".into()));
        assert_eq!(
            parse_key_value(b"  \"a\\\"b\\\\c\" ", false),
            Ok("a\"b\\c".into())
        );
        assert_eq!(parse_key_value(b"abc-123", true), Ok("abc-123".into()));
        assert!(matches!(
            parse_key_value(b"abc", false),
            Err(KeyError::Malformed { .. })
        ));
        assert_eq!(parse_key_value(b"\"\"", true), Err(KeyError::Empty));
        assert_eq!(parse_key_value(b"", true), Err(KeyError::Empty));
        assert_eq!(parse_key_value(b"\"a\", \"b\"", true), Err(KeyError::List));
        assert_eq!(parse_key_value(b"a, b", true), Err(KeyError::List));
        let long = format!("\"{}\"", "k".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(
            parse_key_value(long.as_bytes(), true),
            Err(KeyError::TooLong {
                len: MAX_KEY_BYTES + 1
            })
        );
        let max = format!("\"{}\"", "k".repeat(MAX_KEY_BYTES));
        assert!(parse_key_value(max.as_bytes(), true).is_ok());
        assert!(matches!(
            parse_key_value(b"\"abc", true),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            parse_key_value(b"\"a\\nb\"", true),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            parse_key_value(b"\"a\";p=1", true),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            parse_key_value(b"\"a\" x", true),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            parse_key_value(b"a\"b", true),
            Err(KeyError::Malformed { .. })
        ));
    }
}
