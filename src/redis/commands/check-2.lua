--[[
  Answers whether a call may go ahead, without changing anything: free quota of the month first,
  then the balance.

  Input:
    KEYS[1] account hash             {bal, od, held}
    KEYS[2] quota hash of the month  {<service>: free calls used}

    ARGV[1] service name
    ARGV[2] count of calls
    ARGV[3] free quota of the month
    ARGV[4] unit price (micro-units), '' for a free-only service (both overridden by the user's
            own price, see includes/quote.lua)
    ARGV[5] now, unix ms (grants spendable now count as balance)
    ARGV[6] the business day of the month (DD), for the daily spending limit

  Output:
    {'init'}                                    the account is not loaded into Redis yet
    {'ok', allowed, reason, freeLeft, available}
      allowed   '1' | '0'
      reason    'free' | 'balance' | 'insufficient_quota' | 'insufficient_balance' | 'limit_reached'
      available balance - held + the grants spendable now

  Amounts are integers below 2^53 (see src/lib/money.ts), exact in Lua's doubles, and leave the
  script through %d, never %g.
]]
--- @include "includes/quote"

local acct = readAccount(KEYS[1], ARGV[1])
if not acct then return {'init'} end
local freeQuota, unitPrice = priced(acct, ARGV[3], ARGV[4])
local used = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local fromGrants = grantsAvailable(acct.grants, tonumber(ARGV[5]))
local left = limitLeft(acct, KEYS[2], ARGV[6])
local free, paid, amount, refusal, freeLeft = quote(acct, used, tonumber(ARGV[2]), freeQuota, unitPrice, fromGrants, left)

local allowed, reason = '1', 'free'
if refusal == 'no_quota' then
  allowed, reason = '0', 'insufficient_quota'
elseif refusal == 'no_balance' then
  allowed, reason = '0', 'insufficient_balance'
elseif refusal == 'limit' then
  allowed, reason = '0', 'limit_reached'
elseif paid > 0 then
  reason = 'balance'
end
return {'ok', allowed, reason, int(freeLeft), int(acct.bal - acct.held + fromGrants)}
