-- policy.lua — scout's observer for the propagation benchmark (bench.py).
--
-- Why: scout publishes through on_change; this hook stamps CLOCK_MONOTONIC
-- (same clock as rawwatch.c and kazoo's time.monotonic_ns()) at publication and
-- writes one "<ns> +id" / "<ns> -id" line per endpoint of the diff to
-- $SCOUT_BENCH_OUT (a FIFO the driver reads), flushed per diff. delay = 0 and the
-- plain codec keep scout's work to what the raw client does, plus its own.
zookeeper { servers = "127.0.0.1:2181", session_timeout = 10000 }  -- --zk overrides servers

local ffi = require "ffi"
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } scout_ts; int clock_gettime(int, scout_ts *); ]]
local ts = ffi.new("scout_ts")
local out = assert(io.open(assert(os.getenv("SCOUT_BENCH_OUT"), "SCOUT_BENCH_OUT not set"), "w"))

service "svc" {
  path = "/bench/svc", codec = "plain", delay = 0,
  on_change = function(svc, diff)
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    local now = tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
    for _, ep in ipairs(diff.added) do out:write(string.format("%d +%s\n", now, ep.id)) end
    for _, ep in ipairs(diff.removed) do out:write(string.format("%d -%s\n", now, ep.id)) end
    out:flush()
  end,
}
