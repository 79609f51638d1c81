--[[ hold.lua — hold an account off every action until a moment (flood wait).

KEYS: 1 hold  P:{aID}:hold
ARGV: 1 now_ms, 2 until_ms
Returns: the hold's deadline after the call (an existing later hold is kept).
]]
local now = tonumber(ARGV[1])
local until_ms = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current and until_ms > now then
  redis.call('SET', KEYS[1], until_ms, 'PX', until_ms - now)
  return until_ms
end
return current
