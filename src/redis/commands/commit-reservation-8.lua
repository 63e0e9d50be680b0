--[[
  Commits a hold: charges `count` calls (at most those held; free quota first, as held), returns the
  rest of the free quota and of the held amount, and journals the charge like a deduction. Only a
  hold in state 'held' moves; commit, release and expiry each move it at most once, so exactly one
  of them returns the money. A hold past its expiry is expired here, and the commit refused.

  Input:
    KEYS[1] account hash
    KEYS[2] quota hash of the reservation's month
    KEYS[3] reservation hash
    KEYS[4] holds index hash
    KEYS[5] pending journal hash
    KEYS[6] journal index of the user's slot   (see includes/changed.lua)
    KEYS[7] holds index of the user's slot
    KEYS[8] activity index of the user's slot

    ARGV[1] reservation id
    ARGV[2] count to charge
    ARGV[3] record id
    ARGV[4] the change as JSON (string values only); service, counts and amount are added here
    ARGV[5] now, unix ms
    ARGV[6] user id (the indexes' member)

  What was held comes back from where it was held: each grant's part ('gh', see reserve-9.lua) and the
  balance's ('bh'); the charge is taken from those parts in the order they were held. The journaled
  change gets `grants` {{grant id, amount}...} when grants paid. Spending counted by the hold on its
  day is given back by the part not charged.

  Output: {status, recordId, freeCount, paidCount, amount, released, available, change JSON ('' if none)}
    the change JSON is the charge's (with its events), or an event-only change (includes/alerts.lua)
    status 'ok' | 'dup' | 'reused' (committed before with another count) | 'missing'
           | 'released' | 'expired' | 'too_many'
]]
--- @include "includes/quote"
--- @include "includes/changed"
--- @include "includes/holds"
--- @include "includes/alerts"

local r = redis.call('HMGET', KEYS[3], 'state', 'svc', 'free', 'paid', 'amt', 'price', 'exp', 'count',
  'ccount', 'rec', 'cfree', 'cpaid', 'camt', 'creleased', 'req', 'period', 'gh', 'bh', 'day')
local state = r[1]
if not state then return {'missing'} end
local now = tonumber(ARGV[5])
local a = redis.call('HMGET', KEYS[1], 'bal', 'held', 'g')
local bal, held, grants = tonumber(a[1] or '0'), tonumber(a[2] or '0'), decodeGrants(a[3])

if state == 'committed' then
  if r[9] ~= ARGV[2] then return {'reused'} end
  return {'dup', r[10], r[11], r[12], r[13], r[14], int(bal - held + grantsAvailable(grants, now))}
end
if state ~= 'held' then return {state} end

local heldFree, heldAmount = tonumber(r[3]), tonumber(r[5])
local hold = heldParts(r[17], r[18], heldAmount)
if now >= tonumber(r[7]) then
  -- Past its time: expire it now (the expiry job will find nothing to do).
  if heldFree > 0 then redis.call('HINCRBY', KEYS[2], r[2], int(-heldFree)) end
  unhold(KEYS[1], grants, hold, 0)
  if r[19] then addSpent(KEYS[2], r[19], -heldAmount, nil) end
  redis.call('HSET', KEYS[3], 'state', 'expired')
  changed(KEYS[1], KEYS[8], ARGV[6], ARGV[5])
  redis.call('HDEL', KEYS[4], ARGV[1])
  holdsChanged(KEYS[4], KEYS[7], ARGV[6])
  local a2 = redis.call('HMGET', KEYS[1], 'bal', 'held')
  local events = balanceEvents({}, KEYS[1], tonumber(a2[1]) - tonumber(a2[2] or '0') + grantsAvailable(grants, now))
  otherEvent(events, 'reservation.expired', {reservationId = ARGV[1], service = r[2], released = int(heldAmount)})
  local json = journalEvents({KEYS[1], KEYS[8], KEYS[5], KEYS[6]}, 'expired-' .. ARGV[1], ARGV[6], ARGV[5], events)
  return {'expired', '', '0', '0', '0', '0', '0', json}
end

local count = tonumber(ARGV[2])
if count > tonumber(r[8]) then return {'too_many', r[8]} end
-- Priced like any call, with the hold as the whole budget: its free calls as the quota, its amount
-- as the balance. `count` is at most what is held, so the hold always covers it (no refusal).
local free, paid, amount = quote({ bal = heldAmount, od = 0, held = 0 }, 0, count, heldFree, r[6], 0, nil)

if heldFree - free > 0 then redis.call('HINCRBY', KEYS[2], r[2], int(free - heldFree)) end
local parts
bal, held, parts = unhold(KEYS[1], grants, hold, amount)
local released = heldAmount - amount
if r[19] then addSpent(KEYS[2], r[19], -released, nil) end
changed(KEYS[1], KEYS[8], ARGV[6], ARGV[5])

local rec, json = '', ''
if count > 0 then
  rec = ARGV[3]
  local change = cjson.decode(ARGV[4])
  change.service, change.requestId, change.period, change.unitPrice = r[2], r[15], r[16], r[6]
  change.count, change.free, change.paid, change.amount = int(count), int(free), int(paid), int(amount)
  if #parts > 0 then change.grants = parts end
  json = cjson.encode(withEvents(change, balanceEvents({}, KEYS[1], bal - held + grantsAvailable(grants, now))))
  redis.call('HSET', KEYS[5], rec, json)
  journaled(KEYS[6], ARGV[6], ARGV[5])
else
  json = journalEvents({KEYS[1], KEYS[8], KEYS[5], KEYS[6]}, 'commit-' .. ARGV[1], ARGV[6], ARGV[5],
    balanceEvents({}, KEYS[1], bal - held + grantsAvailable(grants, now)))
end
redis.call('HSET', KEYS[3], 'state', 'committed', 'ccount', ARGV[2], 'rec', rec, 'cfree', int(free), 'cpaid', int(paid),
  'camt', int(amount), 'creleased', int(released))
redis.call('HDEL', KEYS[4], ARGV[1])
holdsChanged(KEYS[4], KEYS[7], ARGV[6])
return {'ok', rec, int(free), int(paid), int(amount), int(released), int(bal - held + grantsAvailable(grants, now)), json}
