--[[
  Sets a quiescent account's Redis counters to what MySQL (the system of record) says, and says what
  it changed. Applies only if nothing changed since the snapshot the caller took before reading MySQL
  (same version), and nothing is in flight (empty journal, no dead letters, no open holds): then every change is in
  MySQL, so any difference is drift, not a change on its way.

  Input:
    KEYS[1] account hash                 {bal, od, held, v}
    KEYS[2] quota hash of the month
    KEYS[3] pending journal hash
    KEYS[4] holds index hash
    KEYS[5] dead-letter hash

    ARGV[1] version seen by the snapshot
    ARGV[2] MySQL balance (micro-units)
    ARGV[3] expiry of the quota hash, unix ms
    ARGV[4] the grants as MySQL has them, in the account hash's encoding (includes/grants.lua), '' for
            none: with no hold open, Redis must hold exactly these grants with these remainders
    ARGV[5..] pairs of service name, MySQL free calls used this month

  Output: {'changed'} (skipped) | {'ok', field, before, after, field, before, after, ...}
]]
local a = redis.call('HMGET', KEYS[1], 'bal', 'v', 'g')
if not a[1] or (a[2] or '0') ~= ARGV[1] or redis.call('HLEN', KEYS[3]) > 0 or redis.call('HLEN', KEYS[4]) > 0
    or redis.call('HLEN', KEYS[5]) > 0 then
  return {'changed'}
end
local out = {'ok'}
if a[1] ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'bal', ARGV[2])
  table.insert(out, 'bal'); table.insert(out, a[1]); table.insert(out, ARGV[2])
end
-- Grants: each one's id and remainder, side by side ('' when absent), so that only a real difference repairs.
local function remainders(json)
  local out = {}
  if json and json ~= '' then
    for _, g in ipairs(cjson.decode(json)) do out[#out + 1] = g.id .. '=' .. g.rem end
  end
  table.sort(out)
  return table.concat(out, ',')
end
local redisGrants, mysqlGrants = remainders(a[3]), remainders(ARGV[4])
if redisGrants ~= mysqlGrants then
  if ARGV[4] == '' then redis.call('HDEL', KEYS[1], 'g') else redis.call('HSET', KEYS[1], 'g', ARGV[4]) end
  table.insert(out, 'grants'); table.insert(out, redisGrants); table.insert(out, mysqlGrants)
end
for i = 5, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[2], ARGV[i]) or '0'
  if cur ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('PEXPIREAT', KEYS[2], ARGV[3])
    table.insert(out, 'quota:' .. ARGV[i]); table.insert(out, cur); table.insert(out, ARGV[i + 1])
  end
end
if #out > 1 then redis.call('HINCRBY', KEYS[1], 'v', 1) end
return out
