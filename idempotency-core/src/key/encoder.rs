//! [`KeyEncoder`]: an operation, its version, scope and arguments hashed into an
//! [`IdempotencyKey`] and a [`Fingerprint`].

use serde::Serialize;
use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

use super::{
    copy_short, validate_custom_key, validate_operation, DerivedKey, Fingerprint, IdempotencyKey,
    KeyWriter, NormalizeKey, FINGERPRINT_DOMAIN, KEY_DOMAIN,
};
use crate::canonical::{self, CanonicalError, Sink};
use crate::error::{Error, Result};

/// Builds an [`IdempotencyKey`] and [`Fingerprint`] from an operation name, a version, an optional
/// scope, the arguments and an optional caller-supplied key.
///
/// Arguments are appended in call order; each is canonically encoded (see
/// [`canonical`](crate::canonical)).
/// Encoding errors are remembered and reported by [`finish`](Self::finish), so building never
/// fails half-way.
///
/// ```
/// # use idempotency_core as idempotency;
/// use idempotency::KeyEncoder;
/// let mut enc = KeyEncoder::new("billing::charge", 1);
/// enc.scope(&"tenant-42").arg(&1200_u64).arg(&"EUR");
/// let derived = enc.finish()?;
/// assert!(derived.key.as_str().starts_with("billing::charge:"));
/// assert_eq!(derived.key.hash_hex().len(), 32);
/// # Ok::<(), idempotency_core::Error>(())
/// ```
#[derive(Debug)]
pub struct KeyEncoder<'a> {
    operation: &'a str,
    scope: Option<Vec<u8>>,
    /// The key's SHA-256 input, laid out for a call without scope, instance parts or custom key:
    /// the domain tag, the operation name and the version (up to `identity_end`), the "no
    /// scope" marker `0` and the tag `A`, then the canonical encoding of the arguments (from
    /// `args_start` on). Held on the stack unless it outgrows [`KEY_BUF_BYTES`].
    msg: KeyBuf,
    identity_end: usize,
    args_start: usize,
    custom: Option<&'a str>,
    /// The hash of the [`instance`](Self::instance) parts, when any were given (boxed: most
    /// calls have none, and the encoder is moved by value).
    instance: Option<Box<Sha256>>,
    /// The first encoding error: what was encoded, and the serializer's message.
    error: Option<(&'static str, String)>,
}

/// The bytes of a key's SHA-256 input held on the stack: the header (19 bytes of domain tag,
/// the operation name, 7 more) and the arguments of most calls.
const KEY_BUF_BYTES: usize = 128;

/// The buffer [`KeyEncoder`] and [`KeyWriter`] write into: its first [`KEY_BUF_BYTES`] bytes on
/// the stack, all of them on the heap beyond that.
#[derive(Debug, Clone)]
pub(crate) struct KeyBuf {
    /// Bytes used in `inline`; [`KEY_BUF_BYTES`] once the bytes moved to `heap`.
    len: usize,
    inline: [u8; KEY_BUF_BYTES],
    /// Every byte, once they outgrew `inline` (empty until then).
    heap: Vec<u8>,
}

impl KeyBuf {
    pub(crate) fn new() -> Self {
        KeyBuf {
            len: 0,
            inline: [0; KEY_BUF_BYTES],
            heap: Vec::new(),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Moves the bytes to the heap (once) and returns it.
    #[cold]
    fn spilled(&mut self) -> &mut Vec<u8> {
        if self.heap.is_empty() {
            self.heap.reserve(2 * KEY_BUF_BYTES);
            self.heap.extend_from_slice(&self.inline[..self.len]);
            self.len = KEY_BUF_BYTES;
        }
        &mut self.heap
    }
}

impl canonical::Sink for KeyBuf {
    #[inline]
    fn push(&mut self, byte: u8) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => self.spilled().push(byte),
        }
    }

    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        match self.inline.get_mut(self.len..end) {
            Some(dst) => {
                copy_short(dst, bytes);
                self.len = end;
            }
            None => self.spilled().extend_from_slice(bytes),
        }
    }
}

impl<'a> KeyEncoder<'a> {
    /// Starts a key for `operation` at `version`.
    #[inline]
    pub fn new(operation: &'a str, version: u32) -> Self {
        let mut msg = KeyBuf::new();
        msg.extend_from_slice(KEY_DOMAIN);
        canonical::write_len_prefixed(&mut msg, operation.as_bytes());
        msg.extend_from_slice(&version.to_le_bytes());
        let identity_end = msg.len();
        // No scope (a `1` and the scope otherwise), then the arguments (`C` and the custom key
        // otherwise): the layout `finish` hashes in one pass when neither was given.
        msg.push(0);
        msg.push(b'A');
        let args_start = msg.len();
        KeyEncoder {
            operation,
            scope: None,
            msg,
            identity_end,
            args_start,
            custom: None,
            instance: None,
            error: None,
        }
    }

    /// Adds `part` to the operation's identity: which instance of the operation this is, when
    /// one operation name covers several distinct functions. `#[idempotent]` passes the
    /// instantiated path of a generic function or method (`<u32>` for `echo::<u32>`,
    /// `app::Repo<app::User>::load`), so that two instantiations never share a record.
    ///
    /// Each part is hashed length-prefixed, in call order, into the key's identity (next to the
    /// operation name, the version and the scope), so it separates derived keys and
    /// caller-supplied keys alike; it also enters the [`Fingerprint`]. Parts never appear in the
    /// key in clear. Without any part, the key and fingerprint are exactly those derived without
    /// this method, so keys that never used it keep their records.
    pub fn instance(&mut self, part: &str) -> &mut Self {
        let h = self.instance.get_or_insert_with(Default::default);
        update_len_prefixed(h, part.as_bytes());
        self
    }

    fn remember(&mut self, what: &'static str, r: std::result::Result<(), CanonicalError>) {
        if let Err(e) = r {
            if self.error.is_none() {
                self.error = Some((what, e.0));
            }
        }
    }

    /// Sets the scope (tenant, org, user): keys of different scopes never collide, and a caller in
    /// one scope can never read another scope's record (SEMANTICS.md scenario 19).
    pub fn scope<S: Serialize + ?Sized>(&mut self, scope: &S) -> &mut Self {
        let mut buf = Vec::with_capacity(32);
        let r = canonical::encode_into(&mut buf, scope);
        self.remember("the scope", r);
        self.scope = Some(buf);
        self
    }

    /// Appends one argument, encoded through its `Serialize` impl.
    pub fn arg<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        let r = canonical::encode_into(&mut self.msg, value);
        self.remember("an argument", r);
        self
    }

    /// Appends one argument through its [`NormalizeKey`] impl.
    pub fn arg_normalized<T: NormalizeKey + ?Sized>(&mut self, value: &T) -> &mut Self {
        let r = value.normalize_key(&mut self.writer());
        self.remember("an argument", r);
        self
    }

    /// Direct access to the argument writer, for generated code.
    #[doc(hidden)]
    pub fn writer(&mut self) -> KeyWriter<'_> {
        KeyWriter::new(&mut self.msg)
    }

    /// Records an encoding error raised through [`writer`](Self::writer).
    #[doc(hidden)]
    pub fn record_error(&mut self, r: std::result::Result<(), CanonicalError>) {
        self.remember("an argument", r);
    }

    /// Uses a caller-supplied idempotency key (Stripe style): the key then identifies the
    /// operation, and the arguments only form the fingerprint. The key is validated by
    /// [`finish`](Self::finish) and only ever enters the store hashed.
    pub fn custom_key(&mut self, key: &'a str) -> &mut Self {
        self.custom = Some(key);
        self
    }

    /// Hashes everything into the key and fingerprint.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a bad operation name or custom key (see
    /// [`validate_custom_key`]); [`Error::Encode`] when an argument or the scope failed to
    /// serialize.
    #[inline]
    pub fn finish(mut self) -> Result<DerivedKey> {
        // In place: the encoder is a few hundred bytes, not worth moving.
        self.finish_in_place()
    }

    /// As [`finish`](Self::finish), in place, for a caller that holds the encoder where moving
    /// it out would copy its few hundred bytes (the `#[idempotent]` expansion). The encoder is
    /// spent afterwards: finishing it again is [`Error::Encode`], never a second key from the
    /// remaining state.
    ///
    /// # Errors
    /// As [`finish`](Self::finish); [`Error::Encode`] when the encoder was finished already.
    #[doc(hidden)]
    #[inline]
    pub fn finish_by_ref(&mut self) -> Result<DerivedKey> {
        let derived = self.finish_in_place();
        // No allocation: the message says it all.
        self.error = Some((
            "a key with a KeyEncoder that was finished already",
            String::new(),
        ));
        derived
    }

    fn finish_in_place(&mut self) -> Result<DerivedKey> {
        if let Some((what, message)) = self.error.take() {
            return Err(Error::Encode { what, message });
        }
        validate_operation(self.operation)?;
        if self.scope.is_none() && self.instance.is_none() && self.custom.is_none() {
            // The message is laid out already: one pass, no copy.
            let digest = sha256(self.msg.as_slice());
            return Ok(self.derived(&digest, Fingerprint(digest)));
        }
        let instance: Option<[u8; 32]> = self.instance.take().map(|i| i.finalize().into());
        let msg = self.msg.as_slice();
        let args = &msg[self.args_start..];
        let mut h = Sha256::new();
        h.update(&msg[..self.identity_end]);
        match &self.scope {
            Some(s) => {
                h.update([1]);
                update_len_prefixed(&mut h, s);
            }
            None => h.update([0]),
        }
        if let Some(i) = &instance {
            // After the scope comes `C` or `A` otherwise: the tag keeps the two apart.
            h.update([b'I']);
            h.update(i);
        }
        let fingerprint = match self.custom {
            Some(custom) => {
                validate_custom_key(custom)?;
                h.update([b'C']);
                update_len_prefixed(&mut h, custom.as_bytes());
                let mut f = Sha256::new();
                match &instance {
                    None => f.update(FINGERPRINT_DOMAIN),
                    Some(_) => f.update(FINGERPRINT_INSTANCE_DOMAIN),
                }
                // The operation name and version, as in the key.
                f.update(&msg[KEY_DOMAIN.len()..self.identity_end]);
                if let Some(i) = &instance {
                    f.update(i);
                }
                f.update(args);
                Some(Fingerprint(f.finalize().into()))
            }
            None => {
                h.update([b'A']);
                h.update(args);
                None
            }
        };
        let digest: [u8; 32] = h.finalize().into();
        // A derived key's fingerprint is its own digest: same key, same inputs.
        let fingerprint = fingerprint.unwrap_or(Fingerprint(digest));
        Ok(self.derived(&digest, fingerprint))
    }

    /// The key `operation:hex` of `digest` (its first 16 bytes, in lowercase hex).
    fn derived(&self, digest: &[u8; 32], fingerprint: Fingerprint) -> DerivedKey {
        let hex = crate::hex::encode16(digest);
        DerivedKey {
            key: IdempotencyKey::from_parts(&[self.operation, ":", &hex]),
            fingerprint,
        }
    }
}

/// The fingerprint's domain tag when [`KeyEncoder::instance`] parts were given (a distinct tag,
/// so that no argument encoding can imitate the instance digest).
/// Its `v1` is frozen on purpose: the tag only has to differ from the plain fingerprint domain,
/// and changing its bytes would change every generic function's fingerprints (key format 2
/// adopted it as it was).
const FINGERPRINT_INSTANCE_DOMAIN: &[u8] = b"idempotency/fingerprint/v1/instance\0";

/// Hashes `bytes` prefixed by their length as a varint (the canonical encoding's length
/// prefix), without allocating.
fn update_len_prefixed(h: &mut Sha256, bytes: &[u8]) {
    let mut len = [0_u8; 10];
    let mut n = bytes.len() as u64;
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            len[i] = byte;
            i += 1;
            break;
        }
        len[i] = byte | 0x80;
        i += 1;
    }
    h.update(&len[..i]);
    h.update(bytes);
}

/// SHA-256's initial hash value (FIPS 180-4, section 5.3.3).
const SHA256_H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The SHA-256 of `msg` in one pass: `sha2`'s compression function over the message's blocks,
/// then over the padded tail (FIPS 180-4, section 5.1.1: a `1` bit, zeros, the length in bits).
/// The same digest as `Sha256::digest`, without its incremental buffer (a fixed cost of about
/// one block's compression per hash; tested against it for every length up to four blocks).
pub(super) fn sha256(msg: &[u8]) -> [u8; 32] {
    let mut state = SHA256_H0;
    let full = msg.len() - msg.len() % 64;
    for block in msg[..full]
        .chunks_exact(64)
        .filter_map(|c| <&[u8; 64]>::try_from(c).ok())
    {
        compress256(&mut state, std::slice::from_ref(block));
    }
    let rest = &msg[full..];
    let mut tail = [0_u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    let bits = (msg.len() as u64).wrapping_mul(8);
    tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
    for block in tail[..tail_len]
        .chunks_exact(64)
        .filter_map(|c| <&[u8; 64]>::try_from(c).ok())
    {
        compress256(&mut state, std::slice::from_ref(block));
    }
    let mut out = [0_u8; 32];
    for (o, word) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_sha256_is_sha256() {
        let data: Vec<u8> = (0..=255_u8).cycle().take(300).collect();
        for len in 0..=data.len() {
            let expected: [u8; 32] = Sha256::digest(&data[..len]).into();
            assert_eq!(sha256(&data[..len]), expected, "length {len}");
        }
    }

    #[test]
    fn finishing_by_ref_derives_the_same_key_once() {
        let encoder = |custom: bool| {
            let mut e = KeyEncoder::new("a::f", 1);
            e.instance("tenant-1").arg(&(7_u64, "x"));
            if custom {
                e.custom_key("order-1");
            }
            e
        };
        for custom in [false, true] {
            let by_value = encoder(custom).finish();
            let mut e = encoder(custom);
            let by_ref = e.finish_by_ref();
            assert!(by_ref.is_ok());
            assert_eq!(
                by_ref.ok().map(|d| (d.key, d.fingerprint)),
                by_value.ok().map(|d| (d.key, d.fingerprint))
            );
            let again = e.finish_by_ref().map(|d| d.key);
            assert!(matches!(again, Err(Error::Encode { .. })), "{again:?}");
        }
    }
}
