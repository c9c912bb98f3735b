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
    local ep = { host = "10.0.0.1", port = 1, meta = {}, status = "up", weight = 100 }
    assert.equal(ep, (R.configure(ep, nil, { interface = "I" })))
    assert.equal(ep, (R.configure(ep, {}, nil)))
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

describe("dubbo 3 mapping, migration and instances", function()
  it("reads /dubbo/mapping/<interface> as ServiceNameMapping.getAppNames does", function()
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

describe("route.lua tag rule with force (dubbo's tag router)", function()
  local eps = {
    { id = "a", host = "a", port = 1, weight = 1, status = "up", meta = { ["dubbo.tag"] = "gray" } },
    { id = "b", host = "b", port = 1, weight = 1, status = "up", meta = {} },
  }
  local function ids(list)
    local out = {}
    for i, e in ipairs(list) do out[i] = e.id end
    return out
  end
  it("falls back to the untagged providers, or to nothing when forced", function()
    local soft = assert(route.compile({ { tag = "dubbo.tag", force = false } }))
    assert.same({ "a" }, ids(soft:apply(eps, { tag = "gray" })))
    assert.same({ "b" }, ids(soft:apply(eps, { tag = "red" })))
    assert.same({ "b" }, ids(soft:apply(eps, {})))
    local hard = assert(route.compile({ { tag = "dubbo.tag", force = true } }))
    assert.same({}, ids(hard:apply(eps, { tag = "red" })))
    local all_tagged = { eps[1] }
    assert.same({}, ids(soft:apply(all_tagged, {})))
  end)
  it("refuses force on other rules and beside fallback", function()
    assert.is_nil(route.compile({ { condition = "=> host = a", force = true } }))
    assert.is_nil(route.compile({ { tag = true, force = true, fallback = "all" } }))
    assert.is_nil(route.compile({ { tag = true, force = "yes" } }))
  end)
end)
