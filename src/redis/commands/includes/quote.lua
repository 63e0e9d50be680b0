--[[
  Included by check, deduct and reserve: the one place that prices calls (SPEC 3, 14).

  readAccount(key, service[, also]) -> acct, or nil if the account is not loaded. acct has
    bal, od, held          balance, overdraft limit, amount held from the balance (numbers)
    grants                 the account's credit grants (see includes/grants.lua), a list, maybe empty
    freeQuota, unitPrice   this user's price of `service` (field p:<service> = "<free quota>|<unit
                           price>", either part empty for the catalogue's), nil where not overridden
    limDay, limMonth       spending limits (fields lim_d, lim_m), nil where none
    also                   with `also` (a list of more field names), their values, read in the same HMGET
  priced(acct, freeQuota, unitPrice) -> the free quota and unit price this call is charged at: the
    user's override, read in the same atomic step as the charge, else the catalogue's (the ARGV)
  limitLeft(acct, quotaKey, day) -> what the spending limits still allow today and this month (the
    smaller), or nil without limits. Spent amounts live in the month's quota hash ('$m' for the month,
    '$d:<DD>' per business day), so they reset with the month's key as the free quotas do.
  quote(acct, used, count, freeQuota, unitPrice, grantsAvailable, limitLeft)
    -> free, paid, amount, refusal ('no_quota' | 'no_balance' | 'limit' | nil), freeLeft
    Free quota of the month first, then grants and the balance, which may not go below -od (the
    overdraft limit) nor spend what is held; and never more than the limits left.
    unitPrice '' means free-only: past the quota, refused.
]]
--- @include "includes/int"
--- @include "includes/grants"

local function readAccount(key, service, also)
  local a = redis.call('HMGET', key, 'bal', 'od', 'held', 'g', 'p:' .. service, 'lim_d', 'lim_m', unpack(also or {}))
  if not a[1] then return nil end
  local acct = { bal = tonumber(a[1]), od = tonumber(a[2] or '0'), held = tonumber(a[3] or '0'),
    grants = decodeGrants(a[4]), limDay = tonumber(a[6] or ''), limMonth = tonumber(a[7] or '') }
  if a[5] then
    local free, price = string.match(a[5], '^(%d*)|(%d*)$')
    if free and free ~= '' then acct.freeQuota = tonumber(free) end
    if price and price ~= '' then acct.unitPrice = price end
  end
  if also then
    acct.also = {}
    for i = 1, #also do acct.also[i] = a[7 + i] end
  end
  return acct
end

local function priced(acct, freeQuota, unitPrice)
  return acct.freeQuota or tonumber(freeQuota), acct.unitPrice or unitPrice
end

local function limitLeft(acct, quotaKey, day)
  if not acct.limDay and not acct.limMonth then return nil end
  local spent = redis.call('HMGET', quotaKey, '$m', '$d:' .. day)
  local left = nil
  if acct.limMonth then left = acct.limMonth - tonumber(spent[1] or '0') end
  if acct.limDay then
    local dayLeft = acct.limDay - tonumber(spent[2] or '0')
    if not left or dayLeft < left then left = dayLeft end
  end
  if left < 0 then left = 0 end
  return left
end

-- Counts `amount` as spent today and this month (negative: gives a hold's unused part back).
local function addSpent(quotaKey, day, amount, quotaExpiresAt)
  if amount == 0 then return end
  redis.call('HINCRBY', quotaKey, '$m', int(amount))
  redis.call('HINCRBY', quotaKey, '$d:' .. day, int(amount))
  if quotaExpiresAt then redis.call('PEXPIREAT', quotaKey, quotaExpiresAt) end
end

local function quote(acct, used, count, freeQuota, unitPrice, grantsAvailable, left)
  local freeLeft = freeQuota - used
  if freeLeft < 0 then freeLeft = 0 end
  local free = math.min(count, freeLeft)
  local paid = count - free
  local amount = 0
  if paid > 0 then
    if unitPrice == '' then return free, paid, 0, 'no_quota', freeLeft end
    amount = paid * tonumber(unitPrice)
    local spendable = acct.bal + acct.od - acct.held + grantsAvailable
    if amount > spendable then return free, paid, amount, 'no_balance', freeLeft end
    if left and amount > left then return free, paid, amount, 'limit', freeLeft end
  end
  return free, paid, amount, nil, freeLeft
end
