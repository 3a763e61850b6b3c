-- Complete or fail, fenced, and idempotent for the holder. KEYS[1]: the record key. ARGV[1]:
-- the holder's execution id and fencing token (the OWNER_TOKEN span); ARGV[2]: the new status
-- ('S' or 'F'); ARGV[3]: the TTL, ms; ARGV[4]: the body of the finished record.
local cur = redis.pcall('GET', KEYS[1])
if type(cur) ~= 'string' or not ours(cur)
  or string.sub(cur, OWNER_TOKEN_FROM, OWNER_TOKEN_TO) ~= ARGV[1] then
  return {0}
end
local status = string.sub(cur, STATUS_FROM, STATUS_TO)
if status == ARGV[2] and string.sub(cur, BODY_FROM) == ARGV[4] then
  -- The same finish, applied before (a retry whose first reply was lost).
  local created, until_ms = times(KEYS[1], cur)
  return {1, created, until_ms, string.sub(cur, FINGERPRINT_FROM, FINGERPRINT_TO)}
end
if status ~= 'P' then return {0} end
local created = times(KEYS[1], cur)
local until_ms = now_ms() + tonumber(ARGV[3])
redis.call('SET', KEYS[1], pack({STATUS = ARGV[2], CREATED = n16(created),
  UNTIL = n16(until_ms), BODY = ARGV[4]}, cur), 'PXAT', until_ms)
return {1, created, until_ms, string.sub(cur, FINGERPRINT_FROM, FINGERPRINT_TO)}
