--[[
  Puts a dead letter back into the user's pending journal, for an operator's retry through the admin
  API (after the cause was fixed). The persistence job then writes it like any other change.

  Input:
    KEYS[1] pending journal hash
    KEYS[2] dead-letter hash

    ARGV[1] journal field (change id)

  Output: the change JSON, or false if there is no such dead letter. Also the number of dead letters
  the user has left, as {change, left}.
]]
local parked = redis.call('HGET', KEYS[2], ARGV[1])
if not parked then return {false, redis.call('HLEN', KEYS[2])} end
local change = cjson.encode(cjson.decode(parked).change)
redis.call('HSET', KEYS[1], ARGV[1], change)
redis.call('HDEL', KEYS[2], ARGV[1])
return {change, redis.call('HLEN', KEYS[2])}
