--[[
  Charges a call: the month's free quota first, then the balance, never below the overdraft limit
  (0 unless an operator set one). In the same atomic step it writes the change to the user's pending
  journal, so that persistence to MySQL cannot miss it, and remembers the answer under the
  request_id, so that a replay charges nothing.

  Remembered requests are compact (SPEC 16: at most 64 bytes each): per user, idempotency window
  (of length W, numbered floor(t / W)) and shard (1 of 16, by the request id's digest), one hash
  {<12-byte digest of the request id>: 32 packed bytes: payload fingerprint, first-seen second, free,
  paid, amount, available}, small enough to stay a listpack, expiring whole two windows after its
  window began. A request is remembered while first-seen + W > now: it is looked up in its shard of
  this window and of the previous one. A call credit grants paid also leaves, under the digest
  followed by 'g', which grants paid how much (what a refund gives back to them).

  Input:
    KEYS[1] account hash             {bal, od, held, v: bumped by every change}
    KEYS[2] quota hash of the month  {<service>: free calls used}
    KEYS[3] requests of this window (the request id's shard)
    KEYS[4] requests of the previous window (same shard)
    KEYS[5] pending journal hash     {<record id>: change JSON}
    KEYS[6] journal index of the user's slot   (see includes/changed.lua)
    KEYS[7] activity index of the user's slot
    KEYS[8] the request id's reservation request hash (a reservation took the id: 'reused')

    ARGV[1] the request id's 12-byte digest (field), as 24 hex digits, and ARGV[12] a 32-bit fingerprint
            of the payload, to tell a replay from a reuse with another payload (with the count, remembered
            as free + paid)
    ARGV[2] service name
    ARGV[3] count of calls
    ARGV[4] free quota of the month
    ARGV[5] unit price (micro-units), '' for a free-only service
    ARGV[6] record id (journal field and the id the caller is given)
    ARGV[7] request id (the journaled change's; ARGV[1] is its digest)
    ARGV[8] the idempotency window W, ms
    ARGV[9] expiry of the month's quota hash, unix ms
    ARGV[10] user id (the indexes' member)
    ARGV[11] now, unix ms
    ARGV[12] payload fingerprint (0 .. 2^32-1)
    ARGV[13] when this window's hash expires, unix ms (two windows after it began)
    ARGV[14] the business day (YYYY-MM-DD): the change's day; its DD names the daily spending limit's field
    ARGV[15] the period (YYYYMM)
    ARGV[16] now as ISO 8601 (the change's `at`)

  The user's own price overrides ARGV[4] and ARGV[5] (see includes/quote.lua), credit grants pay
  before the balance (includes/grants.lua), and spending limits may refuse ('limit'). The journaled
  change is built here from the arguments (none of it is sent twice): {kind = 'deduction', id, userId,
  requestId, service, count, period, day, at, free, paid, amount, unitPrice (the one charged)} and,
  when grants paid, `grants`: {{grant id, amount}...}.

  Output: {status, recordId, freeCount, paidCount, amount, available, unitPrice, grants JSON ('' if none),
          events JSON ('' if none)}
    (the last three only for 'ok': what the journaled change got here; for 'no_balance', element 7 is
    the event-only change JSON of balance.depleted, or '': see includes/alerts.lua)
    status 'ok' | 'dup' (replay: the first answer; recordId is 'this' or 'previous': the window it was
           first seen in) | 'reused' | 'init' (account not loaded) | 'no_quota' | 'no_balance'
           | 'limit' (refused: nothing changed)
    available = balance - held + the grants spendable now
]]
--- @include "includes/quote"
--- @include "includes/changed"
--- @include "includes/remembered"
--- @include "includes/alerts"

local now, field, dd = tonumber(ARGV[11]), requestField(ARGV[1]), string.sub(ARGV[14], 9, 10)
local function remembered(key, window)
  local fp, free, paid, amt, avail = rememberedDeduct(key, field, tonumber(ARGV[8]), now)
  if not fp then return nil end
  -- free + paid is the count first charged: with it, another count is a reuse even where the two
  -- payloads' 32-bit fingerprints collide (passport|129599 and passport|732382 do).
  if fp ~= tonumber(ARGV[12]) or free + paid ~= tonumber(ARGV[3]) then return {'reused'} end
  return {'dup', window, int(free), int(paid), int(amt), int(avail)}
end
local first = remembered(KEYS[3], 'this') or remembered(KEYS[4], 'previous')
if first then return first end
if redis.call('EXISTS', KEYS[8]) == 1 then return {'reused'} end

-- The alarm fields the events below read come with the account and the quota used: fewer calls into Redis.
local acct = readAccount(KEYS[1], ARGV[2], {'thr_q', unpack(ALARM_FIELDS)})
if not acct then return {'init'} end
local freeQuota, unitPrice = priced(acct, ARGV[4], ARGV[5])
local quotaFields = redis.call('HMGET', KEYS[2], ARGV[2], '!al:' .. ARGV[2])
local used = tonumber(quotaFields[1] or '0')
local fromGrants = grantsAvailable(acct.grants, now)
local left = limitLeft(acct, KEYS[2], dd)
local free, paid, amount, refusal = quote(acct, used, tonumber(ARGV[3]), freeQuota, unitPrice, fromGrants, left)
if refusal then
  local available, journal = acct.bal - acct.held + fromGrants, ''
  if refusal == 'no_balance' then
    local events = depletedEvent({}, KEYS[1], ARGV[2], amount, available)
    if #events > 0 then
      journal = journalEvents({KEYS[1], KEYS[7], KEYS[5], KEYS[6]}, eventEntryId(KEYS[1], ARGV[6], ARGV[11]), ARGV[10],
        ARGV[11], events)
    end
  end
  return {refusal, '', int(free), int(paid), int(amount), int(available), journal}
end

if free > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], int(free))
  redis.call('PEXPIREAT', KEYS[2], ARGV[9])
end
local bal, parts = acct.bal, {}
if amount > 0 then
  local fromBalance = amount
  if fromGrants > 0 then
    parts, fromBalance = takeFromGrants(acct.grants, amount, now, false)
    saveGrants(KEYS[1], acct.grants)
    fromGrants = fromGrants - (amount - fromBalance)
  end
  if fromBalance > 0 then bal = redis.call('HINCRBY', KEYS[1], 'bal', int(-fromBalance)) end
  addSpent(KEYS[2], dd, amount, ARGV[9])
end

changed(KEYS[1], KEYS[7], ARGV[10], ARGV[11])
local change = {kind = 'deduction', id = ARGV[6], userId = ARGV[10], requestId = ARGV[7], service = ARGV[2],
  count = ARGV[3], period = ARGV[15], day = ARGV[14], at = ARGV[16],
  free = int(free), paid = int(paid), amount = int(amount), unitPrice = unitPrice}
local grantParts = ''
if #parts > 0 then
  change.grants = parts
  grantParts = cjson.encode(parts)
  -- Which grants paid, for a refund within the window (see refund-*.lua): beside the request's answer,
  -- as "<grant id>=<amount>,..." (grant ids hold no '=' nor ','), only for calls grants paid.
  local paidBy = {}
  for i, p in ipairs(parts) do paidBy[i] = p[1] .. '=' .. p[2] end
  redis.call('HSET', KEYS[3], field .. 'g', table.concat(paidBy, ','))
end
local available = bal - acct.held + fromGrants
local also = acct.also
local events = balanceEvents({}, KEYS[1], available, {unpack(also, 2, 1 + #ALARM_FIELDS)})
quotaEvents(events, KEYS[1], KEYS[2], ARGV[2], used + free, freeQuota, {state = quotaFields[2], percent = also[1]})
redis.call('HSET', KEYS[5], ARGV[6], cjson.encode(withEvents(change, events)))
journaled(KEYS[6], ARGV[10], ARGV[11])

local avail = int(available)
local answer = struct.pack(PACKED_ANSWER, tonumber(ARGV[12]), math.floor(now / 1000), free, paid, amount, available)
redis.call('HSET', KEYS[3], field, answer)
redis.call('PEXPIREAT', KEYS[3], ARGV[13])
return {'ok', ARGV[6], int(free), int(paid), int(amount), avail, unitPrice, grantParts,
  #events > 0 and cjson.encode(events) or ''}
