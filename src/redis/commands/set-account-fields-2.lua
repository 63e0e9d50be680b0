--[[
  Sets a loaded account's settings: price overrides ('p:<service>') and spending limits ('lim_d',
  'lim_m'), read by check, deduct and reserve in their own atomic step (includes/quote.lua), so a
  change applies from the next call on, never in the middle of one. The caller has written MySQL
  first and loaded the account: an account loaded from MySQL before that write gets the new values
  here, and one loaded after it already has them.

  Input:
    KEYS[1] account hash
    KEYS[2] activity index of the user's slot

    ARGV[1] user id (the index's member)
    ARGV[2] now, unix ms
    ARGV[3..] pairs of field, value ('' removes the field)

  Output: 1 if set, 0 if the account is not in Redis (its next load reads the new values).
]]
--- @include "includes/changed"

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
changed(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return 1
