--[[
  Removes an idle account from Redis (SPEC 16): only if it has not changed since `idleBefore`, has no
  journal entries, no dead letters and no open holds, i.e. MySQL holds all of its state. Its next call
  loads it again from MySQL, free quota of the month included. Request keys and applied markers stay
  (they expire by themselves), so replays within the idempotency window are still answered.

  Input:
    KEYS[1] account hash
    KEYS[2] quota hash of the current month
    KEYS[3] quota hash of the previous month
    KEYS[4] pending journal hash
    KEYS[5] dead-letter hash
    KEYS[6] holds index hash
    KEYS[7] activity index of the user's slot   (see includes/changed.lua)

    ARGV[1] user id (the index's member)
    ARGV[2] idle before, unix ms: a later change keeps the account

  Output: 'evicted' | 'active' (changed since) | 'busy' (something in flight) | 'gone'
]]
local last = redis.call('ZSCORE', KEYS[7], ARGV[1])
if not last then return 'gone' end
if tonumber(last) >= tonumber(ARGV[2]) then return 'active' end
if redis.call('HLEN', KEYS[4]) > 0 or redis.call('HLEN', KEYS[5]) > 0 or redis.call('HLEN', KEYS[6]) > 0 then
  return 'busy'
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[7], ARGV[1])
return 'evicted'
