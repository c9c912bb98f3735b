-- scout.codec.dubbo_rules: every fixture in tests/fixtures/dubbo (written as dubbo 2.6, 2.7 and 3.x write them)
-- through the API, asserting what a dubbo consumer ends up with: each provider's status, weight, tag and params,
-- which rules are refused, and which providers each request reaches through the routes.

local cjson = require "cjson.safe"
local R = require "scout.codec.dubbo_rules"
local dubbo = require "scout.codec.dubbo"
local route = require "scout.route"
local url = require "scout.util.url"

local DIR = "tests/fixtures/dubbo/"
local NOW = 1800000000000

local function read(path)
  local f = assert(io.open(DIR .. path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local FX = assert(cjson.decode(read("fixtures.json")))
local NULL = cjson.null

local function merge(a, b)
  local out = {}
  for k, v in pairs(a) do out[k] = v end
  for k, v in pairs(b or {}) do out[k] = v end
  return out
end

local function addr(ep) return ep.host .. ":" .. ep.port end

local function providers()
  local out = {}
  for _, p in ipairs(FX.providers) do
    out[#out + 1] = assert(dubbo.decode(p.name, nil, { now = NOW }))
  end
  return out
end

local KIND = {
  ["/dubbo/" .. FX.interface .. "/configurators"] = "configurators",
  ["/dubbo/" .. FX.interface .. "/routers"] = "routers",
  ["/dubbo/config/dubbo"] = "config",
}

-- compile a scenario's nodes the way the agent does: one set per source, keyed like R.sources
local function compile(sc, scope)
  local by_kind = {}
  for _, n in ipairs(sc.nodes) do
    local kind = assert(KIND[n.path], n.path)
    by_kind[kind] = by_kind[kind] or {}
    local data = n.file and read(n.file) or nil
    table.insert(by_kind[kind], { name = n.name, data = data })
  end
  local sets, errors = {}, {}
  for _, src in ipairs(R.sources(scope)) do
    local set, errs = R.compile(src.kind, by_kind[src.kind] or {}, scope)
    sets[src.key] = set
    for _, e in ipairs(errs) do errors[e.name] = e.why end
  end
  return sets, errors
end

local function routed(specs, eps, ctx)
  local router = assert(route.compile(specs))
  local up = {}
  for _, ep in ipairs(eps) do
    if ep.status == "up" then up[#up + 1] = ep end
  end
  local out = {}
  for _, ep in ipairs((router:apply(up, ctx))) do out[#out + 1] = addr(ep) end
  table.sort(out)
  return out
end

describe("dubbo fixtures are byte for byte what dubbo writes", function()
  it("every znode name is URL.encode of its URL, with the URL's params sorted (URL.toFullString)", function()
    local n = 0
    local function check(node)
      if node.url then
        n = n + 1
        assert.equal(url.encode_java(node.url), node.name)
        local q = node.url:match("%?(.*)$")
        local keys = {}
        for part in (q .. "&"):gmatch("([^&]*)&") do keys[#keys + 1] = part:match("^[^=]*") end
        local sorted = { unpack(keys) }
        table.sort(sorted)
        assert.same(sorted, keys)
      end
    end
    for _, p in ipairs(FX.providers) do check(p) end
    for _, sc in ipairs(FX.scenarios) do
      for _, node in ipairs(sc.nodes) do check(node) end
    end
    assert.is_true(n > 20)
  end)

  it("every name is a valid znode name and every path an absolute one (kazoo can publish them as they are)", function()
    local function check(node)
      assert.truthy(node.path:match("^/[^%z]+[^/]$"), node.path)
      assert.is_nil(node.name:find("[/%z]"), node.name)
      assert.is_true(node.name ~= "." and node.name ~= ".." and node.name ~= "zookeeper", node.name)
    end
    for _, p in ipairs(FX.providers) do check(p) end
    for _, sc in ipairs(FX.scenarios) do
      for _, node in ipairs(sc.nodes) do check(node) end
    end
  end)

  it("every data file exists and is named in the README", function()
    local readme = read("README.md")
    for _, sc in ipairs(FX.scenarios) do
      assert.truthy(readme:find(sc.id, 1, true), sc.id .. " is not in README.md")
      for _, node in ipairs(sc.nodes) do
        if node.file then assert.truthy(#read(node.file) > 0) end
      end
    end
  end)
end)

describe("dubbo fixtures through dubbo_rules", function()
  local base = providers()
  for _, sc in ipairs(FX.scenarios) do
    describe(sc.id .. " (dubbo " .. sc.dubbo .. ")", function()
      local scope = merge(FX.consumer, sc.consumer)
      scope.now = NOW
      local sets, errors = compile(sc, scope)

      it("refuses exactly the nodes dubbo refuses", function()
        for _, node in ipairs(sc.nodes) do
          if node.refused then
            assert.is_string(errors[node.name], node.name .. " was not refused")
            assert.truthy(errors[node.name]:find(node.refused, 1, true),
              "refused for \"" .. errors[node.name] .. "\", not \"" .. node.refused .. "\"")
          else
            assert.is_nil(errors[node.name], node.name .. ": " .. tostring(errors[node.name]))
          end
        end
      end)

      local configured = {}
      it("configures every provider as a dubbo consumer sees it", function()
        for i, ep in ipairs(base) do
          local before = cjson.encode(ep)
          local ep2, notes = R.configure(ep, sets, scope)
          assert.equal(before, cjson.encode(ep), "the input endpoint was modified")
          local want = sc.expect[addr(ep)]
          assert.equal(want.status, ep2.status, addr(ep) .. " status")
          assert.equal(want.weight, ep2.weight, addr(ep) .. " weight")
          local tag = want.tag
          if tag == NULL then tag = nil end
          assert.equal(tag, ep2.meta["dubbo.tag"], addr(ep) .. " tag")
          for k, v in pairs(sc.meta and sc.meta[addr(ep)] or {}) do
            if v == NULL then v = nil end  -- null: the param must not be there
            assert.equal(v, ep2.meta[k], addr(ep) .. " meta." .. k)
          end
          if ep2 ~= ep then
            assert.truthy(#notes > 0, "a change without a note")
          else
            assert.same({}, notes)
          end
          configured[i] = ep2
        end
      end)

      it("routes each request to the providers dubbo would call", function()
        local specs = R.routes(sets, scope)
        assert.same(specs, cjson.decode(cjson.encode(specs)))  -- plain, JSON-able data
        for _, p in ipairs(sc.picks) do
          local ctx = p.ctx
          if next(ctx) == nil then ctx = {} end
          local want = {}
          for j, a in ipairs(p.addresses) do want[j] = a end
          table.sort(want)
          assert.same(want, routed(specs, #configured > 0 and configured or base, ctx), cjson.encode(p.ctx))
        end
      end)
    end)
  end
end)

describe("dubbo_rules sources", function()
  it("names the registry's rule paths and the config-center keys a consumer reads", function()
    local src = R.sources({ interface = "com.acme.DemoService", version = "1.0.0", group = "g",
      application = "demo-consumer" })
    assert.same({ "configurators", "routers", "config" }, { src[1].key, src[2].key, src[3].key })
    assert.equal("/dubbo/com.acme.DemoService/configurators", src[1].path)
    assert.equal("/dubbo/com.acme.DemoService/routers", src[2].path)
    assert.equal("/dubbo/config/dubbo", src[3].path)
    assert.same({ "demo-consumer.configurators", "demo-consumer.condition-router", "demo-consumer.tag-router",
      "com.acme.DemoService:1.0.0:g.configurators", "com.acme.DemoService:1.0.0:g.condition-router" }, src[3].data)
    local plain = R.sources({ interface = "com.acme.DemoService", provider_applications = { "demo-provider" } })
    assert.same({ "com.acme.DemoService::.configurators", "com.acme.DemoService::.condition-router",
      "demo-provider.tag-router" }, plain[3].data)
  end)

  it("answers a bad scope with nothing and a reason, never an error", function()
    local list, why = R.sources(nil)
    assert.same({}, list)
    assert.is_string(why)
    list, why = R.sources({ interface = "/dubbo/x" })
    assert.same({}, list)
    assert.is_string(why)
    local set, errs = R.compile("configurators", "junk", { interface = "I" })
    assert.is_table(set)
    assert.equal(1, #errs)
    errs = select(2, R.compile("nope", {}, { interface = "I" }))
    assert.equal("unknown kind nope", errs[1].why)
    errs = select(2, R.compile("config", { 1, "x", { name = 2 }, { name = "a", data = {} } }, { interface = "I" }))
    assert.equal(4, #errs)
    local ep = { host = "10.0.0.1", port = 1, meta = {}, status = "up", weight = 100 }
    assert.equal(ep, (R.configure(ep, nil, { interface = "I" })))
    assert.equal(ep, (R.configure(ep, {}, nil)))
    local odd = { host = "h", port = 1, meta = "x" }
    local empty = R.compile("config", {}, { interface = "I" })
    assert.equal(odd, (R.configure(odd, { config = empty }, { interface = "I" })))
  end)
end)

describe("dubbo_rules configurators", function()
  local scope = { interface = "I", application = "app", host = "10.0.0.5" }
  local function ep(meta)
    return { id = "x", host = "10.0.0.1", port = 20880, weight = 100, status = "up", meta = meta or {} }
  end
  local function set_of(...)
    local nodes = {}
    for i, s in ipairs({ ... }) do nodes[i] = { name = url.encode_java(s) } end
    local set, errs = R.compile("configurators", nodes, scope)
    return { configurators = set }, errs
  end

  it("says which rule set what, for explain", function()
    local sets = set_of("override://0.0.0.0/I?category=configurators&dynamic=false&weight=50")
    local ep2, notes = R.configure(ep(), sets, scope)
    assert.equal(50, ep2.weight)
    assert.same({ "configurators: override://0.0.0.0/I?category=configurators&dynamic=false&weight=50 sets weight=50" },
      notes)
  end)

  it("never merges the condition keys, and ~key conditions match the provider's params", function()
    local sets = set_of("override://0.0.0.0/I?~timeout=5&application=app&side=consumer&category=configurators"
      .. "&dynamic=false&check=false&loadbalance=random")
    local ep2 = R.configure(ep({ timeout = "5" }), sets, scope)
    assert.equal("random", ep2.meta.loadbalance)
    for _, k in ipairs({ "~timeout", "application", "side", "category", "dynamic", "check" }) do
      assert.is_nil(ep2.meta[k], k)
    end
    local same = ep({ timeout = "6" })
    assert.equal(same, (R.configure(same, sets, scope)))
  end)

  it("clears every rule on empty:// as Configurator.toConfigurators does", function()
    local sets = set_of("override://0.0.0.0/I?category=configurators&weight=50",
      "empty://0.0.0.0/I?category=configurators")
    local e = ep()
    assert.equal(e, (R.configure(e, sets, scope)))
  end)

  it("re-enables with disabled=false over a provider registered disabled", function()
    local sets = set_of("override://10.0.0.1:20880/I?category=configurators&disabled=false")
    local e = ep({ disabled = "true" })
    e.status = "disabled"
    assert.equal("up", R.configure(e, sets, scope).status)
  end)
end)

describe("dubbo_rules routers", function()
  local function routers(scope, ...)
    local nodes = {}
    for i, s in ipairs({ ... }) do nodes[i] = { name = url.encode_java(s) } end
    return R.compile("routers", nodes, scope)
  end
  local rule = "rule=" .. url.encode_java("=> host = 10.0.0.1")

  it("keeps the routers of this consumer's group and version, and lists the others as not for it", function()
    local set, errs = routers({ interface = "I", group = "g1,g2" },
      "condition://0.0.0.0/I?category=routers&group=g2&" .. rule,
      "condition://0.0.0.0/I?category=routers&group=g3&" .. rule,
      "condition://0.0.0.0/I?category=routers&enabled=false&group=g1&" .. rule)
    assert.same({}, errs)
    assert.equal(1, #set.routers)
    assert.equal(2, #set.ignored)
    assert.equal(2, #R.routes({ routers = set }, {}))  -- the condition and the tag router
  end)

  it("refuses what route.lua cannot run, whole", function()
    local _, errs = routers({ interface = "I" },
      "condition://0.0.0.0/I?category=routers&rule=" .. url.encode_java("arguments[0] = 1 => host = 1"),
      "condition://0.0.0.0/I?category=routers",
      "condition://0.0.0.0/I?category=routers&priority=high&" .. rule,
      "file://0.0.0.0/I?category=routers&" .. rule)
    assert.equal(4, #errs)
  end)
end)

describe("dubbo_rules tag rules", function()
  local scope = { interface = "I" }
  local e = { id = "x", host = "10.0.0.1", port = 20880, weight = 100, status = "up",
    meta = { application = "p", release = "3.2.0" } }
  local function tag(yaml)
    local set, errs = R.compile("config", { { name = "p.tag-router", data = yaml } }, scope)
    assert.same({}, errs)
    return R.configure(e, { config = set }, scope).meta["dubbo.tag"]
  end
  local MATCH = "key: p\ntags:\n- name: new\n  match:\n  - key: release\n    value: {prefix: '3.'}\n"

  it("matches provider params only in a v3.0 rule, and only for a tag without addresses", function()
    assert.equal("new", tag("configVersion: v3.0\n" .. MATCH))
    assert.is_nil(tag("configVersion: v2.7\n" .. MATCH))
    assert.is_nil(tag("configVersion: v3.0\n" .. MATCH .. "  addresses: [10.9.9.9:1]\n"))
    assert.equal("new", tag("configVersion: v3.0\n" .. MATCH:gsub("prefix: '3.'", "noempty: x")))
    assert.is_nil(tag("configVersion: v3.0\n" .. MATCH:gsub("prefix: '3.'", "exact: '3.2'")))
  end)

  it("tags only the providers of the application the rule is named after", function()
    local set = R.compile("config", { { name = "other.tag-router",
      data = "key: other\ntags:\n- name: t\n  addresses: [10.0.0.1:20880]\n" } }, scope)
    assert.equal(e, (R.configure(e, { config = set }, scope)))
  end)
end)

describe("dubbo_rules config-center YAML", function()
  local scope = { interface = "I", application = "app", host = "10.0.0.5" }
  local e = { id = "x", host = "10.0.0.1", port = 20880, weight = 100, status = "up", meta = { application = "p" } }
  local function apply(name, yaml)
    local set, errs = R.compile("config", { { name = name, data = yaml } }, scope)
    local ep2, notes = R.configure(e, { config = set }, scope)
    return ep2, errs, notes
  end

  it("takes a typed item's enabled from the item: without one, ConfigParser writes enabled=null (off)", function()
    local on = "configVersion: v2.7\nkey: I\nconfigs:\n- type: weight\n  enabled: true\n  side: provider\n"
      .. "  parameters: {weight: 7}\n"
    assert.equal(7, apply("I::.configurators", on).weight)
    local off = on:gsub("  enabled: true\n", "")
    local ep2, errs = apply("I::.configurators", off)
    assert.equal(e, ep2)
    assert.same({}, errs)
  end)

  it("reads only the keys of this consumer: its application's and its service's", function()
    local y = "configVersion: v2.7\nkey: I\nconfigs:\n- side: consumer\n  parameters: {timeout: 9}\n"
    assert.equal("9", apply("I::.configurators", y).meta.timeout)
    assert.equal(e, (apply("other.configurators", y)))
    assert.equal(e, (apply("I:1.0.0:.configurators", y)))
    local other = "configVersion: v2.7\nscope: application\nkey: app\nconfigs:\n- side: consumer\n"
      .. "  services: [com.acme.Other, g/I]\n  parameters: {timeout: 9}\n"
    assert.equal(e, (apply("app.configurators", other)))  -- for other services of the application
    assert.equal("9", apply("app.configurators", other:gsub("g/I", "I")).meta.timeout)
  end)

  it("splits an item over its addresses and applications as ConfigParser does", function()
    local y = "configVersion: v2.7\nkey: I\nconfigs:\n- side: consumer\n  addresses: [10.0.0.9, 10.0.0.5]\n"
      .. "  applications: [other, app]\n  parameters: {retries: 3}\n"
    local ep2, _, notes = apply("I::.configurators", y)
    assert.equal("3", ep2.meta.retries)
    assert.equal(1, #notes)
    assert.truthy(notes[1]:find("override://10.0.0.5/I?", 1, true))
    assert.truthy(notes[1]:find("application=app", 1, true))
  end)

  it("writes YAML scalars into params as SnakeYAML and Java print them", function()
    local y = "configVersion: v2.7\nkey: I\nenabled: yes\nconfigs:\n- side: consumer\n"
      .. "  parameters: {release: 1.0, timeout: 010, ratio: 0.25, sticky: on, name: \"1.0\"}\n"
    local m = apply("I::.configurators", y).meta
    assert.same({ "1.0", "8", "0.25", "true", "1.0" }, { m.release, m.timeout, m.ratio, m.sticky, m.name })
  end)

  it("matches a v3.0 rule by its `match` (dubbo 3.1 ConditionMatch) instead of ~key conditions", function()
    local function with(m, version)
      return "configVersion: " .. (version or "v3.0") .. "\nkey: I\nconfigs:\n- side: consumer\n  match: " .. m
        .. "\n  parameters: {timeout: 9}\n"
    end
    local function applies(m, version) return apply("I::.configurators", with(m, version)).meta.timeout == "9" end
    assert.is_true(applies("{address: {cird: 10.0.0.0/24}}"))          -- the consumer's host, 10.0.0.5
    assert.is_false(applies("{address: {cird: 10.0.1.0/24}}"))
    assert.is_true(applies("{address: {wildcard: '10.0.0.*'}}"))
    assert.is_true(applies("{providerAddress: {exact: '10.0.0.1:20880'}}"))
    assert.is_false(applies("{providerAddress: {exact: '10.0.0.1:20881'}}"))
    assert.is_true(applies("{service: {oneof: [{exact: other}, {prefix: I}]}}"))
    assert.is_false(applies("{app: {oneof: [{exact: other}]}}"))
    assert.is_true(applies("{app: {oneof: [{exact: app}]}}"))              -- the consumer's application
    assert.is_true(applies("{param: [{key: application, value: {exact: app}}, {key: side, value: {exact: consumer}}]}"))
    assert.is_false(applies("{param: [{key: release, value: {noempty: x}}]}"))
    assert.is_true(applies("{param: [{key: release, value: {empty: x}}]}"))
    assert.is_true(applies("{app: {oneof: [{exact: other}]}}", "v2.7"))    -- only a v3.0 rule reads match
    -- and only a 2.7 rule reads ~key conditions (in parameters, as ConfigParser copies them into the URL)
    local tilde = "key: I\nconfigs:\n- side: consumer\n  parameters: {'~release': x, timeout: 9}\n"
    assert.is_nil(apply("I::.configurators", "configVersion: v2.7\n" .. tilde).meta.timeout)
    assert.equal("9", apply("I::.configurators", "configVersion: v3.0\n" .. tilde).meta.timeout)
  end)

  it("refuses a rule whole, with a reason, for every shape dubbo cannot load", function()
    local bad = {
      ["configs: [\n"] = "invalid yaml",
      ["- a\n- b\n"] = "not a yaml mapping",
      [""] = "empty document",
      ["key: I\nconfigs: x\n"] = "configs must be a list",
      ["key: I\nscope: global\nconfigs:\n- parameters: {a: 1}\n"] = "scope must be",
      ["key: I\nconfigs:\n- side: both\n  parameters: {a: 1}\n"] = "side must be",
      ["key: I\nconfigs:\n- side: consumer\n  parameters: {a: [1]}\n"] = "must be a scalar",
      ["key: I\nconfigs:\n- side: consumer\n  match: {param: [{key: a, value: {regex: x}}]}\n  parameters: {a: 1}\n"]
        = "not supported",
      ["key: I\nconfigs:\n- side: consumer\n  match: {address: {cird: 10.0.0.1-9}}\n  parameters: {a: 1}\n"]
        = "only an IPv4",
      ["key: I\nconfigs:\n- side: consumer\n  match: {host: {exact: x}}\n  parameters: {a: 1}\n"]
        = "unknown field",
      ["configs:\n- side: consumer\n  parameters: {a: 1}\n"] = "no key",
      ["key: I\nconfigs:\n- side: consumer\n  parameters: {a: 1}\n- side: consumer\n"] = "configs[2].",
    }
    for yaml, why in pairs(bad) do
      local ep2, errs = apply("I::.configurators", yaml)
      assert.equal(e, ep2, yaml)
      assert.equal(1, #errs, yaml)
      assert.truthy(errs[1].why:find(why, 1, true), yaml .. " -> " .. errs[1].why)
    end
    local ep2, errs = apply("I::.configurators", nil)  -- data not read: no rule, no error
    assert.equal(e, ep2)
    assert.same({}, errs)
    errs = select(2, apply("I::.configurators", "key: I\n#" .. string.rep("x", 70000) .. "\n"))
    assert.truthy(errs[1].why:find("larger than", 1, true))
  end)
end)

describe("dubbo 3 mapping, migration and instances", function()
  it("reads /dubbo/mapping/<interface> as ServiceNameMapping.getAppNames does", function()
    assert.equal(FX.dubbo3.mapping[1].path, R.mapping_path({ interface = "com.acme.DemoService" }))
    assert.equal(FX.dubbo3.instances[1].path:match("^(.*)/[^/]+$"), R.instances_path("demo-provider"))
    assert.is_nil(R.instances_path("a/b"))
    for _, m in ipairs(FX.dubbo3.mapping) do
      assert.same(m.apps, R.mapping_apps(read(m.file)))
    end
    assert.same({ "a", "b" }, R.mapping_apps(" b , a,,b,\n"))
    assert.same({}, R.mapping_apps(""))
    assert.same({}, R.mapping_apps(nil))
  end)

  it("migrates as MigrationInvoker with dubbo's default step and threshold", function()
    assert.equal("APPLICATION_FIRST", R.DEFAULT_STEP)
    assert.equal("application", (R.migrate(nil, 3, 1)))        -- threshold 0: any application address wins
    assert.equal("interface", (R.migrate(nil, 3, 0)))          -- no application address
    assert.equal("application", (R.migrate(nil, 0, 2)))        -- no interface address
    assert.equal("interface", (R.migrate(nil, 0, 0)))
    assert.equal("interface", (R.migrate("APPLICATION_FIRST", 4, 2, { threshold = 0.8 })))
    assert.equal("application", (R.migrate("APPLICATION_FIRST", 4, 4, { threshold = 1.0 })))
    assert.equal("interface", (R.migrate("FORCE_INTERFACE", 0, 5)))
    assert.equal("application", (R.migrate("FORCE_APPLICATION", 5, 0)))
    local which, note = R.migrate("BOGUS", 1, 1)
    assert.equal("interface", which)
    assert.truthy(note:find("unknown", 1, true))
  end)

  it("reads the consumer's MigrationRule: interface entry, then mapped application, then the rule", function()
    local m = FX.dubbo3.migration[1]
    assert.equal(m.path, R.migration_path({ interface = "x", application = "demo-consumer" }))
    for _, c in ipairs(m.cases) do
      local r = assert(R.migration_rule(read(m.file), c.scope, c.apps))
      assert.equal(c.step, r.step, c.scope.interface)
      assert.equal(c.threshold, r.threshold, c.scope.interface)
    end
    assert.same({}, R.migration_rule("key: x\n", { interface = "I" }))  -- dubbo's defaults apply in R.migrate
    assert.is_nil((R.migration_rule("step: SOMETIMES\n", { interface = "I" })))
    assert.is_nil((R.migration_rule("threshold: high\n", { interface = "I" })))
    assert.is_nil((R.migration_rule("interfaces: [1]\n", { interface = "I" })))
  end)

  it("turns an application-level instance into a provider of the interface", function()
    local inst = FX.dubbo3.instances[1]
    local raw = assert(dubbo.app.decode(inst.path:match("[^/]+$"), read(inst.file)))
    local scope = { interface = "com.acme.DemoService" }
    local ep, note = R.instance_provider(raw, inst.application, scope)
    assert.equal(inst.expect.address, ep.host .. ":" .. ep.port)
    assert.equal("demo-provider", ep.meta.application)
    assert.equal("com.acme.DemoService", ep.meta.interface)
    assert.equal("up", ep.status)
    assert.is_string(note)
    local tri = R.instance_provider(raw, inst.application, scope, { protocol = "tri" })
    assert.equal(inst.expect.tri_port, tri.port)
    assert.equal("/dubbo/metadata/demo-provider/7f3c9a1e2b4d5c6a",
      R.metadata_path(inst.application, raw.meta["dubbo.metadata.revision"]))
    local md = read(FX.dubbo3.metadata[1].file)
    local full = R.instance_provider(raw, inst.application, scope, { metadata = md })
    assert.equal(inst.expect.weight_with_metadata, full.weight)
    local none, why = R.instance_provider(raw, inst.application, { interface = "com.acme.Missing" }, { metadata = md })
    assert.is_nil(none)
    assert.truthy(why:find("does not serve", 1, true))
    assert.is_nil((R.instance_provider(raw, inst.application, scope, { protocol = "rest" })))
    assert.is_nil((R.instance_provider(raw, inst.application, scope, { metadata = "{" })))
  end)
end)

describe("dubbo_rules never raises on bad input", function()
  local H = require "codec_helper"
  local YAML_TOKENS = { "\n", "  ", "- ", ": ", "[", "]", "{", "}", ",", "~", "null", "yes", "no", "1.0", "010",
    "key", "configs", "conditions", "tags", "addresses", "parameters", "side", "provider", "consumer", "enabled",
    "force", "priority", "scope", "application", "service", "name", "&a", "*a", "!!int", "!!str", "'", "\"", "#",
    "=>", "host = ", "method != ", "$", "*", "0.0.0.0", ":20880", "\t", "\0", "\255", "---", "...", "match",
    "oneof", "exact", "prefix", "cird", "wildcard", "param", "value", "configVersion: v3.0\n", "10.0.0.0/8" }

  it("compiles, configures and routes garbage without an error (names and YAML data)", function()
    local r = H.rng(20261205)
    local scope = { interface = "com.acme.DemoService", application = "demo-consumer", host = "10.0.0.5" }
    local names, yamls = {}, {}
    for _, sc in ipairs(FX.scenarios) do
      for _, n in ipairs(sc.nodes) do
        names[#names + 1] = n.name
        if n.file then yamls[#yamls + 1] = read(n.file) end
      end
    end
    local base = providers()
    for _ = 1, 400 do
      local sets = {}
      local cnodes, rnodes, ynodes = {}, {}, {}
      for i = 1, r.int(0, 4) do cnodes[i] = { name = H.garbage(r, names, H.URL_TOKENS) } end
      for i = 1, r.int(0, 4) do rnodes[i] = { name = H.garbage(r, names, H.URL_TOKENS) } end
      for i = 1, r.int(0, 3) do
        ynodes[i] = { name = r.pick({ "com.acme.DemoService::.configurators", "demo-consumer.configurators",
          "com.acme.DemoService::.condition-router", "demo-consumer.condition-router", "demo-provider.tag-router" }),
          data = H.garbage(r, yamls, YAML_TOKENS) }
      end
      sets.configurators = R.compile("configurators", cnodes, scope)
      sets.routers = R.compile("routers", rnodes, scope)
      sets.config = R.compile("config", ynodes, scope)
      for _, ep in ipairs(base) do
        local ep2 = R.configure(ep, sets, scope)
        assert.is_table(ep2)
      end
      assert.truthy(route.compile(R.routes(sets, scope)))
    end
  end)
end)
