--[[
  Parks a journal entry that MySQL refused even alone (a dead letter): moves it from the user's
  pending journal to the user's dead-letter hash, with the error, so that one bad change never blocks
  the others and the sweep stops re-enqueueing it. Its money stays in Redis; reconciliation treats a
  user with dead letters as in flight, so it never "repairs" that money away.

  Input:
    KEYS[1] pending journal hash   {<change id>: change JSON}
    KEYS[2] dead-letter hash       {<change id>: {"error", "at", "change"} JSON}
    KEYS[3] journal index of the user's slot   (see includes/changed.lua)

    ARGV[1] journal field (change id)
    ARGV[2] the error, as a JSON string
    ARGV[3] when it was parked (ISO instant)
    ARGV[4] user id (the index's member)

  Output: 1 if parked, 0 if the entry was no longer in the journal (persisted meanwhile).
]]
--- @include "includes/changed"

local change = redis.call('HGET', KEYS[1], ARGV[1])
if not change then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], '{"error":' .. ARGV[2] .. ',"at":"' .. ARGV[3] .. '","change":' .. change .. '}')
redis.call('HDEL', KEYS[1], ARGV[1])
journalChanged(KEYS[1], KEYS[3], ARGV[4])
return 1
