--[[
  Reads, in one atomic step, what reconciliation needs to know before it reads MySQL: the account's
  version and whether any change is in flight (journal entries not yet persisted, dead letters
  parked by persistence, open holds).

  Input:
    KEYS[1] account hash        {bal, od, held, v}
    KEYS[2] pending journal hash
    KEYS[3] holds index hash
    KEYS[4] dead-letter hash (its changes are not in MySQL either)

  Output: {exists '1'|'0', version, balance, pending entries (dead letters included), open holds}
]]
local a = redis.call('HMGET', KEYS[1], 'bal', 'v')
if not a[1] then return {'0', '0', '0', '0', '0'} end
return {'1', a[2] or '0', a[1], tostring(redis.call('HLEN', KEYS[2]) + redis.call('HLEN', KEYS[4])), tostring(redis.call('HLEN', KEYS[3]))}
