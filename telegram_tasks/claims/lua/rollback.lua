--[[ rollback.lua — ROLLBACK: a task failed or expired; release its lock. Nothing else changes.

KEYS: 1 lock  P:{aID}:lock:ACTION
ARGV: 1 token
Returns: 1 released, 0 the lock was not this token's (absent, or another task's: left alone).
]]
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
