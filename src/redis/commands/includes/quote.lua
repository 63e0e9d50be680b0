--[[
  Included by check, deduct, reserve and commit-reservation: the one place that prices calls.

  readAccount(key) -> bal, od, held (numbers), or nil if the account is not loaded.
  quote(bal, od, held, used, count, freeQuota, unitPrice)
    -> free, paid, amount, refusal ('no_quota' | 'no_balance' | nil), freeLeft
    Free quota of the month first, then the balance, which may not go below -od (the overdraft
    limit) nor spend what is held. unitPrice '' means free-only: past the quota, refused.
]]
--- @include "includes/int"

local function readAccount(key)
  local a = redis.call('HMGET', key, 'bal', 'od', 'held')
  if not a[1] then return nil end
  return tonumber(a[1]), tonumber(a[2] or '0'), tonumber(a[3] or '0')
end

local function quote(bal, od, held, used, count, freeQuota, unitPrice)
  local freeLeft = freeQuota - used
  if freeLeft < 0 then freeLeft = 0 end
  local free = math.min(count, freeLeft)
  local paid = count - free
  local amount = 0
  if paid > 0 then
    if unitPrice == '' then return free, paid, 0, 'no_quota', freeLeft end
    amount = paid * tonumber(unitPrice)
    if amount > bal + od - held then return free, paid, amount, 'no_balance', freeLeft end
  end
  return free, paid, amount, nil, freeLeft
end
