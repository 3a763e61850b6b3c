-- Renew: extend the lease iff the holder still holds the key. KEYS[1]: the record key.
-- ARGV[1]: the holder's execution id and fencing token (the OWNER_TOKEN span); ARGV[2]: the
-- new lease, ms from now (16 digits); ARGV[3]: the fence retention, ms (16 digits).
-- Returns {0} (lease lost) or {1, until}.
local cur = redis.pcall('GET', KEYS[1])
if type(cur) ~= 'string' or not ours(cur) or string.sub(cur, STATUS_FROM, STATUS_TO) ~= 'P'
  or string.sub(cur, OWNER_TOKEN_FROM, OWNER_TOKEN_TO) ~= ARGV[1] then
  return {0}
end
local created = times(KEYS[1], cur)
local until_ms = now_ms() + tonumber(ARGV[2])
redis.call('SET', KEYS[1], pack({CREATED = n16(created), UNTIL = n16(until_ms),
  LEASE = ARGV[2], RETENTION = ARGV[3]}, cur), 'PXAT', until_ms + tonumber(ARGV[3]))
return {1, until_ms}
