--[[
  Charges a call: the month's free quota first, then the balance, never below the overdraft limit
  (0 unless an operator set one). In the same atomic step it writes the change to the user's pending
  journal, so that persistence to MySQL cannot miss it, and remembers the answer under the
  request_id, so that a replay charges nothing.

  Input:
    KEYS[1] account hash             {bal, od, held, v: bumped by every change}
    KEYS[2] quota hash of the month  {<service>: free calls used}
    KEYS[3] request key              the first answer to this request_id
    KEYS[4] pending journal hash     {<record id>: change JSON}
    KEYS[5] journal index of the user's slot   (see includes/changed.lua)
    KEYS[6] activity index of the user's slot

    ARGV[1] fingerprint of the request, to tell a replay from a reuse with another payload
    ARGV[2] service name
    ARGV[3] count of calls
    ARGV[4] free quota of the month
    ARGV[5] unit price (micro-units), '' for a free-only service
    ARGV[6] record id (journal field and the id the caller is given)
    ARGV[7] the change as JSON with string values only; free/paid/amount are added here
    ARGV[8] idempotency TTL of the request key, ms
    ARGV[9] expiry of the month's quota hash, unix ms
    ARGV[10] user id (the indexes' member)
    ARGV[11] now, unix ms

  Output: {status, recordId, freeCount, paidCount, amount, available}
    status 'ok' | 'dup' (replay: the first answer) | 'reused' | 'init' (account not loaded)
           | 'no_quota' | 'no_balance' (refused: nothing changed)
]]
--- @include "includes/quote"
--- @include "includes/changed"

local first = redis.call('HMGET', KEYS[3], 'fp', 'rec', 'free', 'paid', 'amt', 'avail')
if first[1] then
  if first[1] ~= ARGV[1] then return {'reused'} end
  return {'dup', first[2], first[3], first[4], first[5], first[6]}
end

local bal, od, held = readAccount(KEYS[1])
if not bal then return {'init'} end
local used = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
local free, paid, amount, refusal = quote(bal, od, held, used, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
if refusal then return {refusal, '', int(free), int(paid), int(amount), int(bal - held)} end

if free > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], int(free))
  redis.call('PEXPIREAT', KEYS[2], ARGV[9])
end
if amount > 0 then
  bal = redis.call('HINCRBY', KEYS[1], 'bal', int(-amount))
end

changed(KEYS[1], KEYS[6], ARGV[10], ARGV[11])
local change = cjson.decode(ARGV[7])
change.free, change.paid, change.amount = int(free), int(paid), int(amount)
redis.call('HSET', KEYS[4], ARGV[6], cjson.encode(change))
journaled(KEYS[5], ARGV[10], ARGV[11])

local avail = int(bal - held)
redis.call('HSET', KEYS[3], 'fp', ARGV[1], 'rec', ARGV[6], 'free', int(free), 'paid', int(paid), 'amt', int(amount), 'avail', avail)
redis.call('PEXPIRE', KEYS[3], ARGV[8])
return {'ok', ARGV[6], int(free), int(paid), int(amount), avail}
