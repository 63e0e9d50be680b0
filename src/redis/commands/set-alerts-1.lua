--[[
  Sets a loaded account's alert thresholds (PUT /api/v1/billing/alerts): the next change that moves the
  balance or a free quota compares against them (includes/alerts.lua). An account not in Redis takes
  them from MySQL when it is loaded; nothing is created here.

  Input:
    KEYS[1] account hash
    ARGV[1] balance.low threshold, micro-units
    ARGV[2] quota.low percent

  Output: 1 if the account was loaded and updated, 0 if it is not in Redis.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'thr_bal', ARGV[1], 'thr_q', ARGV[2])
return 1
