-- Complete or fail, fenced, and idempotent for the holder. KEYS[1]: the record key. ARGV[1]:
-- the holder's execution id and fencing token (the OWNER_TOKEN span); ARGV[2]: the new status
-- ('S' or 'F'); ARGV[3]: the TTL, ms; ARGV[4]: the body of the finished record.
-- Returns 0 (refused) or the finished value's bytes CREATED_FROM..FINGERPRINT_TO (its times and
-- fingerprint: one string, which costs both sides less than a table of them).
-- Written for cost (it runs once per first run): no helper calls, one string per field read,
-- and Redis's clock read only when it writes.
local cur = redis.pcall('GET', KEYS[1])
if type(cur) ~= 'string' or string.sub(cur, OWNER_TOKEN_FROM, OWNER_TOKEN_TO) ~= ARGV[1]
  or not ours(cur) then
  return 0
end
local status = string.sub(cur, STATUS_FROM, STATUS_TO)
if status ~= 'P' and (status ~= ARGV[2] or string.sub(cur, BODY_FROM) ~= ARGV[4]) then
  -- Finished otherwise (another status or result): not this finish.
  return 0
end
if status ~= 'P' then
  -- The same finish, applied before (a retry whose first reply was lost): a finished value
  -- holds its times.
  return string.sub(cur, CREATED_FROM, FINGERPRINT_TO)
end
-- The claim's times, resolving the fast path's zeros (as `times` in the prelude does).
local created = tonumber(string.sub(cur, CREATED_FROM, CREATED_TO))
if created == 0 then
  local until_ms = tonumber(string.sub(cur, UNTIL_FROM, UNTIL_TO))
  if until_ms == 0 then
    until_ms = redis.call('PEXPIRETIME', KEYS[1])
      - tonumber(string.sub(cur, RETENTION_FROM, RETENTION_TO))
  end
  created = until_ms - tonumber(string.sub(cur, LEASE_FROM, LEASE_TO))
end
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
local stamps = string.format('%016d%016d', created, until_ms)
local kept = string.sub(cur, KEPT_FROM, KEPT_TO)
redis.call('SET', KEYS[1], MAGIC_VALUE .. ARGV[2] .. ARGV[1] .. stamps .. kept .. ARGV[4],
  'PXAT', until_ms)
return stamps .. kept
