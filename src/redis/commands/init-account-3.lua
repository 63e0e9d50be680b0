--[[
  Loads a user's account into Redis from MySQL, once. A read-only call (check, GET /account) loads it
  with a TTL, so that reads for ids never seen before leave nothing lasting (SPEC 10.5); the first
  script that changes the account PERSISTs it. Concurrent first calls may all read MySQL and
  call this; only the first write lands. Reading MySQL without a lock is safe because every balance
  change is made in Redis first (then persisted), so while a user has no account hash here, nothing
  can be changing that user's MySQL balance.

  Input:
    KEYS[1] account hash
    KEYS[2] quota hash of the current month
    KEYS[3] activity index of the user's slot (a lasting load joins it, so that it can leave when idle)

    ARGV[1] balance (micro-units)
    ARGV[2] overdraft limit (micro-units)
    ARGV[3] expiry of the quota hash, unix ms
    ARGV[4] TTL of the account hash in ms for a read-only load, '0' for none
    ARGV[5] user id (the index's member)
    ARGV[6] now, unix ms
    ARGV[7..] pairs of service name, free calls used this month

  Output: 1 if loaded, 0 if it already was.
]]
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'bal', ARGV[1], 'od', ARGV[2], 'held', '0')
if ARGV[4] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
end
for i = 7, #ARGV, 2 do
  redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
end
if #ARGV >= 7 then redis.call('PEXPIREAT', KEYS[2], ARGV[3]) end
return 1
