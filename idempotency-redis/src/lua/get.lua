-- Get: the value with Redis's time and its resolved times, read atomically. KEYS[1]: the
-- record key. Returns {now} (no record), {now, value} (not in this layout),
-- {now, value, created, until}, or {now, false, 1} (another Redis type).
local now = now_ms()
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' then return {now, false, 1} end
if not cur then return {now} end
if not ours(cur) then return {now, cur} end
local created, until_ms = times(KEYS[1], cur)
return {now, cur, created, until_ms}
