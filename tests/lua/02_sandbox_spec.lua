-- scout.sandbox through scout.policy: what a policy's environment refuses and how `scout check` says so, with the
-- exact `file:line: message`, for code at the top level and inside hooks that only run later; what it still
-- offers; and what a hook that reaches a refused name at run time gets.

local policy = require "scout.policy"
local sandbox = require "scout.sandbox"
local H = require "policy_helper"

local function load(src)
  local path = H.write(src)
  local p, err = policy.load(path)
  return p, err, path
end

local function fails(src, line, msg)
  local p, err, path = load(src)
  assert.is_nil(p)
  assert.equals(path .. ":" .. line .. ": " .. msg, err)
end

local function loads(src)
  local p, err = load(src)
  assert.is_nil(err)
  assert.is_table(p)
  return p
end

-- A service whose filter body is `body`, the body starting on line 4.
local function filter_src(body)
  return 'service "s" {\n  path = "/s",\n  filter = function(ep)\n' .. body .. '\n    return true\n  end,\n}\n'
end

describe("scout.sandbox", function()
  teardown(H.cleanup)

  describe("scout check refuses what blocks, exits or undoes the budgets", function()
    local CASES = {
      { 'os.execute("sleep 15")', "os.execute is not available in a policy: use scout.exec(cmd, opts, callback)" },
      { 'local p = io.popen("ls")', "io.popen is not available in a policy: use scout.exec(cmd, opts, callback)" },
      { "os.exit(7)", "os.exit is not available in a policy: a policy cannot stop the agent" },
      { "local l = io.read()", "io.read is not available in a policy: use scout.read_file(path)" },
      { 'for l in io.lines("/etc/hosts") do end', "io.lines is not available in a policy: use scout.read_file(path)" },
      { 'local f = io.open("/etc/hosts")', "io.open is not available in a policy: use scout.read_file(path)" },
      { "jit.on()", "jit.on is not available in a policy: the agent runs policies with the JIT off so that a "
                    .. "budget can stop any loop" },
      { "debug.sethook()", "debug.sethook is not available in a policy: hook budgets own the debug hook" },
      { "local g = getfenv(0)", "getfenv is not available in a policy: policies see their own environment only" },
      { 'dofile("x.lua")', "dofile is not available in a policy: put shared code in a module and require it" },
      { "local p = package.loaded", "package is not available in a policy: use require" },
    }
    for _, c in ipairs(CASES) do
      it("inside a hook: " .. c[1], function()
        fails(filter_src("    " .. c[1]), 4, c[2])
      end)
    end

    it("at the top level, at its own line", function()
      fails('\n\nlocal x = 1\nos.execute("true")\n', 4,
            "os.execute is not available in a policy: use scout.exec(cmd, opts, callback)")
    end)

    it("reports the first one in the file", function()
      fails('local a = 1\nlocal function f() os.exit(1) end\nlocal function g() io.popen("x") end\n', 2,
            "os.exit is not available in a policy: a policy cannot stop the agent")
    end)
  end)

  describe("unknown names", function()
    it("suggests the string for a bare value (codec = dubbo)", function()
      fails('service "s" {\n  path = "/s",\n  codec = dubbo,\n}\n', 3,
            'unknown name "dubbo" (did you mean the string "dubbo"?)')
      fails('service "s" {\n  path = "/s",\n  selector = leastconn,\n}\n', 3,
            'unknown name "leastconn" (did you mean the string "leastconn"?)')
    end)

    it("suggests the nearest name for a typo", function()
      fails('\nservce "x" { path = "/x" }\n', 2, 'unknown name "servce" (did you mean "service"?)')
      fails('zookeeperr { servers = "a:1" }\n', 1, 'unknown name "zookeeperr" (did you mean "zookeeper"?)')
      fails(filter_src("    local n = tostrin(ep.port)"), 4, 'unknown name "tostrin" (did you mean "tostring"?)')
    end)

    it("knows the globals the policy itself defines, wherever they are defined", function()
      loads('function helper(ep) return ep.port > 0 end\n'
            .. 'service "s" { path = "/s", filter = function(ep) return helper(ep) and later(ep) end }\n'
            .. 'function later() return true end\n')
    end)

    it("names an unknown name without suggestion when nothing is near", function()
      fails(filter_src("    local n = frobnicate(ep)"), 4, 'unknown name "frobnicate"')
    end)

    it("has no fallback to the real globals", function()
      local p = loads(filter_src("    state = rawget(_G, 'os') and true"))
      -- _G is the policy's own environment: what it writes stays there
      assert.is_nil(rawget(_G, "state"))
      assert.is_function(p.services[1].filter)
    end)
  end)

  describe("at run time", function()
    -- names reached in ways the bytecode does not show: a computed field, a string key
    local function filter_of(body)
      return loads(filter_src(body)).services[1].filter
    end

    it("stops a hook that reaches a refused name, with its file:line", function()
      local f = filter_of('    local name = "exe" .. "cute"\n    os[name]("true")')
      local ok, err = pcall(f, { port = 1 })
      assert.is_false(ok)
      assert.matches(":5: os.execute is not available in a policy", err, 1, true)
    end)

    it("stops a hook that turns the JIT on", function()
      local f = filter_of('    jit["o" .. "n"]()\n    error("jit.on went through")')
      local ok, err = pcall(f, {})
      assert.is_false(ok)
      assert.matches(":4: jit.on is not available in a policy", err, 1, true)
    end)

    it("stops a hook that reads an unknown name", function()
      local f = filter_of('    local g = _G["servi" .. "ce2"]')
      local ok, err = pcall(f, {})
      assert.is_false(ok)
      assert.matches(':4: unknown name "service2" (did you mean "service"?)', err, 1, true)
    end)

    it("keeps code built at run time in the policy's environment", function()
      local f = filter_of('    local g = loadstring("return os.exe" .. "cute")\n    g()')
      local ok, err = pcall(f, {})
      assert.is_false(ok)
      assert.matches("os.execute is not available in a policy", err, 1, true)
    end)

    it("refuses requiring what the environment leaves out", function()
      for _, name in ipairs({ "ffi", "os", "io", "jit", "jit.util", "debug" }) do
        local f = filter_of('    local m = require("' .. name .. '")')
        local ok, err = pcall(f, {})
        assert.is_false(ok)
        assert.matches(':4: require "' .. name .. '" is not available in a policy', err, 1, true)
      end
    end)

    it("offers collectgarbage(\"count\") only", function()
      local f = filter_of('    assert(collectgarbage("count") > 0)\n    collectgarbage("stop")')
      local ok, err = pcall(f, {})
      assert.is_false(ok)
      assert.matches(':5: collectgarbage("stop") is not available in a policy', err, 1, true)
    end)
  end)

  describe("what a policy keeps", function()
    it("has the safe libraries, its own copies of them, and scout.read_file", function()
      local flag = H.write("flag-text")
      local p = loads(filter_src(
        '    string.format = nil\n'
        .. '    local t = { os.time(), os.clock(), os.date("%Y"), os.getenv("HOME"), math.floor(1.5), bit.band(3, 1),\n'
        .. '      table.concat({ "a" }), ("x"):rep(2), select("#", 1), tostring(1), debug.traceback("x") }\n'
        .. '    ep.read = scout.read_file("' .. flag .. '")\n'
        .. '    ep.missing = { scout.read_file("/nonexistent/scout") }'))
      local ep = {}
      assert.is_true(p.services[1].filter(ep))
      assert.equals("flag-text", ep.read)
      assert.is_nil(ep.missing[1])
      assert.is_string(ep.missing[2])
      assert.is_function(string.format)     -- the real string table is untouched
    end)

    it("may require its own modules", function()
      loads('local H = require "policy_helper"\nservice "s" { path = "/s", filter = function() return H end }\n')
    end)

    it("checks scout.exec's arguments where it is called", function()
      local p = loads(filter_src('    scout.exec(ep.cmd, ep.opts, ep.cb)'))
      local ok, err = pcall(p.services[1].filter, { cmd = "true", opts = { timeout = "soon" }, cb = print })
      assert.is_false(ok)
      assert.matches(':4: scout.exec: timeout must be a duration like "2s"', err, 1, true)
      ok, err = pcall(p.services[1].filter, { cmd = "true", opts = {} })
      assert.is_false(ok)
      assert.matches(":4: scout.exec: callback must be a function", err, 1, true)
      -- outside an agent there is no loop to run it on: nil, err (the agent's own path is an integration test)
      local f = loads('service "s" { path = "/s", filter = function(ep)\n'
                      .. '  ep.r = { scout.exec("true", { timeout = "2s" }, print) } return true end }\n')
      local ep = {}
      f.services[1].filter(ep)
      assert.same({ nil, "scout.exec runs only in a running agent" }, ep.r)
    end)
  end)

  describe("agent { lua_memory }", function()
    it("takes a size", function()
      assert.equals(256 * 1024 ^ 2, loads('agent { lua_memory = "256MB" }\n').agent.lua_memory and
                    policy.size("256MB"))
      assert.equals(2 * 1024 ^ 3, policy.size("2GB"))
      assert.equals(64 * 1024 ^ 2, policy.size(64 * 1024 ^ 2))
      loads('agent { lua_memory = "1gb" }\n')
    end)

    it("refuses what is not a size, or too small to run a policy", function()
      local msg = 'agent: lua_memory must be a size like "512MB" (bytes as a number; from 16MB to 64GB)'
      fails('agent {\n  lua_memory = "lots",\n}\n', 2, msg)
      fails('agent {\n  lua_memory = "1MB",\n}\n', 2, msg)
      fails('agent {\n  lua_memory = 1.5,\n}\n', 2, msg)
    end)
  end)

  -- The agent runs scout's library compiled and the operator's code interpreted, where a budget's count hook
  -- fires (issue 14): a compiled loop would run to its end however long it takes. The hook below counts every
  -- 1000 instructions; a loop of 3e6 iterations interpreted trips it thousands of times, compiled a handful.
  describe("operator code stays interpreted", function()
    local LOOP = "local n = 0 for i = 1, 3e6 do n = n + i end return n > 0"
    local function hook_fires(fn)
      fn()          -- hot now: compiled, if it may be
      local n = 0
      debug.sethook(function() n = n + 1 end, "", 1000)
      fn()
      debug.sethook()
      return n
    end

    it("the policy's own functions", function()
      local p = loads('service "s" {\n  path = "/s",\n  filter = function(ep)\n    ' .. LOOP .. '\n  end,\n}\n')
      local filter = p.services[1].filter
      assert.is_true(hook_fires(function() filter({}) end) > 1000)
    end)

    it("code it builds with loadstring or load", function()
      local env = sandbox.environment({}, nil)
      local f = env.loadstring(LOOP)
      assert.is_true(hook_fires(f) > 1000)
      local chunks = { LOOP }
      local g = env.load(function() return table.remove(chunks) end)
      assert.is_true(hook_fires(g) > 1000)
    end)

    it("while scout's own code compiles", function()
      assert.is_true(hook_fires(loadstring(LOOP)) < 100)
    end)
  end)

  describe("keys at their own line", function()
    it("finds nested keys and skips strings and comments", function()
      local src = 'service "a" { -- path = 1\n  path = "/x", note = "k = v",\n  protect = {\n    hold = 1,\n'
                  .. '  },\n  --[[ codec =\n ]] codec = "plain",\n}\n'
      local lines = sandbox.key_lines(src, 1, "service")
      assert.same({ path = 2, note = 2, protect = 3, ["protect.hold"] = 4, codec = 7 }, lines)
    end)

    it("reports a bad nested value at the block's key line", function()
      fails('service "s" {\n  path = "/s",\n  protect = {\n    hold = -1,\n  },\n}\n', 3,
            'service "s": protect hold must be a duration ("500ms", "10s", "1h"; a number is milliseconds) '
            .. 'from 0 to 1d')
    end)

    it("falls back to the block's line when the block is built elsewhere", function()
      fails('local t = {\n  path = "/s",\n  pathh = 1,\n}\nservice "s" (t)\n', 5,
            'service "s": unknown key "pathh" (did you mean "path"? known: codec, codec_options, delay, dubbo, '
            .. "filter, on_change, on_protect, path, protect, route, selector, selector_options)")
    end)
  end)
end)
