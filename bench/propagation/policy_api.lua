-- policy_api.lua -- scout for the propagation benchmark's blocking-query consumer (bench.py, blockwatch.py).
--
-- Why: the consumer sees changes through the HTTP API, so no hook: the same service as policy.lua, with the work
-- any operator's agent does (decode, publish: shm, disk snapshot when configured, the API's answer).
zookeeper { servers = "127.0.0.1:2181", session_timeout = 10000 }  -- --zk overrides servers
if os.getenv("SCOUT_BENCH_SHM") then shm { path = os.getenv("SCOUT_BENCH_SHM") } end  -- bench.py SHM=1
-- bench.py CALLGRIND=1: valgrind runs the agent ~50x slower, and the default 50 ms hook budget then stops the
-- observer's hook now and then (a failed update, a retry a second later: not what a change costs)
if os.getenv("SCOUT_BENCH_HOOK_BUDGET") then agent { hook_budget = os.getenv("SCOUT_BENCH_HOOK_BUDGET") } end

service "svc" { path = "/bench/svc", codec = "plain", delay = 0 }
