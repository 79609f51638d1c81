--[[ breaker.lua — a circuit breaker shared by every dispatcher process (push mode).

KEYS: 1 breaker  P:breaker:NAME   hash {state, failures, until, trips}
ARGV: 1 op ("allow" | "success" | "failure" | "peek"), 2 now_ms, 3 threshold (failures in a row
      that open the circuit), 4 open_ms (how long it first stays open), 5 max_trips (the open
      time doubles per trip, at most 2^(max_trips - 1) times)
States: "closed" (send), "open" (send nothing until `until`), "half" (one probe is out; the
others wait for its result until `until`).
Returns {state, until_ms, granted}: granted 1 when the caller may send (allow: closed, or it
holds the probe of a half-open circuit); for the other ops, the state after the call.
]]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local open_ms = tonumber(ARGV[4])
local max_trips = tonumber(ARGV[5])
local b = redis.call('HMGET', KEYS[1], 'state', 'failures', 'until', 'trips')
local state = b[1] or 'closed'
local failures = tonumber(b[2] or '0')
local until_ms = tonumber(b[3] or '0')
local trips = tonumber(b[4] or '0')

local function save()
  redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'until', until_ms,
             'trips', trips)
end

local function trip()
  trips = math.min(trips + 1, max_trips)
  state = 'open'
  until_ms = now + open_ms * 2 ^ (trips - 1)
  failures = 0
end

if op == 'peek' then
  return {state, until_ms, 0}
end
if op == 'allow' then
  if state == 'closed' then
    return {state, until_ms, 1}
  end
  if until_ms > now then
    return {state, until_ms, 0}
  end
  -- Open time over (or a probe that never reported): one caller probes.
  state = 'half'
  until_ms = now + open_ms
  save()
  return {state, until_ms, 1}
end
if op == 'success' then
  state, failures, until_ms, trips = 'closed', 0, 0, 0
  save()
  return {state, until_ms, 1}
end
-- failure
if state == 'half' then
  trip()
elseif state == 'closed' then
  failures = failures + 1
  if failures >= threshold then
    trip()
  end
end
save()
return {state, until_ms, 0}
