--[[ commit.lua — COMMIT: a task succeeded; consume what its success costs. Idempotent per token.

KEYS (one account, one hash tag):
  1 lock    P:{aID}:lock:ACTION
  2 cd      P:{aID}:cd:ACTION
  3 cap     P:{aID}:cap:ACTION:YYYYMMDD      (the local day of now_ms)
  4 state   P:{aID}:state:LINKHASH           "subscribed@MS" | "unsubscribed@MS" (MS: when)
  5 dedupe  P:{aID}:dedupe:ACTION:LINKHASH:POST
  6 done    P:{aID}:done:TOKEN               when this token was committed (ms)
  7 full    P:{aID}:full                     cleared by a successful unsubscribe
  8 acd     P:{aID}:acd                      account-wide cooldown deadline
  9 acap    P:{aID}:acap:YYYYMMDD            the account's successes that local day
  10 chans  P:{aID}:channels                 channels the account is in
  11 marker P:marker, or on a cluster P:{SLOTTAG}:marker (the marker of this account's
            slot)                            optional: the claim state is present
ARGV:
  1 token, 2 now_ms, 3 cooldown_ms, 4 cap_ttl_ms (past the next local midnight),
  5 gate ("" | "subscribe" | "unsubscribe"), 6 one_shot ("1" | "0"),
  7 state_ttl_ms (how long an "unsubscribed" state is kept), 8 dedupe_ttl_ms, 9 done_ttl_ms,
  10 account_cooldown_ms
Returns: {0, now_ms} committed now, or {1, committed_ms} already committed at committed_ms
(nothing changed but a lock this token still holds is released), or {2, 0} when given the
marker key and the marker is gone (nothing changed: counting into a lost state would be undone
by the rebuild's merge).
]]
local token = ARGV[1]
local now = tonumber(ARGV[2])

if KEYS[11] and redis.call('EXISTS', KEYS[11]) == 0 then
  return {2, 0}
end

local function release()
  if redis.call('HGET', KEYS[1], 'token') == token then
    redis.call('DEL', KEYS[1])
  end
end

local committed = redis.call('GET', KEYS[6])
if committed then
  release()
  return {1, committed}
end
redis.call('SET', KEYS[6], ARGV[2], 'PX', tonumber(ARGV[9]))

local cooldown = tonumber(ARGV[3])
if cooldown > 0 then
  redis.call('SET', KEYS[2], now + cooldown, 'PX', cooldown)
end
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]))
local account_cooldown = tonumber(ARGV[10])
if account_cooldown > 0 then
  redis.call('SET', KEYS[8], now + account_cooldown, 'PX', account_cooldown)
end
redis.call('INCR', KEYS[9])
redis.call('PEXPIRE', KEYS[9], tonumber(ARGV[4]))

local gate = ARGV[5]
if gate ~= '' then
  local prior = redis.call('GET', KEYS[4])
  local was_subscribed = prior and string.byte(prior, 1) == 115
  if gate == 'subscribe' then
    -- Subscribed while the membership lasts (an unsubscribe ends it), whatever its age.
    redis.call('SET', KEYS[4], 'subscribed@' .. ARGV[2])
    if not was_subscribed then
      redis.call('INCR', KEYS[10])
    end
  elseif gate == 'unsubscribe' then
    redis.call('SET', KEYS[4], 'unsubscribed@' .. ARGV[2], 'PX', tonumber(ARGV[7]))
    redis.call('DEL', KEYS[7])
    if was_subscribed and tonumber(redis.call('GET', KEYS[10]) or '0') > 0 then
      redis.call('DECR', KEYS[10])
    end
  end
end
if ARGV[6] == '1' then
  redis.call('SET', KEYS[5], '1', 'PX', tonumber(ARGV[8]))
end
release()
return {0, ARGV[2]}
