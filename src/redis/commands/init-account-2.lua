--[[
  Loads a user's account into Redis from MySQL, once, with a TTL: the first script that changes the
  account PERSISTs it (includes/changed.lua), so reads and refused calls for ids never seen leave
  nothing lasting (SPEC 10.5, 7.1). Concurrent first calls may all read MySQL and call this; only the
  first write lands. Reading MySQL without a lock is safe because every balance change is made in
  Redis first (then persisted), so while a user has no account hash here, nothing can be changing that
  user's MySQL balance. (An idle account leaves Redis only once MySQL holds all of it, and only after
  at least 10 minutes unchanged, far longer than any load's MySQL read: see evict-account-7.lua.)

  Input:
    KEYS[1] account hash
    KEYS[2] quota hash of the current month

    ARGV[1] balance (micro-units)
    ARGV[2] overdraft limit (micro-units)
    ARGV[3] expiry of the quota hash, unix ms
    ARGV[4] TTL of the account hash, ms
    ARGV[5] n: the number of account-hash field pairs that follow: grants 'g', prices 'p:<service>',
            limits 'lim_d', 'lim_m' (see includes/quote.lua); alert thresholds and the alarms derived
            from the loaded state, so that a reload re-fires no event (see includes/alerts.lua)
    ARGV[6 .. 5+2n] those pairs of field, value
    ARGV[6+2n ..] pairs of quota-hash field, value: service name, free calls used this month; '$m',
            '$d:<DD>', spent this month and today (spending limits); a quota alarm ('!al:<service>')

  Output: 1 if loaded, 0 if it already was.
]]
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'bal', ARGV[1], 'od', ARGV[2], 'held', '0')
local quotaFrom = 6 + 2 * tonumber(ARGV[5])
for i = 6, quotaFrom - 1, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
for i = quotaFrom, #ARGV, 2 do
  redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
end
if #ARGV >= quotaFrom then redis.call('PEXPIREAT', KEYS[2], ARGV[3]) end
return 1
