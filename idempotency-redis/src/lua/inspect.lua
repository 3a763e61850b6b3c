-- Inspect (listing): what each of KEYS holds, with Redis's time. Returns {now, item, ...},
-- one item per key: {0, ''} gone; {1, value, created, until} a value of this layout with its
-- resolved times; {1, value} a string in another layout; {3, type} another Redis type. Only
-- for a single server (the keys may live in different Cluster slots).
local out = {now_ms()}
for i, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then
    out[i + 1] = {0, ''}
  elseif t ~= 'string' then
    out[i + 1] = {3, t}
  else
    local v = redis.call('GET', k)
    if ours(v) then
      local created, until_ms = times(k, v)
      out[i + 1] = {1, v, created, until_ms}
    else
      out[i + 1] = {1, v}
    end
  end
end
return out
