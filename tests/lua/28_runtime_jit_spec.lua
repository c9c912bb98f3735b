-- The agent's per-change Lua work runs compiled: runtime.update, called once per ZooKeeper change, is scout's
-- library (the JIT on: lua/scout/sandbox.lua) and must record into traces, not fall back to the interpreter. It
-- did until a closure created inside update (NYI: FNEW, and UCLO on return) aborted every trace through it.
-- Stitches around C functions (os.time, table.sort) are allowed here: they are how a trace calls them, and the
-- per-pick rule of 27_select_jit_spec is stricter than a per-change path needs.

local tostring, ipairs, assert, format = tostring, ipairs, assert, string.format

local runtime = require "scout.runtime"
local H = require "policy_helper"
local T = require "29_select_helpers"

describe("JIT: runtime.update compiles", function()
  after_each(function() H.cleanup() end)

  it("a plain service, one child created or deleted per call, as bench/propagation drives it", function()
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
    local stops, aborts, compiled = T.record_traces(function()
      for k = 1, 3000 do
        if k % 2 == 1 then
          assert(#add() == 1)
        else
          local _, gone = runtime.update(1, { format("127.0.0.1:%d", oldest) }, {})
          assert(#gone == 1)
          oldest = oldest + 1
        end
      end
    end)
    assert.is_true(stops >= 1, "no trace was compiled")
    local nyi = {}
    for _, a in ipairs(aborts) do
      if a:find("runtime.lua", 1, true) and a:find("NYI", 1, true) then nyi[#nyi + 1] = a end
    end
    assert.same({}, nyi, "trace aborts in runtime.lua")
    assert.is_true(compiled[runtime.update] == true, "runtime.update was not recorded into a trace: "
                   .. tostring(#aborts) .. " aborts")
  end)
end)
