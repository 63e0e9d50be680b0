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
local acct = redis.call('HMGET', KEYS[1], 'bal', 'od', 'held')
if not acct[1] then return {'init'} end
local bal, od, held = tonumber(acct[1]), tonumber(acct[2] or '0'), tonumber(acct[3] or '0')

local count = tonumber(ARGV[2])
local freeLeft = tonumber(ARGV[3]) - tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if freeLeft < 0 then freeLeft = 0 end
local paid = count - math.min(count, freeLeft)

local allowed, reason = '1', 'free'
if paid > 0 then
  if ARGV[4] == '' then
    allowed, reason = '0', 'insufficient_quota'
  elseif paid * tonumber(ARGV[4]) <= bal + od - held then
    reason = 'balance'
  else
    allowed, reason = '0', 'insufficient_balance'
  end
end
return {'ok', allowed, reason, string.format('%d', freeLeft), string.format('%d', bal - held)}
