//! Lowercase hexadecimal: the one spelling of bytes as text in the framework (record file names,
//! Redis record keys, PostgreSQL list locations and cursors). A thin layer over the `hex` crate,
//! so every store writes and reads the same digits.

/// `bytes` as lowercase hexadecimal, two digits a byte (`[0x0f, 0xa0]` is `"0fa0"`).
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    ::hex::encode(bytes)
}

/// The bytes spelled by `text` (two hexadecimal digits a byte, either case), or `None` when
/// `text` has an odd length or a character that is not a hexadecimal digit.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    ::hex::decode(text).ok()
}

/// Whether `text` is made only of lowercase hexadecimal digits (`0-9`, `a-f`), as
/// [`encode`] writes them. The empty string is.
pub fn is_lower(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let text = encode(&all);
        assert_eq!(text.len(), 512);
        assert!(is_lower(&text));
        assert!(text.starts_with("000102") && text.ends_with("fdfeff"));
        assert_eq!(decode(&text).unwrap(), all);
        assert_eq!(decode(&text.to_uppercase()).unwrap(), all);
    }

    #[test]
    fn refuses_what_is_not_hex() {
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode(""), Some(Vec::new()));
        assert!(!is_lower("0A"));
        assert!(!is_lower("g0"));
    }
}
