-- observer.lua — what the propagation benchmark's policy (policy.lua) needs beyond a policy's environment.
--
-- Why a module: a policy may not require ffi nor open files (scout.sandbox), but the benchmark must stamp
-- CLOCK_MONOTONIC (same clock as rawwatch.c and kazoo's time.monotonic_ns()) and write to the driver's FIFO. A
-- module the operator installs runs with the real globals, so the measurement lives here; bench.py puts this
-- directory on LUA_PATH.
local ffi = require "ffi"
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } scout_ts; int clock_gettime(int, scout_ts *); ]]
local ts = ffi.new("scout_ts")
local out = assert(io.open(assert(os.getenv("SCOUT_BENCH_OUT"), "SCOUT_BENCH_OUT not set"), "w"))

local M = {}

-- one "<ns> +id" / "<ns> -id" line per endpoint of the diff, flushed per diff
function M.on_change(_, diff)
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  local now = tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
  for _, ep in ipairs(diff.added) do out:write(string.format("%d +%s\n", now, ep.id)) end
  for _, ep in ipairs(diff.removed) do out:write(string.format("%d -%s\n", now, ep.id)) end
  out:flush()
end

return M
