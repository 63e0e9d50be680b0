--[[
  Gives a user a credit grant (SPEC 14), journaled in the same step like any change, and idempotent by
  grant id: a marker remembers the payload's fingerprint, so a replay answers 'dup' and the same id
  with another payload 'reused'.

  Input:
    KEYS[1] account hash             (field 'g': the grants, see includes/grants.lua)
    KEYS[2] applied marker of this grant id
    KEYS[3] pending journal hash
    KEYS[4] journal index of the user's slot   (see includes/changed.lua)
    KEYS[5] activity index of the user's slot

    ARGV[1] grant id
    ARGV[2] amount (micro-units, > 0)
    ARGV[3] priority (lower is spent first)
    ARGV[4] expiry, unix ms, or '' for never
    ARGV[5] category: 'promotional' | 'paid'
    ARGV[6] the change JSON (kind 'grant', string values only)
    ARGV[7] journal field of the change
    ARGV[8] marker TTL, ms
    ARGV[9] payload fingerprint
    ARGV[10] user id (the indexes' member)
    ARGV[11] now, unix ms
    ARGV[12] the most grants a user may hold at once
    ARGV[13] the most balance and grants together may hold (micro-units)

  Output: {status, available, events JSON of the change ('' if none: includes/alerts.lua)}
    status 'ok' | 'dup' | 'reused' | 'init' (account not loaded) | 'too_many' | 'too_large'
           (refused: nothing changed)
    available = balance - held + the grants spendable now
]]
--- @include "includes/int"
--- @include "includes/changed"
--- @include "includes/grants"
--- @include "includes/alerts"

local now = tonumber(ARGV[11])
local a = redis.call('HMGET', KEYS[1], 'bal', 'held', 'g')
local function available(grants)
  return int(tonumber(a[1] or '0') - tonumber(a[2] or '0') + grantsAvailable(grants, now))
end
local marker = redis.call('GET', KEYS[2])
if marker then
  if marker ~= ARGV[9] then return {'reused'} end
  return {'dup', available(decodeGrants(a[3]))}
end
if not a[1] then return {'init'} end
local grants = decodeGrants(a[3])
if findGrant(grants, ARGV[1]) then return {'reused'} end
if #grants >= tonumber(ARGV[12]) then return {'too_many'} end
-- Balance and grants together stay below 2^53 micro-units, where Lua's numbers are exact integers.
local total = tonumber(a[1]) + tonumber(ARGV[2])
for _, g in ipairs(grants) do total = total + tonumber(g.rem) end
if total > tonumber(ARGV[13]) then return {'too_large'} end

insertGrant(grants, { id = ARGV[1], rem = ARGV[2], held = '0', prio = ARGV[3], exp = ARGV[4], at = ARGV[11],
  cat = ARGV[5] })
saveGrants(KEYS[1], grants)
changed(KEYS[1], KEYS[5], ARGV[10], ARGV[11])
local events = balanceEvents({}, KEYS[1], tonumber(available(grants)))
local change = ARGV[6]
if #events > 0 then change = cjson.encode(withEvents(cjson.decode(ARGV[6]), events)) end
redis.call('HSET', KEYS[3], ARGV[7], change)
journaled(KEYS[4], ARGV[10], ARGV[11])
redis.call('SET', KEYS[2], ARGV[9], 'PX', ARGV[8])
return {'ok', available(grants), #events > 0 and cjson.encode(events) or ''}
