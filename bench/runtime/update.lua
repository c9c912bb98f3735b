-- The Lua runtime's fixed cost per update (issue 14), without ZooKeeper or the C core: scout.runtime's update as
-- the agent calls it, with a fake of the C side's endpoint store (what agent.published / published_one give back,
-- as tests/lua/04_runtime_frozen_spec.lua fakes it). Three workloads:
--   change-hook  a 50-child plain service with an on_change hook, alternating create / delete-oldest (the
--                propagation benchmark's hook observer)
--   change-bare  the same service without a hook (the blocking-query consumer's agent)
--   sync         SERVICES services x ENDPOINTS endpoints, each judged once with its whole first listing
-- Prints CPU per update (noisy on a shared machine); for instructions run it under callgrind twice with two
-- values of N and take the difference (bench/runtime/run.sh does). Not a test: no thresholds.
--
-- Run from the repo root: luajit bench/runtime/update.lua MODE N

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local runtime = require "scout.runtime"
local pairs, tostring = pairs, tostring
local format = string.format

local MODE = arg[1] or "change-hook"
local N = tonumber(arg[2] or "10000")
local SERVICES = tonumber(os.getenv("SERVICES") or "1000")
local ENDPOINTS = tonumber(os.getenv("ENDPOINTS") or "10")

-- ---- the C side's store (scout_endpoint_from_lua keeps seven fields; agent.published pushes them back) -------

local store = {}
local function c_copy(ep)
  local meta
  for k, v in pairs(ep.meta or {}) do meta = meta or {}; meta[k] = tostring(v) end
  return { id = ep.id, host = ep.host, port = ep.port, weight = ep.weight or 1, status = ep.status or "up",
           zxid = ep.zxid or 0, meta = meta }
end
local function c_push(ep, empty)
  local meta = empty
  if ep.meta then meta = {}; for k, v in pairs(ep.meta) do meta[k] = v end end
  return { id = ep.id, host = ep.host, port = ep.port, weight = ep.weight, status = ep.status, zxid = ep.zxid,
           meta = meta }
end
local function published(i, empty)
  local set = store[i]
  if not set then return nil end
  local out = {}
  for id, ep in pairs(set) do out[id] = c_push(ep, empty) end
  return out
end
local function published_one(i, id, empty, only_whether)
  local ep = store[i] and store[i][id]
  if ep and only_whether then return true end
  return ep and c_push(ep, empty) or nil
end
runtime.set_store(published, published_one)
-- the agent's clock is the loop's (agent.now_ms, no syscall): a counter here, not os.clock
local tick = 0
runtime.set_clock(function() tick = tick + 1; return tick end)

local function update(i, removed, changed, more)
  local up, gone, _, _, retry = runtime.update(i, removed, changed, more)
  if retry == nil then
    local set = store[i]
    for k = 1, #gone do set[gone[k]] = nil end
    for k = 1, #up do set[up[k].id] = c_copy(up[k]) end
  end
end

local function policy(n, hook)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write('zookeeper { servers = "127.0.0.1:2181" }\n')
  for s = 1, n do
    f:write(format('service "svc-%05d" { path = "/b/svc-%05d", codec = "plain"%s }\n', s, s,
                   hook and ", on_change = function(svc, diff) local n = #diff.added + #diff.removed end" or ""))
  end
  f:close()
  local conf = assert(runtime.load(path))
  os.remove(path)
  for s = 1, #conf.services do store[s] = {} end
end

local function child(k)
  return { format("10.%d.%d.%d:%d", k % 7, k / 250 % 250, k % 250 + 1, 8000 + k % 1000), nil, k, false }
end

local t0, ops = nil, 0
if MODE == "change-hook" or MODE == "change-bare" then
  policy(1, MODE == "change-hook")
  local first = {}
  for k = 1, 50 do first[k] = child(k) end
  update(1, {}, first)
  local oldest, nextk, live = 1, 51, {}
  for k = 1, 50 do live[k] = first[k][1] end
  t0 = os.clock()
  for n = 1, N do
    if n % 2 == 1 then
      local c = child(nextk)
      nextk = nextk + 1
      update(1, {}, { c })
      live[#live + 1] = c[1]
    else
      update(1, { live[oldest] }, {})
      live[oldest] = false
      oldest = oldest + 1
    end
    ops = ops + 1
  end
elseif MODE == "sync" then
  policy(SERVICES, false)
  t0 = os.clock()
  for s = 1, SERVICES do
    local changed = {}
    for k = 1, ENDPOINTS do   -- as bench/scale registers them: a name and ~45 bytes of JSON
      local n = s * ENDPOINTS + k
      changed[k] = { format("ep-%d", k), format('{"host":"10.%d.%d.%d","port":%d}', n % 7, n / 250 % 250,
                                               n % 250 + 1, 8000 + n % 1000), n, true }
    end
    update(s, {}, changed)
    ops = ops + 1
  end
else
  error("mode: change-hook | change-bare | sync")
end
local dt = os.clock() - t0
if os.getenv("BYTES") then
  collectgarbage("stop")
  local b0 = collectgarbage("count")
  if MODE ~= "sync" then
    for n = 1, 100 do
      if n % 2 == 1 then update(1, {}, { child(10^6 + n) }) else update(1, { child(10^6 + n - 1)[1] }, {}) end
    end
  end
  io.stderr:write(format("%.0f bytes allocated an update\n", (collectgarbage("count") - b0) * 1024 / 100))
end
io.stderr:write(format("%s: %d updates, %.2f us an update\n", MODE, ops, dt * 1e6 / ops))
