--[[
  Included by deduct, reserve and refund: a deduct request remembered in its window's compact hash (see
  deduct-8.lua and src/redis/idempotency.ts). Deducts and reservations share one request-id space per
  user: a reservation's request id is kept in its own small hash, a deduct's here, and each script
  looks at the other's before it charges, so an id used by one is 'reused' for the other.

  requestField(hex) -> the 12-byte field of a request (or refund) digest given as 24 hex digits: callers
    send it as text, since one binary argument sends the whole command down the client's slower path.
  PACKED_ANSWER: payload fingerprint, first-seen second, free, paid, amount, available.
  rememberedDeduct(key, field, windowMs, now) -> fingerprint, free, paid, amount, available of the
    request remembered under `field` in the hash `key`, or nil when there is none or it was first seen
    a window or more ago (then it is forgotten: a new call).
]]
local PACKED_ANSWER = '>I4I4I4I4dd'

local function requestField(hex)
  return struct.pack('>I4I4I4', tonumber(string.sub(hex, 1, 8), 16), tonumber(string.sub(hex, 9, 16), 16),
    tonumber(string.sub(hex, 17, 24), 16))
end

local function rememberedDeduct(key, field, windowMs, now)
  local packed = redis.call('HGET', key, field)
  if not packed then return nil end
  local fp, firstSeen, free, paid, amt, avail = struct.unpack(PACKED_ANSWER, packed)
  if firstSeen * 1000 + windowMs <= now then return nil end
  return fp, free, paid, amt, avail
end
