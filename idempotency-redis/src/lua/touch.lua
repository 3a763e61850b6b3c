-- Touch: write the value again unchanged (keeping its expiry) iff it is a record of this
-- layout held by this owner, so that a WAIT after it on the same connection covers the record
-- as it is now (replicated claims). KEYS[1]: the record key. ARGV[1]: the holder's execution
-- id and fencing token (the OWNER_TOKEN span). Returns 1 (written) or 0 (not this holder's).
local cur = redis.pcall('GET', KEYS[1])
if type(cur) ~= 'string' or not ours(cur)
  or string.sub(cur, OWNER_TOKEN_FROM, OWNER_TOKEN_TO) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], cur, 'KEEPTTL')
return 1
