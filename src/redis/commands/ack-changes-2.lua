--[[
  Removes persisted changes from a user's pending journal (only after their MySQL commit), and the
  user from the journal index once nothing is left, so the sweep never looks at them again.

  Input:
    KEYS[1] pending journal hash
    KEYS[2] journal index of the user's slot   (see includes/changed.lua)

    ARGV[1] user id (the index's member)
    ARGV[2..] journal fields (change ids)

  Output: how many entries were removed.
]]
--- @include "includes/changed"

local removed = redis.call('HDEL', KEYS[1], unpack(ARGV, 2))
journalChanged(KEYS[1], KEYS[2], ARGV[1])
return removed
