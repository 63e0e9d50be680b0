--[[
  Holds an amount for a call whose cost is known only afterwards: takes the month's free quota first,
  then moves the rest of the estimate into the account's held amount, which no deduct or other hold
  can spend. Idempotent by request_id.

  Input:
    KEYS[1] account hash             {bal, od, held, v: bumped by every change}
    KEYS[2] quota hash of the month  {<service>: free calls used}
    KEYS[3] request key              the first answer to this request_id
    KEYS[4] reservation hash         (new)
    KEYS[5] holds index hash         {<reservation id>: expiry, unix ms}
    KEYS[6] holds index of the user's slot   (see includes/changed.lua)
    KEYS[7] activity index of the user's slot
    KEYS[8], KEYS[9] the deduct requests of this window and the previous one (the request id's shard):
            a deduct took the id: 'reused' (see includes/remembered.lua)
    KEYS[10] pending journal hash      (events only: see includes/alerts.lua)
    KEYS[11] journal index of the user's slot

    ARGV[1] fingerprint of the request
    ARGV[2] service name
    ARGV[3] count of calls to hold
    ARGV[4] free quota of the month
    ARGV[5] unit price (micro-units), '' for a free-only service
    ARGV[6] reservation id
    ARGV[7] expiry of the hold, unix ms
    ARGV[8] idempotency TTL of the request key, ms
    ARGV[9] expiry of the month's quota hash, unix ms
    ARGV[10] request id
    ARGV[11] period (YYYYMM)
    ARGV[12] lifetime of the reservation hash, ms (its TTL plus the time a finished one is remembered)
    ARGV[13] user id (the indexes' member)
    ARGV[14] now, unix ms
    ARGV[15] the request id's 12-byte digest (the field in KEYS[8], KEYS[9]), as 24 hex digits
    ARGV[16] the idempotency window, ms
    ARGV[17] the business day of the month (DD), for the daily spending limit

  Priced as deduct prices (the user's own price, grants, spending limits: see includes/quote.lua).
  The hold takes from the grants still spendable at its expiry, in spending order, then from the
  balance: so a commit, which comes before the hold's expiry, never spends a grant past its own. The
  reservation hash keeps what each held: 'gh' {{grant id, amount}...} JSON, 'bh' the balance's part,
  and the business day ('day') whose spending the hold counts in.

  Output: {status, reservationId, freeCount, paidCount, heldAmount, available, expiresAt, event-only change
          JSON of the hold or of a refusal for balance ('' if none)}
    status 'ok' | 'dup' | 'reused' | 'init' | 'no_quota' | 'no_balance' | 'limit'
]]
--- @include "includes/quote"
--- @include "includes/changed"
--- @include "includes/remembered"
--- @include "includes/alerts"

local first = redis.call('HMGET', KEYS[3], 'fp', 'rsv', 'free', 'paid', 'amt', 'avail', 'exp')
if first[1] then
  if first[1] ~= ARGV[1] then return {'reused'} end
  return {'dup', first[2], first[3], first[4], first[5], first[6], first[7]}
end
local now, windowMs = tonumber(ARGV[14]), tonumber(ARGV[16])
local field = requestField(ARGV[15])
if rememberedDeduct(KEYS[8], field, windowMs, now) or rememberedDeduct(KEYS[9], field, windowMs, now) then
  return {'reused'}
end

local acct = readAccount(KEYS[1], ARGV[2])
if not acct then return {'init'} end
local freeQuota, unitPrice = priced(acct, ARGV[4], ARGV[5])
local used = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
local count = tonumber(ARGV[3])
local holdable = grantsAvailable(acct.grants, tonumber(ARGV[7]))
local left = limitLeft(acct, KEYS[2], ARGV[17])
local free, paid, amount, refusal = quote(acct, used, count, freeQuota, unitPrice, holdable, left)
local function available() return int(acct.bal - acct.held + grantsAvailable(acct.grants, now)) end
if refusal then
  local journal = ''
  if refusal == 'no_balance' then
    local events = depletedEvent({}, KEYS[1], ARGV[2], amount, tonumber(available()))
    if #events > 0 then
      local id = eventEntryId(KEYS[1], 'reserve-' .. ARGV[6], ARGV[14])
      journal = journalEvents({KEYS[1], KEYS[7], KEYS[10], KEYS[11]}, id, ARGV[13], ARGV[14], events)
    end
  end
  return {refusal, '', int(free), int(paid), int(amount), available(), '', journal}
end

if free > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], int(free))
  redis.call('PEXPIREAT', KEYS[2], ARGV[9])
end
local parts, fromBalance = {}, amount
if amount > 0 then
  if holdable > 0 then
    parts, fromBalance = takeFromGrants(acct.grants, amount, tonumber(ARGV[7]), true)
    saveGrants(KEYS[1], acct.grants)
  end
  if fromBalance > 0 then acct.held = redis.call('HINCRBY', KEYS[1], 'held', int(fromBalance)) end
  addSpent(KEYS[2], ARGV[17], amount, ARGV[9])
end
changed(KEYS[1], KEYS[7], ARGV[13], ARGV[14])
redis.call('HSET', KEYS[4], 'state', 'held', 'svc', ARGV[2], 'count', ARGV[3], 'free', int(free), 'paid', int(paid),
  'amt', int(amount), 'price', unitPrice, 'period', ARGV[11], 'req', ARGV[10], 'exp', ARGV[7], 'bh', int(fromBalance),
  'day', ARGV[17])
if #parts > 0 then redis.call('HSET', KEYS[4], 'gh', cjson.encode(parts)) end
redis.call('PEXPIRE', KEYS[4], ARGV[12])
redis.call('HSET', KEYS[5], ARGV[6], ARGV[7])
redis.call('ZADD', KEYS[6], 'LT', ARGV[7], ARGV[13])
local avail = available()
redis.call('HSET', KEYS[3], 'fp', ARGV[1], 'rsv', ARGV[6], 'free', int(free), 'paid', int(paid), 'amt', int(amount),
  'avail', avail, 'exp', ARGV[7])
redis.call('PEXPIRE', KEYS[3], ARGV[8])
local events = balanceEvents({}, KEYS[1], tonumber(avail))
quotaEvents(events, KEYS[1], KEYS[2], ARGV[2], used + free, freeQuota)
local journal = journalEvents({KEYS[1], KEYS[7], KEYS[10], KEYS[11]}, 'reserve-' .. ARGV[6], ARGV[13], ARGV[14], events)
return {'ok', ARGV[6], int(free), int(paid), int(amount), avail, ARGV[7], journal}
