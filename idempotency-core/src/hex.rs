//! Lowercase hexadecimal: the one spelling of bytes as text in the framework (record file names,
//! Redis record keys, PostgreSQL list locations and cursors), so every store writes and reads the
//! same digits. Decoding is the `hex` crate's.

/// `bytes` as lowercase hexadecimal, two digits a byte (`[0x0f, 0xa0]` is `"0fa0"`).
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut out = String::with_capacity(2 * bytes.len());
    push(&mut out, bytes);
    out
}

/// Appends `bytes` to `out` as lowercase hexadecimal, two digits a byte, as [`encode`] spells
/// them: for a caller building a longer string (a store's record key) without a second
/// allocation.
pub fn push(out: &mut String, bytes: &[u8]) {
    // By table, 32 bytes at a time through a stack buffer, then one `push_str`: pushing each
    // digit as a `char` (what `hex::encode` does, through a growing `String`) costs several
    // times more, on every Redis and file store call.
    let mut buf = [0_u8; 64];
    for chunk in bytes.chunks(32) {
        let digits = &mut buf[..2 * chunk.len()];
        fill(digits, chunk);
        push_ascii(out, digits);
    }
}

/// The lowercase hex of the first 16 bytes of `digest`, on the stack: the 32 hex characters of
/// an idempotency key and of a derived key.
pub(crate) fn encode16(digest: &[u8; 32]) -> arrayvec::ArrayString<32> {
    // Digit by digit into the stack string: no UTF-8 check to pay, unlike [`push`]'s buffer
    // (this runs on every key derivation).
    let mut out = arrayvec::ArrayString::new();
    for &b in &digest[..16] {
        // 16 bytes, two digits each: exactly the capacity, so no push fails.
        let _ = out.try_push(char::from(DIGITS[usize::from(b >> 4)]));
        let _ = out.try_push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes the two digits of each byte of `bytes` into `digits` (twice as long).
fn fill(digits: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in digits.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// Appends ASCII `digits` to `out`.
fn push_ascii(out: &mut String, digits: &[u8]) {
    match std::str::from_utf8(digits) {
        Ok(text) => out.push_str(text),
        // Unreachable (only ASCII digits are written); spelled byte by byte all the same.
        Err(_) => out.extend(digits.iter().map(|&d| char::from(d))),
    }
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
        // Every length across the 32-byte chunks, appended after what a string holds.
        for len in 0..=all.len() {
            let mut out = String::from("p:");
            push(&mut out, &all[..len]);
            assert_eq!(
                out,
                format!("p:{}", ::hex::encode(&all[..len])),
                "length {len}"
            );
        }
        let mut digest = [0_u8; 32];
        digest
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = 0xf0 ^ i as u8);
        assert_eq!(encode16(&digest).as_str(), ::hex::encode(&digest[..16]));
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
