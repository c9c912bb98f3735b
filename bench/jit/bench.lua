-- What the JIT buys scout's own library (issue 14, item 4): the agent's VM compiles scout's code and keeps the
-- operator's interpreted (lua/scout/sandbox.lua), so the codecs, routing, selectors and the policy loader run
-- compiled. Each workload runs with the JIT off and then on, in the same process, and the table prints the time
-- of each and off/on. Not a test: no thresholds. The policy-load row is warm (loads repeated in one VM); the agent
-- loads once per VM, where the JIT costs more than it saves (cold, 10,000 services: ~150 ms on, ~110 ms off), so
-- policy.c runs the load interpreted and turns the JIT on after it.
--
-- Run from the repo root: luajit bench/jit/bench.lua [seconds-per-cell]   (SERVICES=10000 sets the policy size;
-- bench/jit/run.sh also times `scout check` of that policy with SCOUT_JIT=off and on)

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local codec = require "scout.codec"
local route = require "scout.route"
local select = require "scout.select"
local runtime = require "scout.runtime"
local clock = os.clock
local format = string.format

local BUDGET = tonumber(arg and arg[1]) or 0.5
local CHILDREN = 2000
local SERVICES = tonumber(os.getenv("SERVICES") or "10000")

-- ---- inputs, built once --------------------------------------------------------------------------------------

local function endpoint(i)
  return {
    host = format("10.%d.%d.%d", i % 7, (i / 250) % 250, i % 250 + 1), port = 20880 + i % 10, weight = 100,
    meta = { zone = "z" .. i % 3, version = "1.0." .. i % 4, tag = i % 5 == 0 and "gray" or nil }, status = "up",
  }
end

local function children(name)
  local c = assert(codec.get(name))
  local out = {}
  for i = 1, CHILDREN do
    local ep = endpoint(i)
    local opts = { interface = "com.acme.OrderService", name = "orders", id = format("id-%06d", i), now = 1.7e12 }
    local n, d = c.encode(ep, opts)
    out[i] = { n, d }
  end
  return c, out
end

local function decode_all(c, list)
  return function()
    local n = 0
    for i = 1, #list do
      local ep = c.decode(list[i][1], list[i][2], {})
      if ep then n = n + 1 end
    end
    assert(n == #list, "decode failed")
  end
end

local eps = {}
for i = 1, 100 do
  local e = endpoint(i)
  e.id = format("%s:%d", e.host, e.port)
  eps[i] = e
end

local router = assert(route.compile({
  { tag = true },
  "method = get* => zone = z1,z2",
  { condition = "host = 10.1.* => version = 1.0.1", fallback = "all" },
}))
local ctxs = {}
for i = 1, 64 do
  ctxs[i] = { tag = i % 4 == 0 and "gray" or nil, method = i % 2 == 0 and "getOrder" or "putOrder",
              host = format("10.%d.0.%d", i % 3, i) }
end

local function route_requests()
  -- a new snapshot every 1,000 requests: the per-snapshot work counts too
  local snap = {}
  for i = 1, #eps do snap[i] = eps[i] end
  local n = 0
  for r = 1, 1000 do
    local list = router:apply(snap, ctxs[r % 64 + 1])
    n = n + #list
  end
  return n
end

local function picks(spec)
  local sel = select.new(spec, eps)
  local keyed = {}
  for i = 1, 256 do keyed[i] = { key = format("user:%07d", i * 7919) } end
  return function()
    local x = 0
    for i = 1, 10000 do x = x + sel:pick(keyed[i % 256 + 1]).port end
    return x
  end
end

local policy_file = os.tmpname()
do
  local f = assert(io.open(policy_file, "w"))
  f:write('zookeeper { servers = "127.0.0.1:2181" }\n')
  for i = 1, SERVICES do
    f:write(format('service "svc-%05d" { path = "/bench/svc-%05d", codec = "plain" }\n', i, i))
  end
  f:close()
end

local function load_policy()
  local conf, err = runtime.load(policy_file)
  assert(conf, err)
end

-- The agent's per-change work: runtime.update of a 50-child plain service, one child created or deleted per
-- call, as bench/propagation drives it (no hook: the blocking-query consumer's agent).
local update_file = os.tmpname()
do
  local f = assert(io.open(update_file, "w"))
  f:write('zookeeper { servers = "127.0.0.1:2181" }\nservice "svc" { path = "/bench/svc", codec = "plain" }\n')
  f:close()
end

local function updates()
  assert(runtime.load(update_file))
  local port, oldest, zxid = 10000, 10000, 0
  local function add()
    zxid = zxid + 1
    runtime.update(1, {}, { { format("127.0.0.1:%d", port), "", zxid, true } })
    port = port + 1
  end
  for _ = 1, 50 do add() end
  for k = 1, 1000 do
    if k % 2 == 1 then
      add()
    else
      runtime.update(1, { format("127.0.0.1:%d", oldest) }, {})
      oldest = oldest + 1
    end
  end
end

-- ---- timing --------------------------------------------------------------------------------------------------

-- Best ms of one run of fn (CPU time, os.clock): warmed up first, then repeated for BUDGET seconds (at least 5
-- runs). The best, not the median: on a shared host other processes only ever add to a run.
local function time(fn)
  fn()
  fn()
  local runs, t0 = {}, clock()
  repeat
    local t = clock()
    fn()
    runs[#runs + 1] = (clock() - t) * 1000
  until #runs >= 5 and clock() - t0 > BUDGET
  table.sort(runs)
  return runs[1]
end

local dubbo, dubbo_kids = children("dubbo")
local curator, curator_kids = children("curator")
local serverset, serverset_kids = children("serverset")

local CELLS = {
  { format("decode dubbo, %d children", CHILDREN), decode_all(dubbo, dubbo_kids) },
  { format("decode curator, %d children", CHILDREN), decode_all(curator, curator_kids) },
  { format("decode serverset, %d children", CHILDREN), decode_all(serverset, serverset_kids) },
  { "route 1,000 requests (3 rules, 100 eps)", route_requests },
  { "swrr 10,000 picks (100 eps)", picks("swrr") },
  { "chash 10,000 picks (100 eps)", picks("chash") },
  { format("load a %d-service policy", SERVICES), load_policy },
  { "1,000 one-child updates (50 children)", updates },
}

local results = {}
for _, mode in ipairs({ "off", "on" }) do
  jit.flush()
  if mode == "off" then jit.off() else jit.on() end
  for k, cell in ipairs(CELLS) do
    results[k] = results[k] or {}
    results[k][mode] = time(cell[2])
  end
end
os.remove(policy_file)
os.remove(update_file)

print(format("%-44s %12s %12s %9s", "workload (CPU ms, best of runs)", "JIT off ms", "JIT on ms", "off/on"))
for k, cell in ipairs(CELLS) do
  local r = results[k]
  print(format("%-44s %12.3f %12.3f %8.2fx", cell[1], r.off, r.on, r.off / r.on))
end
