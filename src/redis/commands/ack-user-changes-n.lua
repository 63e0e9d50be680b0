--[[
  Removes persisted changes from the pending journals of users whose keys share one hash slot (only
  after their MySQL commit), and each user left with an empty journal from the journal index, so the
  sweep never looks at them again. One call per batch (per slot on a Redis Cluster), not one per user:
  each call costs the persisting worker more CPU than the entries it removes.

  Input (the key count varies, hence `-n`: the caller passes it):
    KEYS[1]    journal index of the users' slot   (see includes/changed.lua)
    KEYS[2..]  pending journal hash of each user, in the order of the users in ARGV

    ARGV, per user in KEYS' order: user id (the index's member), the number n of its fields, then its
    n journal fields (change ids)

  Output: how many entries were removed.
]]
--- @include "includes/changed"

local removed = 0
local at = 1
for k = 2, #KEYS do
  local user = ARGV[at]
  local n = tonumber(ARGV[at + 1])
  if n > 0 then removed = removed + redis.call('HDEL', KEYS[k], unpack(ARGV, at + 2, at + 1 + n)) end
  journalChanged(KEYS[k], KEYS[1], user)
  at = at + 2 + n
end
return removed
