-- policy.lua — scout's observer for the propagation benchmark (bench.py).
--
-- Why: scout publishes through on_change; the hook (observer.lua, a module because it needs ffi and a file)
-- stamps CLOCK_MONOTONIC at publication and writes one "<ns> +id" / "<ns> -id" line per endpoint of the diff to
-- $SCOUT_BENCH_OUT (a pipe the driver reads), flushed per diff. delay = 0 and the plain codec keep scout's work
-- to what the raw client does, plus its own.
zookeeper { servers = "127.0.0.1:2181", session_timeout = 10000 }  -- --zk overrides servers
if os.getenv("SCOUT_BENCH_SHM") then shm { path = os.getenv("SCOUT_BENCH_SHM") } end  -- bench.py SHM=1
-- bench.py CALLGRIND=1: valgrind runs the agent ~50x slower, and the default 50 ms hook budget then stops the
-- observer's hook now and then (a failed update, a retry a second later: not what a change costs)
if os.getenv("SCOUT_BENCH_HOOK_BUDGET") then agent { hook_budget = os.getenv("SCOUT_BENCH_HOOK_BUDGET") } end

local observer = require "observer"

service "svc" {
  path = "/bench/svc", codec = "plain", delay = 0,
  on_change = observer.on_change,
}
