--[[
  Changes a balance by a signed amount that is not a call: a paid recharge, an operator adjustment.
  Writes the change to the pending journal in the same step, and marks it applied so that the same
  credit (same kind and id) never lands twice, however often its job runs.

  Input:
    KEYS[1] account hash           {bal, od, held, g: grants, v: bumped by every change}
    KEYS[2] applied marker         the amount, once this credit has been applied
    KEYS[3] pending journal hash   {<change id>: change JSON}
    KEYS[4] journal index of the user's slot   (see includes/changed.lua)
    KEYS[5] activity index of the user's slot

    ARGV[1] signed amount (micro-units)
    ARGV[2] journal field (change id)
    ARGV[3] change JSON
    ARGV[4] marker TTL, ms
    ARGV[5] the largest balance allowed (micro-units)
    ARGV[6] '1' to refuse a debit that would take the available balance below zero
    ARGV[7] user id (the indexes' member)
    ARGV[8] now, unix ms

  Output: {status, balance, amount first applied under this id (for 'dup'), events of the change as a
          JSON list ('' if none; for 'dup', those of the first application if still journaled; see
          includes/alerts.lua)}
    status 'ok' | 'dup' (already applied) | 'init' (account not loaded)
           | 'no_balance' | 'too_large' (refused: nothing changed)
]]
--- @include "includes/int"
--- @include "includes/changed"
--- @include "includes/alerts"
--- @include "includes/grants"

local applied = redis.call('GET', KEYS[2])
if applied then
  -- The events of the first application, while its change is still journaled (a retry books them).
  local first = redis.call('HGET', KEYS[3], ARGV[2])
  local events = first and cjson.decode(first).events
  return {'dup', redis.call('HGET', KEYS[1], 'bal') or '0', applied, events and cjson.encode(events) or ''}
end
local acct = redis.call('HMGET', KEYS[1], 'bal', 'od', 'held', 'g')
if not acct[1] then return {'init'} end
local bal, od, held = tonumber(acct[1]), tonumber(acct[2] or '0'), tonumber(acct[3] or '0')
local amount = tonumber(ARGV[1])

if amount > 0 and bal + amount > tonumber(ARGV[5]) then return {'too_large', int(bal)} end
if amount < 0 and ARGV[6] == '1' and bal + od - held + amount < 0 then return {'no_balance', int(bal)} end

bal = redis.call('HINCRBY', KEYS[1], 'bal', ARGV[1])
changed(KEYS[1], KEYS[5], ARGV[7], ARGV[8])
local change = cjson.decode(ARGV[3])
local events = {}
if change.kind == 'recharge' then otherEvent(events, 'recharge.paid', {orderId = change.id, amount = ARGV[1]}) end
-- The balance alarms compare what the user may spend: the grants spendable now count (docs/events.md).
balanceEvents(events, KEYS[1], bal - held + grantsAvailable(decodeGrants(acct[4]), tonumber(ARGV[8])))
redis.call('HSET', KEYS[3], ARGV[2], #events > 0 and cjson.encode(withEvents(change, events)) or ARGV[3])
journaled(KEYS[4], ARGV[7], ARGV[8])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
return {'ok', int(bal), '', #events > 0 and cjson.encode(events) or ''}
