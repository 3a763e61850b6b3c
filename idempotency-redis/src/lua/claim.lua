-- Get-or-claim: the claim's slow path (a pending value met by the fast path) and the cache
-- bypass. KEYS[1]: the record key. ARGV[1]: the caller's execution id; ARGV[2]: the
-- fingerprint; ARGV[3]: the lease, ms (16 digits); ARGV[4]: '1' to replace a live finished
-- record (cache bypass); ARGV[5]: the fence retention, ms (16 digits); ARGV[6]: the body.
local now = now_ms()
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' then return {3, now} end
local token, takeover = 1, 0
if cur then
  if not ours(cur) then return {0, now, cur} end
  local created, until_ms = times(KEYS[1], cur)
  local status, old = string.sub(cur, STATUS_FROM, STATUS_TO), num(cur, TOKEN_FROM, TOKEN_TO)
  if now < until_ms then
    if status == 'P' and string.sub(cur, OWNER_FROM, OWNER_TO) == ARGV[1] then
      return {2, now, until_ms, old}
    end
    if ARGV[4] ~= '1' or status == 'P' then return {0, now, cur, created, until_ms} end
  end
  token, takeover = old + 1, 1
end
local until_ms = now + tonumber(ARGV[3])
redis.call('SET', KEYS[1], pack({STATUS = 'P', OWNER = ARGV[1], TOKEN = n16(token),
  CREATED = n16(now), UNTIL = n16(until_ms), LEASE = ARGV[3], RETENTION = ARGV[5],
  FINGERPRINT = ARGV[2], BODY = ARGV[6]}), 'PXAT', until_ms + tonumber(ARGV[5]))
return {1, now, until_ms, takeover, token}
