-- runtime.update has two copies of one bytecode (lua/scout/runtime.lua): a sync's batches (more reads of the path
-- coming) run the compiled one, every other update the interpreted one, each with copies of the helpers it calls.
-- Both must judge alike: two services of one policy, the same in all but their names, are given the same random
-- sequences of changes (new, re-read, removed, data that does not decode, a filter that raises, drops that
-- protection holds), one through each copy, and must answer the same and explain the same. A change of one name
-- takes a shorter way than a sync's batch (no table of the names judged): the two services pin it too.

local runtime = require "scout.runtime"
local H = require "policy_helper"
local R = require "runtime_helper"   -- R.random_batch, R.answer, R.explain

local format = string.format

local POLICY = [[
local st = require("policy_helper").state
for _, name in ipairs({ "a", "b" }) do
  service(name) {
    path = "/svc/" .. name, protect = { min_ratio = 0.5, confirm = 2, confirm_interval = 0 },
    filter = function(ep)
      if ep.meta.boom then error("filter exploded", 0) end
      return ep.meta.hide == nil
    end,
    on_change = function(svc, diff)
      local r = st[name] or {}
      st[name] = r
      local ids = {}
      for _, k in ipairs({ "added", "removed", "changed" }) do
        for _, ep in ipairs(diff[k]) do ids[#ids + 1] = k .. ":" .. ep.id end
      end
      r[#r + 1] = table.concat(ids, ",") .. "|" .. #svc.endpoints
    end,
  }
end
]]

-- one child's data: an endpoint (sometimes hidden by the filter, sometimes making it raise) or bytes that do not
-- decode
local function data(rnd, k)
  local r = rnd(10)
  if r == 1 then return "not json" end
  local meta = r == 2 and '"hide":"1"' or r == 3 and '"boom":"1"' or '"v":"' .. rnd(3) .. '"'
  return format('{"host":"10.0.0.%d","port":%d,"meta":{%s}}', k, 80 + rnd(2), meta)
end

local answer, explain = R.answer, R.explain

describe("runtime.update's two copies", function()
  local now = 0
  setup(function() runtime.set_clock(function() return now end) end)
  teardown(function() runtime.set_clock(function() return os.clock() * 1000 end) end)   -- the runtime's own
  after_each(H.cleanup)

  it("judge random sequences alike", function()
    local st = H.reset_state()
    assert(runtime.load(H.write(POLICY)))
    local copies = runtime.update_copies
    if jit then assert.are_not.equal(copies.compiled, copies.small) end
    local seed = os.time()
    math.randomseed(seed)
    local rnd = math.random
    local live, zxid, ones = {}, 0, 0
    for step = 1, 400 do
      now = now + 300     -- one clock for both services: back-offs and holds fall due at the same steps
      local removed, changed
      removed, changed, zxid = R.random_batch(rnd, live, zxid, data, 6, 12, 3)
      -- a change of one name is judged without the batch's table of names judged, a sync's batch (the first
      -- service's, more = true) with it
      if #removed + #changed == 1 then ones = ones + 1 end
      local a = answer(pcall(runtime.update, 1, removed, changed, true))
      local b = answer(pcall(runtime.update, 2, removed, changed, false))
      assert.same(a, b, "step " .. step .. " (seed " .. seed .. ")")
      if step % 20 == 0 then assert.same(explain(1), explain(2), "explain at step " .. step) end
    end
    assert.same(st.a, st.b)
    assert.is_true(#st.a > 10)
    assert.is_true(ones > 20, ones .. " changes of one name")
  end)
end)
