--[[ leave.lua — an account is not in a channel any more without an unsubscribe of ours having
succeeded (Telegram answered USER_NOT_PARTICIPANT, or the channel is gone): its link state
becomes unsubscribed and it is in one channel less. Consumes nothing else.

KEYS: 1 state  P:{aID}:state:LINKHASH, 2 chans  P:{aID}:channels
ARGV: 1 now_ms, 2 state_ttl_ms
Returns: 1 the account was subscribed (now it is not), 0 it was not.
]]
local state = redis.call('GET', KEYS[1])
local was_subscribed = state and string.byte(state, 1) == 115
redis.call('SET', KEYS[1], 'unsubscribed@' .. ARGV[1], 'PX', tonumber(ARGV[2]))
if was_subscribed then
  if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
    redis.call('DECR', KEYS[2])
  end
  return 1
end
return 0
