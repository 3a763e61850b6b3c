//! Lowercase hexadecimal: the one spelling of bytes as text in the framework (record file names,
//! Redis record keys, PostgreSQL list locations and cursors), so every store writes and reads the
//! same digits. Decoding is the `hex` crate's.

/// `bytes` as lowercase hexadecimal, two digits a byte (`[0x0f, 0xa0]` is `"0fa0"`).
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    // By table into a buffer of the right size: `hex::encode` collects an iterator of `char`s
    // into a growing `String` (about 2,000 instructions and three reallocations for 32 bytes,
    // on every file store call).
    let bytes = bytes.as_ref();
    let mut out = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 0x0f));
    }
    out
}

/// The lowercase hex of the first 16 bytes of `digest`, on the stack: the 32 hex characters of
/// an idempotency key and of a derived key.
pub(crate) fn encode16(digest: &[u8; 32]) -> arrayvec::ArrayString<32> {
    let mut out = arrayvec::ArrayString::new();
    for &b in &digest[..16] {
        // 16 bytes, two digits each: exactly the capacity, so no push fails.
        let _ = out.try_push(digit(b >> 4));
        let _ = out.try_push(digit(b & 0x0f));
    }
    out
}

/// The lowercase hexadecimal digit of `nibble` (0 to 15).
fn digit(nibble: u8) -> char {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    char::from(DIGITS[usize::from(nibble & 0x0f)])
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
        assert_eq!(text, ::hex::encode(&all));
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
