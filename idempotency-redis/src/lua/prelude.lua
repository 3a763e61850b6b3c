-- Helpers shared by every script. The layout's fields (MAGIC, STATUS, OWNER, TOKEN, CREATED,
-- UNTIL, LEASE, RETENTION, FINGERPRINT, BODY, the spans NUMBERS and OWNER_TOKEN), META_LEN,
-- MAGIC_VALUE and pack() come before this, generated from the Rust layout (layout.rs).

-- Redis's clock, in milliseconds (never the caller's).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- n as the layout's fixed-width decimal digits.
local function n16(n)
  return string.format('%016d', n)
end

-- The bytes of field f of value v.
local function field(v, f)
  return string.sub(v, f[1], f[2])
end

-- Field f of value v as a number.
local function num(v, f)
  return tonumber(string.sub(v, f[1], f[2]))
end

-- Whether v is a value of this layout: the magic, long enough, and digits where the numbers
-- go. Other values are returned for the client to report as corrupt, never computed with (a
-- Lua error would read as "store unavailable").
local function ours(v)
  return field(v, MAGIC) == MAGIC_VALUE and #v >= META_LEN
    and string.find(field(v, NUMBERS), '^%d+$') ~= nil
end

-- CREATED and UNTIL of a value of this layout at key k, resolving the claim fast path's zeros:
-- its lease deadline is the key's expiry minus the stored retention, one lease after CREATED.
local function times(k, v)
  local created, until_ms = num(v, CREATED), num(v, UNTIL)
  if until_ms == 0 then
    until_ms = redis.call('PEXPIRETIME', k) - num(v, RETENTION)
  end
  if created == 0 then created = until_ms - num(v, LEASE) end
  return created, until_ms
end
