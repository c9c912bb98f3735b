-- Selector throughput: picks per second for every built-in selector at 10 / 100 / 1,000 endpoints, next to a
-- baseline measured in the same run (a bare loop indexing an array of endpoints, i.e. the floor any selector
-- pays), so numbers from different machines compare as ratios. Not a test: no thresholds.
--
-- Run from the repo root: luajit bench/select/bench.lua [seconds-per-cell]

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local select = require "scout.select"
local clock = os.clock
local floor = math.floor
local format = string.format

local BUDGET = tonumber(arg and arg[1]) or 0.2   -- seconds of picking per cell
local SIZES = { 10, 100, 1000 }
local NKEYS = 4096                               -- distinct chash keys, cycled (power of two: cheap mask)
local KEYLEN = "user:%07d"                       -- 12-byte keys like user ids / session prefixes

local function endpoints(n, weighted)
  local eps = {}
  for i = 1, n do
    eps[i] = {
      id = format("10.0.%d.%d:8080", floor(i / 250), i % 250), host = "10.0.0.1", port = 8080,
      weight = weighted and (i % 5 + 1) or 100, meta = {}, status = "up", zxid = i,
    }
  end
  return eps
end

local ctxs, uuids = {}, {}
for i = 1, NKEYS do
  ctxs[i] = { key = format(KEYLEN, i * 7919 % 10000000) }
  uuids[i] = { key = format("%08x-%04x-4%03x-a%03x-%012x", i * 2654435761 % 2 ^ 32, i % 65536, i % 4096,
                            (i * 7) % 4096, i * 1103515245) }   -- 36-byte session-id-like keys
end
local noctx = {}

-- Each runner does `iters` picks and returns a checksum so the loop is not dead code.
local function run_baseline(eps, iters)
  local n = #eps
  local x, j = 0, 0
  for _ = 1, iters do
    j = j + 1
    if j > n then j = 1 end
    x = x + eps[j].port
  end
  return x
end

local function run_plain(sel, iters)
  local x = 0
  for _ = 1, iters do
    x = x + sel:pick(noctx).port
  end
  return x
end

local function run_keyed(sel, iters)
  local x = 0
  local mask = NKEYS - 1
  for i = 1, iters do
    x = x + sel:pick(ctxs[bit.band(i, mask) + 1]).port
  end
  return x
end

local function run_uuid(sel, iters)
  local x = 0
  local mask = NKEYS - 1
  for i = 1, iters do
    x = x + sel:pick(uuids[bit.band(i, mask) + 1]).port
  end
  return x
end

local function run_feedback(sel, iters)
  local x = 0
  for _ = 1, iters do
    local ep = sel:pick(noctx)
    sel:feedback(ep, true, 5)
    x = x + ep.port
  end
  return x
end

-- picks per second: grow the iteration count until one run takes BUDGET/4, then time the best of 3 runs.
local function rate(fn, obj)
  local iters = 1000
  while true do
    local t = clock()
    fn(obj, iters)
    local dt = clock() - t
    if dt >= BUDGET / 4 then break end
    iters = iters * 4
  end
  local best = math.huge
  for _ = 1, 3 do
    local t = clock()
    fn(obj, iters)
    local dt = clock() - t
    if dt < best then best = dt end
  end
  return iters / best
end

local CASES = {
  { "baseline", nil, run_baseline, false },
  { "rr", "rr", run_plain, false },
  { "swrr", "swrr", run_plain, true },
  { "random", "random", run_plain, true },
  { "chash", "chash", run_keyed, false },
  { "chash (weighted)", "chash", run_keyed, true },
  { "chash 36B keys", "chash", run_uuid, false },
  { "leastconn*", "leastconn", run_feedback, true },
  { "p2c*", "p2c", run_feedback, true },
}

print(format("%s, %s; %.2fs per cell; swrr/random/leastconn/p2c weights 1..5, rr/chash weight 100;",
  jit.version, jit.status() and "JIT on" or "JIT off", BUDGET))
print("chash keys: 12 bytes (\"user:0007919\") unless noted")
print("* leastconn and p2c: pick + feedback per iteration (they count in-flight requests)")
print()
print(format("%-18s %16s %16s %16s", "selector", "10 eps", "100 eps", "1000 eps"))
local base = {}
for c = 1, #CASES do
  local name, sname, fn, weighted = CASES[c][1], CASES[c][2], CASES[c][3], CASES[c][4]
  local cells = {}
  for s = 1, #SIZES do
    local eps = endpoints(SIZES[s], weighted)
    local obj = eps
    if sname then
      obj = select.new(sname, eps, { rng = select.rng(s) })
      -- warm up: swrr records its period, everything gets traced
      fn(obj, 200000)
    end
    local r = rate(fn, obj)
    if not sname then base[s] = r end
    cells[s] = format("%7.1fM (%5.3f)", r / 1e6, r / base[s])
  end
  print(format("%-18s %16s %16s %16s", name, cells[1], cells[2], cells[3]))
end
print()
print("cells: million picks per second (ratio to the baseline at the same size)")
