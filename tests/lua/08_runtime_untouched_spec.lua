-- A change's one new endpoint under hooks is built into C at the boundary check (from its fields as the runtime reads
-- them), and the publish takes that build only if the hooks left the table as the check read it (scout.untouched);
-- otherwise C reads the table again, as it always did before (issue 14). Pinned both ways: two services of one
-- policy, the same in all but their names, are given the same random changes and the same random edits by their
-- filter and on_change (in place, a field replaced, meta added, edits through svc.endpoints, an edit then an error,
-- rawset into the shared EMPTY_META...). One is updated with the agent's build at the check, the other with the
-- check alone; a fake C side builds from the fields it is passed and publishes each endpoint as built when the
-- runtime's 10th result names it (or its 11th is that table: the one built under hooks, left alone), else as
-- scout_endpoint_from_lua would read the table then, and every answer and every published endpoint must be the
-- same. The shortcut must also be taken.

local runtime = require "scout.runtime"
local H = require "policy_helper"
local R = require "runtime_helper"   -- R.random_batch
local EMPTY_META = require("scout.util.endpoint").EMPTY_META

local format = string.format

local POLICY = [[
local st = require("policy_helper").state
for _, name in ipairs({ "a", "b" }) do
  service(name) {
    path = "/svc/" .. name, protect = false,
    filter = function(ep) return st.filter(ep) end,
    on_change = function(svc, diff) return st.on_change(svc, diff) end,
  }
end
]]

-- What scout_endpoint_from_lua makes of the table now: every field it reads, through __index as lua_gettable
-- does, meta by raw next as lua_next does; "refused" where the check would refuse it.
local function read(ep)
  if type(ep.host) ~= "string" or ep.host:find("!", 1, true) then return "refused" end
  local meta = {}
  local m = ep.meta
  if type(m) == "table" then
    for k, v in next, m do meta[#meta + 1] = tostring(k) .. "=" .. tostring(v) end
  end
  table.sort(meta)
  return format("%s %s %s %s %s %s {%s}", tostring(ep.id), ep.host, tostring(ep.status == nil and "up" or ep.status),
                tostring(ep.port), tostring(ep.weight == nil and 1 or ep.weight), tostring(tonumber(ep.zxid) or 0),
                table.concat(meta, ","))
end

local stash
local function check(ep) if read(ep) == "refused" then return "bad host" end end
-- agent.build_endpoint(ep, id, host, port, weight, status, meta, zxid): built from the fields passed
local function build(_, id, host, port, weight, status, meta, zxid)
  local r = read({ id = id, host = host, port = port, weight = weight, status = status, meta = meta, zxid = zxid })
  if r == "refused" then return "bad host" end
  stash[#stash + 1] = r
  return nil, #stash
end

-- The fake C side's publish of an update's result: each endpoint of up as built (taken once) or read now.
local function publish(up, built, kept)
  local out, taken = {}, 0
  for k, ep in ipairs(up) do
    local at = built and built[ep] or not built and kept == ep and 1
    if at and stash[at] then
      out[k] = stash[at]
      stash[at] = nil
      taken = taken + 1
    else
      out[k] = read(ep)
    end
  end
  table.sort(out)
  return out, taken
end

local function data(rnd, k)
  if rnd(3) == 1 then
    return format('{"host":"10.0.0.%d","port":%d,"meta":{"v":"%d"}}', k, 80 + rnd(2), rnd(3))
  end
  return format('{"host":"10.0.0.%d","port":%d%s}', k, 80 + rnd(2), rnd(2) == 1 and ',"weight":3' or "")
end

-- Edits a hook makes, each given the endpoints a diff handed it (or the filter its one endpoint) and the view.
local EDITS = {
  none = function() end,
  weight = function(eps) eps[1].weight = 7 end,
  host = function(eps) eps[1].host = "10.9.9.9" end,
  same_host = function(eps) eps[1].host = eps[1].host .. "" end,
  port = function(eps) eps[1].port = eps[1].port + 1000 end,
  status = function(eps) eps[1].status = "down" end,
  zxid = function(eps) eps[1].zxid = nil end,
  id = function(eps) eps[1].id = eps[1].id .. "x" end,
  meta_added = function(eps) eps[1].meta = { zone = "hook" } end,
  meta_in_place = function(eps) if eps[1].meta ~= EMPTY_META then eps[1].meta.v = "hook" end end,
  meta_emptied = function(eps) eps[1].meta = {} end,
  refused = function(eps) eps[1].host = "bad!" end,
  index = function(eps) setmetatable(eps[1], { __index = { weight = 5 } }); eps[1].weight = nil end,
  last_only = function(eps) eps[#eps].weight = 11 end,
  all = function(eps) for _, ep in ipairs(eps) do ep.weight = 2 end end,
  raise = function(eps) eps[1].weight = 4; error("after an edit", 0) end,
  empty_meta = function() rawset(EMPTY_META, "leaked", "1") end,
}
local NAMES = {}
for k in pairs(EDITS) do NAMES[#NAMES + 1] = k end
table.sort(NAMES)

describe("a change's endpoint built at the check under hooks", function()
  local st
  before_each(function()
    st = H.reset_state()
    runtime.set_logger(function() end)   -- (the edits that raise are logged: quiet here)
    assert(runtime.load(H.write(POLICY)))
  end)
  after_each(function()
    runtime.set_boundary(nil)
    rawset(EMPTY_META, "leaked", nil)
    H.cleanup()
    runtime.set_logger(function(level, msg) if level <= 1 then io.stderr:write(msg, "\n") end end)
  end)

  it("publishes what reading the table after the hooks publishes", function()
    local seed = os.time()
    math.randomseed(seed)
    local rnd = math.random
    local live, zxid, taken, edited_taken = {}, 0, 0, 0
    local counts = {}
    for step = 1, 600 do
      local removed, changed
      removed, changed, zxid = R.random_batch(rnd, live, zxid, data, 4, 10, 4)
      -- one edit for the step, by the filter, by on_change on a diff list, or through svc.endpoints
      local edit = EDITS[NAMES[rnd(#NAMES)]]
      local where = rnd(5)   -- 1: the filter, 2: added, 3: changed, 4: svc.endpoints, 5: none of them
      st.filter = function(ep)
        if where == 1 then pcall(edit, { ep }) end
        return true
      end
      st.on_change = function(svc, diff)
        local eps = where == 2 and diff.added or where == 3 and diff.changed or where == 4 and svc.endpoints or {}
        if #eps > 0 then edit(eps) end
      end
      local out = {}
      for i, with_build in ipairs({ true, false }) do
        stash = {}
        runtime.set_boundary(check, with_build and build or nil)
        local ok, up, gone, nerr, nhook, retry, reweigh, degraded, nrej, spared, built, kept =
          pcall(runtime.update, i, removed, changed, false)
        assert(ok, up)
        if not with_build then assert.is_nil(built); assert.is_nil(kept) end
        local pub, n = publish(up, built, kept)
        if with_build then
          taken = taken + n
          if where ~= 5 and n > 0 then edited_taken = edited_taken + 1 end
        end
        table.sort(gone)
        out[i] = { pub = pub, gone = gone, nerr = nerr, nhook = nhook, retry = retry, reweigh = reweigh,
                   degraded = degraded, nrej = nrej, spared = spared }
        rawset(EMPTY_META, "leaked", nil)
      end
      counts[where] = (counts[where] or 0) + 1
      assert.same(out[1], out[2], "step " .. step .. " (seed " .. seed .. ")")
    end
    -- the shortcut is taken (a change of one child): endpoints left alone, including when a hook edited another
    assert.is_true(taken > 40, taken .. " endpoints taken as built")
    assert.is_true(edited_taken > 20, edited_taken .. " steps with an edit and an endpoint taken as built")
    for where = 1, 5 do assert.is_true(counts[where] > 50, counts[where] .. " steps edited at " .. where) end
  end)

  it("takes the build for an endpoint no hook touched, and reads again one a hook did", function()
    stash = {}
    runtime.set_boundary(check, build)
    st.filter = function() return true end
    st.on_change = function(_, diff) for _, ep in ipairs(diff.added) do if ep.id == "e" then ep.weight = 9 end end end
    local function one(name, k)
      stash = {}
      local ok, up, _, _, _, _, _, _, _, _, built, kept = pcall(runtime.update, 1, {}, {
        { name, format('{"host":"10.0.0.%d","port":80}', k), k, true } }, false)
      assert(ok, up)
      assert.is_nil(built)
      assert.equals(1, #stash)
      return up, kept
    end
    local up, kept = one("d", 4)
    assert.equals(up[1], kept)           -- left alone: published as built
    assert.same({ "d 10.0.0.4 up 80 1 4 {}" }, (publish(up, nil, kept)))
    up, kept = one("e", 5)
    assert.is_nil(kept)                  -- edited: C reads it again
    assert.same({ "e 10.0.0.5 up 80 9 5 {}" }, (publish(up, nil, kept)))
  end)

  it("reads the endpoint again after a write into the shared empty meta", function()
    stash = {}
    runtime.set_boundary(check, build)
    st.filter = function() return true end
    st.on_change = function() rawset(EMPTY_META, "leaked", "1") end
    local ok, up, _, _, _, _, _, _, _, _, built, kept = pcall(runtime.update, 1, {}, {
      { "d", '{"host":"10.0.0.4","port":80}', 1, true } }, false)
    assert(ok, up)
    assert.is_nil(kept)
    assert.same({ "d 10.0.0.4 up 80 1 1 {leaked=1}" }, (publish(up, built, kept)))
  end)

  it("does not build under hooks for more than one child, nor an endpoint with a meta table of its own", function()
    stash = {}
    runtime.set_boundary(check, build)
    st.filter = function() return true end
    st.on_change = function() end
    local changed = {}
    for k = 1, 5 do changed[k] = { "b" .. k, format('{"host":"10.0.0.%d","port":80}', k), k, true } end
    local ok, up, _, _, _, _, _, _, _, _, built = pcall(runtime.update, 1, {}, changed, false)
    assert(ok, up)
    assert.equals(5, #up)
    assert.is_nil(built)
    assert.equals(0, #stash)
    ok, up, _, _, _, _, _, _, _, _, built = pcall(runtime.update, 1, {}, { changed[1], changed[2] }, false)
    assert(ok, up)
    assert.is_nil(built)
    assert.equals(0, #stash)
    ok, up, _, _, _, _, _, _, _, _, built = pcall(runtime.update, 1, {}, {
      { "m", '{"host":"10.0.0.9","port":80,"meta":{"zone":"a"}}', 9, true } }, false)
    assert(ok, up)
    assert.is_nil(built)
    assert.equals(0, #stash)
  end)

  it("builds a service without hooks from the fields, named by the map", function()
    runtime.load(H.write([[ service "bare" { path = "/svc/bare" } ]]))
    stash = {}
    runtime.set_boundary(check, build)
    local changed = {}
    for k = 1, 6 do
      changed[k] = { "b" .. k, format('{"host":"10.0.0.%d","port":%d,"weight":%d}', k, 80 + k, k), k, true }
    end
    local ok, up, _, _, _, _, _, _, _, _, built = pcall(runtime.update, 1, {}, changed, true)
    assert(ok, up)
    local pub, taken = publish(up, built)
    assert.equals(6, taken)
    assert.equals("b3 10.0.0.3 up 83 3 3 {}", pub[3])
    -- a change of one child: the table itself, no map
    stash = {}
    local kept
    ok, up, _, _, _, _, _, _, _, _, built, kept = pcall(runtime.update, 1, {}, {
      { "b7", '{"host":"10.0.0.7","port":87,"weight":7}', 7, true } }, false)
    assert(ok, up)
    assert.is_nil(built)
    assert.equals(up[1], kept)
    assert.same({ "b7 10.0.0.7 up 87 7 7 {}" }, (publish(up, built, kept)))
  end)
end)
