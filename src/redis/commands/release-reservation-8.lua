--[[
  Releases a hold: returns its free quota and held amount. For the release endpoint ('released') and
  for expiry ('expired', only once the hold is past its time). Only a hold in state 'held' moves, so
  release, expiry and commit return the money at most once between them.

  Input:
    KEYS[1] account hash
    KEYS[2] quota hash of the reservation's month
    KEYS[3] reservation hash
    KEYS[4] holds index hash
    KEYS[5] holds index of the user's slot   (see includes/changed.lua)
    KEYS[6] activity index of the user's slot
    KEYS[7] pending journal hash      (events only: see includes/alerts.lua)
    KEYS[8] journal index of the user's slot

    ARGV[1] reservation id
    ARGV[2] 'released' | 'expired'
    ARGV[3] now, unix ms
    ARGV[4] user id (the indexes' member)

  The held money goes back where reserve-9.lua held it from (grants' parts, the balance's part:
  includes/holds.lua), and the spending the hold counted is given back.

  Output: {status, released, available, event-only change JSON ('' if none)}
    status 'ok' | 'missing' | 'not_due' (expiry before its time) | the state it was already in
           ('released', 'expired', 'committed')
]]
--- @include "includes/int"
--- @include "includes/changed"
--- @include "includes/holds"
--- @include "includes/alerts"

local r = redis.call('HMGET', KEYS[3], 'state', 'svc', 'free', 'amt', 'exp', 'gh', 'bh', 'day')
if not r[1] then
  redis.call('HDEL', KEYS[4], ARGV[1])
  holdsChanged(KEYS[4], KEYS[5], ARGV[4])
  return {'missing'}
end
local now = tonumber(ARGV[3])
local a = redis.call('HMGET', KEYS[1], 'bal', 'held', 'g')
local bal, held, grants = tonumber(a[1] or '0'), tonumber(a[2] or '0'), decodeGrants(a[3])
local function available() return int(bal - held + grantsAvailable(grants, now)) end
if r[1] ~= 'held' then return {r[1], '0', available()} end

local due = now >= tonumber(r[5])
if ARGV[2] == 'expired' and not due then return {'not_due', '0', available()} end
-- A release that comes after the hold's time counts as its expiry.
local newState = ARGV[2]
if due then newState = 'expired' end

local heldFree, heldAmount = tonumber(r[3]), tonumber(r[4])
if heldFree > 0 then redis.call('HINCRBY', KEYS[2], r[2], int(-heldFree)) end
bal, held = unhold(KEYS[1], grants, heldParts(r[6], r[7], heldAmount), 0)
-- The spending the hold counted on its day is given back (see includes/quote.lua).
if r[8] and heldAmount > 0 then
  redis.call('HINCRBY', KEYS[2], '$m', int(-heldAmount))
  redis.call('HINCRBY', KEYS[2], '$d:' .. r[8], int(-heldAmount))
end
redis.call('HSET', KEYS[3], 'state', newState)
changed(KEYS[1], KEYS[6], ARGV[4], ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[1])
holdsChanged(KEYS[4], KEYS[5], ARGV[4])
local events = balanceEvents({}, KEYS[1], tonumber(available()))
if newState == 'expired' then
  otherEvent(events, 'reservation.expired', {reservationId = ARGV[1], service = r[2], released = int(heldAmount)})
end
local json = journalEvents({KEYS[1], KEYS[6], KEYS[7], KEYS[8]}, newState .. '-' .. ARGV[1], ARGV[4], ARGV[3], events)
if newState ~= ARGV[2] then return {newState, '0', available(), json} end
return {'ok', int(heldAmount), available(), json}
