-- scout.policy: the DSL a user writes. Every section and key that loads, what the returned table holds, and each
-- class of mistake with the exact `file:line: message` the user sees, pointing at the line of the key at fault
-- (or of the block, when the mistake is the block's).

local policy = require "scout.policy"
local H = require "policy_helper"

local function load(src)
  local path = H.write(src)
  local p, err = policy.load(path)
  return p, err, path
end

-- Asserts the policy fails to load with exactly "<file>:<line>: <msg>".
local function fails(src, line, msg)
  local p, err, path = load(src)
  assert.is_nil(p)
  assert.equals(path .. ":" .. line .. ": " .. msg, err)
end

-- How every duration key words its refusal.
local DUR = 'must be a duration ("500ms", "10s", "1h"; a number is milliseconds)'

-- A spec for a known bug: pending while the bug is there, a failure once it is fixed (so the marker is removed).

local function loads(src)
  local p, err = load(src)
  assert.is_nil(err)
  assert.is_table(p)
  return p
end

-- A service block that starts on line 3 with `key = value` inside, on line 5.
local function svc_src(key, value)
  return "-- policy\n\nservice \"s\" {\n  path = \"/s\",\n  " .. key .. " = " .. value .. ",\n}\n"
end

-- A section block that starts on line 3, its key on line 4.
local function section_src(section, key, value)
  return "-- policy\n\n" .. section .. " {\n  " .. key .. " = " .. value .. ",\n}\n"
end

describe("scout.policy", function()
  teardown(H.cleanup)

  describe("a valid policy", function()
    it("returns every section, every service key and on_session as declared", function()
      local p, err, path = load([[
zookeeper {
  servers = "127.0.0.1:2181,10.0.0.2:2181/chroot",
  session_timeout = 15000,
  auth = { scheme = "digest", credential = "user:pass" },
}
api { listen = "unix:/run/scout.sock" }
agent { hook_budget = 25, log_level = "info" }

local function keep(ep) return ep.port ~= 1 end
local function changed() end
local function wait() return 5 end

service "orders" {
  path = "/dubbo/com.example.Orders/providers",
  codec = "dubbo",
  codec_options = { now = 1 },
  filter = keep,
  delay = wait,
  selector = "swrr",
  selector_options = { seed = 7 },
  route = { { tag = true } },
  on_change = changed,
}

service "users" {
  path = "/users",
  delay = 250,
}

function on_session(state) return state end
]])
      assert.is_nil(err)
      assert.equals(path, p.file)
      assert.same({
        servers = "127.0.0.1:2181,10.0.0.2:2181/chroot",
        session_timeout = 15000,
        auth = { scheme = "digest", credential = "user:pass" },
      }, p.zookeeper)
      assert.same({ listen = "unix:/run/scout.sock" }, p.api)
      -- where hook_budget is written, for the agent's warning when it passes the session's reach
      assert.matches(":%d+$", p.agent.hook_budget_at)
      p.agent.hook_budget_at = nil
      assert.same({ hook_budget = 25, log_level = "info" }, p.agent)

      assert.equals(2, #p.services)
      local o = p.services[1]
      assert.equals("orders", o.name)
      -- where: a line of the policy's file (made "file:line" only for a message)
      assert.equals(13, o.at)
      assert.equals(path .. ":13", policy.at_string(p, o.at))
      assert.equals("/dubbo/com.example.Orders/providers", o.path)
      assert.equals("dubbo", o.codec)
      assert.same({ now = 1 }, o.codec_options)
      assert.same({ seed = 7 }, o.selector_options)
      assert.equals("swrr", o.selector)
      assert.same({ { tag = true } }, o.route)
      assert.is_function(o.filter)
      assert.is_true(o.filter({ port = 2 }))
      assert.is_false(o.filter({ port = 1 }))
      assert.equals(5, o.delay())
      assert.is_function(o.on_change)

      -- nothing is added to a service beyond what was written, its name, where, and the codec default
      assert.same({ name = "users", at = 25, codec = "plain", path = "/users", delay = 250 },
                  p.services[2])
      assert.equals(p.services[1], p.by_name.orders)
      assert.equals(p.services[2], p.by_name.users)
      assert.equals("x", p.on_session("x"))
    end)

    it("keeps services in declaration order, not sorted", function()
      local p = loads('service "zeta" { path = "/z" }\nservice "alpha" { path = "/a" }\n'
                      .. 'service "mid" { path = "/m" }\n')
      assert.equals(3, #p.services)
      assert.equals("zeta", p.services[1].name)
      assert.equals("alpha", p.services[2].name)
      assert.equals("mid", p.services[3].name)
    end)

    it("defaults codec to plain and keeps an explicit codec", function()
      local p = loads('service "a" { path = "/a" }\nservice "b" { path = "/b", codec = "rpcx" }\n')
      assert.equals("plain", p.services[1].codec)
      assert.equals("rpcx", p.services[2].codec)
    end)

    it("loads an empty file as an empty policy", function()
      local p, _, path = load("")
      assert.same({ file = path, zookeeper = {}, api = {}, agent = {}, cache = {}, shm = {}, services = {},
                    by_name = {}, renders = {}, registers = {}, warnings = {} }, p)
      assert.is_nil(p.on_session)
    end)

    it("runs in its own environment: globals stay in the file, each load starts fresh", function()
      local src = 'scout_policy_spec_leak = 1\nservice "a" { path = "/a" }\n'
      loads(src)
      assert.is_nil(rawget(_G, "scout_policy_spec_leak"))
      -- the same service in a second load is not "declared twice"
      local p = loads(src)
      assert.equals(1, #p.services)
    end)

    it("lets a policy use the standard library", function()
      local p = loads('service "a" { path = "/" .. string.rep("x", 3), delay = math.max(1, 2) }\n')
      assert.equals("/xxx", p.services[1].path)
      assert.equals(2, p.services[1].delay)
    end)

    local VALID = {
      zookeeper = {
        servers = { '"127.0.0.1:2181"', '"zk-1.example.com:2181,zk-2:2182"', '"[::1]:2181"',
                    '"[::1]:2181,10.0.0.2:2181/scout/prod"', '"a:1/"' },
        session_timeout = { "1", "30000", '"10s"', '"1.5s"', '"1d"' },
        auth = { '{ scheme = "digest", credential = "u:p" }', '{ scheme = "digest", credential = "u:p:q" }' },
      },
      api = {
        listen = { '"unix:/x"', '"unix:/run/scout.sock"', '"127.0.0.1:8500"', '"localhost:80"', '"[::1]:80"',
                   '"host:65535"' },
      },
      agent = {
        hook_budget = { "1", "50", '"50ms"', '"1s"' },
        log_level = { '"error"', '"warn"', '"info"', '"debug"' },
        anti_entropy = { "0", "60000", '"0ms"', '"90s"', '"1d"' },
        anti_entropy_rate = { "1", "500", "1000000" },
        drain = { "0", "5000", '"5s"', '"2m"' },
        reload_max_drop = { "0", "0.5", "1" },
      },
      cache = {
        max_age = { "1", '"24h"', '"1d"', '"500ms"', '"30d"' },
      },
    }
    for section, keys in pairs(VALID) do
      for key, values in pairs(keys) do
        for _, v in ipairs(values) do
          it(section .. " accepts " .. key .. " = " .. v, function()
            local p = loads(section_src(section, key, v))
            local expect = assert(loadstring("return " .. v))()
            assert.same(expect, p[section][key])
          end)
        end
      end
    end

    local SERVICE_VALID = {
      path = { '"/"', '"/a"', '"/a/b.c/d-e_f"', '"/.x/..y"' },
      codec = { '"plain"', '"dubbo"', '"dubbo3"', '"rpcx"', '"curator"', '"serverset"', '"nerve"',
                '{ decode = function() end }', '{ decode = function() end, needs_data = false }' },
      codec_options = { "{}", '{ protocol = "tri" }' },
      filter = { "function() return true end" },
      delay = { "0", "250", '"0ms"', '"500ms"', '"1.5s"', '"1h"', '"1d"', "function() return 1 end" },
      selector = { '"rr"', '"swrr"', '"random"', '"chash"', '"leastconn"', '"p2c"', '"scout.select.rr"',
                   "{ new = function() end }" },
      selector_options = { "{}" },
      route = { "{}", '{ "=> host = 1.2.3.4" }', "{ { tag = true } }", '{ { tag = "zone", fallback = "none" } }' },
      on_change = { "function() end" },
      protect = { "false", "{}", '{ min_ratio = 1, confirm = 0, hold = "2s", confirm_interval = 500 }',
                  '{ min_ratio = 0.5, hold = "1m", confirm_interval = "250ms" }', '{ hold = "1h" }' },
      on_protect = { "function() return true end" },
    }
    for key, values in pairs(SERVICE_VALID) do
      for _, v in ipairs(values) do
        it("service accepts " .. key .. " = " .. v, function()
          local p = loads(svc_src(key, v))
          local s = p.services[1]
          assert.equals(type(assert(loadstring("return " .. v))()), type(s[key]))
          if type(s[key]) ~= "table" and type(s[key]) ~= "function" then
            assert.equals(assert(loadstring("return " .. v))(), s[key])
          end
        end)
      end
    end

    for _, name in ipairs({ "a", "orders-v2", "com.example.Foo", "9lives", "a_b", "A.b-c_d" }) do
      it("accepts the service name " .. name, function()
        local p = loads('service "' .. name .. '" { path = "/a" }\n')
        assert.equals(name, p.services[1].name)
        assert.equals(p.services[1], p.by_name[name])
      end)
    end
  end)

  describe("errors", function()
    it("reports a syntax error with the file and line", function()
      fails('service "a" {\n  path = "/a"\n  codec = "plain",\n}\n', 3,
            "'}' expected (to close '{' at line 1) near 'codec'")
      fails("\n\nx = = 1\n", 3, "unexpected symbol near '='")
    end)

    it("reports a file that cannot be read", function()
      local p, err = policy.load("/nonexistent/scout/policy.lua")
      assert.is_nil(p)
      assert.equals("cannot open /nonexistent/scout/policy.lua: No such file or directory", err)
    end)

    it("reports a runtime error at the top level with its line", function()
      fails("-- policy\nlocal x = nil\nlocal y = x + 1\n", 3,
            "attempt to perform arithmetic on local 'x' (a nil value)")
      fails('\nerror("boom")\n', 2, "boom")
      fails('local x = {}\nx.f()\n', 2, "attempt to call field 'f' (a nil value)")
    end)

    it("reports an error raised inside a block at the line of the raise", function()
      fails('service "a" {\n  path = "/a",\n  delay = assert(nil, "no delay"),\n}\n', 3, "no delay")
    end)

    it("lists the known keys for an unknown key in each section and in a service", function()
      fails(section_src("zookeeper", "server", '"a:1"'), 4,
            'zookeeper: unknown key "server" (did you mean "servers"? known: auth, servers, session_timeout, sessions, '
            .. 'watch_budget)')
      fails(section_src("api", "port", "80"), 4, 'api: unknown key "port" (known: listen)')
      fails(section_src("agent", "budget", "1"), 4,
            'agent: unknown key "budget" (known: anti_entropy, anti_entropy_rate, drain, hook_budget, log_level, '
            .. 'lua_memory, reload_max_drop)')
      fails(svc_src("selecter", '"rr"'), 5, 'service "s": unknown key "selecter" (did you mean "selector"? known: '
            .. "codec, codec_options, "
            .. "delay, dubbo, filter, on_change, on_protect, path, protect, route, selector, selector_options)")
    end)

    it("reports a non-string key by its tostring", function()
      fails('\nagent { [1] = 2 }\n', 2,
            'agent: unknown key "1" (known: anti_entropy, anti_entropy_rate, drain, hook_budget, log_level, '
            .. 'lua_memory, reload_max_drop)')
    end)

    it("reports the bad key that sorts first when several are bad", function()
      fails('service "s" { path = 5, codec = "nope", zzz = 1 }\n', 1, 'service "s": codec: unknown codec "nope"')
    end)

    it("reports a bad key of a multi-line block at the key's own line", function()
      local src = "-- one\n-- two\nservice \"s\" {\n  path = \"/s\",\n\n\n  delay = -5,\n}\n"
      fails(src, 7, 'service "s": delay ' .. DUR .. " from 0 to 1d, or a function")
      fails("\nzookeeper {\n  servers = \"a:1\",\n  session_timeout = 0,\n}\n", 4,
            "zookeeper: session_timeout " .. DUR .. " from 1ms to 1d")
      -- strings and comments that look like keys do not move it
      fails('service "s" { -- x = 1\n  path = "/s", --[[ y =\n z = ]] codec = "a = b",\n  zzz = 1,\n}\n', 3,
            'service "s": codec: unknown codec "a = b"')
    end)

    local SERVERS_MSG = 'servers must be a string like "127.0.0.1:2181,10.0.0.2:2181/chroot"'
    local LISTEN_TYPE = 'listen must be a string like "unix:/run/scout.sock" or "127.0.0.1:8500"'
    local WATCH_BUDGET = "watch_budget must be 0 (do not spread) or a whole number of bytes from 4096 to 900000"
    local AUTH_TYPE = 'auth must be a table { scheme = "digest", credential = "user:pass" }'
    local AE = "anti_entropy " .. DUR .. " from 0 (off) to 1d"
    local RATE = "anti_entropy_rate must be a whole number of requests per second from 1 to 1000000"
    local function TIMEOUT(key) return key .. " " .. DUR .. " from 1ms to 1d" end
    local SECTION_BAD = {
      { "zookeeper", "servers", "5", SERVERS_MSG },
      { "zookeeper", "servers", '""', SERVERS_MSG },
      { "zookeeper", "servers", '"a:1,b"', 'servers has a bad server "b" (want host:port)' },
      { "zookeeper", "servers", '"a:x"', 'servers has a bad server "a:x" (want host:port)' },
      { "zookeeper", "servers", '"a:1, b:2"', 'servers has a bad server " b:2" (want host:port)' },
      { "zookeeper", "servers", '"a:1;b:2"', 'servers has a bad server "a:1;b:2" (want host:port)' },
      { "zookeeper", "servers", '"[::1]2181"', 'servers has a bad server "[::1]2181" (want host:port)' },
      { "zookeeper", "servers", '"a:1,b/chroot"', 'servers has a bad server "b" (want host:port)' },
      { "zookeeper", "session_timeout", "0", TIMEOUT("session_timeout") },
      { "zookeeper", "session_timeout", "-1", TIMEOUT("session_timeout") },
      { "zookeeper", "session_timeout", "1.5", TIMEOUT("session_timeout") },
      { "zookeeper", "session_timeout", '"10"', TIMEOUT("session_timeout") },
      { "zookeeper", "auth", '"u:p"', AUTH_TYPE },
      { "zookeeper", "auth", '{ scheme = "sasl", credential = "u:p" }',
        'auth scheme must be "digest" (the packaged client has no SASL)' },
      { "zookeeper", "auth", '{ credential = "u:p" }',
        'auth scheme must be "digest" (the packaged client has no SASL)' },
      { "zookeeper", "auth", '{ scheme = "digest", credential = "up" }', 'auth credential must be "user:password"' },
      { "zookeeper", "auth", '{ scheme = "digest" }',
        "auth needs exactly one of credential, credential_env, credential_file" },
      { "zookeeper", "auth", '{ scheme = "digest", credential_env = "SCOUT_SURELY_UNSET_VAR" }',
        "auth credential_env: $SCOUT_SURELY_UNSET_VAR is not set" },
      { "zookeeper", "auth", '{ scheme = "digest", credential_file = "/nonexistent/cred" }',
        "auth credential_file: /nonexistent/cred: No such file or directory" },
      { "zookeeper", "auth", '{ scheme = "digest", credential = 5 }', 'auth credential must be "user:password"' },
      { "zookeeper", "auth", '{ scheme = "digest", credential = "u:p", user = "x" }',
        'auth has an unknown key "user"' },
      { "api", "listen", "8500", LISTEN_TYPE },
      { "api", "listen", '"unix:/"', 'listen must be "unix:/path" or "host:port" (got "unix:/")' },
      { "api", "listen", '"unix:x"', 'listen must be "unix:/path" or "host:port" (got "unix:x")' },
      { "api", "listen", '":80"', 'listen must be "unix:/path" or "host:port" (got ":80")' },
      { "api", "listen", '"h:70000"', 'listen must be "unix:/path" or "host:port" (got "h:70000")' },
      { "api", "listen", '"h:65536"', 'listen must be "unix:/path" or "host:port" (got "h:65536")' },
      { "api", "listen", '"h"', 'listen must be "unix:/path" or "host:port" (got "h")' },
      { "api", "listen", '"h:"', 'listen must be "unix:/path" or "host:port" (got "h:")' },
      { "api", "listen", '"[::1]80"', 'listen must be "unix:/path" or "host:port" (got "[::1]80")' },
      { "api", "listen", '"[zz]:80"', 'listen must be "unix:/path" or "host:port" (got "[zz]:80")' },
      { "api", "listen", '"http://h:80"', 'listen must be "unix:/path" or "host:port" (got "http://h:80")' },
      { "agent", "hook_budget", "0", TIMEOUT("hook_budget") },
      { "agent", "anti_entropy", '"soon"', AE },
      { "agent", "anti_entropy", "-5", AE },
      { "agent", "anti_entropy", '"2d"', AE },
      { "agent", "anti_entropy", '"5 s"', AE },
      { "agent", "anti_entropy_rate", 0, RATE },
      { "agent", "anti_entropy_rate", 2.5, RATE },
      { "agent", "anti_entropy_rate", 1000001, RATE },
      { "agent", "anti_entropy_rate", '"500/s"', RATE },
      { "agent", "drain", '"1w"', "drain " .. DUR .. " from 0 (off) to 1d" },
      { "agent", "hook_budget", '"0ms"', TIMEOUT("hook_budget") },
      { "agent", "hook_budget", '"25h"', TIMEOUT("hook_budget") },
      { "zookeeper", "session_timeout", '"2d"', TIMEOUT("session_timeout") },
      { "zookeeper", "sessions", "0", "sessions must be a whole number from 1 to 64" },
      { "zookeeper", "sessions", "65", "sessions must be a whole number from 1 to 64" },
      { "zookeeper", "sessions", "1.5", "sessions must be a whole number from 1 to 64" },
      { "zookeeper", "watch_budget", "100", WATCH_BUDGET },
      { "zookeeper", "watch_budget", "1048576", WATCH_BUDGET },
      { "zookeeper", "watch_budget", '"512k"', WATCH_BUDGET },
      { "agent", "hook_budget", "2.5", TIMEOUT("hook_budget") },
      { "agent", "hook_budget", "true", TIMEOUT("hook_budget") },
      { "agent", "reload_max_drop", "1.5", "reload_max_drop must be a number from 0 to 1" },
      { "agent", "reload_max_drop", "-0.1", "reload_max_drop must be a number from 0 to 1" },
      { "agent", "reload_max_drop", '"half"', "reload_max_drop must be a number from 0 to 1" },
      { "agent", "log_level", '"trace"', "log_level must be one of error, warn, info, debug" },
      { "agent", "log_level", '"INFO"', "log_level must be one of error, warn, info, debug" },
      { "agent", "log_level", "1", "log_level must be one of error, warn, info, debug" },
    }
    for _, c in ipairs(SECTION_BAD) do
      local section, key, v, msg = c[1], c[2], c[3], c[4]
      it(section .. " rejects " .. key .. " = " .. v, function()
        fails(section_src(section, key, v), 4, section .. ": " .. msg)
      end)
    end

    local PATH_ABS = "path must be an absolute ZooKeeper path"
    local PATH_SLASH = "path must not end in / or contain //"
    local PATH_DOT = "path must not contain . or .. components"
    local DELAY = "delay " .. DUR .. " from 0 to 1d, or a function"
    local PROTECT_TYPE = "protect must be a table { min_ratio =, confirm =, hold = } or false"
    local SERVICE_BAD = {
      { "path", "5", PATH_ABS },
      { "path", '""', PATH_ABS },
      { "path", '"a/b"', PATH_ABS },
      { "path", '"/a/"', PATH_SLASH },
      { "path", '"//a"', PATH_SLASH },
      { "path", '"/a//b"', PATH_SLASH },
      { "path", '"/a/./b"', PATH_DOT },
      { "path", '"/.."', PATH_DOT },
      { "path", '"/a/.."', PATH_DOT },
      { "path", '"/a/."', PATH_DOT },
      { "path", '"/a/../b"', PATH_DOT },
      { "codec", '"nope"', 'codec: unknown codec "nope"' },
      { "codec", "5", "codec: codec must be a name or a table" },
      { "codec", "{}", "codec: codec table has no decode function" },
      { "codec", "{ decode = function() end, needs_data = 5 }",
        "codec: codec needs_data must be a function or a boolean" },
      { "codec_options", '"x"', "codec_options must be a table" },
      { "filter", "true", "filter must be a function" },
      { "filter", "{}", "filter must be a function" },
      { "delay", "-1", DELAY },
      { "delay", "1.5", DELAY },
      { "delay", '"100"', DELAY },
      { "delay", "0/0", DELAY },
      { "delay", "true", DELAY },
      { "delay", '"2d"', DELAY },
      { "delay", '"500 ms"', DELAY },
      { "delay", '"-5ms"', DELAY },
      { "selector", "5", "selector: selector must be a name or a table, got number" },
      { "selector", "{}", "selector: selector has no new() function" },
      { "selector", "{ new = 1 }", "selector: selector has no new() function" },
      { "selector", '"os"', "selector: selector has no new() function" },
      { "selector_options", "1", "selector_options must be a table" },
      { "route", '"host = 1 => host = 2"', "route must be a list of rules" },
      { "route", '{ "host = 1" }', 'route: rule 1: missing "=>" in "host = 1"' },
      { "route", '{ "=> host = 1.2.3.4", "host == 1 => host = 2" }', 'route: rule 2: unknown operator "=="' },
      { "route", '{ { tag = true, condition = "=> a = 1" } }',
        "route: rule 1: needs exactly one of tag, condition, split" },
      { "route", "{ { tag = true, bogus = 1 } }", 'route: rule 1: unknown field "bogus"' },
      { "route", "{ { tag = 5 } }", "route: rule 1: tag must be true or a meta key" },
      { "route", "{ x = 1 }", 'route: rules must be an array (found key "x")' },
      { "on_change", '"x"', "on_change must be a function" },
      { "protect", "true", PROTECT_TYPE },
      { "protect", "0", PROTECT_TYPE },
      { "protect", '"off"', PROTECT_TYPE },
      { "protect", "{ ratio = 0.5 }", 'protect has an unknown key "ratio"' },
      { "protect", "{ min_ratio = 0 }", "protect min_ratio must be a number in (0, 1]" },
      { "protect", "{ min_ratio = 1.5 }", "protect min_ratio must be a number in (0, 1]" },
      { "protect", '{ min_ratio = "0.5" }', "protect min_ratio must be a number in (0, 1]" },
      { "protect", "{ confirm = -1 }", "protect confirm must be a whole number of reads >= 0" },
      { "protect", "{ confirm = 1.5 }", "protect confirm must be a whole number of reads >= 0" },
      { "protect", '{ hold = "5" }', "protect hold " .. DUR .. " from 0 to 1d" },
      { "protect", '{ hold = "5d" }', "protect hold " .. DUR .. " from 0 to 1d" },
      { "protect", "{ hold = -5 }", "protect hold " .. DUR .. " from 0 to 1d" },
      { "protect", "{ hold = 2.5 }", "protect hold " .. DUR .. " from 0 to 1d" },
      { "protect", '{ confirm_interval = "soon" }',
        "protect confirm_interval " .. DUR .. " from 0 to 1d" },
      { "on_protect", "{}", "on_protect must be a function" },
    }
    for _, c in ipairs(SERVICE_BAD) do
      local key, v, msg = c[1], c[2], c[3]
      it("service rejects " .. key .. " = " .. v, function()
        fails(svc_src(key, v), 5, 'service "s": ' .. msg)
      end)
    end

    it("reports an unknown selector by its first line only", function()
      fails(svc_src("selector", '"nope"'), 5,
            'service "s": selector: unknown selector "nope" '
            .. "(not built in and not loadable: module 'nope' not found)")
    end)

    it("the unknown selector message closes the parenthesis it opens", function()
      local _, err = load(svc_src("selector", '"nope"'))
      assert.equals(")", err:sub(-1))
    end)

    it("zookeeper servers with no host at all is rejected", function()
      for _, v in ipairs({ '"/chroot"', '","', '",,/x"' }) do
        local p = load(section_src("zookeeper", "servers", v))
        assert.is_nil(p, "accepted servers = " .. v)
      end
    end)

    it("zookeeper servers rejects a port above 65535 (api listen does)", function()
      local p = load(section_src("zookeeper", "servers", '"a:99999"'))
      assert.is_nil(p)
    end)

    it("delay and integer settings beyond the C side's int are rejected", function()
      -- the C side reads these with (int)lua_tointeger; math.huge and 2^31 ms do not fit
      for _, v in ipairs({ "math.huge", "2^31", "1e12" }) do
        assert.is_nil((load(svc_src("delay", v))), "accepted delay = " .. v)
        assert.is_nil((load(section_src("agent", "hook_budget", v))), "accepted hook_budget = " .. v)
        assert.is_nil((load(section_src("zookeeper", "session_timeout", v))), "accepted session_timeout = " .. v)
      end
    end)

    it("a service name without its block is reported, not silently dropped", function()
      -- `service "orders"` alone (the block forgotten, or cut off by a `;`) declares nothing and loads fine
      local p = load('service "orders"\nservice "users" { path = "/users" }\n')
      assert.is_nil(p)
    end)

    it("rejects a service without a path", function()
      fails('\n\nservice "s" {\n  codec = "plain",\n}\n', 3,
            'service "s": path is required (or dubbo = { interface = ... })')
      fails('service "s" {}\n', 1, 'service "s": path is required (or dubbo = { interface = ... })')
    end)

    it("derives path, codec and scope from dubbo = { ... }, and names the line of a bad one", function()
      local p = loads('service "o" { dubbo = { interface = "com.acme.OrderService", group = "g", version = "1.0.0",\n'
                      .. '  application = "my-consumer" } }\n')
      local svc = p.services[1]
      assert.equal("/dubbo/com.acme.OrderService/providers", svc.path)
      assert.equal("dubbo", svc.codec)
      assert.same({ interface = "com.acme.OrderService", group = "g", version = "1.0.0", application = "my-consumer",
                    migration = "APPLICATION_FIRST" }, svc.scope)
      fails('service "o" {\n  dubbo = { interface = "com/acme" },\n}\n', 2,
            'service "o": dubbo interface must be a Java interface name like "com.acme.OrderService"')
      fails('service "o" {\n  dubbo = { interface = "a.B", grup = "g" },\n}\n', 2,
            'service "o": dubbo has an unknown key "grup" (known: application, group, host, interface, migration, '
            .. 'version)')
      fails('service "o" {\n  dubbo = { interface = "a.B" },\n  path = "/x",\n}\n', 3,
            'service "o": give path or dubbo, not both (dubbo\'s providers path is /dubbo/a.B/providers)')
      fails('service "o" {\n  dubbo = { interface = "a.B" },\n  codec = "plain",\n}\n', 3,
            'service "o": dubbo = { ... } reads dubbo\'s providers; codec must be "dubbo" or left out')
    end)

    it("rejects a service declared twice, at the second, naming the first", function()
      local p, err, path = load('service "s" { path = "/a" }\n\nservice "t" { path = "/t" }\n'
                                .. 'service "s" { path = "/b" }\n')
      assert.is_nil(p)
      assert.equals(path .. ":4: service \"s\" declared twice (first at " .. path .. ":1)", err)
    end)

    for _, section in ipairs({ "zookeeper", "api", "agent" }) do
      it("rejects " .. section .. " {} given twice, at the second, naming the first", function()
        local p, err, path = load("\n" .. section .. " {}\n\n" .. section .. " {}\n")
        assert.is_nil(p)
        assert.equals(path .. ":4: " .. section .. " {} given twice (first at " .. path .. ":2)", err)
      end)
    end

    it("rejects a section that is not given a table", function()
      fails('\nzookeeper "a:1"\n', 2, "zookeeper expects a table { ... }")
      fails("\napi(5)\n", 2, "api expects a table { ... }")
      fails("\nagent()\n", 2, "agent expects a table { ... }")
    end)

    local NAME_MSG = "names are letters, digits, _ . - (starting with a letter or digit)"
    for _, name in ipairs({ "-a", "_a", ".a", "", "a b", "a/b", "a:b", "ä" }) do
      it("rejects the service name \"" .. name .. "\"", function()
        fails('\n\n\nservice "' .. name .. '" { path = "/a" }\n', 4, 'service "' .. name .. '": ' .. NAME_MSG)
      end)
    end

    it("reserves the service name services (a template's list of every service)", function()
      fails('\n\nservice "services" { path = "/a" }\n', 3,
            'service "services": the name is reserved; templates see the list of services under it')
    end)

    it("rejects a service without a name or without a block", function()
      fails('\nservice { path = "/a" }\n', 2, 'service needs a name: service "orders" { ... }')
      fails("\nservice(5)\n", 2, 'service needs a name: service "orders" { ... }')
      fails('\n\nservice "s" "x"\n', 3, 'service "s" expects a table { ... }')
      fails('\n\nservice "s" (5)\n', 3, 'service "s" expects a table { ... }')
    end)

    it("checks register blocks", function()
      local p = loads('register "me" { path = "/a", codec = "rpcx", endpoint = { host = "h", port = 1 },\n'
                      .. '  check = { tcp = "127.0.0.1:1", interval = "2s", rise = 2 }, acl = "creator" }\n')
      assert.equals("me", p.registers[1].name)
      assert.is_true(p.registers[1].ephemeral)
      fails('\nregister "me" { path = "/a" }\n', 2, 'register "me": endpoint is required')
      fails('register "me" { endpoint = { host = "h", port = 1 } }\n', 1, 'register "me": path is required')
      fails('register "me" { path = "/a", endpoint = { host = "h", port = 0 } }\n', 1,
            'register "me": endpoint needs a port from 1 to 65535')
      fails('register "me" { path = "/a", endpoint = { host = "h", port = 1 }, check = { tcp = "x", exec = "y" } }\n',
            1, 'register "me": check needs exactly one of tcp, http, exec, lua')
      fails('register "me" { path = "/a", endpoint = { host = "h", port = 1 }, acl = "world" }\n', 1,
            'register "me": acl must be "open", "creator" (creator all, world read) or "private"')
      fails('register "me"\n', 1, 'register "me" has no { ... } block')
    end)

    it("checks render blocks", function()
      local p = loads('render { template = function(v) return "x" end, dest = "/tmp/o", command = "true",\n'
                      .. '         wait = { min = "2s", max = "10s" } }\n'
                      .. 'render { template = function() end, dest = "/o2" }\n')
      assert.equals(2, #p.renders)
      assert.equals(2000, p.renders[1].wait_min_ms)
      assert.equals(10000, p.renders[1].wait_max_ms)
      assert.equals(0, p.renders[2].wait_max_ms)
      fails('render { template = function() end, dest = "rel" }\n', 1, "render: dest must be an absolute file path")
      fails('render { template = function() end, dest = "/o", wait = { min = "5s", max = "1s" } }\n', 1,
            "render: wait: max must not be less than min")
      fails('render { template = 5, dest = "/o" }\n', 1,
            "render: template must be a template file name or a function(view)")
      fails('render { template = function() end, dest = "/o", cmd = "x" }\n', 1,
            'render: unknown key "cmd" (known: command, dest, template, wait)')
    end)

    it("checks durations inside register, render and protect blocks with the same rule", function()
      local reg = 'register "me" { path = "/a", endpoint = { host = "h", port = 1 }, check = { tcp = "h:1", %s } }\n'
      loads(reg:format('interval = "1.5s", timeout = 800'))
      fails(reg:format('interval = "2d"'), 1, 'register "me": check interval ' .. DUR .. " from 1ms to 1d")
      fails(reg:format("timeout = 0"), 1, 'register "me": check timeout ' .. DUR .. " from 1ms to 1d")
      fails(reg:format("rise = 1.5"), 1, 'register "me": check rise must be a positive count')
      local render = 'render { template = function() end, dest = "/o", wait = %s }\n'
      assert.equals(1500, loads(render:format('{ min = 1500, max = "1m" }')).renders[1].wait_min_ms)
      fails(render:format('{ min = "2d" }'), 1, "render: wait: min " .. DUR .. " from 0 to 1d")
      fails(render:format('{ mni = "2s" }'), 1, 'render: wait: unknown key "mni" (known: max, min)')
    end)

    it("refuses an unknown key in a register's endpoint", function()
      fails('register "me" { path = "/a", endpoint = { host = "h", port = 1, wieght = 5 } }\n', 1,
            'register "me": endpoint has an unknown key "wieght" (known: host, id, meta, port, weight)')
    end)

    it("reads a bare cache.max_age as milliseconds and warns at its line, without refusing", function()
      local p, _, path = load('-- policy\n\ncache { dir = "/x", max_age = 86400 }\n')
      assert.equals(86400, p.cache.max_age)
      assert.same({ path .. ':3: cache.max_age = 86400 is milliseconds (86.4 s) since 0.2; write "1d" if you meant '
                    .. "86400 seconds" }, p.warnings)
      p = loads('cache { max_age = 90 }\n')
      assert.matches('max_age = 90 is milliseconds %(0.09 s%) since 0.2; write "90s" if you meant 90 seconds$',
                     p.warnings[1])
      assert.same({}, loads('cache { dir = "/x", max_age = "24h" }\n').warnings)
    end)

    it("checks the shm block", function()
      assert.same({ path = "/dev/shm/scout" }, loads('shm { path = "/dev/shm/scout" }\n').shm)
      fails('shm { path = "rel" }\n', 1, "shm: path must be an absolute file path (e.g. /dev/shm/scout)")
      assert.same({ path = "/dev/shm/scout", format = 1 }, loads('shm { path = "/dev/shm/scout", format = 1 }\n').shm)
      fails('shm { path = "/dev/shm/scout", format = 3 }\n', 1, "shm: format must be 1 or 2")
    end)

    it("checks the cache block", function()
      local p = loads('cache { dir = "/var/lib/scout", max_age = "24h" }\n')
      assert.same({ dir = "/var/lib/scout", max_age = "24h" }, p.cache)
      loads('cache { dir = "/var/lib/scout", max_age = 3600 }\n')
      fails('\n\ncache { dir = "relative" }\n', 3, "cache: dir must be an absolute directory path")
      fails('cache { dir = "/dev/shm" }\n', 1,
            "cache: dir must not be /dev/shm (the shared-memory snapshot lives there)")
      for _, v in ipairs({ "0", "-1", "1.5", '"soon"', '"0ms"', '"24"' }) do
        fails("cache { dir = \"/x\", max_age = " .. v .. " }\n", 1, "cache: max_age " .. DUR .. " from 1ms")
      end
    end)

    it("requires on_session to be a function", function()
      for _, v in ipairs({ "5", '"x"', "{}", "true" }) do
        local p, err, path = load("on_session = " .. v .. "\n")
        assert.is_nil(p)
        assert.equals(path .. ": on_session must be a function", err)
      end
    end)

    it("stops at the first error: later blocks are not checked", function()
      fails('\nservice "a" { path = "a" }\nservice "b" { path = 5 }\n', 2, 'service "a": ' .. PATH_ABS)
    end)
  end)
end)
