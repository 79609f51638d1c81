--[[ reserve.lua — RESERVE: take the (action, account) lock for a task, consuming nothing.

KEYS (all of one account, one hash tag, so one Redis Cluster slot):
  1 lock    P:{aID}:lock:ACTION                hash {token, until}  (ms epoch)
  2 cd      P:{aID}:cd:ACTION                  string: cooldown ends at (ms epoch)
  3 cap     P:{aID}:cap:ACTION:YYYYMMDD        integer: successes on that local day
  4 state   P:{aID}:state:LINKHASH             "subscribed@MS" | "unsubscribed@MS"
  5 dedupe  P:{aID}:dedupe:ACTION:LINKHASH:POST  "1" once a one-shot action succeeded
  6 hold    P:{aID}:hold                       string: account-wide hold ends at (ms epoch)
  7 full    P:{aID}:full                       "1" after CHANNELS_TOO_MUCH, until an unsubscribe
  8 done    P:{aID}:done:TOKEN                 set by COMMIT of this token
ARGV:
  1 token       the task id
  2 now_ms      the caller's clock (time is a parameter, never Redis's TIME)
  3 until_ms    the lock lasts until then
  4 daily_cap   integer, -1 for none
  5 gate        "" | "subscribe" | "unsubscribe"
  6 one_shot    "1" | "0"
  7 check       "1": only say whether RESERVE would succeed; write nothing (optional)
Returns: 0 reserved (or the lock was already this token's: its deadline is raised),
         1 locked, 2 cooldown, 3 cap, 4 gate, 5 dedupe, 6 hold, 7 full (no more channels),
         8 committed (this token's task already succeeded: settle it, never run it again)
Values stored with a deadline are compared with now_ms; key TTLs only collect garbage.
]]
local token = ARGV[1]
local now = tonumber(ARGV[2])
local until_ms = tonumber(ARGV[3])
local check_only = ARGV[7] == '1'

if redis.call('EXISTS', KEYS[8]) == 1 then
  return 8
end

local holder = redis.call('HMGET', KEYS[1], 'token', 'until')
if holder[1] and tonumber(holder[2]) > now then
  if holder[1] ~= token then
    return 1
  end
  if check_only then
    return 0
  end
  if until_ms > tonumber(holder[2]) then
    redis.call('HSET', KEYS[1], 'until', until_ms)
    redis.call('PEXPIRE', KEYS[1], until_ms - now)
  end
  return 0
end

local hold = redis.call('GET', KEYS[6])
if hold and tonumber(hold) > now then
  return 6
end
local cd = redis.call('GET', KEYS[2])
if cd and tonumber(cd) > now then
  return 2
end
local cap = tonumber(ARGV[4])
if cap >= 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= cap then
  return 3
end
local gate = ARGV[5]
if gate ~= '' then
  local state = redis.call('GET', KEYS[4])
  -- "subscribed@…" (115 = "s"); "unsubscribed@…" or no state at all: not subscribed
  local subscribed = state and string.byte(state, 1) == 115
  if gate == 'subscribe' and subscribed then
    return 4
  end
  if gate == 'subscribe' and redis.call('EXISTS', KEYS[7]) == 1 then
    return 7
  end
  if gate == 'unsubscribe' and not subscribed then
    return 4
  end
end
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[5]) == 1 then
  return 5
end

if check_only then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', token, 'until', until_ms)
redis.call('PEXPIRE', KEYS[1], math.max(until_ms - now, 1))
return 0
