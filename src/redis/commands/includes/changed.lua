--[[
  Included by every script that changes an account or its journal or holds: the per-slot indexes that
  maintenance reads instead of SCANning the keyspace (SPEC 16), kept in the same atomic step as the
  change. Each index is a sorted set of user ids in the same hash slot as the user's keys.

  changed(account, activity, user, now)     bumps the account's version, makes it lasting (a read may
                                            have loaded it with a TTL) and records the time of its last
                                            change (idle accounts leave Redis by this index)
  journaled(index, user, now)               the user has journal entries; the score stays the time of
                                            the oldest (ZADD NX) until the journal is empty
  journalChanged(pending, index, user)      drops the user from the journal index once its journal is
                                            empty
  holdsChanged(holds, index, user)          the score is the user's earliest hold expiry, or the user
                                            leaves the index when no hold is open
]]
local function changed(account, activity, user, now)
  redis.call('HINCRBY', account, 'v', 1)
  redis.call('PERSIST', account)
  redis.call('ZADD', activity, now, user)
end

local function journaled(index, user, now)
  redis.call('ZADD', index, 'NX', now, user)
end

local function journalChanged(pending, index, user)
  if redis.call('HLEN', pending) == 0 then redis.call('ZREM', index, user) end
end

local function holdsChanged(holds, index, user)
  local earliest = nil
  for _, v in ipairs(redis.call('HVALS', holds)) do
    local n = tonumber(v)
    if earliest == nil or n < earliest then earliest = n end
  end
  if earliest == nil then
    redis.call('ZREM', index, user)
  else
    redis.call('ZADD', index, earliest, user)
  end
end
