-- scout.runtime: what the C core gets from a policy (the conf table, needs_data, delay) and the incremental update:
-- adds, removes, re-reads, decode errors (and the quiet verdicts that are not errors), the filter run only on what
-- the batch touched, a raising filter committing nothing so the re-delivered batch gives the right diff, on_change's
-- sorted diff and lazily built svc.endpoints, and a raising on_change not stopping the update.

local runtime = require "scout.runtime"
local H = require "policy_helper"

local st = H.state

-- A spec for a known bug: pending while the bug is there, a failure once it is fixed (so the marker is removed).

-- Services by index: 1 "s" (plain, filter, on_change), 2 "bare" (plain, nothing else), 3 "dubbo", 4 "ss"
-- (serverset), 5 "user" (a user codec: the data is a Lua expression it returns), 6 "d" (a delay function),
-- 7 "guarded" (protection left at its default).
local POLICY = [[
local H = require "policy_helper"
local st = H.state

zookeeper { servers = "127.0.0.1:2181/scout", session_timeout = 8000 }
api { listen = "127.0.0.1:8500" }
agent { hook_budget = 40, log_level = "debug" }

local function ids(list)
  local out = {}
  for i = 1, #list do out[i] = list[i].id end
  return table.concat(out, ",")
end

service "s" {
  path = "/svc/s",
  protect = false,
  filter = function(ep)
    st.filter_calls = (st.filter_calls or 0) + 1
    st.filtered = (st.filtered and st.filtered .. "," or "") .. ep.id
    if st.boom == ep.id then error("filter exploded on " .. ep.id, 0) end
    return ep.meta.drop == nil
  end,
  on_change = function(svc, diff)
    local rec = { svc = svc, name = svc.name, path = svc.path, diff = diff,
                  added = ids(diff.added), removed = ids(diff.removed), changed = ids(diff.changed) }
    if st.peek then
      rec.before = rawget(svc, "endpoints")
      rec.endpoints = svc.endpoints
      rec.again = svc.endpoints
    end
    st.changes[#st.changes + 1] = rec
    if st.hook_boom then error(st.hook_boom, 0) end
  end,
}

service "bare" { path = "/svc/bare", protect = false }

service "dubbo" { path = "/dubbo/com.example.Foo/providers", codec = "dubbo", protect = false }

service "ss" { path = "/aurora/jobs/web", codec = "serverset", protect = false }

service "user" {
  path = "/svc/user",
  protect = false,
  codec = { decode = function(_, data) return assert(loadstring("return " .. data))() end },
}

service "d" {
  path = "/svc/d",
  delay = function(ev)
    st.ev = ev
    if st.delay_raise then error(st.delay_raise, 0) end
    return st.delay_value
  end,
}

service "guarded" { path = "/svc/guarded", delay = 250 }

function on_session(state) st.session = state end
]]

local S, BARE, DUBBO, SS, USER, D, GUARDED = 1, 2, 3, 4, 5, 6, 7

local function ids(list)
  local out = {}
  for i = 1, #list do out[i] = list[i].id end
  return table.concat(out, ",")
end

local function json(host, port, extra)
  return '{"host":"' .. host .. '","port":' .. port .. (extra or "") .. "}"
end

-- update() with its four results packed; `ok` = false and `err` when it raised.
local function update(i, removed, changed)
  local ok, up, gone, nerr, nhook, retry, reweigh, degraded, nrej = pcall(runtime.update, i, removed, changed)
  if not ok then return { ok = false, err = up } end
  return { ok = true, up = up, gone = gone, nerr = nerr, nhook = nhook, retry = retry, reweigh = reweigh, ids = ids(up),
           gone_ids = table.concat(gone, ","), degraded = degraded, nrej = nrej }
end

local logs

local function warns()
  local out = {}
  for _, l in ipairs(logs) do
    if l[1] == 1 then out[#out + 1] = l[2] end
  end
  return out
end

local function debugs()
  local out = {}
  for _, l in ipairs(logs) do
    if l[1] == 3 then out[#out + 1] = l[2] end
  end
  return out
end

describe("scout.runtime", function()
  local conf, path

  before_each(function()
    H.reset_state()
    st.changes = {}
    logs = {}
    runtime.set_logger(function(level, msg) logs[#logs + 1] = { level, msg } end)
    path = H.write(POLICY)
    local err
    conf, err = runtime.load(path)
    assert.is_nil(err)
  end)

  teardown(function()
    H.cleanup()
    runtime.set_logger(function(level, msg) if level <= 1 then io.stderr:write(msg, "\n") end end)
  end)

  describe("pick", function()
    it("words every refusal 'no endpoint...' (the API's 503), whatever a custom selector says", function()
      assert(runtime.load(H.write('service "c" { path = "/c", protect = false, selector = { new = function()\n'
        .. '  return { pick = function() return nil, "all busy" end } end } }\n')))
      assert.is_true(update(1, {}, { { "a", '{"host":"10.0.0.1","port":80}', 2 } }).ok)
      assert.same({ nil, "no endpoint: all busy" }, { runtime.pick(1, "") })
      assert(runtime.load(H.write('service "e" { path = "/e", protect = false }\n')))
      assert.same({ nil, "no endpoint" }, { runtime.pick(1, "") })
    end)
  end)

  describe("explain", function()
    it("keeps its JSON valid UTF-8 whatever bytes a codec's reason quotes", function()
      assert.equals("ok \226\130\172", runtime.utf8_clean("ok \226\130\172"))
      assert.equals("a\239\191\189b", runtime.utf8_clean("a\255b"))
      assert.equals("\239\191\189\239\191\189", runtime.utf8_clean("\192\175"))         -- overlong
      assert.equals("\239\191\189\239\191\189\239\191\189", runtime.utf8_clean("\237\160\128"))  -- surrogate
      assert.equals("x\239\191\189\239\191\189", runtime.utf8_clean("x\226\130"))      -- cut short
      assert(runtime.load(H.write('service "c" { path = "/c", protect = false, codec = { decode = function(n, d)\n'
        .. '  return nil, "bad key " .. d end } }\n')))
      assert.is_true(update(1, {}, { { "a", "\255\254", 2 } }).ok)
      local ex = require("cjson").decode(runtime.explain(1))
      assert.equals("bad key \239\191\189\239\191\189", ex.children[1].reason)
    end)
  end)

  describe("render", function()
    it("gives each endpoint an address a proxy can read, IPv6 in brackets", function()
      assert(runtime.load(H.write('service "web" { path = "/web", protect = false }\n'
        .. 'render { dest = "/tmp/x", template = function(v)\n'
        .. '  local out = {}\n'
        .. '  for _, e in ipairs(v.web) do out[#out + 1] = e.address end\n'
        .. '  return table.concat(out, " ")\n'
        .. 'end }\n')))
      local r = update(1, {}, { { "a", '{"host":"::1","port":80}', 2 }, { "b", '{"host":"10.0.0.1","port":81}', 3 } })
      assert.is_true(r.ok, r.err)
      assert.equals("[::1]:80 10.0.0.1:81", runtime.render(1))
    end)
  end)

  describe("load", function()
    it("returns the sections and, per service, name, path, delay_ms and needs_data", function()
      assert.same({ servers = "127.0.0.1:2181/scout", session_timeout = 8000, session_timeout_ms = 8000 },
                  conf.zookeeper)
      assert.same({ listen = "127.0.0.1:8500" }, conf.api)
      assert.same({ hook_budget = 40, hook_budget_ms = 40, log_level = "debug" }, conf.agent)
      assert.same({
        -- needs_data: -1 when the codec's answer depends on the child's name, else the constant answer (dubbo
        -- never reads data; a user codec without needs_data always does)
        { name = "s", path = "/svc/s", delay_ms = 0, codec = "plain", needs_data = -1 },
        { name = "bare", path = "/svc/bare", delay_ms = 0, codec = "plain", needs_data = -1 },
        -- dubbo's configurators and routers are sources besides the providers: C asks which (has_sources)
        { name = "dubbo", path = "/dubbo/com.example.Foo/providers", delay_ms = 0, codec = "dubbo", needs_data = 0,
          has_sources = 1 },
        { name = "ss", path = "/aurora/jobs/web", delay_ms = 0, codec = "serverset", needs_data = -1 },
        { name = "user", path = "/svc/user", delay_ms = 0, needs_data = 1 },  -- a user codec: never kept on reload
        { name = "d", path = "/svc/d", delay_ms = -1, codec = "plain", needs_data = -1 },
        { name = "guarded", path = "/svc/guarded", delay_ms = 250, codec = "plain", needs_data = -1 },
      }, conf.services)
    end)

    it("passes delay = 0 through as 0", function()
      local c = assert(runtime.load(H.write('service "z" { path = "/z", delay = 0 }\n')))
      assert.same({ { name = "z", path = "/z", delay_ms = 0, codec = "plain", needs_data = -1 } }, c.services)
    end)

    it("returns empty sections for a policy that declares none", function()
      local c = assert(runtime.load(H.write('service "z" { path = "/z" }\n')))
      assert.same({ zookeeper = {}, api = {}, agent = {}, cache = {}, shm = {}, renders = {}, registers = {},
                    warnings = {},
                    services = { { name = "z", path = "/z", delay_ms = 0, codec = "plain", needs_data = -1 } } }, c)
    end)

    it("hands C every duration in milliseconds, whether written as a string or a bare number", function()
      local c = assert(runtime.load(H.write(
        'zookeeper { session_timeout = "8s" }\n'
        .. 'agent { hook_budget = "40ms", anti_entropy = "2m", drain = "1.5s" }\n'
        .. 'cache { dir = "/tmp/x", max_age = "30d" }\n'
        .. 'service "z" { path = "/z", delay = "250ms" }\n'
        .. 'service "y" { path = "/y", delay = 250 }\n'
        .. 'register "r" { path = "/r", endpoint = { host = "h", port = 1 },\n'
        .. '               check = { tcp = "h:1", interval = "1m", timeout = 1500 } }\n'
        .. 'render { template = function() return "" end, dest = "/tmp/y", wait = { min = "1s", max = "1h" } }\n')))
      assert.equals(8000, c.zookeeper.session_timeout_ms)
      assert.equals(40, c.agent.hook_budget_ms)
      assert.equals(120000, c.agent.anti_entropy_ms)
      assert.equals(1500, c.agent.drain_ms)
      assert.equals(30 * 86400000, c.cache.max_age_ms)   -- past 2^31: C reads it as 64 bits
      assert.equals(250, c.services[1].delay_ms)
      assert.equals(250, c.services[2].delay_ms)
      assert.equals(60000, c.registers[1].check_interval_ms)
      assert.equals(1500, c.registers[1].check_timeout_ms)
      assert.same({ 1000, 3600000 }, { c.renders[1].wait_min_ms, c.renders[1].wait_max_ms })
      assert.same({}, c.warnings)
    end)

    it("reads a bare cache.max_age as milliseconds, and hands C the warning", function()
      local p = H.write('\n\ncache { dir = "/tmp/x", max_age = 86400 }\n')
      local c = assert(runtime.load(p))
      assert.equals(86400, c.cache.max_age_ms)
      assert.same({ p .. ':3: cache.max_age = 86400 is milliseconds (86.4 s) since 0.2; write "1d" if you meant '
                    .. "86400 seconds" }, c.warnings)
    end)

    it("returns nil and the policy's file:line message", function()
      local p = H.write('\nservice "z" { path = "z" }\n')
      local c, err = runtime.load(p)
      assert.is_nil(c)
      assert.equals(p .. ':2: service "z": path must be an absolute ZooKeeper path', err)
    end)

    it("keeps the loaded policy when a new one fails to load", function()
      assert.is_nil((runtime.load(H.write("x = = 1\n"))))
      local r = update(BARE, {}, { { "10.0.0.1:80", nil, 1 } })
      assert.equals("10.0.0.1:80", r.ids)
      runtime.on_session("connected")
      assert.equals("connected", st.session)
    end)

    it("starts each service empty after a reload", function()
      assert.equals("10.0.0.1:80", update(BARE, {}, { { "10.0.0.1:80", nil, 1 } }).ids)
      assert(runtime.load(path))
      local r = update(BARE, {}, { { "10.0.0.1:80", nil, 2 } })
      -- a fresh state: the child is new again, not a re-read of an old one
      assert.equals("10.0.0.1:80", r.ids)
      r = update(BARE, { "10.0.0.1:80" }, {})
      assert.equals("10.0.0.1:80", r.gone_ids)
    end)
  end)

  describe("needs_data", function()
    local function one(i, name) return runtime.needs_data(i, { name })[1] end

    it("asks the codec and returns a boolean", function()
      assert.is_false(one(S, "10.0.0.1:80"))
      assert.is_false(one(S, "[::1]:80"))
      assert.is_true(one(S, "n1"))
      assert.is_false(one(DUBBO, "dubbo%3A%2F%2F10.0.0.1%3A20880%2Fx"))
      assert.is_true(one(SS, "member_0000000001"))
      assert.is_false(one(SS, "lock_1"))
      -- a user codec without needs_data always reads data
      assert.is_true(one(USER, "10.0.0.1:80"))
    end)

    it("answers a whole child list in one call, each name in its place", function()
      assert.same({ false, true, false, true },
                  runtime.needs_data(S, { "10.0.0.1:80", "n1", "[::1]:80", "n2" }))
      assert.same({}, runtime.needs_data(S, {}))
    end)

    it("turns a user codec's truthy or falsy answer into true or false", function()
      assert(runtime.load(H.write([[
service "a" { path = "/a", codec = { decode = function() end, needs_data = function(name) return name end } }
service "b" { path = "/b", codec = { decode = function() end, needs_data = false } }
]])))
      assert.equals(true, one(1, "yes"))
      assert.equals(false, one(2, "yes"))
    end)
  end)

  describe("update", function()
    it("adds endpoints with id, zxid and the codec's fields", function()
      local r = update(S, {}, {
        { "10.0.0.2:80", nil, 11 },
        { "n1", json("10.0.0.1", 81, ',"weight":5,"meta":{"zone":"a"}'), 12 },
      })
      assert.is_true(r.ok)
      assert.same({
        { id = "10.0.0.2:80", host = "10.0.0.2", port = 80, weight = 1, status = "up", meta = {}, zxid = 11 },
        { id = "n1", host = "10.0.0.1", port = 81, weight = 5, status = "up", meta = { zone = "a" }, zxid = 12 },
      }, r.up)
      assert.same({}, r.gone)
      assert.equals(0, r.nerr)
      assert.equals(0, r.nhook)
      assert.is_nil(r.retry)
      assert.equals(1, #st.changes)
      assert.equals("10.0.0.2:80,n1", st.changes[1].added)
      assert.same({ "service \"s\": +2 -0 ~0" }, debugs())
    end)

    it("removes published endpoints and ignores names it never published", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 } })
      local r = update(S, { "a", "zzz" }, {})
      assert.same({}, r.up)
      assert.same({ "a" }, r.gone)
      assert.equals(0, r.nerr)
      assert.equals("a", st.changes[2].removed)
      assert.equals("", st.changes[2].added)
      -- removing it again is nothing
      r = update(S, { "a" }, {})
      assert.same({}, r.gone)
      assert.equals(2, #st.changes)
    end)

    it("publishes nothing for an identical re-read (a restart, a reload), and calls no hook for it", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 } })
      local first = update(S, {}, {}).up
      assert.same({}, first)
      local r = update(S, {}, { { "a", json("10.0.0.1", 80), 2 } })
      assert.equals("", r.ids)                -- nothing for the C side to publish
      assert.same({}, r.gone)
      assert.equals(1, #st.changes)          -- no diff, no on_change
      assert.same({ 'service "s": +1 -0 ~0' }, debugs())
      -- in a batch with a real change it is still not reported as changed
      r = update(S, {}, { { "a", json("10.0.0.1", 80), 3 }, { "b", json("10.0.0.2", 80), 4 } })
      assert.equals("b", r.ids)
      assert.equals(2, #st.changes)
      assert.equals("b", st.changes[2].added)
      assert.equals("", st.changes[2].changed)
    end)

    it("reports changed content as a change, and svc.endpoints shows the new version", function()
      st.peek = true
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 } })
      -- each step changes one thing: a meta key added, a meta value, the weight, a meta key removed
      for _, extra in ipairs({ ',"meta":{"k":"v"}', ',"meta":{"k":"w"}', ',"meta":{"k":"w"},"weight":3',
                               ',"weight":3' }) do
        local before = #st.changes
        local r = update(S, {}, { { "a", json("10.0.0.1", 80, extra), 3 } })
        assert.equals("a", r.ids)
        assert.equals(before + 1, #st.changes)
        local c = st.changes[#st.changes]
        assert.equals("a", c.changed)
        assert.equals("", c.added)
        assert.equals("", c.removed)
        assert.equals(r.up[1], c.diff.changed[1])
        assert.equals("a,b", ids(c.endpoints))
        assert.equals(r.up[1], c.endpoints[1])
      end
      -- host and port changes too
      local r = update(S, {}, { { "a", json("10.0.0.9", 80), 4 }, { "b", json("10.0.0.2", 8080), 5 } })
      assert.equals("a,b", r.ids)
      assert.equals("a,b", st.changes[#st.changes].changed)
      assert.same({ 'service "s": +2 -0 ~0', 'service "s": +0 -0 ~1', 'service "s": +0 -0 ~1',
                    'service "s": +0 -0 ~1', 'service "s": +0 -0 ~1', 'service "s": +0 -0 ~2' }, debugs())
    end)

    it("counts and logs decode errors, and keeps an endpoint whose data went bad at its last good state", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 } })
      local r = update(S, {}, { { "a", "{oops", 2 }, { "b", "not an address", 3 }, { "c", nil, 4 } })
      assert.same({}, r.up)
      assert.same({}, r.gone)
      assert.equals("1 child not as ZooKeeper has it (a: its data does not decode: bad json)", r.degraded)
      assert.equals(3, r.nerr)
      assert.same({
        'service "s": skipping child a: bad json',
        'service "s": skipping child b: bad address',
        'service "s": skipping child c: no data',
      }, warns())
      assert.equals(1, #st.changes)
    end)

    it("moves a dubbo warm-up ramp on without any event, and stops asking once the weight is final", function()
      local t = os.time() * 1000
      runtime.set_wall_clock(function() return t end)
      finally(function() runtime.set_wall_clock(function() return os.time() * 1000 end) end)
      local name = "dubbo%3A%2F%2F10.0.0.9%3A20880%2Fcom.example.Foo%3Fside%3Dprovider%26timestamp%3D"
                   .. string.format("%d", t - 30000) .. "%26warmup%3D60000%26weight%3D100"
      local r = update(DUBBO, {}, { { name, nil, 1 } })
      local w = r.up[1].weight
      assert.is_true(w > 1 and w < 100, tostring(w))         -- half-way up the ramp when decoded
      assert.is_true(r.reweigh > 0 and r.reweigh <= 10000, tostring(r.reweigh))
      t = t + 15000
      r = update(DUBBO, {}, {})                               -- no event: the C side's timer calling back
      assert.equals(1, #r.up)
      assert.is_true(r.up[1].weight > w and r.up[1].weight < 100, tostring(r.up[1].weight))
      t = t + 60000
      r = update(DUBBO, {}, {})
      assert.equals(100, r.up[1].weight)
      assert.is_nil(r.reweigh)                                -- final: no more calls
      assert.equals(0, #update(DUBBO, {}, {}).up)
    end)

    it("does not count or log the quiet verdicts: dubbo empty:// and non-providers, serverset non-members", function()
      local r = update(DUBBO, {}, {
        { "empty%3A%2F%2F10.0.0.1%3A20880%2Fcom.example.Foo%3Fcategory%3Dproviders", nil, 1 },
        { "consumer%3A%2F%2F10.0.0.2%2Fcom.example.Foo%3Fcategory%3Dconsumers", nil, 2 },
        { "dubbo%3A%2F%2F10.0.0.3%3A20880%2Fcom.example.Foo%3Fweight%3D7", nil, 3 },
      })
      assert.equals(0, r.nerr)
      assert.same({}, warns())
      assert.equals(1, #r.up)
      assert.equals("10.0.0.3", r.up[1].host)
      assert.equals(20880, r.up[1].port)
      assert.equals(7, r.up[1].weight)

      r = update(SS, {}, {
        { "lock_0001", "anything", 4 },
        { "member_0001", '{"serviceEndpoint":{"host":"10.0.0.4","port":9000},"status":"ALIVE"}', 5 },
      })
      assert.equals(0, r.nerr)
      assert.same({}, warns())
      assert.equals("member_0001", r.ids)
    end)

    it("still counts real errors in codecs that have quiet verdicts", function()
      local r = update(SS, {}, { { "member_0002", "{", 1 } })
      assert.equals(1, r.nerr)
      assert.same({ 'service "ss": skipping child member_0002: bad json' }, warns())
      r = update(DUBBO, {}, { { "dubbo%3A%2F%2F10.0.0.1%3Axx%2Fcom.example.Foo", nil, 2 } })
      assert.equals(1, r.nerr)
    end)

    it("publishes only endpoints whose status is up, and withdraws one that stops being up", function()
      local r = update(S, {}, { { "a", json("10.0.0.1", 80), 1 },
                                { "b", json("10.0.0.2", 80, ',"status":"down"'), 2 } })
      assert.equals("a", r.ids)
      assert.equals(0, r.nerr)
      assert.equals(1, st.filter_calls)      -- the status is judged before the filter
      r = update(S, {}, { { "a", json("10.0.0.1", 80, ',"status":"draining"'), 3 } })
      assert.same({}, r.up)
      assert.same({ "a" }, r.gone)
      assert.equals("a", st.changes[2].removed)
      r = update(S, {}, { { "b", json("10.0.0.2", 80), 4 } })
      assert.equals("b", r.ids)
      assert.equals("b", st.changes[3].added)
    end)

    it("runs the filter only on new and changed endpoints", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 },
                      { "c", json("10.0.0.3", 80), 3 } })
      assert.equals(3, st.filter_calls)
      update(S, {}, { { "d", json("10.0.0.4", 80), 4 } })
      assert.equals(4, st.filter_calls)
      assert.equals("a,b,c,d", st.filtered)
      update(S, { "a" }, {})
      assert.equals(4, st.filter_calls)
      update(S, {}, { { "b", json("10.0.0.2", 80, ',"weight":2'), 5 } })
      assert.equals(5, st.filter_calls)
      update(S, {}, { { "c", "{", 6 } })
      assert.equals(5, st.filter_calls)
      update(S, {}, {})
      assert.equals(5, st.filter_calls)
      assert.equals("a,b,c,d,b", st.filtered)
    end)

    it("keeps out what the filter rejects, and withdraws what it starts rejecting", function()
      local r = update(S, {}, { { "a", json("10.0.0.1", 80, ',"meta":{"drop":"1"}'), 1 },
                                { "b", json("10.0.0.2", 80), 2 } })
      assert.equals("b", r.ids)
      r = update(S, {}, { { "b", json("10.0.0.2", 80, ',"meta":{"drop":"1"}'), 3 } })
      assert.same({}, r.up)
      assert.same({ "b" }, r.gone)
      -- a rejected endpoint that goes away was never published: nothing to withdraw
      r = update(S, { "a" }, {})
      assert.same({}, r.gone)
      r = update(S, {}, { { "b", json("10.0.0.2", 80), 4 } })
      assert.equals("b", r.ids)
      assert.equals("b", st.changes[#st.changes].added)
    end)

    describe("when the filter raises on one child", function()
      local batch

      before_each(function()
        st.peek = true
        update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 },
                        { "e", json("10.0.0.5", 80), 3 } })
        assert.equals(1, #st.changes)
        batch = { removed = { "a" },
                  changed = { { "b", json("10.0.0.2", 80, ',"weight":9'), 4 }, { "c", json("10.0.0.3", 80), 5 } } }
        st.boom = "c"
      end)

      it("publishes every other change; the new child stays out and the service says why", function()
        local r = update(S, batch.removed, batch.changed)
        assert.is_true(r.ok)
        assert.equals("b", r.ids)
        assert.equals(9, r.up[1].weight)
        assert.same({ "a" }, r.gone)
        assert.equals(1, r.nhook)
        assert.equals("1 child not as ZooKeeper has it (c: the filter raised: filter exploded on c)", r.degraded)
        assert.equals("b", st.changes[2].changed)
        assert.equals("a", st.changes[2].removed)
        assert.equals('service "s": filter failed on child c, keeping its last verdict: filter exploded on c',
                      warns()[1])
        local ex = require("cjson").decode(runtime.explain(S))
        local v = {}
        for _, c in ipairs(ex.children) do v[c.id] = c.verdict end
        assert.same({ b = "published", c = "filter_error", e = "published" }, v)
        -- the filter answers again: c comes in, and the service is whole again
        st.boom = nil
        r = update(S, {}, { { "c", json("10.0.0.3", 80), 5 } })
        assert.equals("c", r.ids)
        assert.is_nil(r.degraded)
      end)

      it("keeps a published child's last good endpoint while its filter raises", function()
        st.boom = "b"
        local r = update(S, batch.removed, batch.changed)
        assert.equals("c", r.ids)           -- b's new weight is not published: its verdict is unknown
        assert.same({ "a" }, r.gone)
        assert.matches("b: the filter raised", r.degraded, 1, true)
        local ex = require("cjson").decode(runtime.explain(S))
        for _, c in ipairs(ex.children) do
          if c.id == "b" then
            assert.equals("kept", c.verdict)
            assert.equals(1, c.endpoint.weight)
          end
        end
        -- removed while failing: it goes, and takes the degradation with it
        r = update(S, { "b" }, {})
        assert.same({ "b" }, r.gone)
        assert.is_nil(r.degraded)
      end)

      it("keeps a published child whose data stops decoding, and drops it once its node goes", function()
        st.boom = nil
        local r = update(S, {}, { { "b", "not json", 6 } })
        assert.equals("", r.ids)
        assert.same({}, r.gone)
        assert.equals(1, r.nerr)
        assert.matches("^1 child not as ZooKeeper has it %(b: its data does not decode", r.degraded)
        -- a new child that does not decode is simply not an endpoint: nothing is degraded by it
        r = update(S, {}, { { "b", json("10.0.0.2", 80), 7 }, { "z", "not json", 8 } })
        assert.is_nil(r.degraded)
      end)
    end)

    describe("when the update is stopped (the C side's budget, or out of memory)", function()
      local batch

      before_each(function()
        st.peek = true
        update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 },
                        { "e", json("10.0.0.5", 80), 3 } })
        batch = { removed = { "a" },
                  changed = { { "b", json("10.0.0.2", 80, ',"weight":9'), 4 }, { "c", json("10.0.0.3", 80), 5 } } }
        runtime.set_boundary(function(ep) if st.stop == ep.id then error("stopped at " .. ep.id, 0) end end)
        st.stop = "c"
      end)

      after_each(function() runtime.set_boundary(nil) end)

      it("commits nothing: the re-delivered batch gives the whole diff", function()
        local r = update(S, batch.removed, batch.changed)
        assert.is_false(r.ok)
        assert.equals("stopped at c", r.err)
        assert.equals(1, #st.changes)
        st.stop = nil
        r = update(S, batch.removed, batch.changed)
        assert.is_true(r.ok)
        assert.equals("b,c", r.ids)
        assert.same({ "a" }, r.gone)
        assert.equals(2, #st.changes)
        assert.equals("b,c,e", ids(st.changes[2].endpoints))
        -- committed now: the same batch again is only re-reads, nothing to publish
        r = update(S, batch.removed, batch.changed)
        assert.equals("", r.ids)
        assert.same({}, r.gone)
      end)

      it("handles a child the stopped update had removed coming back", function()
        assert.is_false(update(S, batch.removed, batch.changed).ok)
        st.stop = nil
        local r = update(S, {}, { { "a", json("10.0.0.1", 80), 7 } })
        assert.equals("", r.ids)
        assert.same({}, r.gone)
        assert.equals(1, #st.changes)
      end)
    end)

    it("counts children the C boundary refuses, and keeps a published one at its last good state", function()
      runtime.set_boundary(function(ep) if ep.meta.bad then return "a meta value contains a NUL byte" end end)
      local r = update(S, {}, { { "a", json("10.0.0.1", 80), 1 },
                                { "n", json("10.0.0.9", 80, ',"meta":{"bad":"1"}'), 2 } })
      assert.equals("a", r.ids)
      assert.equals(1, r.nrej)
      assert.equals(0, r.nerr)
      assert.is_nil(r.degraded)           -- n never was an endpoint
      r = update(S, {}, { { "a", json("10.0.0.1", 80, ',"meta":{"bad":"1"}'), 3 } })
      assert.equals("", r.ids)
      assert.equals(1, r.nrej)
      assert.matches("a: its data is refused: a meta value contains a NUL byte", r.degraded, 1, true)
      local v = {}
      for _, c in ipairs(require("cjson").decode(runtime.explain(S)).children) do v[c.id] = c.verdict end
      assert.same({ a = "kept", n = "rejected" }, v)
      runtime.set_boundary(nil)
    end)

    it("gives on_change sorted added, removed and changed, and the service's name and path", function()
      update(S, {}, { { "m", json("10.0.0.1", 80), 1 }, { "k", json("10.0.0.2", 80), 2 },
                      { "x", json("10.0.0.3", 80), 3 }, { "b", json("10.0.0.4", 80), 4 } })
      assert.equals("b,k,m,x", st.changes[1].added)
      local r = update(S, { "x", "b" }, {
        { "z", json("10.0.0.5", 80), 5 }, { "m", json("10.0.0.1", 80, ',"weight":2'), 6 },
        { "c", json("10.0.0.6", 80), 7 }, { "k", json("10.0.0.2", 80, ',"weight":2'), 8 },
      })
      assert.equals("z,m,c,k", r.ids)        -- up is in batch order
      assert.equals("x,b", r.gone_ids)
      local c = st.changes[2]
      assert.equals("c,z", c.added)
      assert.equals("b,x", c.removed)
      assert.equals("k,m", c.changed)
      assert.equals("s", c.name)
      assert.equals("/svc/s", c.path)
      -- removed holds the endpoints as they were published
      assert.equals("10.0.0.4", c.diff.removed[1].host)
    end)

    it("builds svc.endpoints only when asked: sorted, the state after the batch", function()
      update(S, {}, { { "d", json("10.0.0.4", 80), 1 }, { "a", json("10.0.0.1", 80), 2 } })
      local svc = st.changes[1].svc
      assert.is_nil(rawget(svc, "endpoints"))
      st.peek = true
      update(S, { "d" }, { { "c", json("10.0.0.3", 80), 3 }, { "a", json("10.0.0.1", 80, ',"weight":4'), 4 },
                           { "b", json("10.0.0.2", 80), 5 } })
      local c = st.changes[2]
      assert.is_nil(c.before)
      assert.equals("a,b,c", ids(c.endpoints))
      assert.equals(4, c.endpoints[1].weight)
      assert.equals(c.endpoints, c.again)    -- built once
      assert.is_nil(c.svc.other)
      -- an endpoint untouched by the batch is there too
      update(S, {}, { { "e", json("10.0.0.5", 80), 6 } })
      assert.equals("a,b,c,e", ids(st.changes[3].endpoints))
    end)

    it("counts a raising on_change but still returns and commits the update", function()
      st.hook_boom = "hook exploded"
      local r = update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 } })
      assert.is_true(r.ok)
      assert.equals("a,b", r.ids)
      assert.equals(1, r.nhook)
      assert.equals(0, r.nerr)
      assert.same({ 'service "s": on_change failed: hook exploded' }, warns())
      assert.same({ 'service "s": +2 -0 ~0' }, debugs())
      st.hook_boom = nil
      -- committed: a is published, so removing it withdraws it; re-reading b is not new
      r = update(S, { "a" }, { { "b", json("10.0.0.2", 80), 3 } })
      assert.same({ "a" }, r.gone)
      assert.equals(0, r.nhook)
      assert.equals("", st.changes[2].added)
      assert.equals("a", st.changes[2].removed)
    end)

    it("works without filter or on_change", function()
      local r = update(BARE, {}, { { "10.0.0.1:80", nil, 1 }, { "[::1]:81", "ignored", 2 } })
      assert.same({
        { id = "10.0.0.1:80", host = "10.0.0.1", port = 80, weight = 1, status = "up", meta = {}, zxid = 1 },
        { id = "[::1]:81", host = "::1", port = 81, weight = 1, status = "up", meta = {}, zxid = 2 },
      }, r.up)
      r = update(BARE, { "10.0.0.1:80", "[::1]:81" }, {})
      assert.same({ "10.0.0.1:80", "[::1]:81" }, r.gone)
      assert.equals(0, r.nhook)
    end)

    it("takes a child removed and re-created in one batch as its new version", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 } })
      local r = update(S, { "a" }, { { "a", json("10.0.0.1", 90), 2 } })
      assert.equals("a", r.ids)
      assert.same({}, r.gone)
      assert.equals("a", st.changes[2].changed)
    end)

    describe("with a user codec", function()
      local BAD = {
        { "{ port = 80 }", "codec returned an endpoint without host" },
        { '{ host = "", port = 80 }', "codec returned an endpoint without host" },
        { "{ host = 5, port = 80 }", "codec returned an endpoint without host" },
        { '{ host = "h", port = 0 }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = 70000 }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = 65536 }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = 80.5 }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = "80" }', "codec returned an endpoint with a bad port" },
        { '{ host = "h" }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = 80, weight = "5" }', "codec returned a bad weight" },
        { '{ host = "h", port = 80, weight = -1 }', "codec returned a bad weight" },
        { '{ host = "h", port = 80, status = true }', "codec returned a bad status" },
        { '{ host = "h", port = 80, meta = "zone=a" }', "codec returned a bad meta" },
        { "nil", "codec returned nothing" },
        { "5", "codec returned nothing" },
        { 'nil, "my reason"', "my reason" },
        { 'error("decoder exploded", 0)', "decoder exploded" },
      }
      for _, c in ipairs(BAD) do
        it("counts a decode returning " .. c[1] .. " as an error", function()
          local r = update(USER, {}, { { "x", c[1], 1 } })
          assert.is_true(r.ok)
          assert.same({}, r.up)
          assert.equals(1, r.nerr)
          assert.same({ 'service "user": skipping child x: ' .. c[2] }, warns())
        end)
      end

      it("fills in weight 1, status up and empty meta, and accepts weight 0 and the edge ports", function()
        local r = update(USER, {}, {
          { "a", '{ host = "h", port = 1 }', 1 },
          { "b", '{ host = "h", port = 65535, weight = 0, meta = { z = "1" } }', 2 },
        })
        assert.equals(0, r.nerr)
        assert.same({
          { id = "a", host = "h", port = 1, weight = 1, status = "up", meta = {}, zxid = 1 },
          { id = "b", host = "h", port = 65535, weight = 0, status = "up", meta = { z = "1" }, zxid = 2 },
        }, r.up)
      end)

      it("does not re-publish the very endpoint table it already published", function()
        -- a codec may memoize: handing back the same table is no news, not even a re-read
        assert(runtime.load(H.write([[
local cache = {}
service "memo" {
  path = "/memo",
  codec = { decode = function(_, data)
    cache[data] = cache[data] or assert(loadstring("return " .. data))()
    return cache[data]
  end },
}
]])))
        local first = update(1, {}, { { "a", '{ host = "h", port = 1 }', 1 } })
        assert.equals("a", first.ids)
        local r = update(1, {}, { { "a", '{ host = "h", port = 1 }', 2 } })
        assert.same({}, r.up)
        assert.same({}, r.gone)
        r = update(1, {}, { { "a", '{ host = "h", port = 2 }', 3 } })
        assert.equals(2, r.up[1].port)
      end)

      it("a NaN or infinite weight from a user codec is a decode error", function()
        -- NaN passes `weight < 0`; it then never compares equal, so every re-read reports it as changed, and the
        -- C side reads weights with (int)lua_tointeger
        for _, w in ipairs({ "0/0", "math.huge" }) do
          local r = update(USER, {}, { { "x", '{ host = "h", port = 1, weight = ' .. w .. " }", 1 } })
          assert.equals(1, r.nerr, "weight " .. w .. " accepted")
        end
      end)

      it("overrides any id the codec set with the child name", function()
        local r = update(USER, {}, { { "a", '{ id = "other", host = "h", port = 1 }', 1 } })
        assert.equals("a", r.up[1].id)
      end)

      it("keeps a non-up status out without counting an error", function()
        local r = update(USER, {}, { { "a", '{ host = "h", port = 1, status = "down" }', 1 } })
        assert.same({}, r.up)
        assert.equals(0, r.nerr)
      end)
    end)
  end)

  describe("delay", function()
    local WANT_DELAY = 'want milliseconds from 0 to 86400000 or a duration like "500ms"'
    it("passes the event and returns the delay in whole milliseconds", function()
      st.delay_value = 12.7
      assert.equals(12, runtime.delay(D, "child", "n1", 3, 450.5))
      assert.same({ kind = "child", child = "n1", pending = 3, since_read = 450.5, service = "d", path = "/svc/d" },
                  st.ev)
      st.delay_value = 0
      assert.equals(0, runtime.delay(D, "children", nil, 0, 0))
      assert.same({ kind = "children", pending = 0, since_read = 0, service = "d", path = "/svc/d" }, st.ev)
    end)

    it("takes a duration string from the function, as the delay key does", function()
      st.delay_value = "1.5s"
      assert.equals(1500, runtime.delay(D, "child", "n1", 3, 0))
      st.delay_value = "2d"
      assert.is_false((pcall(runtime.delay, D, "child", "n1", 1, 0)))
    end)

    for _, c in ipairs({ { '"5"', "5" }, { "-1", "-1" }, { "nil", "nil" }, { "true", "true" }, { "{}", "table" } }) do
      it("raises with the service name when the function returns " .. c[1], function()
        st.delay_value = assert(loadstring("return " .. c[1]))()
        local ok, err = pcall(runtime.delay, D, "child", "n1", 1, 0)
        assert.is_false(ok)
        if c[2] == "table" then
          assert.matches('^service "d": delay returned table: 0x%x+; ' .. WANT_DELAY .. "$", err)
        else
          assert.equals('service "d": delay returned ' .. c[2] .. "; " .. WANT_DELAY, err)
        end
      end)
    end

    it("raises with the service name when the function returns NaN", function()
      st.delay_value = 0 / 0
      local ok, err = pcall(runtime.delay, D, "child", "n1", 1, 0)
      assert.is_false(ok)
      assert.matches('^service "d": delay returned %-?nan; ' .. WANT_DELAY .. "$", err)
    end)

    it("lets an error of the delay function through", function()
      st.delay_raise = "cannot decide"
      local ok, err = pcall(runtime.delay, D, "child", "n1", 1, 0)
      assert.is_false(ok)
      assert.equals("cannot decide", err)
    end)

    it("a delay beyond the C side's int (it reads (int)lua_tointeger) is refused", function()
      for _, v in ipairs({ math.huge, 2 ^ 31, 1e12 }) do
        st.delay_value = v
        assert.is_false((pcall(runtime.delay, D, "child", "n1", 1, 0)), "accepted " .. tostring(v))
      end
    end)
  end)

  describe("on_session", function()
    it("calls the policy's on_session with the state", function()
      runtime.on_session("expired")
      assert.equals("expired", st.session)
    end)

    it("does nothing for a policy without on_session", function()
      assert(runtime.load(H.write('service "z" { path = "/z" }\n')))
      runtime.on_session("connected")
      assert.is_nil(st.session)
    end)
  end)

  describe("protection", function()
    it("is on by default: a drop to no endpoints is held, not committed", function()
      runtime.set_clock(function() return 1000 end)
      finally(function() runtime.set_clock(function() return os.clock() * 1000 end) end)
      assert.equals("10.0.0.1:80", update(GUARDED, {}, { { "10.0.0.1:80", nil, 1 } }).ids)
      local r = update(GUARDED, { "10.0.0.1:80" }, {})
      assert.same({}, r.gone)
      assert.is_number(r.retry)
      -- with protect = false the same drop is published at once
      update(BARE, {}, { { "10.0.0.1:80", nil, 1 } })
      r = update(BARE, { "10.0.0.1:80" }, {})
      assert.same({ "10.0.0.1:80" }, r.gone)
      assert.is_nil(r.retry)
    end)

    it("counts one confirmation per confirm_interval, however many reads come in between", function()
      local t = 5000
      runtime.set_clock(function() return t end)
      finally(function() runtime.set_clock(function() return os.clock() * 1000 end) end)
      update(GUARDED, {}, { { "10.0.0.2:80", nil, 1 } })
      local r = update(GUARDED, { "10.0.0.2:80" }, {})      -- held (default: confirm = 3, 1 s apart)
      assert.equals(1000, r.retry)
      for _ = 1, 20 do                                      -- reads 10 ms apart confirm nothing
        t = t + 10
        r = update(GUARDED, { "10.0.0.2:80" }, {})
        assert.same({}, r.gone)
      end
      assert.equals(800, r.retry)                           -- the scheduled re-read is still due on time
      for _ = 1, 3 do                                       -- the re-reads one interval apart confirm
        t = t + 1000
        r = update(GUARDED, { "10.0.0.2:80" }, {})
      end
      assert.same({ "10.0.0.2:80" }, r.gone)
    end)
  end)
end)

-- Issue 14: what a big registry keeps in Lua once the garbage is gone, per service and per endpoint (2,000 services
-- of 5 plain endpoints, read the way the agent reads them). The bounds sit between what it cost before and now
-- (per service 1,258 -> ~800 B: the state's table in 8 slots, no baseline before a drop, the policy's block sized to
-- its keys; per endpoint ~420 -> ~350 B: one shared empty meta).
describe("scout.runtime memory at rest", function()
  local N, E = 2000, 5

  local function live_kb()
    collectgarbage()
    collectgarbage()
    return collectgarbage("count")
  end

  teardown(function() H.cleanup() end)

  it("keeps under 950 bytes a service and 400 bytes an endpoint", function()
    assert(runtime.load(H.write('zookeeper { servers = "127.0.0.1:2181" }\nservice "one" { path = "/one" }\n')))
    local src = { 'zookeeper { servers = "127.0.0.1:2181" }' }
    for i = 1, N do
      src[#src + 1] = string.format('service "svc-%05d" { path = "/scale/svc-%05d", codec = "plain" }', i, i)
    end
    local path = H.write(table.concat(src, "\n"))
    local b0 = live_kb()
    assert(runtime.load(path))
    for i = 1, N do runtime.update(i, {}, {}) end       -- the first (empty) listing: every service judged once
    local b1 = live_kb()
    for i = 1, N do
      local changed = {}
      for e = 1, E do
        changed[e] = { "ep-" .. e, string.format('{"host":"10.%d.%d.%d","port":%d}', i % 200, e, i % 250, 8000 + e),
                       100 + e, true }
      end
      local up = runtime.update(i, {}, changed)
      assert.equals(E, #up)
    end
    local b2 = live_kb()
    local per_service, per_endpoint = (b1 - b0) * 1024 / N, (b2 - b1) * 1024 / (N * E)
    assert.is_true(per_service < 950, string.format("%.0f bytes a service", per_service))
    assert.is_true(per_endpoint < 400, string.format("%.0f bytes an endpoint", per_endpoint))
    -- and what is kept is still what the hooks and the API see
    local ex = require("cjson").decode(runtime.explain(N))
    assert.equals(E, #ex.children)
    assert.equals("published", ex.children[1].verdict)
    assert.same({}, ex.children[1].endpoint.meta)
  end)
end)
