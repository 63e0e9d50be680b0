--[[
  Puts a dead letter back into the user's pending journal, for an operator's retry through the admin
  API (after the cause was fixed). The persistence job then writes it like any other change.

  Input:
    KEYS[1] pending journal hash
    KEYS[2] dead-letter hash
    KEYS[3] journal index of the user's slot   (see includes/changed.lua)

    ARGV[1] journal field (change id)
    ARGV[2] user id (the index's member)
    ARGV[3] now, unix ms

  Output: the change JSON, or false if there is no such dead letter. Also the number of dead letters
  the user has left, as {change, left}.
]]
--- @include "includes/changed"

local parked = redis.call('HGET', KEYS[2], ARGV[1])
if not parked then return {false, redis.call('HLEN', KEYS[2])} end
local change = cjson.encode(cjson.decode(parked).change)
redis.call('HSET', KEYS[1], ARGV[1], change)
redis.call('HDEL', KEYS[2], ARGV[1])
journaled(KEYS[3], ARGV[2], ARGV[3])
return {change, redis.call('HLEN', KEYS[2])}
