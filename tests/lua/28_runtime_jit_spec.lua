-- Which of the agent's per-change Lua work runs compiled. runtime.update keeps two copies of one bytecode
-- (lua/scout/runtime.lua says why): a sync's batches go to the compiled one, which must record into traces (it
-- did not until a closure created inside update, NYI: FNEW, aborted every trace through it); a change of a few
-- names goes to the interpreted one, and must start no trace in the runtime's per-change code: LuaJIT kept
-- recording and aborting traces through it, ~10k instructions a change in the agent (bench/propagation under
-- callgrind). Stitches around C functions (os.time, table.sort) are allowed in the compiled copy.

local tostring, ipairs, assert, format = tostring, ipairs, assert, string.format

local runtime = require "scout.runtime"
local H = require "policy_helper"
local T = require "29_select_helpers"

-- the traces that aborted or were compiled, by the file they started in
local function started_in(list, file)
  local out = {}
  for _, a in ipairs(list) do
    if a:find(file, 1, true) then out[#out + 1] = a end
  end
  return out
end

describe("JIT: runtime.update", function()
  after_each(function() H.cleanup() end)

  it("a sync's batches record into traces of the compiled copy", function()
    assert.is_true(jit.status())
    local src = { 'zookeeper { servers = "127.0.0.1:2181" }\n' }
    for k = 1, 300 do
      src[#src + 1] = format('service "s%d" { path = "/s/%d", codec = "plain", protect = false }\n', k, k)
    end
    assert(runtime.load(H.write(table.concat(src))))
    local copies = runtime.update_copies
    assert.are_not.equal(copies.compiled, copies.small)
    local stops, aborts, compiled = T.record_traces(function()
      for i = 1, 300 do
        local batch = {}
        for k = 1, 10 do batch[k] = { format("10.0.%d.%d:80", i % 250, k), "", k, true } end
        local up = runtime.update(i, {}, batch, true)
        assert(#up == 10)
      end
    end)
    assert.is_true(stops >= 1, "no trace was compiled")
    local nyi = {}
    for _, a in ipairs(started_in(aborts, "runtime.lua")) do
      if a:find("NYI", 1, true) then nyi[#nyi + 1] = a end
    end
    assert.same({}, nyi, "trace aborts in runtime.lua")
    assert.is_true(compiled[copies.compiled] == true, "the compiled copy was not recorded into a trace: "
                   .. tostring(#aborts) .. " aborts")
    assert.is_nil(compiled[copies.small], "the copy for small changes was recorded into a trace")
  end)

  it("a plain service, one child created or deleted per call, as bench/propagation drives it: no trace started "
     .. "in the runtime's per-change code", function()
    assert.is_true(jit.status())
    local path = H.write('zookeeper { servers = "127.0.0.1:2181" }\n'
                         .. 'service "svc" { path = "/bench/svc", codec = "plain", protect = false }\n')
    assert(runtime.load(path))
    local port, oldest, zxid = 10000, 10000, 0
    local function add()
      zxid = zxid + 1
      local up = runtime.update(1, {}, { { format("127.0.0.1:%d", port), "", zxid, true } })
      port = port + 1
      return up
    end
    for _ = 1, 50 do add() end
    -- the agent's clock is C's (agent.now_ms), as is its caller: no trace can start in either
    runtime.set_clock(os.clock)
    -- the agent calls update from C, never from a trace: so does this loop
    local function changes()
      for k = 1, 3000 do
        if k % 2 == 1 then
          assert(#add() == 1)
        else
          local _, gone = runtime.update(1, { format("127.0.0.1:%d", oldest) }, {})
          assert(#gone == 1)
          oldest = oldest + 1
        end
      end
    end
    jit.off(changes); jit.off(add)
    local _, aborts, compiled = T.record_traces(changes)
    runtime.set_clock(function() return os.clock() * 1000 end)   -- the runtime's own, outside the agent
    assert.is_nil(compiled[runtime.update_copies.small], "the copy for small changes was recorded into a trace")
    assert.is_nil(compiled[runtime.update], "the dispatch was recorded into a trace")
    assert.same({}, started_in(aborts, "runtime.lua"), "traces aborted in runtime.lua")
    assert.same({}, started_in(aborts, "keep.lua"), "traces aborted in keep.lua")
  end)
end)
