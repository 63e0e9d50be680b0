--[[
  Answers whether a call may go ahead, without changing anything: free quota of the month first,
  then the balance.

  Input:
    KEYS[1] account hash             {bal, od, held}
    KEYS[2] quota hash of the month  {<service>: free calls used}

    ARGV[1] service name
    ARGV[2] count of calls
    ARGV[3] free quota of the month
    ARGV[4] unit price (micro-units), '' for a free-only service

  Output:
    {'init'}                                    the account is not loaded into Redis yet
    {'ok', allowed, reason, freeLeft, available}
      allowed   '1' | '0'
      reason    'free' | 'balance' | 'insufficient_quota' | 'insufficient_balance'

  Amounts are integers below 2^53 (see src/lib/money.ts), exact in Lua's doubles, and leave the
  script through %d, never %g.
]]
--- @include "includes/quote"

local bal, od, held = readAccount(KEYS[1])
if not bal then return {'init'} end
local used = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local free, paid, amount, refusal, freeLeft = quote(bal, od, held, used, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])

local allowed, reason = '1', 'free'
if refusal == 'no_quota' then
  allowed, reason = '0', 'insufficient_quota'
elseif refusal == 'no_balance' then
  allowed, reason = '0', 'insufficient_balance'
elseif paid > 0 then
  reason = 'balance'
end
return {'ok', allowed, reason, int(freeLeft), int(bal - held)}
