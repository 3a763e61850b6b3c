-- Release: owner-checked compare-and-delete of a pending record. KEYS[1]: the record key.
-- ARGV[1]: the holder's execution id and fencing token (the OWNER_TOKEN span).
-- Returns 1 (deleted), 0 (no key) or -1 (the key holds something else).
local cur = redis.pcall('GET', KEYS[1])
if not cur then return 0 end
if type(cur) == 'string' and ours(cur) and string.sub(cur, STATUS_FROM, STATUS_TO) == 'P'
  and string.sub(cur, OWNER_TOKEN_FROM, OWNER_TOKEN_TO) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return -1
