-- gateway.lua at a fixed rate: `rate=<requests/s>` (per wrk thread; the bench runs one thread).
-- Each request takes the next slot on the thread's schedule (one every 1000/rate ms) and waits for
-- it; a connection that comes back after its slot has passed sends at once. Slots that pass while
-- every connection is busy are not sent late but counted in `missed`: wrk (unlike wrk2) does not
-- correct for coordinated omission, so a run with many missed slots understates its tail.
dofile("bench/wrk/gateway.lua")

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local CLOCK_MONOTONIC = 1
local function nowMs()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local slot = nil

function delay()
  local interval = 1000 / rate
  local now = nowMs()
  local nextSlot = (slot or now) + interval
  if nextSlot < now - interval then
    missed = missed + math.floor((now - nextSlot) / interval)
    nextSlot = now
  end
  slot = nextSlot
  return math.max(0, math.floor(slot - now + 0.5))
end
