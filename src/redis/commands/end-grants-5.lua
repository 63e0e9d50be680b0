--[[
  Ends credit grants: those past their expiry ('expire', the expiry job) or one grant ('void', an
  operator). What is left of each leaves by a journaled change (kind 'grant_end', how 'expired' or
  'voided'): one ledger entry per grant. A grant part of which an open reservation holds is not
  ended yet (that hold may still be committed, before the grant's expiry: see reserve-11.lua); a voided
  one is marked so that nothing new spends it, and the expiry job ends it once its holds are gone.

  Input:
    KEYS[1] account hash             (field 'g': the grants, see includes/grants.lua)
    KEYS[2] pending journal hash
    KEYS[3] journal index of the user's slot   (see includes/changed.lua)
    KEYS[4] activity index of the user's slot
    KEYS[5] 'void': the creation marker of the grant to void (create-grant-5.lua's KEYS[2]); 'expire':
            any key of the user's slot (not read)

    ARGV[1] 'expire' | 'void'
    ARGV[2] grant id to void ('' for 'expire')
    ARGV[3] now, unix ms
    ARGV[4] now, ISO instant (the changes' `at`)
    ARGV[5] user id (the indexes' member)

  Output: {status, voided, change JSON, ...}: voided, for 'void', the grant's unheld remainder when it
    was voided (read in this step); then one change (kind 'grant_end', with its events) per grant ended now;
    each carries grant.expired (expired or voided: data.how says which), and the last one the
    balance alarms the ending caused (includes/alerts.lua). A void of a held grant that ends nothing
    returns instead the event-only entry (kind 'events') of the alarms its void caused, if any.
    status 'ok' | 'init' (account not loaded) | 'held' (voided, but ended only once its holds are gone)
           | 'ended' (the grant to void was given and has ended: voided or expired already)
           | 'missing' (not live, and no marker says it was given: never given, or given long enough ago
             for its marker to be gone, then only MySQL knows)
    Read in this same step, the marker decides 'ended' against 'missing': a grant created a moment after
    this void is then not live here and not marked either, so the void answers as if before it.
]]
--- @include "includes/int"
--- @include "includes/changed"
--- @include "includes/grants"
--- @include "includes/alerts"

local now = tonumber(ARGV[3])
local function notLive()
  if redis.call('EXISTS', KEYS[5]) == 1 then return 'ended' end
  return 'missing'
end
local json = redis.call('HGET', KEYS[1], 'g')
if not json then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'init'} end
  if ARGV[1] == 'void' then return {notLive()} end
  return {'ok'}
end
local grants = decodeGrants(json)
local status, voided = 'ok', ''
if ARGV[1] == 'void' then
  local g = findGrant(grants, ARGV[2])
  if not g then return {notLive()} end
  g.void = '1'
  -- What leaves the customer's reach now: the unheld remainder (a held part may still be charged).
  voided = int(tonumber(g.rem) - tonumber(g.held))
  if tonumber(g.held) > 0 then status = 'held' end
end

local ended, kept = {}, {}
for _, g in ipairs(grants) do
  local due = g.void == '1' or (g.exp ~= '' and tonumber(g.exp) <= now)
  if due and tonumber(g.held) == 0 then
    local how = 'expired'
    if g.void == '1' then how = 'voided' end
    local change = { kind = 'grant_end', id = g.id, userId = ARGV[5], amount = g.rem, how = how, at = ARGV[4] }
    withEvents(change, otherEvent({}, 'grant.expired', {grantId = g.id, remaining = g.rem, how = how}))
    ended[#ended + 1] = change
  else
    kept[#kept + 1] = g
  end
end
local out = {status, voided}
if #ended > 0 or status == 'held' then
  saveGrants(KEYS[1], kept)
  -- What is spendable now: what ended is gone, and so is a voided grant's unheld part, even while holds
  -- keep the grant itself (its alarms fire at the void, not hours later when its holds end).
  local a = redis.call('HMGET', KEYS[1], 'bal', 'held')
  local available = tonumber(a[1]) - tonumber(a[2] or '0') + grantsAvailable(kept, now)
  if #ended > 0 then
    local last = ended[#ended]
    last.events = balanceEvents(last.events, KEYS[1], available)
  end
  for _, change in ipairs(ended) do
    local json = cjson.encode(change)
    redis.call('HSET', KEYS[2], 'grant_end:' .. change.id, json)
    out[#out + 1] = json
  end
  changed(KEYS[1], KEYS[4], ARGV[5], ARGV[3])
  if #ended > 0 then
    journaled(KEYS[3], ARGV[5], ARGV[3])
  else
    -- A held grant voided and nothing ended: the alarms ride in an event-only entry of their own.
    local id = eventEntryId(KEYS[1], 'void-' .. ARGV[2], ARGV[3])
    local json = journalEvents({KEYS[1], KEYS[4], KEYS[2], KEYS[3]}, id, ARGV[5], ARGV[3],
      balanceEvents({}, KEYS[1], available))
    if json ~= '' then out[#out + 1] = json end
  end
end
return out
