-- dubbo codec: interface-level provider URLs, warmup weights, configurators, dubbo 3 app-level instances.

local H = require "codec_helper"
local dubbo = require "scout.codec.dubbo"
local url = require "scout.util.url"

local EXAMPLE = "dubbo%3A%2F%2F172.20.3.201%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue"
  .. "%26application%3Ddemo%26dynamic%3Dtrue%26interface%3Dorg.apache.dubbo.demo.DemoService"
  .. "%26methods%3DsayHello%2CsayHelloAsync%26side%3Dprovider%26timestamp%3D1617000000000%26weight%3D100"

local IFACE = "org.apache.dubbo.demo.DemoService"
local NOW = 1700000000000

-- build a provider name the way dubbo does (URL.encode of the full string)
local function name(s) return url.encode_java(s) end

local function provider(params, host_port)
  return name("dubbo://" .. (host_port or "10.0.0.1:20880") .. "/" .. IFACE .. "?" .. params)
end

describe("dubbo codec", function()
  it("never needs data", function()
    assert.is_false(dubbo.needs_data(EXAMPLE))
    assert.is_false(dubbo.needs_data("anything"))
  end)

  it("decodes the published example", function()
    local ep = H.assert_endpoint(dubbo.decode(EXAMPLE, nil, { now = NOW }), EXAMPLE)
    assert.equal("172.20.3.201", ep.host)
    assert.equal(20880, ep.port)
    assert.equal(100, ep.weight)
    assert.equal("up", ep.status)
    assert.same({
      anyhost = "true", application = "demo", dynamic = "true", interface = IFACE,
      methods = "sayHello,sayHelloAsync", side = "provider", timestamp = "1617000000000", weight = "100",
      protocol = "dubbo", path = IFACE,
    }, ep.meta)
  end)

  it("decodes without opts (current time)", function()
    H.assert_endpoint(dubbo.decode(EXAMPLE))
  end)

  it("encodes back to the exact name dubbo wrote", function()
    local ep = assert(dubbo.decode(EXAMPLE, nil, { now = NOW }))
    local n, data = dubbo.encode(ep)
    assert.equal(EXAMPLE, n)
    assert.is_nil(data)
  end)

  it("encodes a fresh endpoint the way a dubbo provider registers", function()
    local n = dubbo.encode({ host = "10.0.0.9", port = 20880, meta = { application = "orders", version = "1.0" } },
      { interface = "com.acme.OrderService", now = 1617000000000 })
    assert.equal(name("dubbo://10.0.0.9:20880/com.acme.OrderService?application=orders"
      .. "&interface=com.acme.OrderService&side=provider&timestamp=1617000000000&version=1.0"), n)
    n = dubbo.encode({ host = "10.0.0.9", port = 20880, weight = 7, status = "disabled" },
      { interface = "I", timestamp = false })
    assert.equal(name("dubbo://10.0.0.9:20880/I?enabled=false&interface=I&side=provider&weight=7"), n)
  end)

  it("raises on encode mistakes", function()
    assert.has_error(function() dubbo.encode({ host = "h", port = 1 }) end)   -- no interface
    assert.has_error(function()
      dubbo.encode({ host = "h", port = 1, meta = { ["a&b"] = "1" } }, { interface = "I" })
    end)
    assert.has_error(function() dubbo.encode({ host = "h", port = 1, meta = { a = "x&y" } }, { interface = "I" }) end)
    assert.has_error(function() dubbo.encode({ host = "h", port = 0 }, { interface = "I" }) end)
  end)

  it("keeps group and version in meta", function()
    local ep = H.assert_endpoint(dubbo.decode(provider("group=canary&version=2.0.0")))
    assert.equal("canary", ep.meta.group)
    assert.equal("2.0.0", ep.meta.version)
  end)

  it("honours weight, defaulting to 100, clamping negatives like dubbo", function()
    assert.equal(100, dubbo.decode(provider("side=provider")).weight)
    assert.equal(7, dubbo.decode(provider("weight=7")).weight)
    assert.equal(0, dubbo.decode(provider("weight=0")).weight)
    assert.equal(0, dubbo.decode(provider("weight=-5")).weight)
    assert.equal(100, dubbo.decode(provider("weight=")).weight)
    assert.same({ nil, "bad weight" }, { dubbo.decode(provider("weight=abc")) })
    assert.same({ nil, "bad weight" }, { dubbo.decode(provider("weight=99999999999")) })
    assert.same({ nil, "bad weight" }, { dubbo.decode(provider("weight=1.5")) })
  end)

  it("maps enabled=false and disabled=true to disabled, disabled winning when present", function()
    assert.equal("disabled", dubbo.decode(provider("enabled=false")).status)
    assert.equal("disabled", dubbo.decode(provider("disabled=true")).status)
    assert.equal("disabled", dubbo.decode(provider("disabled=TRUE")).status)
    assert.equal("up", dubbo.decode(provider("enabled=false&disabled=false")).status)
    assert.equal("disabled", dubbo.decode(provider("enabled=true&disabled=true")).status)
    assert.equal("up", dubbo.decode(provider("enabled=true")).status)
    assert.equal("up", dubbo.decode(provider("enabled=")).status)
    assert.equal("disabled", dubbo.decode(provider("enabled=no")).status)  -- Boolean.parseBoolean
  end)

  describe("warmup", function()
    it("matches dubbo's calculateWarmupWeight", function()
      -- values computed with Java float semantics: (int)(uptime / ((float) warmup / weight))
      assert.equal(10, dubbo.warmup_weight(60000, 600000, 100))
      assert.equal(1, dubbo.warmup_weight(1, 600000, 100))
      assert.equal(99, dubbo.warmup_weight(599999, 600000, 100))
      assert.equal(100, dubbo.warmup_weight(600000, 600000, 100))
      assert.equal(33, dubbo.warmup_weight(100000, 300000, 100))
      assert.equal(1, dubbo.warmup_weight(10, 600000, 3))
      assert.equal(2, dubbo.warmup_weight(400000, 600000, 3))
      assert.equal(66, dubbo.warmup_weight(200000, 300000, 100))
      -- large weights, where Java's int->float conversions round (expected values printed by a Java program)
      assert.equal(272646176, dubbo.warmup_weight(2590683, 2783776, 292967502))
      assert.equal(240208624, dubbo.warmup_weight(1194308, 1612595, 324337808))
      assert.equal(1117636480, dubbo.warmup_weight(117782, 157796, 1497330247))
      assert.equal(850905152, dubbo.warmup_weight(58514, 73443, 1068001374))
    end)

    it("ramps with timestamp and warmup at decode time (opts.now)", function()
      local n = provider("timestamp=" .. (NOW - 60000) .. "&warmup=600000&weight=100")
      assert.equal(10, dubbo.decode(n, nil, { now = NOW }).weight)
      assert.equal(100, dubbo.decode(n, nil, { now = NOW + 600000 }).weight)
      assert.equal(1, dubbo.decode(n, nil, { now = NOW - 120000 }).weight)  -- clock skew: uptime < 0
      assert.equal(100, dubbo.decode(n, nil, { now = NOW - 60000 }).weight)  -- uptime 0: no ramp
    end)

    it("uses dubbo's default 10 minute warmup when only timestamp is set", function()
      local n = provider("timestamp=" .. (NOW - 300000))
      assert.equal(50, dubbo.decode(n, nil, { now = NOW }).weight)
    end)

    it("does not ramp weight 0", function()
      local n = provider("timestamp=" .. (NOW - 1000) .. "&weight=0")
      assert.equal(0, dubbo.decode(n, nil, { now = NOW }).weight)
    end)

    it("exports effective_weight and warmup_until for re-evaluation", function()
      local ep = dubbo.decode(provider("timestamp=" .. (NOW - 60000) .. "&warmup=120000&weight=50"), nil, { now = NOW })
      assert.equal(25, ep.weight)
      assert.equal(50, dubbo.effective_weight(ep, NOW + 60000))
      assert.equal(NOW + 60000, dubbo.warmup_until(ep, NOW))
      assert.is_nil(dubbo.warmup_until(ep, NOW + 60000))
      assert.is_nil(dubbo.warmup_until(dubbo.decode(provider("side=provider")), NOW))
      assert.equal(100, dubbo.effective_weight({ meta = { weight = "junk" } }, NOW))
    end)

    it("rejects malformed timestamp and warmup", function()
      assert.same({ nil, "bad timestamp" }, { dubbo.decode(provider("timestamp=yesterday")) })
      assert.same({ nil, "bad warmup" }, { dubbo.decode(provider("warmup=1h")) })
    end)
  end)

  it("treats empty:// as no provider", function()
    local n = name("empty://10.0.0.1/" .. IFACE .. "?category=providers")
    assert.same({ nil, "empty" }, { dubbo.decode(n) })
  end)

  it("rejects consumers, overrides and other categories", function()
    assert.same({ nil, "not a provider" }, { dubbo.decode(name("consumer://10.0.0.1/" .. IFACE .. "?side=consumer")) })
    assert.same({ nil, "not a provider" }, { dubbo.decode(provider("category=routers")) })
    assert.same({ nil, "not a provider" },
      { dubbo.decode(name("override://0.0.0.0/" .. IFACE .. "?category=configurators")) })
    H.assert_endpoint(dubbo.decode(provider("category=providers")))
  end)

  it("decodes IPv6 the way dubbo writes it (no brackets) and with brackets", function()
    local ep = H.assert_endpoint(dubbo.decode(name("dubbo://fe80:0:0:0:894:aeec:f37d:23e1:20880/I?x=1")))
    assert.equal("fe80:0:0:0:894:aeec:f37d:23e1", ep.host)
    assert.equal(20880, ep.port)
    ep = H.assert_endpoint(dubbo.decode(name("dubbo://fe80::1%en0:20880/I")))
    assert.equal("fe80::1%en0", ep.host)
    ep = H.assert_endpoint(dubbo.decode(name("dubbo://[::1]:20880/I")))
    assert.equal("::1", ep.host)
  end)

  it("strips user info and keeps the last of repeated params", function()
    local ep = H.assert_endpoint(dubbo.decode(name("dubbo://admin:pw@10.0.0.1:20880/I?a=1&a=2& b=3 ")))
    assert.equal("10.0.0.1", ep.host)
    assert.equal("2", ep.meta.a)
    assert.equal("3", ep.meta.b)
  end)

  local bad = {
    { "dubbo%3A%2F%2F10.0.0.1%3A20880%2FI%3Fa%3D%ZZ", "bad percent escape" },
    { "dubbo%3A%2F%2F10.0.0.1%3A20880%2FI%3Fa%3D%2", "bad percent escape" },
    { "dubbo%3A%2F%2F10.0.0.1%3A20880%", "bad percent escape" },
    { name("dubbo://10.0.0.1/I"), "no port" },
    { name("dubbo://10.0.0.1:0/I"), "no port" },
    { name("dubbo://10.0.0.1:65536/I"), "bad port" },
    { name("dubbo://10.0.0.1:99999999999999999999/I"), "bad port" },
    { name("dubbo://10.0.0.1:80x/I"), "bad port" },
    { name("dubbo://:20880/I"), "empty host" },
    { name("dubbo://a b:20880/I"), "bad host" },
    { name("://10.0.0.1:20880/I"), "url has no protocol" },
    { name("10.0.0.1:20880/I"), "bad url" },
    { "", "bad name" },
  }
  for _, c in ipairs(bad) do
    it("rejects " .. c[1], function()
      assert.same({ nil, c[2] }, { dubbo.decode(c[1]) })
    end)
  end

  it("rejects non-string names", function()
    assert.same({ nil, "bad name" }, { dubbo.decode(nil) })
    assert.same({ nil, "bad name" }, { dubbo.decode(12) })
  end)
end)

describe("dubbo configurators", function()
  local function rule(s) return assert(dubbo.decode_configurator(name(s))) end
  local function eps()
    return {
      assert(dubbo.decode(provider("application=demo&side=provider&weight=100", "10.0.0.1:20880"))),
      assert(dubbo.decode(provider("application=demo&side=provider&weight=100", "10.0.0.2:20880"))),
      assert(dubbo.decode(provider("application=other&side=provider&group=g1", "10.0.0.2:20881"))),
    }
  end

  it("decodes the override rule from the brief", function()
    local r = rule("override://0.0.0.0/" .. IFACE .. "?category=configurators&dynamic=false&enabled=true&disabled=true")
    assert.equal("0.0.0.0", r.host)
    assert.is_nil(r.port)
    assert.equal(IFACE, r.interface)
    assert.is_true(r.active)
    assert.same({ disabled = "true" }, r.params)
    assert.same({}, r.conditions)
  end)

  it("disables every provider for a 0.0.0.0 rule, without touching the inputs", function()
    local list = eps()
    local before = H.rng(1) and list[1].status
    local r = rule("override://0.0.0.0/" .. IFACE .. "?category=configurators&dynamic=false&enabled=true&disabled=true")
    local out = dubbo.apply_configurators(list, { r })
    for i = 1, 3 do
      assert.equal("disabled", out[i].status)
      assert.is_not.equal(list[i], out[i])
      H.assert_endpoint(out[i])
    end
    assert.equal(before, list[1].status)
    assert.is_nil(list[1].meta.disabled)
  end)

  it("sets weight on one host, and on host:port only", function()
    local r = rule("override://10.0.0.2/" .. IFACE .. "?category=configurators&weight=200")
    local out = dubbo.apply_configurators(eps(), { r })
    assert.same({ 100, 200, 200 }, { out[1].weight, out[2].weight, out[3].weight })
    out = dubbo.apply_configurators(eps(), { rule("override://10.0.0.2:20881/" .. IFACE .. "?weight=5") })
    assert.same({ 100, 100, 5 }, { out[1].weight, out[2].weight, out[3].weight })
  end)

  it("ignores rules with enabled=false", function()
    local r = rule("override://0.0.0.0/" .. IFACE .. "?category=configurators&enabled=false&disabled=true")
    assert.is_false(r.active)
    local out = dubbo.apply_configurators(eps(), { r })
    assert.equal("up", out[1].status)
  end)

  it("honours application, group and ~key conditions and the providers list", function()
    local out = dubbo.apply_configurators(eps(), { rule("override://0.0.0.0/I?application=other&weight=1") })
    assert.same({ 100, 100, 1 }, { out[1].weight, out[2].weight, out[3].weight })
    out = dubbo.apply_configurators(eps(), { rule("override://0.0.0.0/I?group=g1&weight=1") })
    assert.same({ 100, 100, 1 }, { out[1].weight, out[2].weight, out[3].weight })
    out = dubbo.apply_configurators(eps(), { rule("override://0.0.0.0/I?~application=demo&weight=1") })
    assert.same({ 1, 1, 100 }, { out[1].weight, out[2].weight, out[3].weight })
    out = dubbo.apply_configurators(eps(), { rule("override://0.0.0.0/I?providers=10.0.0.1:20880&weight=3") })
    assert.same({ 3, 100, 100 }, { out[1].weight, out[2].weight, out[3].weight })
    out = dubbo.apply_configurators(eps(), { rule("override://0.0.0.0/I?side=consumer&weight=3") })
    assert.same({ 100, 100, 100 }, { out[1].weight, out[2].weight, out[3].weight })
  end)

  it("applies specific hosts after 0.0.0.0, and by priority", function()
    local out = dubbo.apply_configurators(eps(), {
      rule("override://10.0.0.1/I?weight=10"),
      rule("override://0.0.0.0/I?weight=20"),
    })
    assert.same({ 10, 20, 20 }, { out[1].weight, out[2].weight, out[3].weight })
    out = dubbo.apply_configurators(eps(), {
      rule("override://0.0.0.0/I?weight=30&priority=2"),
      rule("override://0.0.0.0/I?weight=40&priority=1"),
    })
    assert.equal(30, out[1].weight)
  end)

  it("re-enables with disabled=false and supports absent://", function()
    local list = { assert(dubbo.decode(provider("disabled=true"))) }
    assert.equal("disabled", list[1].status)
    local out = dubbo.apply_configurators(list, { rule("override://0.0.0.0/I?disabled=false") })
    assert.equal("up", out[1].status)
    out = dubbo.apply_configurators(eps(), { rule("absent://0.0.0.0/I?weight=1&timeout=5") })
    assert.equal(100, out[1].weight)
    assert.equal("5", out[1].meta.timeout)
  end)

  it("returns copies even with no rules", function()
    local list = eps()
    local out = dubbo.apply_configurators(list, {})
    assert.same(list, out)
    assert.is_not.equal(list[1], out[1])
    assert.is_not.equal(list[1].meta, out[1].meta)
  end)

  it("rejects non-configurators and bad names", function()
    assert.same({ nil, "empty" }, { dubbo.decode_configurator(name("empty://0.0.0.0/I?category=configurators")) })
    assert.same({ nil, "not a configurator" }, { dubbo.decode_configurator(provider("a=1")) })
    assert.same({ nil, "not a configurator" },
      { dubbo.decode_configurator(name("override://0.0.0.0/I?category=routers")) })
    assert.same({ nil, "bad percent escape" }, { dubbo.decode_configurator("override%3A%2F%2F%G0") })
    assert.same({ nil, "bad name" }, { dubbo.decode_configurator(nil) })
  end)

  it("raises on caller mistakes", function()
    assert.has_error(function() dubbo.apply_configurators(nil, {}) end)
    assert.has_error(function() dubbo.apply_configurators({}, "x") end)
  end)
end)

describe("dubbo3 app-level codec", function()
  local codec = require "scout.codec"
  local app = assert(codec.get("dubbo3"))
  local DATA = '{"name":"demo-provider","id":"10.0.0.5:20880","address":"10.0.0.5","port":20880,"sslPort":null,'
    .. '"payload":{"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance","id":"10.0.0.5:20880",'
    .. '"name":"demo-provider","metadata":{"dubbo.metadata.revision":"a1b2c3",'
    .. '"dubbo.endpoints":"[{\\"port\\":20880,\\"protocol\\":\\"dubbo\\"},'
    .. '{\\"port\\":50051,\\"protocol\\":\\"tri\\"}]",'
    .. '"dubbo.metadata.storage-type":"local"}},'
    .. '"registrationTimeUTC":1628750040704,"serviceType":"DYNAMIC","uriSpec":null}'

  it("is the app codec of scout.codec.dubbo", function()
    assert.equal(dubbo.app, app)
    assert.equal("dubbo3", app.name)
    assert.is_true(app.needs_data("10.0.0.5:20880"))
  end)

  it("decodes a dubbo 3 instance with weight 100 and metadata in meta", function()
    local ep = H.assert_endpoint(app.decode("10.0.0.5:20880", DATA), "10.0.0.5:20880")
    assert.equal("10.0.0.5", ep.host)
    assert.equal(20880, ep.port)
    assert.equal(100, ep.weight)
    assert.equal("a1b2c3", ep.meta["dubbo.metadata.revision"])
  end)

  it("picks the port of a protocol from dubbo.endpoints", function()
    assert.equal(50051, app.decode("10.0.0.5:20880", DATA, { protocol = "tri" }).port)
    assert.same({ nil, "no rest endpoint" }, { app.decode("10.0.0.5:20880", DATA, { protocol = "rest" }) })
  end)

  it("round-trips through encode", function()
    local ep = assert(app.decode("10.0.0.5:20880", DATA))
    local n, data = app.encode(ep, { name = "demo-provider", now = 1628750040704 })
    assert.equal("10.0.0.5:20880", n)
    assert.matches('"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance"', data, 1, true)
    local back = H.assert_endpoint(app.decode(n, data))
    assert.same(ep, back)
    assert.has_error(function() app.encode(ep) end)
  end)
end)
