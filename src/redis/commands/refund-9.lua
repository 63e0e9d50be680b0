--[[
  Refunds calls of one deduct, whole or in part, idempotent by refund id. Works from what Redis
  remembers of the deduct (its compact answer in the window's request hash, see deduct-8.lua), so a
  deduct not yet persisted can be refunded; that memory is only read here, never changed.

  Which calls: the paid ones first, then the free ones. The paid part goes back to where it was taken
  from (returnPaidPart), priced at the unit price the call was charged at (the last paid call refunded
  takes whatever amount is left, so the refunds of a record sum to exactly its amount). The free part
  goes back to the quota of the current month only when the caller says the record is of that month.
  In the same atomic step the refund is journaled for MySQL and its answer remembered under the refund
  id; the calls refunded per record never exceed its count.

  Per user (hash tag), next to the request hashes and expiring with them:
    refunded:<record window> {<record's 12-byte request digest>: '>I4I4d' free, paid, amount refunded}
    refunds:<refund window>  {<12-byte refund id digest>: REFUND_ANSWER}
  A refund id is remembered while first-seen + W > now (W: the idempotency window), looked up in its
  window's hash and the previous one, as deduct requests are.

  Input:
    KEYS[1] account hash                         {bal, od, held, v}
    KEYS[2] quota hash of the current month      {<service>: free calls used}
    KEYS[3] the record's request hash (its window and shard; read only): the deduct's answer, and
            which grants paid it
    KEYS[4] refunded-so-far hash of the record's window
    KEYS[5] refund ids of this window
    KEYS[6] refund ids of the previous window
    KEYS[7] pending journal hash                 {<journal id>: change JSON}
    KEYS[8] journal index of the user's slot     (see includes/changed.lua)
    KEYS[9] activity index of the user's slot

    ARGV[1] the record's 12-byte request digest (field in KEYS[3] and KEYS[4]), as 24 hex digits
    ARGV[2] the refund id's 12-byte digest (field in KEYS[5], KEYS[6]), as 24 hex digits
    ARGV[3] payload fingerprint of the refund (request id and count), to tell a replay from a reuse
    ARGV[4] calls to refund, '' for the whole call
    ARGV[5] service whose free quota gets the free part back, '' for none (the record's month is over)
    ARGV[6] refund window, ms: a record first seen that long ago can no longer be refunded
    ARGV[7] idempotency window W, ms
    ARGV[8] now, unix ms
    ARGV[9] the change as JSON with string values only; count, free, paid, amount, freeReturned added here
    ARGV[10] journal id of the change
    ARGV[11] user id (the indexes' member)
    ARGV[12] when the refunded-so-far hash expires, unix ms (as the record's request hash)
    ARGV[13] when this window's refund-id hash expires, unix ms (two windows after it began)
    ARGV[14] the record's window number (kept in the answer, for its record id on a replay)
    ARGV[15] '1' if the caller found the record when it read it (rememberedDeduct), '' if it found none

  Output: {status, recordWindow, count, free, paid, amount, available, freeReturned, grants JSON, events JSON}
    amount: what was given back (less a slice forfeited by a grant that has ended); grants JSON: the
    parts of it given back to grants, {{grant id, amount}...}, '' if none
    status 'ok' | 'dup' (a replay: the first answer, nothing refunded now; freeReturned '')
           | 'reused' (the refund id was used with another payload) | 'gone' (no such record, or first
           seen a refund window or more ago) | 'too_many' (count: the calls left to refund) | 'init'
           (account not loaded) | 'stale' (the record is here now, but the caller read none: the deduct
           ran in between, so ARGV[5] and the change were worked out without it; read again and retry).
           Every refusal changes nothing.
]]
--- @include "includes/int"
--- @include "includes/changed"
--- @include "includes/remembered"
--- @include "includes/grants"
--- @include "includes/alerts"

-- fingerprint, first-seen second, record window, free, paid, amount, available
local REFUND_ANSWER = '>I4I4I4I4I4dd'
local REFUNDED = '>I4I4d'
local now = tonumber(ARGV[8])
local field, refundField = requestField(ARGV[1]), requestField(ARGV[2])

-- The paid part goes back where it was taken from, in reverse: a call took from grants (in spending
-- order, recorded beside its answer by deduct-8.lua as "<grant id>=<amount>,...") and then from the
-- balance, so refunds give back to the balance first, then to the grants, last one first. Refunds of
-- one record take consecutive slices of that reversed list (from what earlier refunds took), so parts
-- refunded in several refunds add up to exactly what each source paid. A grant no longer in the
-- account (its remainder left by expiry or void) forfeits its slice: promotional credit never turns
-- into balance. Returns the balance, the parts given to grants {{grant id, amount}...} and what was
-- forfeited.
local function returnPaidPart(account, amount, recAmount, doneAmount, grants)
  local sources = {}
  local paidBy = redis.call('HGET', KEYS[3], field .. 'g')
  local fromGrants = 0
  if paidBy then
    for id, part in string.gmatch(paidBy, '([^=,]+)=(%d+)') do
      table.insert(sources, 1, { id, tonumber(part) })
      fromGrants = fromGrants + tonumber(part)
    end
  end
  table.insert(sources, 1, { '', recAmount - fromGrants })
  local toBalance, parts, forfeited = 0, {}, 0
  local from, to, at = doneAmount, doneAmount + amount, 0
  for _, src in ipairs(sources) do
    local slice = math.min(to, at + src[2]) - math.max(from, at)
    if slice > 0 then
      if src[1] == '' then
        toBalance = toBalance + slice
      else
        local g = findGrant(grants, src[1])
        if g then
          g.rem = int(tonumber(g.rem) + slice)
          parts[#parts + 1] = { src[1], int(slice) }
        else
          forfeited = forfeited + slice
        end
      end
    end
    at = at + src[2]
  end
  if #parts > 0 then saveGrants(account, grants) end
  if toBalance > 0 then return redis.call('HINCRBY', account, 'bal', int(toBalance)), parts, forfeited end
  return tonumber(redis.call('HGET', account, 'bal')), parts, forfeited
end

local function rememberedRefund(key)
  local packed = redis.call('HGET', key, refundField)
  if not packed then return nil end
  local fp, firstSeen, window, free, paid, amount, avail = struct.unpack(REFUND_ANSWER, packed)
  if firstSeen * 1000 + tonumber(ARGV[7]) <= now then return nil end
  if fp ~= tonumber(ARGV[3]) then return {'reused'} end
  return {'dup', int(window), int(free + paid), int(free), int(paid), int(amount), int(avail), ''}
end
local first = rememberedRefund(KEYS[5]) or rememberedRefund(KEYS[6])
if first then return first end

local fp, recFree, recPaid, recAmount = rememberedDeduct(KEYS[3], field, tonumber(ARGV[6]), now)
if not fp then return {'gone'} end
-- A deduct of this request id that landed after the caller's read: its free calls' service and the
-- change's record id were not known to the caller (found by the model test: the free part was kept).
if ARGV[15] ~= '1' then return {'stale'} end

local account = redis.call('HMGET', KEYS[1], 'bal', 'held', 'g')
if not account[1] then return {'init'} end
local held = tonumber(account[2] or '0')
local grants = decodeGrants(account[3])

local doneFree, donePaid, doneAmount = 0, 0, 0
local done = redis.call('HGET', KEYS[4], field)
if done then doneFree, donePaid, doneAmount = struct.unpack(REFUNDED, done) end
local leftPaid, leftFree = recPaid - donePaid, recFree - doneFree
local count = recFree + recPaid
if ARGV[4] ~= '' then count = tonumber(ARGV[4]) end
if count > leftPaid + leftFree then return {'too_many', '', int(leftPaid + leftFree)} end

local paid = math.min(count, leftPaid)
local free = count - paid
local amount = 0
if paid == leftPaid then
  amount = recAmount - doneAmount
elseif paid > 0 then
  amount = paid * math.floor(recAmount / recPaid)
end

local bal, grantParts, forfeited = returnPaidPart(KEYS[1], amount, recAmount, doneAmount, grants)
local freeReturned = 0
if free > 0 and ARGV[5] ~= '' then
  -- Never below zero: the quota hash may have been rebuilt from MySQL since (an evicted account).
  local used = tonumber(redis.call('HGET', KEYS[2], ARGV[5]) or '0')
  freeReturned = math.min(free, used)
  if freeReturned > 0 then redis.call('HINCRBY', KEYS[2], ARGV[5], int(-freeReturned)) end
end

changed(KEYS[1], KEYS[9], ARGV[11], ARGV[8])
local change = cjson.decode(ARGV[9])
change.count, change.free, change.paid = int(count), int(free), int(paid)
change.amount, change.freeReturned = int(amount - forfeited), int(freeReturned)
local grantsJson = ''
if #grantParts > 0 then
  change.grants = grantParts
  grantsJson = cjson.encode(grantParts)
end
local avail = bal - held + grantsAvailable(grants, now)
local events = balanceEvents({}, KEYS[1], avail)
otherEvent(events, 'refund.created', {refundId = change.refundId, recordId = change.recordId,
  requestId = change.requestId, count = int(count), amount = int(amount - forfeited)})
withEvents(change, events)
redis.call('HSET', KEYS[7], ARGV[10], cjson.encode(change))
journaled(KEYS[8], ARGV[11], ARGV[8])

redis.call('HSET', KEYS[4], field, struct.pack(REFUNDED, doneFree + free, donePaid + paid, doneAmount + amount))
redis.call('PEXPIREAT', KEYS[4], ARGV[12])
redis.call('HSET', KEYS[5], refundField, struct.pack(REFUND_ANSWER, tonumber(ARGV[3]), math.floor(now / 1000),
  tonumber(ARGV[14]), free, paid, amount - forfeited, avail))
redis.call('PEXPIREAT', KEYS[5], ARGV[13])
return {'ok', ARGV[14], int(count), int(free), int(paid), int(amount - forfeited), int(avail), int(freeReturned),
  grantsJson, cjson.encode(events)}
