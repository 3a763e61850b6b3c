//! Stored values in words: a CBOR value (RFC 8949, what records hold since record format
//! version 2) as bounded diagnostic text, and a stored error as its kind and message.
//!
//! The text is JSON-like (RFC 8949 section 8 diagnostic notation): strings quoted and escaped,
//! map keys printed as values (so `{1: "a"}` is a map with an integer key, never confused with
//! `{"1": "a"}`), byte strings as `h'00ff'`, floats always with a `.` or an exponent (`5.0`),
//! `NaN`, `Infinity`, `-Infinity`, tags as `N(value)`. Serde writes structs as maps keyed by
//! field name and enums by variant name (`{"Declined": "insufficient funds"}`, a unit variant as
//! the string `"Declined"`).

use std::fmt::Write as _;

use ciborium::value::Value;

/// The stored value decoded, or why it does not decode as one CBOR value.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut rest = bytes;
    let value: Value = ciborium::from_reader(&mut rest).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the first CBOR value", rest.len()));
    }
    Ok(value)
}

/// `value` as diagnostic text of at most `max` bytes (cut at a character boundary, then ` …`).
/// Returns the text and whether it was cut.
pub(crate) fn diagnostic(value: &Value, max: usize) -> (String, bool) {
    let mut out = String::new();
    write_value(&mut out, value, max);
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(" …");
        (out, true)
    } else {
        (out, false)
    }
}

fn write_value(out: &mut String, v: &Value, max: usize) {
    // Stop early on huge values: the text is cut at `max` anyway.
    if out.len() > max {
        return;
    }
    match v {
        Value::Integer(i) => {
            let _ = write!(out, "{}", i128::from(*i));
        }
        Value::Bytes(b) => {
            out.push_str("h'");
            for byte in b.iter().take(max) {
                let _ = write!(out, "{byte:02x}");
            }
            out.push('\'');
        }
        Value::Float(f) => write_float(out, *f),
        Value::Text(t) => write_text(out, t),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
        Value::Tag(tag, inner) => {
            let _ = write!(out, "{tag}(");
            write_value(out, inner, max);
            out.push(')');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item, max);
                if out.len() > max {
                    break;
                }
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, k, max);
                out.push_str(": ");
                write_value(out, item, max);
                if out.len() > max {
                    break;
                }
            }
            out.push('}');
        }
        // `Value` is non-exhaustive.
        _ => out.push_str("<unknown CBOR item>"),
    }
}

fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        // `{:?}` keeps a `.0` on whole numbers and prints the shortest exact form.
        let _ = write!(out, "{f:?}");
    }
}

fn write_text(out: &mut String, t: &str) {
    out.push('"');
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A stored error in words.
///
/// An `idempotency::Error` (serialized as a map of `kind`, `message` and `causes`), alone or as
/// the one field of a user's enum variant (`{"Idempotency": {...}}`), reads
/// `[Variant: ]idempotency error <kind>: <message>: <cause>...`. A variant holding a string
/// reads `Variant: text`; a unit variant its name; any other value its diagnostic text.
/// At most `max` bytes (then ` …`), like [`diagnostic`].
pub(crate) fn error_words(value: &Value, max: usize) -> String {
    let mut words = words(value, max);
    if words.len() > max {
        let mut cut = max;
        while !words.is_char_boundary(cut) {
            cut -= 1;
        }
        words.truncate(cut);
        words.push_str(" …");
    }
    words
}

fn words(value: &Value, max: usize) -> String {
    if let Some(words) = framework_error(value) {
        return words;
    }
    if let Value::Map(entries) = value {
        if let [(Value::Text(variant), inner)] = entries.as_slice() {
            if let Some(words) = framework_error(inner) {
                return format!("{variant}: {words}");
            }
            if let Value::Text(text) = inner {
                return format!("{variant}: {text}");
            }
        }
    }
    if let Value::Text(text) = value {
        return text.clone();
    }
    diagnostic(value, max).0
}

fn framework_error(value: &Value) -> Option<String> {
    let Value::Map(entries) = value else {
        return None;
    };
    let field = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Text(t) if t == name))
            .map(|(_, v)| v)
    };
    let (Some(Value::Text(kind)), Some(Value::Text(message))) = (field("kind"), field("message"))
    else {
        return None;
    };
    idempotency::ErrorKind::from_name(kind)?;
    let mut words = format!("idempotency error {kind}: {message}");
    if let Some(Value::Array(causes)) = field("causes") {
        for c in causes {
            if let Value::Text(c) = c {
                if !words.contains(c.as_str()) {
                    words.push_str(": ");
                    words.push_str(c);
                }
            }
        }
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag<T: serde::Serialize>(v: &T) -> String {
        let mut bytes = Vec::new();
        ciborium::into_writer(v, &mut bytes).unwrap();
        diagnostic(&decode(&bytes).unwrap(), 4096).0
    }

    #[test]
    fn diagnostics_keep_key_types_floats_bytes_and_nan_apart() {
        let m: std::collections::BTreeMap<u32, &str> = [(1, "a")].into();
        assert_eq!(diag(&m), r#"{1: "a"}"#);
        let m: std::collections::BTreeMap<&str, &str> = [("1", "a")].into();
        assert_eq!(diag(&m), r#"{"1": "a"}"#);
        assert_eq!(diag(&5.0_f64), "5.0");
        assert_eq!(diag(&5_u8), "5");
        assert_eq!(diag(&f64::NAN), "NaN");
        assert_eq!(diag(&f64::NEG_INFINITY), "-Infinity");
        assert_eq!(diag(&serde_bytes_like()), "h'00ff'");
        assert_eq!(diag(&"a\"\n"), r#""a\"\n""#);
        assert_eq!(diag(&(None::<u8>, true)), "[null, true]");
    }

    fn serde_bytes_like() -> ciborium::value::Value {
        Value::Bytes(vec![0, 255])
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(10_000);
        let mut bytes = Vec::new();
        ciborium::into_writer(&long, &mut bytes).unwrap();
        let (text, cut) = diagnostic(&decode(&bytes).unwrap(), 100);
        assert!(cut);
        assert!(text.len() <= 100 + " …".len(), "{}", text.len());
    }

    #[test]
    fn errors_read_as_kind_and_message() {
        let e = idempotency::Error::Config("bad url".into());
        let mut bytes = Vec::new();
        ciborium::into_writer(&e, &mut bytes).unwrap();
        let v = decode(&bytes).unwrap();
        assert_eq!(
            error_words(&v, 100),
            format!("idempotency error config: {e}")
        );
        #[derive(serde::Serialize)]
        enum PayError {
            Declined(String),
            Idempotency(idempotency::Error),
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(&PayError::Declined("no funds".into()), &mut bytes).unwrap();
        assert_eq!(
            error_words(&decode(&bytes).unwrap(), 100),
            "Declined: no funds"
        );
        let mut bytes = Vec::new();
        ciborium::into_writer(&PayError::Idempotency(e), &mut bytes).unwrap();
        assert!(error_words(&decode(&bytes).unwrap(), 100)
            .starts_with("Idempotency: idempotency error config: "));
        let long = PayError::Declined("y".repeat(10_000));
        let mut bytes = Vec::new();
        ciborium::into_writer(&long, &mut bytes).unwrap();
        let words = error_words(&decode(&bytes).unwrap(), 100);
        assert!(words.len() <= 100 + " …".len(), "{}", words.len());
    }
}
