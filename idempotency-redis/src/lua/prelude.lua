-- Helpers shared by the scripts: the loader (scripts.rs) puts before a script only those it
-- uses (and those they use), with the generated pack(), and writes the layout's constants
-- (NAME_FROM, NAME_TO for each field and span, BODY_FROM, META_LEN, MAGIC_VALUE; layout.rs)
-- into the source as literals. Each paragraph below is one helper.

-- Redis's clock, in milliseconds (never the caller's).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- n as the layout's fixed-width decimal digits.
local function n16(n)
  return string.format('%016d', n)
end

-- The field from..to of value v as a number.
local function num(v, from, to)
  return tonumber(string.sub(v, from, to))
end

-- Whether v is a value of this layout: the magic, long enough, and digits where the numbers
-- go. Other values are returned for the client to report as corrupt, never computed with (a
-- Lua error would read as "store unavailable").
local function ours(v)
  if #v < META_LEN or string.sub(v, MAGIC_FROM, MAGIC_TO) ~= MAGIC_VALUE then return false end
  local _, last = string.find(v, '^%d+', NUMBERS_FROM)
  return last ~= nil and last >= NUMBERS_TO
end

-- CREATED and UNTIL of a value of this layout at key k, resolving the claim fast path's zeros:
-- its lease deadline is the key's expiry minus the stored retention, one lease after CREATED.
local function times(k, v)
  local created, until_ms = num(v, CREATED_FROM, CREATED_TO), num(v, UNTIL_FROM, UNTIL_TO)
  if until_ms == 0 then
    until_ms = redis.call('PEXPIRETIME', k) - num(v, RETENTION_FROM, RETENTION_TO)
  end
  if created == 0 then created = until_ms - num(v, LEASE_FROM, LEASE_TO) end
  return created, until_ms
end
