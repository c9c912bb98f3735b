-- scout.runtime as the agent runs it: a small service's endpoint tables are let go once a change is committed, and
-- rebuilt from the C side's published set when the service is judged again (issue 14: ~340 bytes an endpoint).
-- A fake of that C side (what scout_endpoint_from_lua keeps, what agent.published pushes back) stands in for the
-- agent here; with it, the whole runtime spec (01) runs again and must behave identically, and a spec of its own
-- checks that no endpoint table outlives its change.

local runtime = require "scout.runtime"
local H = require "policy_helper"

local pairs, next, tostring = pairs, next, tostring

-- [i] = id -> the endpoint as C keeps it: the seven fields, meta values as strings (lua_tolstring), defaults
-- applied; nil when no set is bound to service i.
local store = {}

local function c_copy(ep)
  local meta = {}
  for k, v in pairs(ep.meta or {}) do meta[k] = tostring(v) end
  local zxid = ep.zxid
  return { id = tostring(ep.id), host = tostring(ep.host), port = ep.port, weight = ep.weight or 1,
           status = ep.status and tostring(ep.status) or "up", zxid = type(zxid) == "number" and zxid or 0,
           meta = meta }
end

-- scout_endpoint_push_lua: a new table per endpoint, the shared empty meta when it has none
local function c_push(ep, empty)
  local meta = empty
  if next(ep.meta) ~= nil then
    meta = {}
    for k, v in pairs(ep.meta) do meta[k] = v end
  end
  return { id = ep.id, host = ep.host, port = ep.port, weight = ep.weight, status = ep.status, zxid = ep.zxid,
           meta = meta }
end

local pushed = 0     -- endpoint tables agent.published made
local function published(i, empty)
  local set = store[i]
  if not set then return nil end
  local out = {}
  for id, ep in pairs(set) do
    out[id] = c_push(ep, empty)
    pushed = pushed + 1
  end
  return out
end

-- agent.published_one: the one endpoint asked for, made anew (an update's touched names, scout.keep's thaw_part),
-- or only true when that is all that is asked
local one_pushed = 0
local function published_one(i, id, empty, only_whether)
  local ep = store[i] and store[i][id]
  if not ep then return nil end
  if only_whether then return true end
  one_pushed = one_pushed + 1
  return c_push(ep, empty)
end

-- service.c: the policy's answer is applied to the set only when the call returned a list to publish
local real = { load = runtime.load, update = runtime.update, seed = runtime.seed }
local function apply(i, ok, up, gone, ...)
  if ok and up and select(3, ...) == nil then   -- retry_ms: protection holds, nothing is committed
    local set = store[i]
    for k = 1, #gone do set[gone[k]] = nil end
    for k = 1, #up do set[up[k].id] = c_copy(up[k]) end
  end
  if not ok then error(up, 0) end
  return up, gone, ...
end

local function install()
  runtime.set_store(published, published_one)
  runtime.load = function(path)
    local conf, err = real.load(path)
    if conf then    -- a policy that fails to load leaves the running one, and its sets, alone
      store = {}
      for i = 1, #conf.services.name do store[i] = {} end
    end
    return conf, err
  end
  runtime.update = function(i, removed, changed, more, untaken)
    return apply(i, pcall(real.update, i, removed, changed, more, untaken))
  end
  runtime.seed = function(i, list)
    local set = {}
    for k = 1, #list do set[list[k].id] = c_copy(list[k]) end
    store[i] = set
    return real.seed(i, list)
  end
end

-- A full collection. Compiled traces are flushed first: a trace may keep a reference to a table it saw (a stray
-- one, outside the runtime, seen when other specs ran first in the same VM).
local function collect()
  if jit then jit.flush() end
  collectgarbage()
  collectgarbage()
end

local function uninstall()
  runtime.set_store(nil)
  runtime.load, runtime.update, runtime.seed = real.load, real.update, real.seed
end

describe("scout.runtime with the endpoint tables in C", function()
  setup(install)
  teardown(uninstall)

  it("keeps no endpoint table of a small service between changes, and rebuilds the ones a hook sees", function()
    local seen = H.reset_state()
    local path = H.write([[
local st = require("policy_helper").state
service "s" {
  path = "/s", protect = false,
  on_change = function(svc, diff)
    local ids = {}
    for _, ep in ipairs(svc.endpoints) do ids[#ids + 1] = ep.id .. "=" .. ep.host .. ":" .. ep.port end
    st.endpoints = table.concat(ids, ",")
    st.removed = diff.removed[1] and diff.removed[1].id .. ":" .. diff.removed[1].meta.zone or nil
  end,
}
]])
    assert(runtime.load(path))
    local weak = setmetatable({}, { __mode = "v" })
    -- in a frame of its own, so that no dead stack slot of this one holds a table
    local function first()
      local changed = {}
      for k = 1, 50 do
        changed[k] = { "n" .. k, '{"host":"10.0.0.' .. k .. '","port":80,"meta":{"zone":"z' .. k .. '"}}', k, true }
      end
      local up = runtime.update(1, {}, changed)
      for k = 1, #up do weak[k] = up[k] end
      return #up
    end
    assert.equals(50, first())
    collect()
    assert.is_nil(next(weak), "the runtime still holds the decoded endpoint tables")

    -- judged again: the hooks see the endpoints as they were published, rebuilt from C
    pushed, one_pushed = 0, 0
    local up = runtime.update(1, { "n2" }, { { "n1", '{"host":"10.0.1.1","port":81}', 60, true } })
    assert.equals(50, pushed)        -- the whole set, because the hook asked for svc.endpoints
    assert.equals(2, one_pushed)     -- and the two names the change touches
    assert.equals("n1", up[1].id)
    assert.equals("n2:z2", seen.removed)
    assert.truthy(seen.endpoints:find("^n1=10%.0%.1%.1:81,n10=10%.0%.0%.10:80,"))
    assert.is_nil(seen.endpoints:find("n2=", 1, true))
    -- explain answers from the rebuilt tables too, and lets them go again
    local ex = require("cjson").decode(runtime.explain(1))
    assert.equals(49, #ex.children)
    assert.equals("published", ex.children[1].verdict)
    assert.equals("z10", ex.children[2].endpoint.meta.zone)
    H.cleanup()
  end)

  it("rebuilds only the endpoints a change touches when no hook asks for the whole list", function()
    assert(runtime.load(H.write('service "s" { path = "/s", protect = false, filter = function(ep) ' ..
                                'return ep.meta.zone ~= "hide" end }\n')))
    local changed = {}
    for k = 1, 50 do
      changed[k] = { "n" .. k, '{"host":"10.0.0.' .. k .. '","port":80,"meta":{"zone":"z"}}', k, true }
    end
    changed[51] = { "bad", "not json", 51, true }
    changed[52] = { "hidden", '{"host":"10.0.9.9","port":80,"meta":{"zone":"hide"}}', 52, true }
    assert.equals(50, #runtime.update(1, {}, changed))
    pushed, one_pushed = 0, 0
    -- one changed, one removed, one new: the changed one C has come back from, none of the other 48, and of the
    -- removed one only whether it is published (no hook is handed it)
    local up, gone = runtime.update(1, { "n2" }, { { "n1", '{"host":"10.0.1.1","port":81}', 60, true },
                                                 { "n51", '{"host":"10.0.0.51","port":80}', 61, true } })
    assert.equals(0, pushed)
    assert.equals(1, one_pushed)
    assert.same({ "n1", "n51" }, { up[1].id, up[2].id })
    assert.same({ "n2" }, gone)
    -- what was not published (a child that does not decode, one filtered out) is still known, and the next full
    -- look (explain) sees the service whole
    local ex = require("cjson").decode(runtime.explain(1))
    local verdicts = {}
    for _, c in ipairs(ex.children) do verdicts[c.name or c.id] = c.verdict end
    assert.equals(52, #ex.children)
    assert.equals("published", verdicts.n1)
    assert.is_nil(verdicts.n2)
    assert.truthy(verdicts.bad and verdicts.bad ~= "published")
    assert.truthy(verdicts.hidden and verdicts.hidden ~= "published")
    -- and the hidden child, changed so that the filter now keeps it, is published from its rest entry
    pushed, one_pushed = 0, 0
    up = runtime.update(1, {}, { { "hidden", '{"host":"10.0.9.9","port":80,"meta":{"zone":"shown"}}', 62, true } })
    assert.equals(0, pushed)
    assert.equals("hidden", up[1] and up[1].id)
    -- a child added by such a change that is no endpoint is still known after it
    runtime.update(1, {}, { { "bad2", "not json", 63, true } })
    ex = require("cjson").decode(runtime.explain(1))
    verdicts = {}
    for _, c in ipairs(ex.children) do verdicts[c.name or c.id] = c.verdict end
    assert.truthy(verdicts.bad2 and verdicts.bad2 ~= "published")
    H.cleanup()
  end)

  -- A removed name no hook sees is only asked whether it is published; listed again in the same batch, or failing,
  -- it is judged as a child, against the endpoint itself.
  it("judges a name removed and listed again in one batch against its published endpoint", function()
    assert(runtime.load(H.write('service "s" { path = "/s", protect = false }\n')))
    local changed = {}
    for k = 1, 3 do changed[k] = { "n" .. k, '{"host":"10.0.0.' .. k .. '","port":80}', k, true } end
    assert.equals(3, #runtime.update(1, {}, changed))
    -- the same content at the same version: nothing to publish, nothing gone
    local up, gone = runtime.update(1, { "n1" }, { { "n1", '{"host":"10.0.0.1","port":80}', 1, true } })
    assert.same({ 0, 0 }, { #up, #gone })
    -- new content: published as a change, not gone
    up, gone = runtime.update(1, { "n2" }, { { "n2", '{"host":"10.0.1.2","port":81}', 7, true } })
    assert.same({ "n2", "10.0.1.2", 81 }, { up[1] and up[1].id, up[1] and up[1].host, up[1] and up[1].port })
    assert.same({ 1, 0 }, { #up, #gone })
    -- removed alone: gone, and the rest stays as published
    up, gone = runtime.update(1, { "n3" }, {})
    assert.same({ 0, "n3" }, { #up, gone[1] })
    local ex = require("cjson").decode(runtime.explain(1))
    assert.equals(2, #ex.children)
    assert.same({ "n1", "published", "n2", "published" },
                { ex.children[1].id, ex.children[1].verdict, ex.children[2].id, ex.children[2].verdict })
    H.cleanup()
  end)

  it("keeps a service's tables while C says more reads of it are coming, and lets them go after the last", function()
    assert(runtime.load(H.write('service "s" { path = "/s", protect = false }\n')))
    local weak = setmetatable({}, { __mode = "v" })
    local function batch(from, more)
      local changed = {}
      for k = from, from + 9 do
        changed[#changed + 1] = { "n" .. k, '{"host":"10.0.0.' .. k .. '","port":80}', k, true }
      end
      local up = runtime.update(1, {}, changed, more)
      for k = 1, #up do weak[#weak + 1] = up[k] end
      return #up
    end
    pushed = 0
    assert.equals(10, batch(1, true))      -- an initial sync's first batch: more to come
    assert.equals(10, batch(11, true))
    assert.equals(0, pushed)               -- warm: nothing rebuilt from C between the batches
    collect()
    assert.equals(20, #weak)               -- and nothing let go
    assert.equals(10, batch(21))           -- the last batch
    collect()
    assert.is_nil(next(weak), "the runtime still holds the endpoint tables after the last batch")
    H.cleanup()
  end)

  it("judges an update C did not take against C's set, though it was committed here before it stopped", function()
    -- a budget may stop an update after its commit (the ramp's, the back-off's, the freeze's work follow it): C
    -- publishes nothing of it, and the next call (C says: untaken) must give the same endpoints again. Seen at
    -- 100,000 services, a service left with 0 endpoints "synced". A codec of the user's: never frozen, so Lua's
    -- own tables are what the next update compares with.
    assert(runtime.load(H.write('service "u" { path = "/u", protect = false, codec = { decode = function(n, d)\n'
      .. '  return { host = "10.0.0.1", port = tonumber(d) } end } }\n')))
    local changed = { { "a", "81", 1, true }, { "b", "82", 2, true }, { "c", "83", 3, true } }
    -- (the back-off's look: the ramp's is skipped for a codec without warm-up)
    local backoff = require "scout.backoff"
    local next_of = backoff.next
    backoff.next = function() backoff.next = next_of; error("stopped by the budget", 0) end   -- right after the commit
    local ok, err = pcall(runtime.update, 1, {}, changed)
    backoff.next = next_of
    assert.is_false(ok)
    assert.equals("stopped by the budget", err)
    assert.is_nil(next(store[1]), "C took nothing of the stopped update")
    local up = runtime.update(1, {}, changed, nil, true)
    local ids = {}
    for k = 1, #up do ids[k] = up[k].id end
    table.sort(ids)
    assert.same({ "a", "b", "c" }, ids)
    local verdicts = {}
    for _, c in ipairs(require("cjson").decode(runtime.explain(1)).children) do verdicts[#verdicts + 1] = c.verdict end
    assert.same({ "published", "published", "published" }, verdicts)
    local n = 0
    for _ in pairs(store[1]) do n = n + 1 end
    assert.equals(3, n)
    -- and a later change of that service counts from C's three
    up = runtime.update(1, { "a" }, {})
    assert.equals(0, #up)
    -- stopped after its commit again: b and c, which C holds as Lua does, keep their tables (explain tells them
    -- published by it), and d comes again
    backoff.next = function() backoff.next = next_of; error("stopped by the budget", 0) end
    assert.is_false(pcall(runtime.update, 1, {}, { { "d", "84", 4, true } }))
    backoff.next = next_of
    runtime.update(1, {}, { { "d", "84", 4, true } }, nil, true)
    verdicts = {}
    for _, c in ipairs(require("cjson").decode(runtime.explain(1)).children) do verdicts[c.id] = c.verdict end
    assert.same({ b = "published", c = "published", d = "published" }, verdicts)
    H.cleanup()
  end)
end)

-- The whole runtime spec again (both of its files), this time with the tables let go between changes: same
-- answers.
for _, file in ipairs({ "tests/lua/01_runtime_spec.lua", "tests/lua/05_runtime_update_spec.lua" }) do
  describe("the runtime spec with the endpoint tables in C (" .. file:match("[^/]+$") .. ")", function()
    setup(install)
    teardown(uninstall)
    local chunk = assert(loadfile(file))
    setfenv(chunk, getfenv(1))
    chunk()
  end)
end
