-- runtime.update decodes a built-in codec's batch in a loop of its own, under one pcall for the run (runtime.lua's
-- decode_all says why), and any other codec's children one pcall each. Both ways must give every child the same
-- verdict, a child whose decode raises included, and the run must go on from the child after it. Two services of
-- one policy, the same in all but their names and codecs: "a" names the built-in plain (the batch's loop), "b" is a
-- user's codec calling the very same decode (a pcall a child). plain's decode is wrapped to raise on some children;
-- both get the same random sequences of batches and must answer, log and explain the same.

local runtime = require "scout.runtime"
local plain = require "scout.codec.plain"
local H = require "policy_helper"
local R = require "runtime_helper"   -- R.random_batch, R.answer, R.explain

local format = string.format

local POLICY = [[
local st = require("policy_helper").state
service "a" { path = "/svc/a", codec = "plain", protect = false }
service "b" { path = "/svc/b", protect = false, codec = { decode = function(n, d, o) return st.decode(n, d, o) end } }
]]

-- one child's data: an endpoint, bytes that do not decode, or bytes the wrapped decode raises on
local function data(rnd, k)
  local r = rnd(8)
  if r == 1 then return "not json" end
  if r == 2 then return "raise" end
  return format('{"host":"10.0.0.%d","port":%d,"weight":%d}', k, 80 + rnd(2), rnd(3))
end

local answer, explain = R.answer, R.explain

describe("runtime.update: a built-in codec's batch decoded in one run", function()
  local decode = plain.decode
  local logs
  before_each(function()
    logs = { {}, {} }
    runtime.set_logger(function(_, msg)
      local svc, rest = msg:match('^service "(%a)": (.*)$')
      local l = logs[svc == "a" and 1 or svc == "b" and 2 or 1]
      l[#l + 1] = rest or msg
    end)
  end)
  after_each(function()
    plain.decode = decode
    R.finish()
  end)

  it("gives every child the verdict a pcall a child gives, a child whose decode raises included", function()
    local st = H.reset_state()
    local raised = 0
    plain.decode = function(name, d, o)
      if d == "raise" then
        raised = raised + 1
        error("decode exploded on " .. name, 0)
      end
      return decode(name, d, o)
    end
    st.decode = function(n, d, o) return plain.decode(n, d, o) end
    assert(runtime.load(H.write(POLICY)))
    local seed = os.time()
    math.randomseed(seed)
    local rnd = math.random
    local live, zxid, mid = {}, 0, 0
    for step = 1, 300 do
      local removed, changed
      removed, changed, zxid = R.random_batch(rnd, live, zxid, data, 12, 16, 4)
      for k = 1, #changed - 1 do
        if changed[k][2] == "raise" then mid = mid + 1 end   -- a raise with children after it in the batch
      end
      local more = rnd(2) == 1
      local a = answer(pcall(runtime.update, 1, removed, changed, more))
      local b = answer(pcall(runtime.update, 2, removed, changed, more))
      assert.same(a, b, "step " .. step .. " (seed " .. seed .. ")")
      if step % 10 == 0 then assert.same(explain(1), explain(2), "explain at step " .. step) end
    end
    assert.same(logs[1], logs[2])
    assert.is_true(mid > 50, mid .. " raises before the end of a batch")
    assert.is_true(raised > 100, raised .. " raises")
    assert.is_true(#logs[1] > 50, #logs[1] .. " log lines")
  end)
end)
