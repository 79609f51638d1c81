--[[ extend.lua — re-arm the lock of a task that is still alive (leased, pending).

KEYS: 1 lock  P:{aID}:lock:ACTION
ARGV: 1 token, 2 now_ms, 3 until_ms
Returns: 0 re-armed (the deadline becomes until_ms, never lowered),
         1 lost (no live lock: it lapsed), 2 taken (another task holds it).
]]
local now = tonumber(ARGV[2])
local until_ms = tonumber(ARGV[3])
local holder = redis.call('HMGET', KEYS[1], 'token', 'until')
if not holder[1] or tonumber(holder[2]) <= now then
  return 1
end
if holder[1] ~= ARGV[1] then
  return 2
end
if until_ms > tonumber(holder[2]) then
  redis.call('HSET', KEYS[1], 'until', until_ms)
  redis.call('PEXPIRE', KEYS[1], until_ms - now)
end
return 0
