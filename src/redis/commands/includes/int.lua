--[[
  int(n) -> n as a decimal integer string. Never %g: amounts are integers below 2^53, exact in Lua's
  doubles, and must leave a script exact (see src/lib/money.ts).
]]
local function int(n) return string.format('%d', n) end
