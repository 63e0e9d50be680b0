--[[
  Included by the scripts that spend, hold, give back or end credit grants (SPEC 14).

  A user's grants live in the account hash, field 'g': a JSON list kept in spending order (priority,
  lower first; then earliest expiry, none last; then oldest; then id), each grant
    {id, rem: what is left, held: the part of rem that reservations hold, prio, exp: unix ms or '' for
     never, at: created, unix ms, cat: 'promotional' | 'paid', void: '1' once voided}
  with every number a decimal string (cjson would print numbers through %.14g). The field is absent
  when the user has no grant, so calls of users without grants pay one HMGET field for them.

  A grant is spendable at time t while not voided and t < exp: every script compares with the time
  itself, so a grant is never spent after its expiry however late the expiry job runs.

  decodeGrants(json) -> list          saveGrants(key, list)
  grantsAvailable(list, t) -> the unheld remainder of the grants spendable at t
  takeFromGrants(list, amount, t, hold) -> parts {{id, amount}...}, the part of amount they did not
    cover. Takes in spending order; hold = true holds (held += part) instead of spending (rem -= part).
  findGrant(list, id) -> grant, index
  insertGrant(list, grant)            in spending order
]]
--- @include "includes/int"
local function decodeGrants(json)
  if not json or json == '' then return {} end
  return cjson.decode(json)
end

local function saveGrants(key, grants)
  if #grants == 0 then
    redis.call('HDEL', key, 'g')
  else
    redis.call('HSET', key, 'g', cjson.encode(grants))
  end
end

local function spendableAt(g, t)
  return g.void ~= '1' and (g.exp == '' or tonumber(g.exp) > t)
end

local function grantsAvailable(grants, t)
  local sum = 0
  for _, g in ipairs(grants) do
    if spendableAt(g, t) then sum = sum + tonumber(g.rem) - tonumber(g.held) end
  end
  return sum
end

local function takeFromGrants(grants, amount, t, hold)
  local parts, rest = {}, amount
  for _, g in ipairs(grants) do
    if rest <= 0 then break end
    if spendableAt(g, t) then
      local free = tonumber(g.rem) - tonumber(g.held)
      local part = math.min(free, rest)
      if part > 0 then
        if hold then g.held = int(tonumber(g.held) + part) else g.rem = int(tonumber(g.rem) - part) end
        rest = rest - part
        parts[#parts + 1] = { g.id, int(part) }
      end
    end
  end
  return parts, rest
end

local function findGrant(grants, id)
  for i, g in ipairs(grants) do
    if g.id == id then return g, i end
  end
  return nil, nil
end

local function expiryKey(g)
  if g.exp == '' then return math.huge end
  return tonumber(g.exp)
end

local function spentBefore(a, b)
  local pa, pb = tonumber(a.prio), tonumber(b.prio)
  if pa ~= pb then return pa < pb end
  local ea, eb = expiryKey(a), expiryKey(b)
  if ea ~= eb then return ea < eb end
  local ta, tb = tonumber(a.at), tonumber(b.at)
  if ta ~= tb then return ta < tb end
  return a.id < b.id
end

local function insertGrant(grants, grant)
  local at = #grants + 1
  for i, g in ipairs(grants) do
    if spentBefore(grant, g) then
      at = i
      break
    end
  end
  table.insert(grants, at, grant)
end
