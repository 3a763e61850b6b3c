-- Remove unreadable: compare-and-delete on content. KEYS[1]: the record key; ARGV[1]: the
-- code inspect returned for it ('1' or '3'); ARGV[2]: the value it returned (the string value,
-- or the type name). Deletes the key iff it holds exactly that now. Returns 1 deleted, 0 not.
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
