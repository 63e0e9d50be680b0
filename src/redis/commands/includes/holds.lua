--[[
  Included by commit-reservation and release-reservation: a hold's money back from where reserve-9.lua
  held it.

  heldParts(ghJson, bh, heldAmount) -> {grants = {{grant id, amount}...}, balance = amount} (a hold made
    before grants existed has no 'gh'/'bh': all of it is the balance's)
  unhold(accountKey, grants, hold, charge) -> bal, held, parts
    Releases the whole hold and charges `charge` of it, taken from the held parts in the order they
    were held (grants, then the balance). `grants` is the decoded account grant list; it is saved.
    Returns the new balance and held amount and the parts charged to grants {{grant id, amount}...}.
]]
--- @include "includes/int"
--- @include "includes/grants"

local function heldParts(ghJson, bh, heldAmount)
  local parts = {}
  if ghJson and ghJson ~= '' then parts = cjson.decode(ghJson) end
  local balance = heldAmount
  if bh and bh ~= '' then balance = tonumber(bh) end
  return { grants = parts, balance = balance }
end

local function unhold(accountKey, grants, hold, charge)
  local parts, rest = {}, charge
  for _, p in ipairs(hold.grants) do
    local amount = tonumber(p[2])
    local take = math.min(amount, rest)
    rest = rest - take
    local g = findGrant(grants, p[1])
    -- A grant with a held part is never removed (ending a grant waits for its holds), so g exists.
    if g then
      g.held = int(tonumber(g.held) - amount)
      g.rem = int(tonumber(g.rem) - take)
    end
    if take > 0 then parts[#parts + 1] = { p[1], int(take) } end
  end
  if #hold.grants > 0 then saveGrants(accountKey, grants) end
  local a = redis.call('HMGET', accountKey, 'bal', 'held')
  local bal, held = tonumber(a[1] or '0'), tonumber(a[2] or '0')
  if hold.balance > 0 then held = redis.call('HINCRBY', accountKey, 'held', int(-hold.balance)) end
  if rest > 0 then bal = redis.call('HINCRBY', accountKey, 'bal', int(-rest)) end
  return bal, held, parts
end
