//! The Lua scripts behind the fenced state transitions, and the value layout they share.
//!
//! Each record is **one** Redis string, at `prefix + "{" + hex(SHA-256(idempotency key)) + "}"`,
//! so every command touches exactly one key and stays single-slot in Redis Cluster. Its value
//! is a fixed-width *meta* part the scripts compare with `string.sub`, then the record's *head*:
//!
//! | bytes (0-based) | content |
//! |---|---|
//! | 0..5 | magic: `IDR`, the record format version, `r` |
//! | 5 | status: `P` pending, `S` success, `F` failed |
//! | 6..23 | the holder's execution id, postcard-encoded (17 bytes) |
//! | 23..39 | the fencing token, 16 decimal digits |
//! | 39..55 | `created`: when the holder claimed the key, ms since the Unix epoch (Redis clock), 16 digits; 0 = not written yet (see below) |
//! | 55..71 | `until`: the lease deadline (`P`) or the end of retention (`S`/`F`), ms, 16 digits; 0 = not written yet |
//! | 71..87 | the lease, ms, 16 digits |
//! | 87..103 | the fence retention, ms, 16 digits |
//! | 103..135 | the fingerprint, postcard-encoded (32 bytes) |
//! | 135.. | the head: everything [`Record::encode`] writes before `created_at` (header, key, status, result, error) |
//!
//! A reader rebuilds exactly `Record::encode()` from these parts (a unit test pins the splice
//! to [`Record::encode`]) and decodes it.
//!
//! **The claim fast path** is not a script: `TIME` then `SET key value NX PX (lease + retention)
//! GET`, pipelined in one round trip. On an absent key it writes a `P` value whose `created` and
//! `until` are 0: its lease deadline is then, by definition, the key's expiry time minus the
//! stored retention (`PEXPIRETIME - retention`, Redis's clock, set by the `SET` itself), and
//! `created` is that deadline minus the stored lease. Scripts that read a `P` value resolve these
//! with `PEXPIRETIME` and write them explicitly whenever they rewrite it. On an existing key the
//! `SET` writes nothing and returns the value: a finished one is live (its key expires natively at
//! `until`), and it is replayed with `TIME` as Redis's time; a pending one (own retried claim,
//! conflict or expired lease) goes to the claim script.
//!
//! Time in the scripts is always `redis.call('TIME')` (milliseconds), never the caller's clock
//! (SEMANTICS.md scenario 22). A finished record's key expires at its `until` (`SET ... PXAT`,
//! in the same command as the write, so a record never loses its expiry, scenario 21); a pending
//! record's key at its lease deadline plus the retention, so the fencing token survives a
//! crashed holder's lease (scenario 10).
//!
//! A script runs atomically (Redis executes one script at a time), so each transition is a
//! compare-and-set. Scripts are sent as `EVALSHA` with the source as fallback on `NOSCRIPT`
//! ([`redis::Script`]), so a call is one round trip once the script is cached.
//!
//! [`Record::encode`]: idempotency_core::Record::encode

use std::sync::LazyLock;

use idempotency_core::{Fingerprint, IdempotencyKey, Owner, Record, RecordError, RecordStatus};
use redis::Script;
use serde::Serialize;
use uuid::Uuid;

/// Helpers shared by the scripts: the Redis clock in milliseconds, the fixed-width number
/// format, and the times of a stored value.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function n16(n)
  return string.format('%016d', n)
end
-- whether v (which starts with the magic) has this layout: long enough, and its token and
-- times (bytes 24..103) are decimal digits; other values are returned for the client to
-- report as corrupt, never computed with (a Lua error would read as "store unavailable")
local function well_formed(v)
  return #v >= 135 and string.find(string.sub(v, 24, 103), '^%d+$') ~= nil
end
-- created and until of a well-formed value at key k (resolving the fast path's zeros)
local function times(k, v)
  local created, until_ms = tonumber(string.sub(v, 40, 55)), tonumber(string.sub(v, 56, 71))
  if until_ms == 0 then
    until_ms = redis.call('PEXPIRETIME', k) - tonumber(string.sub(v, 88, 103))
  end
  if created == 0 then created = until_ms - tonumber(string.sub(v, 72, 87)) end
  return created, until_ms
end
"#;

/// **Get-or-claim**, the slow path (and the cache bypass), one round trip.
///
/// - `KEYS[1]`: the record key.
/// - `ARGV[1]`: the magic; `ARGV[2]`: the caller's execution id (postcard); `ARGV[3]`: the
///   fingerprint (postcard); `ARGV[4]`: the lease, ms (16 digits); `ARGV[5]`: `1` to replace a
///   live finished record (cache bypass), else `0`; `ARGV[6]`: the fence retention, ms (16
///   digits); `ARGV[7]`: the head of a `Pending` record.
///
/// A value that is not a string or lacks this build's magic is returned untouched (the caller
/// decodes it and fails closed: corrupt or incompatible). A live record (`now < until`) is
/// returned untouched, except a pending one holding the caller's own execution id (a retried
/// claim, scenario 5: answered as acquired) and a finished one when `ARGV[5]` is `1`.
/// Otherwise the key is claimed: token 1 on a fresh key, the old token plus one on a takeover
/// (compare-and-set on the value observed in this same atomic step), `until = now + lease`,
/// key expiry `until + retention`.
///
/// Returns `{0, now, value, created, until}` (existing record; times only for a well-formed
/// value), `{1, now, until, takeover, token}` (claimed) or `{2, now, until, token}` (the
/// caller's own live claim). `{3, now}`: the key holds another Redis type.
const CLAIM: &str = r#"
local now = now_ms()
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' then return {3, now} end
local token, takeover = 1, 0
if cur then
  if string.sub(cur, 1, 5) ~= ARGV[1] or not well_formed(cur) then return {0, now, cur} end
  local created, until_ms = times(KEYS[1], cur)
  local status, old = string.sub(cur, 6, 6), tonumber(string.sub(cur, 24, 39))
  if now < until_ms then
    if status == 'P' and string.sub(cur, 7, 23) == ARGV[2] then
      return {2, now, until_ms, old}
    end
    if ARGV[5] ~= '1' or status == 'P' then return {0, now, cur, created, until_ms} end
  end
  token, takeover = old + 1, 1
end
local until_ms = now + tonumber(ARGV[4])
redis.call('SET', KEYS[1], ARGV[1] .. 'P' .. ARGV[2] .. n16(token) .. n16(now) .. n16(until_ms)
  .. ARGV[4] .. ARGV[6] .. ARGV[3] .. ARGV[7], 'PXAT', until_ms + tonumber(ARGV[6]))
return {1, now, until_ms, takeover, token}
"#;

/// **Complete / fail**, fenced, and idempotent for the holder.
///
/// - `KEYS[1]`: the record key.
/// - `ARGV[1]`: the magic followed by `P` (the value it must hold); `ARGV[2]`: the holder's
///   execution id (postcard) followed by its fencing token (16 digits); `ARGV[3]`: the new
///   status (`S` or `F`); `ARGV[4]`: the TTL, ms; `ARGV[5]`: the head of the finished record.
///
/// Applied only if the value is pending and carries exactly this owner and token (a write
/// after the lease ended still succeeds while nobody has taken over and the key exists). It
/// writes the finished value with `until = now + ttl` and the key's expiry `PXAT until` in one
/// command, so the finished record always has `0 < PTTL <= ttl`.
///
/// A value already finished with this status, this owner and token, and this exact head is the
/// same finish applied before (a retry whose first reply was lost, SEMANTICS.md scenario 5): it
/// is left as it is and answered as applied, with its stored times. Any other value is refused,
/// in particular a newer holder's record even when its head is identical.
///
/// Returns `{0}` (refused: lease lost) or `{1, now, created, until, fingerprint}`.
const FINISH: &str = r#"
local cur = redis.pcall('GET', KEYS[1])
if type(cur) ~= 'string' or not well_formed(cur)
  or string.sub(cur, 1, 5) ~= string.sub(ARGV[1], 1, 5) or string.sub(cur, 7, 39) ~= ARGV[2] then
  return {0}
end
local status = string.sub(cur, 6, 6)
if status == ARGV[3] and string.sub(cur, 136) == ARGV[5] then
  local created, until_ms = times(KEYS[1], cur)
  return {1, now_ms(), created, until_ms, string.sub(cur, 104, 135)}
end
if status ~= 'P' then return {0} end
local now = now_ms()
local created = times(KEYS[1], cur)
local until_ms = now + tonumber(ARGV[4])
local fp = string.sub(cur, 104, 135)
redis.call('SET', KEYS[1], string.sub(cur, 1, 5) .. ARGV[3] .. ARGV[2] .. n16(created)
  .. n16(until_ms) .. string.sub(cur, 72, 103) .. fp .. ARGV[5], 'PXAT', until_ms)
return {1, now, created, until_ms, fp}
"#;

/// **Release**, owner-checked compare-and-delete.
///
/// - `KEYS[1]`: the record key. `ARGV[1]`: the magic followed by `P`; `ARGV[2]`: the holder's
///   execution id (postcard) followed by its fencing token (16 digits).
///
/// Deletes the key iff it is pending with this owner and token; a stale holder's release
/// deletes nothing (scenario 13). Returns 1 (deleted), 0 (no key: nothing to delete) or -1
/// (the key holds something else: another holder's record, a finished record, another type),
/// so a retried release can tell "already released" from "fenced out".
const RELEASE: &str = r#"
local cur = redis.pcall('GET', KEYS[1])
if not cur then return 0 end
if type(cur) == 'string' and string.sub(cur, 1, 6) == ARGV[1]
  and string.sub(cur, 7, 39) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return -1
"#;

/// **Renew**: extend the lease iff the owner matches (scenario 14). Applying it again (a retry
/// whose first reply was lost) extends the lease again from the retry's `now`.
///
/// - `KEYS[1]`: the record key. `ARGV[1]`: the magic followed by `P`; `ARGV[2]`: the holder's
///   execution id (postcard) followed by its fencing token (16 digits); `ARGV[3]`: the new
///   lease, ms (from now, Redis clock; 16 digits); `ARGV[4]`: the fence retention, ms (16
///   digits).
///
/// Returns `{0, now}` (lease lost) or `{1, now, until}` with the new lease deadline; the key's
/// expiry moves to `until + retention`.
const RENEW: &str = r#"
local now = now_ms()
local cur = redis.pcall('GET', KEYS[1])
if type(cur) ~= 'string' or not well_formed(cur) or string.sub(cur, 1, 6) ~= ARGV[1]
  or string.sub(cur, 7, 39) ~= ARGV[2] then
  return {0, now}
end
local created = times(KEYS[1], cur)
local until_ms = now + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.sub(cur, 1, 39) .. n16(created) .. n16(until_ms) .. ARGV[3]
  .. ARGV[4] .. string.sub(cur, 104), 'PXAT', until_ms + tonumber(ARGV[4]))
return {1, now, until_ms}
"#;

/// **Get**: the value with Redis's time and its resolved times, read atomically.
///
/// - `KEYS[1]`: the record key; `ARGV[1]`: the magic. Returns `{now}` (no record),
///   `{now, value}` (not in this layout) or `{now, value, created, until}`; `{now, false, 1}`
///   when the key holds another Redis type.
const GET: &str = r#"
local now = now_ms()
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' then return {now, false, 1} end
if not cur then return {now} end
if string.sub(cur, 1, 5) ~= ARGV[1] or not well_formed(cur) then return {now, cur} end
local created, until_ms = times(KEYS[1], cur)
return {now, cur, created, until_ms}
"#;

/// **Inspect** (listing): what each of `KEYS` holds, with Redis's time.
///
/// - `ARGV[1]`: the magic every value of this store's layout starts with.
///
/// Returns `{now, item, ...}`, one item per key: `{0, ''}` gone; `{1, value, created, until}`
/// a value of this store's layout with its resolved times (as in `GET`); `{1, value}` a string
/// in another layout; `{3, type}` another Redis type. Only for a single server (the keys may
/// live in different Cluster slots).
const INSPECT: &str = r#"
local out = {now_ms()}
for i, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then
    out[i + 1] = {0, ''}
  elseif t ~= 'string' then
    out[i + 1] = {3, t}
  else
    local v = redis.call('GET', k)
    if string.sub(v, 1, 5) == ARGV[1] and well_formed(v) then
      local created, until_ms = times(k, v)
      out[i + 1] = {1, v, created, until_ms}
    else
      out[i + 1] = {1, v}
    end
  end
end
return out
"#;

/// **Remove unreadable**: compare-and-delete on content.
///
/// - `KEYS[1]`: the record key; `ARGV[1]`: the code `INSPECT` returned for it (`1` or `3`);
///   `ARGV[2]`: the value it returned (the string value, or the type name).
///
/// Deletes the key iff it holds exactly that now, so a key rewritten (or deleted and claimed
/// again) since it was judged unreadable is left alone. Returns 1 deleted, 0 not.
const REMOVE_UNREADABLE: &str = r#"
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return 0 end
local code, value
if t ~= 'string' then
  code, value = '3', t
else
  code, value = '1', redis.call('GET', KEYS[1])
end
if code == ARGV[1] and value == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

pub(crate) static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(CLAIM));
pub(crate) static FINISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(FINISH));
pub(crate) static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RELEASE));
pub(crate) static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RENEW));
pub(crate) static GET_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(GET));
pub(crate) static INSPECT_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(INSPECT));
pub(crate) static REMOVE_UNREADABLE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| script(REMOVE_UNREADABLE));

/// Length of the fixed-width meta part of a value.
pub(crate) const META_LEN: usize = 135;

/// The magic every value starts with: `IDR`, the record format version, `r`.
pub(crate) fn magic() -> [u8; 5] {
    [b'I', b'D', b'R', Record::FORMAT_VERSION, b'r']
}

/// The magic followed by `P`: the prefix of every pending value.
pub(crate) fn magic_pending() -> [u8; 6] {
    [b'I', b'D', b'R', Record::FORMAT_VERSION, b'r', b'P']
}

/// `n` as the 16 decimal digits of the value layout (saturating at 16 nines).
pub(crate) fn n16(n: u64) -> [u8; 16] {
    let mut n = n.min(9_999_999_999_999_999);
    let mut out = [b'0'; 16];
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

fn parse16(b: &[u8]) -> Option<u64> {
    if b.len() != 16 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The holder's execution id (postcard) followed by its fencing token (16 digits): the
/// compare-and-set operand of the fenced scripts.
pub(crate) fn owner_token(owner: &Owner) -> Vec<u8> {
    let mut out = owner_id(&owner.execution_id);
    out.extend_from_slice(&n16(owner.fencing_token));
    out
}

/// The value the claim fast path writes on an absent key: pending, token 1, `created` and
/// `until` 0 (resolved from the key's expiry, see the module documentation).
pub(crate) fn fast_pending_value(
    key: &IdempotencyKey,
    execution_id: &Uuid,
    fp: &Fingerprint,
    lease_ms: u64,
    retention_ms: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(META_LEN + 8 + key.as_str().len());
    out.extend_from_slice(&magic_pending());
    out.extend(owner_id(execution_id));
    out.extend_from_slice(&n16(1));
    out.extend_from_slice(&n16(0));
    out.extend_from_slice(&n16(0));
    out.extend_from_slice(&n16(lease_ms));
    out.extend_from_slice(&n16(retention_ms));
    out.extend(fingerprint(fp));
    head_into(&mut out, key, RecordStatus::Pending, &[], None);
    out
}

/// A stored value, parsed: the meta fields the client needs and the record rebuilt from it.
/// `created`/`until` come from the value when written, else from the script that resolved them.
/// `None` when the value is not in this layout (the caller then reports it through
/// [`Record::decode`]).
pub(crate) fn record_bytes(value: &[u8], times: Option<(u64, u64)>) -> Option<Vec<u8>> {
    if value.len() < META_LEN || value[..5] != magic() {
        return None;
    }
    let status = value[5];
    let owner = &value[6..23];
    let token = parse16(&value[23..39])?;
    let (created, until) = match times {
        Some(t) => t,
        None => (parse16(&value[39..55])?, parse16(&value[55..71])?),
    };
    if until == 0 {
        return None;
    }
    let fp = &value[103..135];
    let head = &value[META_LEN..];
    let mut out = Vec::with_capacity(head.len() + 80);
    out.extend_from_slice(head);
    out.extend(postcard(&created));
    out.extend(postcard(&until));
    out.extend_from_slice(owner);
    out.extend(postcard(&token));
    match status {
        b'P' => out.extend(postcard(&Some(until))),
        b'S' | b'F' => out.push(0),
        _ => return None,
    }
    out.extend_from_slice(fp);
    Some(out)
}

/// The stored status byte of a value (`P`, `S`, `F`), if it is in this layout.
pub(crate) fn status_byte(value: &[u8]) -> Option<u8> {
    (value.len() >= META_LEN && value[..5] == magic()).then(|| value[5])
}

/// The 4-byte header [`Record::encode`] writes: `IDR` and the format version.
pub(crate) fn header() -> [u8; 4] {
    [b'I', b'D', b'R', Record::FORMAT_VERSION]
}

fn postcard<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Encoding these plain types into a Vec cannot fail (no maps, no unsupported types); an
    // empty vector would only make the script's splice undecodable, which readers report as a
    // corrupt record rather than a panic.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// The head of a record: everything [`Record::encode`] writes before `created_at`.
pub(crate) fn head(
    key: &IdempotencyKey,
    status: RecordStatus,
    result: &[u8],
    error: Option<&RecordError>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key.as_str().len() + result.len());
    head_into(&mut out, key, status, result, error);
    out
}

fn head_into(
    out: &mut Vec<u8>,
    key: &IdempotencyKey,
    status: RecordStatus,
    result: &[u8],
    error: Option<&RecordError>,
) {
    out.extend_from_slice(&header());
    // Encoding these plain types cannot fail; see `postcard`.
    if let Ok(v) = postcard::to_extend(&(key, status, result, error), std::mem::take(out)) {
        *out = v;
    }
}

/// The postcard encoding of an execution id, as stored in the `owner` field.
pub(crate) fn owner_id(id: &Uuid) -> Vec<u8> {
    postcard(id)
}

/// The postcard encoding of a fingerprint, as stored in the `fp` field.
pub(crate) fn fingerprint(fp: &Fingerprint) -> Vec<u8> {
    postcard(fp)
}

/// The status byte of a finished status in the value layout (`S` or `F`).
pub(crate) fn status_byte_of(status: RecordStatus) -> u8 {
    match status {
        RecordStatus::Success => b'S',
        RecordStatus::Failed => b'F',
        RecordStatus::Pending | RecordStatus::Expired => b'P',
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idempotency_core::Timestamp;
    use std::time::Duration;

    fn sample() -> Record {
        let key = IdempotencyKey::derive("redis::splice", 1, &"x")
            .unwrap()
            .key;
        let owner = Owner {
            execution_id: Uuid::new_v4(),
            fencing_token: 300,
        };
        Record::pending(
            key,
            Fingerprint([7; 32]),
            owner,
            Timestamp(1_700_000_000_123),
            Duration::from_millis(300),
        )
    }

    /// The value the scripts write for `r` (explicit times), built the way they build it.
    fn value_of(r: &Record) -> Vec<u8> {
        let mut v = magic().to_vec();
        v.push(match r.status {
            RecordStatus::Pending => b'P',
            s => status_byte_of(s),
        });
        v.extend(owner_token(&r.owner));
        v.extend(n16(r.created_at.0));
        v.extend(n16(r.expires_at.0));
        v.extend(n16(300));
        v.extend(n16(3_600_000));
        v.extend(fingerprint(&r.fingerprint));
        v.extend(head(&r.key, r.status, &r.result, r.error.as_ref()));
        v
    }

    #[test]
    fn values_rebuild_record_encode_for_every_status() {
        let pending = sample();
        let mut success = pending.clone();
        success.result = vec![1, 2, 3, 200];
        success.finish(
            RecordStatus::Success,
            Timestamp(1_700_000_000_200),
            Duration::from_secs(3600),
        );
        let mut failed = pending.clone();
        failed.error = Some(RecordError::NotRetained("too large".into()));
        failed.finish(
            RecordStatus::Failed,
            Timestamp(1_700_000_000_200),
            Duration::from_secs(300),
        );
        for r in [pending, success, failed] {
            let v = value_of(&r);
            assert_eq!(&v[..META_LEN - 32], &v[..103]);
            let bytes = record_bytes(&v, None).unwrap();
            assert_eq!(bytes, r.encode().unwrap(), "{:?}", r.status);
            assert_eq!(Record::decode(&bytes, "test").unwrap(), r);
        }
    }

    #[test]
    fn the_fast_path_value_resolves_to_the_pending_record() {
        let r = sample();
        let v = fast_pending_value(
            &r.key,
            &r.owner.execution_id,
            &r.fingerprint,
            300,
            3_600_000,
        );
        // Unresolved times are not a record.
        assert_eq!(record_bytes(&v, None), None);
        let mut r1 = r.clone();
        r1.owner.fencing_token = 1;
        let bytes = record_bytes(&v, Some((r.created_at.0, r.expires_at.0))).unwrap();
        assert_eq!(bytes, r1.encode().unwrap());
        assert_eq!(status_byte(&v), Some(b'P'));
    }

    #[test]
    fn fixed_width_fields() {
        assert_eq!(owner_id(&Uuid::new_v4()).len(), 17);
        assert_eq!(fingerprint(&Fingerprint([1; 32])).len(), 32);
        assert_eq!(&n16(1_700_000_000_123), b"0001700000000123");
        assert_eq!(parse16(&n16(42)), Some(42));
        assert_eq!(parse16(b"00000000000000x1"), None);
        assert_eq!(magic_pending()[..5], magic());
    }
}
