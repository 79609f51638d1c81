--[[ rebuild.lua — restore one account's claim state from the ledger (manage.py rebuild_claims).

KEYS: the keys to restore, all of one account (one hash tag).
ARGV: for each key, three values: mode, value, ttl_ms
  mode "max"   numeric values (cooldown deadline, cap count): keep the larger of stored and given
  mode "set"   dedupe, flags, a channel count from the ledger: set the value (counted only
               when it differed)
  mode "newer" link state "WORD@MS": set unless the stored one is as new (its MS >= MS)
  mode "lock"  a lock of an unfinished task: value "token|until"; set only if no live lock is there
A key written gets PEXPIRE ttl_ms when ttl_ms > 0, no expiry when ttl_ms = 0; a key whose
ttl_ms < 0 has already expired and is skipped. Returns the number of keys written.
]]
local written = 0
for i, key in ipairs(KEYS) do
  local mode = ARGV[3 * i - 2]
  local value = ARGV[3 * i - 1]
  local ttl = tonumber(ARGV[3 * i])
  local function expire()
    if ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
    end
  end
  if ttl >= 0 then
    if mode == 'max' then
      local current = tonumber(redis.call('GET', key) or '-1')
      if tonumber(value) > current then
        redis.call('SET', key, value)
        expire()
        written = written + 1
      end
    elseif mode == 'set' then
      if redis.call('GET', key) ~= value then
        redis.call('SET', key, value)
        expire()
        written = written + 1
      end
    elseif mode == 'newer' then
      local function at(v)
        local sep = v and string.find(v, '@', 1, true)
        return sep and tonumber(string.sub(v, sep + 1)) or -1
      end
      if at(value) > at(redis.call('GET', key)) then
        redis.call('SET', key, value)
        expire()
        written = written + 1
      end
    elseif mode == 'lock' then
      local sep = string.find(value, '|', 1, true)
      local token = string.sub(value, 1, sep - 1)
      local until_ms = string.sub(value, sep + 1)
      if redis.call('EXISTS', key) == 0 then
        redis.call('HSET', key, 'token', token, 'until', until_ms)
        expire()
        written = written + 1
      end
    end
  end
end
return written
