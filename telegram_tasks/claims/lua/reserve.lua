--[[ reserve.lua — RESERVE: take the (action, account) lock for a task, consuming nothing.

KEYS (all of one account, one hash tag, so one Redis Cluster slot):
  1 lock     P:{aID}:lock:ACTION                hash {token, until}  (ms epoch)
  2 cd       P:{aID}:cd:ACTION                  string: cooldown ends at (ms epoch)
  3 cap      P:{aID}:cap:ACTION:YYYYMMDD        integer: successes of this action that local day
  4 state    P:{aID}:state:LINKHASH             "subscribed@MS" | "unsubscribed@MS"
  5 dedupe   P:{aID}:dedupe:ACTION:LINKHASH:POST  "1" once a one-shot action succeeded
  6 hold     P:{aID}:hold                       string: account-wide hold ends at (ms epoch)
  7 full     P:{aID}:full                       "1" after CHANNELS_TOO_MUCH, until an unsubscribe
  8 done     P:{aID}:done:TOKEN                 set by COMMIT of this token
  9 marker   P:marker (a single Redis) or P:{SLOTTAG}:marker (a cluster: the marker of this
             account's slot, in the same slot): the claim state is present
  then only the keys the tier's limits need, in this order:
    acd      P:{aID}:acd                        (acd_on) account-wide cooldown ends at (ms epoch)
    acap     P:{aID}:acap:YYYYMMDD              (acct_cap >= 0) the account's successes that day
    chans    P:{aID}:channels                   (a subscribe, max_chans >= 0) channels it is in
    locks…   P:{aID}:lock:OTHER                 (one per flag) other actions' locks (live tasks)
ARGV:
  1 token       the task id
  2 now_ms      the caller's clock (time is a parameter, never Redis's TIME)
  3 until_ms    the lock lasts until then
  4 daily_cap   integer, -1 for none
  5 gate        "" | "subscribe" | "unsubscribe"
  6 one_shot    "1" | "0"
  7 check       "1": only say whether RESERVE would succeed; write nothing
                "2": verify a live reservation: the same checks as if the token did not hold
                the lock yet (another live holder still refuses); write nothing
  8 acd_on      "1": the tier has an account-wide cooldown (then one live task per account)
  9 acct_cap    the tier's successes per account per day, all actions; -1 for none
  10 max_chans  the tier's most channels per account; -1 for none
  11 flags      one character per other lock: "s" that action subscribes (takes a channel), "x" not
Account-wide limits stay exact under concurrency because live reservations count: another live
lock of the account counts as a success to come against acct_cap, and as a channel to come
against max_chans when its action subscribes; with acd_on no other lock may be live at all.
Returns: 0 reserved (or the lock was already this token's: its deadline is raised),
         1 locked, 2 cooldown, 3 cap, 4 gate, 5 dedupe, 6 hold, 7 full (CHANNELS_TOO_MUCH),
         8 committed (this token's task already succeeded: settle it, never run it again),
         9 account_cooldown, 10 account_cap, 11 channels (max_channels reached),
         12 lost (no marker: this Redis, or this account's node, lost the claim state; nothing
            is judged against keys that may be gone)
Values stored with a deadline are compared with now_ms; key TTLs only collect garbage.
]]
local token = ARGV[1]
local now = tonumber(ARGV[2])
local until_ms = tonumber(ARGV[3])
local check_only = ARGV[7] ~= '0'
local verify = ARGV[7] == '2'

if redis.call('EXISTS', KEYS[9]) == 0 then
  return 12
end
if redis.call('EXISTS', KEYS[8]) == 1 then
  return 8
end

local holder = redis.call('HMGET', KEYS[1], 'token', 'until')
if holder[1] and tonumber(holder[2]) > now and not (verify and holder[1] == token) then
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
local gate = ARGV[5]
local acd_on = ARGV[8] == '1'
local acct_cap = tonumber(ARGV[9])
local max_chans = tonumber(ARGV[10])
local flags = ARGV[11]
local count_chans = gate == 'subscribe' and max_chans >= 0
-- The optional keys, in order: only those this tier's limits need are passed.
local k = 10
local acd_key, acap_key, chans_key
if acd_on then acd_key = KEYS[k]; k = k + 1 end
if acct_cap >= 0 then acap_key = KEYS[k]; k = k + 1 end
if count_chans then chans_key = KEYS[k]; k = k + 1 end
local others, others_subscribing = 0, 0
if #flags > 0 then
  for i = 1, #flags do
    local other = redis.call('HMGET', KEYS[k + i - 1], 'token', 'until')
    if other[1] and other[1] ~= token and tonumber(other[2]) > now then
      others = others + 1
      if string.sub(flags, i, i) == 's' then
        others_subscribing = others_subscribing + 1
      end
    end
  end
end
if acd_on then
  local acd = redis.call('GET', acd_key)
  if (acd and tonumber(acd) > now) or others > 0 then
    return 9
  end
end
local cd = redis.call('GET', KEYS[2])
if cd and tonumber(cd) > now then
  return 2
end
local cap = tonumber(ARGV[4])
if cap >= 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= cap then
  return 3
end
if acct_cap >= 0 and tonumber(redis.call('GET', acap_key) or '0') + others >= acct_cap then
  return 10
end
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
  if count_chans
      and tonumber(redis.call('GET', chans_key) or '0') + others_subscribing >= max_chans then
    return 11
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
