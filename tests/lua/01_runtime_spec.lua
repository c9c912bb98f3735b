-- scout.runtime: what the C core gets from a policy (the conf table, needs_data, delay), pick, explain and render,
-- on_session, protection's defaults, and what a big registry keeps in Lua at rest. The incremental update (adds,
-- removes, re-reads, decode errors, the filter, on_change's diff) is in 05_runtime_update_spec.lua; the policy both
-- load is in runtime_helper.lua.

local runtime = require "scout.runtime"
local H = require "policy_helper"
local R = require "runtime_helper"

local st = H.state

-- A spec for a known bug: pending while the bug is there, a failure once it is fixed (so the marker is removed).

local S, BARE, DUBBO, SS, USER, D, GUARDED = R.S, R.BARE, R.DUBBO, R.SS, R.USER, R.D, R.GUARDED
local update = R.update

describe("scout.runtime", function()
  local conf, path

  before_each(function()
    conf, path = R.begin()
  end)

  teardown(R.finish)

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
      assert.matches(":%d+$", conf.agent.hook_budget_at)
      conf.agent.hook_budget_at = nil
      assert.same({ hook_budget = 40, hook_budget_ms = 40, log_level = "debug" }, conf.agent)
      assert.same({
        -- needs_data: -1 when the codec's answer depends on the child's name, -2 for plain's (host:port needs no
        -- data: C answers it), else the constant answer (dubbo never reads data; a user codec without one always does)
        { name = "s", path = "/svc/s", delay_ms = 0, codec = "plain", needs_data = -2 },
        { name = "bare", path = "/svc/bare", delay_ms = 0, codec = "plain", needs_data = -2 },
        -- dubbo's configurators and routers are sources besides the providers: C asks which (has_sources)
        { name = "dubbo", path = "/dubbo/com.example.Foo/providers", delay_ms = 0, codec = "dubbo", needs_data = 0,
          has_sources = 1 },
        { name = "ss", path = "/aurora/jobs/web", delay_ms = 0, codec = "serverset", needs_data = -1 },
        { name = "user", path = "/svc/user", delay_ms = 0, needs_data = 1 },  -- a user codec: never kept on reload
        { name = "d", path = "/svc/d", delay_ms = -1, codec = "plain", needs_data = -2 },
        { name = "guarded", path = "/svc/guarded", delay_ms = 250, codec = "plain", needs_data = -2 },
      }, H.conf_rows(conf.services))
    end)

    it("gives every service that names a codec its own sources, whichever service named it first", function()
      -- the codec and its sources are looked up once per name: the second and third dubbo services get them too
      local c = assert(runtime.load(H.write(
        'service "p" { path = "/p" }\n'
        .. 'service "a" { dubbo = { interface = "com.example.A" } }\n'
        .. 'service "q" { path = "/q", codec = "plain" }\n'
        .. 'service "b" { dubbo = { interface = "com.example.B" } }\n'
        .. 'service "c" { dubbo = { interface = "com.example.C" } }\n')))
      local rows = H.conf_rows(c.services)
      assert.same({ "plain", "dubbo", "plain", "dubbo", "dubbo" },
                  { rows[1].codec, rows[2].codec, rows[3].codec, rows[4].codec,
                    rows[5].codec })
      assert.same({ -2, 0, -2, 0, 0 }, { rows[1].needs_data, rows[2].needs_data,
                                         rows[3].needs_data, rows[4].needs_data,
                                         rows[5].needs_data })
      assert.same({ false, true, false, true, true },
                  { rows[1].has_sources == 1, rows[2].has_sources == 1, rows[3].has_sources == 1,
                    rows[4].has_sources == 1, rows[5].has_sources == 1 })
      -- each its own sources, on its own interface's paths
      assert.same({}, runtime.sources(3))
      local function paths(i)
        local out = {}
        for _, d in ipairs(runtime.sources(i)) do out[#out + 1] = d.path end
        table.sort(out)
        return table.concat(out, " ")
      end
      assert.matches("com.example.B", paths(4))
      assert.matches("com.example.C", paths(5))
      assert.is_nil(paths(5):find("com.example.B", 1, true))
    end)

    it("passes delay = 0 through as 0", function()
      local c = assert(runtime.load(H.write('service "z" { path = "/z", delay = 0 }\n')))
      assert.same({ { name = "z", path = "/z", delay_ms = 0, codec = "plain", needs_data = -2 } },
                  H.conf_rows(c.services))
    end)

    it("returns empty sections for a policy that declares none", function()
      local c = assert(runtime.load(H.write('service "z" { path = "/z" }\n')))
      c.services = H.conf_rows(c.services)
      assert.same({ zookeeper = {}, api = {}, agent = {}, cache = {}, shm = {}, renders = {}, registers = {},
                    warnings = {},
                    services = { { name = "z", path = "/z", delay_ms = 0, codec = "plain", needs_data = -2 } } }, c)
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
      assert.same({ 250, 250 }, c.services.delay_ms)
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
-- its keys; then ~730 -> ~490 B: the policy's blocks and its index by name let go after the load; per endpoint
-- ~420 -> ~350 B: one shared empty meta).
describe("scout.runtime memory at rest", function()
  local N, E = 2000, 5

  local function live_kb()
    collectgarbage()
    collectgarbage()
    return collectgarbage("count")
  end

  teardown(function() H.cleanup() end)

  it("gives every endpoint without meta the one shared empty table, a codec's own empty table included", function()
    local EMPTY = require("scout.util.endpoint").EMPTY_META
    assert(runtime.load(H.write('zookeeper { servers = "127.0.0.1:2181" }\n'
      .. 'service "c" { path = "/c", protect = false, codec = { decode = function(n, d)\n'
      .. '  if d == "some" then return { host = "10.0.0.3", port = 80, meta = { zone = "a" } } end\n'
      .. '  return { host = "10.0.0.1", port = 80, meta = d == "empty" and {} or nil } end } }\n')))
    local up = runtime.update(1, {}, { { "a", "empty", 2, true }, { "b", "none", 3, true }, { "c", "some", 4, true } })
    assert.equals(3, #up)
    local by = {}
    for _, ep in ipairs(up) do by[ep.id] = ep end
    assert.is_true(rawequal(EMPTY, by.a.meta), "a codec's empty meta is swapped for the shared one")
    assert.is_true(rawequal(EMPTY, by.b.meta))
    assert.same({ zone = "a" }, by.c.meta)
  end)

  it("keeps under 600 bytes a service and 400 bytes an endpoint", function()
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
    assert.is_true(per_service < 600, string.format("%.0f bytes a service", per_service))
    assert.is_true(per_endpoint < 400, string.format("%.0f bytes an endpoint", per_endpoint))
    -- and what is kept is still what the hooks and the API see
    local ex = require("cjson").decode(runtime.explain(N))
    assert.equals(E, #ex.children)
    assert.equals("published", ex.children[1].verdict)
    assert.same({}, ex.children[1].endpoint.meta)
  end)
end)
