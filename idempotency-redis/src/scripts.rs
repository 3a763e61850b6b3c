//! The Lua scripts behind every state transition, and the record-encoding pieces they splice.
//!
//! Each record is **one** Redis hash, `prefix + "{" + hex(SHA-256(idempotency key)) + "}"`, so
//! every script touches exactly one key and stays single-slot in Redis Cluster. Its fields:
//!
//! | field | content |
//! |---|---|
//! | `rec` | the record, exactly as [`Record::encode`] writes it (`IDR` + format version + postcard) |
//! | `status` | `pending`, `success` or `failed` |
//! | `owner` | the holder's execution id, postcard-encoded (17 bytes) |
//! | `token` | the fencing token, decimal |
//! | `created` | when the holder claimed the key, ms since the Unix epoch (Redis clock) |
//! | `until` | the lease deadline (`pending`) or the end of retention (`success`/`failed`), ms |
//! | `fp` | the fingerprint of the claiming call's inputs, postcard-encoded (32 bytes) |
//!
//! The plain fields are what the scripts compare; `rec` is what readers decode. The scripts
//! build `rec` themselves from a *head* sent by the client (header, key, status, result, error:
//! everything before the first timestamp) and the fields they decide on Redis's clock, so the
//! stored bytes are always exactly `Record::encode()` of the record the fields describe
//! (a unit test checks the splice against [`Record::encode`]).
//!
//! Time is always `redis.call('TIME')` inside the script (milliseconds), never the caller's
//! clock (SEMANTICS.md scenario 22). Expiry is native: a pending record's key expires at its
//! lease deadline plus the *fence retention* (so the fencing token survives a crashed holder's
//! lease, scenario 10), a finished record's key at the end of its TTL (`PEXPIREAT`, set in the
//! same script as the write, so a record never loses its expiry, scenario 21).
//!
//! A script runs atomically (Redis executes one script at a time), so each transition is a
//! compare-and-set. Scripts are sent as `EVALSHA` with the source as fallback on `NOSCRIPT`
//! ([`redis::Script`]), so a call is one round trip once the script is cached.
//!
//! [`Record::encode`]: idempotency_core::Record::encode

use std::sync::LazyLock;

#[cfg(test)]
use idempotency_core::Owner;
use idempotency_core::{Fingerprint, IdempotencyKey, Record, RecordError, RecordStatus};
use redis::Script;
use serde::Serialize;
use uuid::Uuid;

/// Helpers shared by every script: the Redis clock in milliseconds, integer formatting,
/// postcard's unsigned varint (LEB128), and the record splice.
const PRELUDE: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(n)
  return string.format('%d', n)
end
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end
-- Record::encode() = head .. created_at .. expires_at .. owner id .. fencing token
--                    .. lease_until (Option) .. fingerprint
local function record(head, created, expires, owner, token, lease_until, fp)
  local lease = '\0'
  if lease_until then lease = '\1' .. varint(lease_until) end
  return head .. varint(created) .. varint(expires) .. owner .. varint(token) .. lease .. fp
end
"#;

/// **Get-or-claim**, one round trip.
///
/// - `KEYS[1]`: the record key.
/// - `ARGV[1]`: the head of a `Pending` record; `ARGV[2]`: the caller's execution id
///   (postcard); `ARGV[3]`: the fingerprint (postcard); `ARGV[4]`: the lease, ms;
///   `ARGV[5]`: `1` to replace a live finished record (cache bypass), else `0`;
///   `ARGV[6]`: the fence retention, ms; `ARGV[7]`: the 4-byte record header this build writes.
///
/// If a record exists whose `rec` lacks this build's header, or whose fields are missing, it is
/// returned untouched (the caller decodes it and fails closed: corrupt or incompatible). A live
/// record (`now < until`) is returned untouched, except a `pending` one holding the caller's
/// own execution id (a retried claim, scenario 5: answered as acquired) and a finished one
/// when `ARGV[5]` is `1`. Otherwise the key is claimed: token 1 on a fresh key, the old token plus one
/// on a takeover (compare-and-set on the owner and token observed in this same atomic
/// step), `until = now + lease`, key expiry `until + fence retention`.
///
/// Returns `{0, now, rec}` (existing record), `{1, now, rec, takeover}` (claimed; `takeover`
/// is 0 or 1) or `{2, now, rec}` (the caller's own live claim).
const CLAIM: &str = r#"
local now = now_ms()
local cur = redis.call('HMGET', KEYS[1], 'rec', 'status', 'owner', 'token', 'until')
local token, takeover = 1, 0
if cur[1] then
  local status, old, until_ms = cur[2], tonumber(cur[4]), tonumber(cur[5])
  if string.sub(cur[1], 1, 4) ~= ARGV[7] or not status or not old or not until_ms then
    return {0, now, cur[1]}
  end
  if now < until_ms then
    if status == 'pending' and cur[3] == ARGV[2] then
      return {2, now, cur[1]}
    end
    if ARGV[5] ~= '1' or status == 'pending' then
      return {0, now, cur[1]}
    end
  end
  token, takeover = old + 1, 1
end
local until_ms = now + tonumber(ARGV[4])
local rec = record(ARGV[1], now, until_ms, ARGV[2], token, until_ms, ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'rec', rec, 'status', 'pending', 'owner', ARGV[2],
  'token', int(token), 'created', int(now), 'until', int(until_ms), 'fp', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], int(until_ms + tonumber(ARGV[6])))
return {1, now, rec, takeover}
"#;

/// **Complete / fail**, fenced.
///
/// - `KEYS[1]`: the record key.
/// - `ARGV[1]`: the head of the finished record (status, result or error);
///   `ARGV[2]`: the holder's execution id (postcard); `ARGV[3]`: its fencing token;
///   `ARGV[4]`: the new status (`success` or `failed`); `ARGV[5]`: the TTL, ms.
///
/// Applied only if the record is `pending` and carries exactly this owner and token (a write
/// after the lease ended still succeeds while nobody has taken over and the key exists). It
/// rewrites `rec`, `status` and `until = now + ttl` and sets the key's expiry to `until` in
/// the same atomic step, so the finished record always has `0 < PTTL <= ttl`.
///
/// Returns `{0, now}` (refused: lease lost) or `{1, now, created, fp, until}`.
const FINISH: &str = r#"
local now = now_ms()
local cur = redis.call('HMGET', KEYS[1], 'status', 'owner', 'token', 'created', 'fp')
local created = tonumber(cur[4])
if cur[1] ~= 'pending' or cur[2] ~= ARGV[2] or tonumber(cur[3]) ~= tonumber(ARGV[3])
  or not created or not cur[5] then
  return {0, now}
end
local until_ms = now + tonumber(ARGV[5])
local rec = record(ARGV[1], created, until_ms, ARGV[2], tonumber(ARGV[3]), nil, cur[5])
redis.call('HSET', KEYS[1], 'rec', rec, 'status', ARGV[4], 'until', int(until_ms))
redis.call('PEXPIREAT', KEYS[1], int(until_ms))
return {1, now, created, cur[5], until_ms}
"#;

/// **Release**, owner-checked compare-and-delete.
///
/// - `KEYS[1]`: the record key. `ARGV[1]`: the holder's execution id (postcard);
///   `ARGV[2]`: its fencing token.
///
/// Deletes the key iff it is `pending` with this owner and token; a stale holder's release
/// deletes nothing (scenario 13). Returns 1 (deleted) or 0.
const RELEASE: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'status', 'owner', 'token')
if cur[1] == 'pending' and cur[2] == ARGV[1] and tonumber(cur[3]) == tonumber(ARGV[2]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// **Renew**: extend the lease iff the owner matches (scenario 14).
///
/// - `KEYS[1]`: the record key. `ARGV[1]`: the head of a `Pending` record;
///   `ARGV[2]`: the holder's execution id (postcard); `ARGV[3]`: its fencing token;
///   `ARGV[4]`: the new lease, ms (from now, Redis clock); `ARGV[5]`: the fence retention, ms.
///
/// Returns `{0, now}` (lease lost) or `{1, now, until}` with the new lease deadline; the key's
/// expiry moves to `until + fence retention`.
const RENEW: &str = r#"
local now = now_ms()
local cur = redis.call('HMGET', KEYS[1], 'status', 'owner', 'token', 'created', 'fp')
local created = tonumber(cur[4])
if cur[1] ~= 'pending' or cur[2] ~= ARGV[2] or tonumber(cur[3]) ~= tonumber(ARGV[3])
  or not created or not cur[5] then
  return {0, now}
end
local until_ms = now + tonumber(ARGV[4])
local rec = record(ARGV[1], created, until_ms, ARGV[2], tonumber(ARGV[3]), until_ms, cur[5])
redis.call('HSET', KEYS[1], 'rec', rec, 'until', int(until_ms))
redis.call('PEXPIREAT', KEYS[1], int(until_ms + tonumber(ARGV[5])))
return {1, now, until_ms}
"#;

/// **Get**: the record bytes with Redis's time, read atomically.
///
/// - `KEYS[1]`: the record key. Returns `{now, rec}` (`rec` nil when there is no record).
const GET: &str = r#"
local now = now_ms()
return {now, redis.call('HGET', KEYS[1], 'rec')}
"#;

/// **Inspect** (listing): what each of `KEYS` holds, with Redis's time.
///
/// Returns `{now, {code, value}, ...}`, one pair per key: `{0, ''}` gone, `{1, rec}` a hash
/// with its `rec` field, `{2, ''}` a hash without `rec`, `{3, type}` another Redis type.
/// Only for a single server (the keys may live in different Cluster slots).
const INSPECT: &str = r#"
local out = {now_ms()}
for i, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then
    out[i + 1] = {0, ''}
  elseif t ~= 'hash' then
    out[i + 1] = {3, t}
  else
    local rec = redis.call('HGET', k, 'rec')
    if rec then out[i + 1] = {1, rec} else out[i + 1] = {2, ''} end
  end
end
return out
"#;

/// **Remove unreadable**: compare-and-delete on content.
///
/// - `KEYS[1]`: the record key; `ARGV[1]`: the code `INSPECT` returned for it (`1`, `2` or
///   `3`); `ARGV[2]`: the value it returned (the `rec` bytes, `''`, or the type name).
///
/// Deletes the key iff it holds exactly that now, so a key rewritten (or deleted and claimed
/// again) since it was judged unreadable is left alone. Returns 1 deleted, 0 not.
const REMOVE_UNREADABLE: &str = r#"
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return 0 end
local code, value
if t ~= 'hash' then
  code, value = '3', t
else
  local rec = redis.call('HGET', KEYS[1], 'rec')
  if rec then code, value = '1', rec else code, value = '2', '' end
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
    let mut out = header().to_vec();
    out.extend(postcard(&(key, status, result, error)));
    out
}

/// The postcard encoding of an execution id, as stored in the `owner` field.
pub(crate) fn owner_id(id: &Uuid) -> Vec<u8> {
    postcard(id)
}

/// The postcard encoding of a fingerprint, as stored in the `fp` field.
pub(crate) fn fingerprint(fp: &Fingerprint) -> Vec<u8> {
    postcard(fp)
}

/// Decodes the `fp` field.
pub(crate) fn decode_fingerprint(bytes: &[u8]) -> Option<Fingerprint> {
    postcard::from_bytes(bytes).ok()
}

/// The Redis status name of a stored status.
pub(crate) fn status_name(status: RecordStatus) -> &'static str {
    match status {
        RecordStatus::Pending => "pending",
        RecordStatus::Success => "success",
        RecordStatus::Failed => "failed",
        RecordStatus::Expired => "expired",
    }
}

/// The Rust twin of the scripts' `record()` splice, for the unit test that pins it to
/// [`Record::encode`].
#[cfg(test)]
pub(crate) fn splice(
    head: &[u8],
    created: u64,
    expires: u64,
    owner: &Owner,
    lease_until: Option<u64>,
    fp: &Fingerprint,
) -> Vec<u8> {
    let mut out = head.to_vec();
    out.extend(postcard(&created));
    out.extend(postcard(&expires));
    out.extend(owner_id(&owner.execution_id));
    out.extend(postcard(&owner.fencing_token));
    out.extend(postcard(&lease_until));
    out.extend(fingerprint(fp));
    out
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

    #[test]
    fn splice_matches_record_encode_for_every_status() {
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
            let h = head(&r.key, r.status, &r.result, r.error.as_ref());
            let spliced = splice(
                &h,
                r.created_at.0,
                r.expires_at.0,
                &r.owner,
                r.lease_until.map(|t| t.0),
                &r.fingerprint,
            );
            assert_eq!(spliced, r.encode().unwrap(), "{:?}", r.status);
            assert_eq!(Record::decode(&spliced, "test").unwrap(), r);
        }
    }

    #[test]
    fn owner_and_fingerprint_fields_have_fixed_sizes() {
        assert_eq!(owner_id(&Uuid::new_v4()).len(), 17);
        assert_eq!(fingerprint(&Fingerprint([1; 32])).len(), 32);
        assert_eq!(
            decode_fingerprint(&fingerprint(&Fingerprint([9; 32]))),
            Some(Fingerprint([9; 32]))
        );
    }
}
