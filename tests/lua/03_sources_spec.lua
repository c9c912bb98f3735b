-- scout.sources and the runtime's side of a service over several paths: a codec that declares sources gets
-- has_sources in the conf, M.sources lists them (bad descriptors skipped), a source batch marks every child for
-- judgement by the next M.update (a source change alone republishes), refused rules are counted per batch, the
-- shaped copy keeps its identity while nothing changes, the sources' routes come before the policy's (in pick and
-- in settings), explain lists sources, refused rules, routes and each endpoint's notes, and a dropped source's
-- rules stop applying.

local runtime = require "scout.runtime"
local sources = require "scout.sources"
local json = require "cjson.safe"
local H = require "policy_helper"

local POLICY = [[
local drain = {
  needs_data = false,
  decode = function(name)
    local h, p = name:match("^(.+):(%d+)$")
    if not h then return nil, "not host:port" end
    return { host = h, port = tonumber(p) }
  end,
  sources = function(conf, sets)
    local list = { { key = "drain", path = conf.path .. "-drain", kind = "drain", data = { "list" } },
                   { key = "bad" }, { path = "relative", key = "bad2" } }
    if sets.drain and sets.drain.__more then list[#list + 1] = { key = "more", path = "/more", data = true } end
    return list
  end,
  compile = function(kind, nodes)
    local set, errors = {}, {}
    for _, n in ipairs(nodes) do
      if n.name:match("^bad") then errors[#errors + 1] = { name = n.name, why = "bad rule" }
      elseif n.name == "more" then set.__more = true
      elseif n.name == "route" then set.__route = true
      else set[n.name] = true end
    end
    return set, errors
  end,
  configure = function(ep, sets)
    if (sets.drain or {})[ep.host .. ":" .. ep.port] or (sets.more or {})[ep.host .. ":" .. ep.port] then
      return { host = ep.host, port = ep.port, weight = ep.weight, meta = ep.meta, status = "drained" },
             { "drain: " .. ep.host }
    end
    return ep, {}
  end,
  routes = function(sets)
    if sets.drain and sets.drain.__route then return { { condition = "=> port = 2", source = "drain" } } end
    return {}
  end,
}
service "svc" { path = "/svc", codec = drain, protect = false, route = { "=> host = 10.0.0.2" } }
service "plain" { path = "/plain", protect = false }
]]

local function ids(list)
  local out = {}
  for i = 1, #list do out[i] = list[i].id end
  table.sort(out)
  return out
end

describe("services over several paths", function()
  local conf
  before_each(function()
    conf = assert(runtime.load(H.write(POLICY)))
  end)
  after_each(H.cleanup)

  it("says which services have sources, and lists them with their data names (bad ones skipped)", function()
    assert.equal(1, conf.services.has_sources[1])
    assert.is_nil(conf.services.has_sources[2])
    assert.same({ { key = "drain", path = "/svc-drain", data = { "list" } } }, runtime.sources(1))
    assert.same({}, runtime.sources(2))
  end)

  it("re-judges every child after a source batch alone, and counts refused rules of the batch", function()
    local up = runtime.update(1, {}, { { "10.0.0.1:1", nil, 5, false }, { "10.0.0.2:2", nil, 5, false } })
    assert.same({ "10.0.0.1:1", "10.0.0.2:2" }, ids(up))
    local bad, why = runtime.source_update(1, "drain", {}, { { "10.0.0.1:1", nil, 7, false },
                                                               { "bad-one", nil, 7, false } })
    assert.equal(1, bad)
    assert.matches("1 rule refused in source drain %(bad%-one: bad rule%)", why)
    local up2, gone = runtime.update(1, {}, {})
    assert.same({}, up2)
    assert.same({ "10.0.0.1:1" }, gone)
    -- nothing changed: nothing to publish, and the shaped endpoint keeps its identity
    local up3, gone3 = runtime.update(1, {}, {})
    assert.same({}, up3)
    assert.same({}, gone3)
    -- the same refused node in a later batch that does not touch it is not counted again
    assert.equal(0, (runtime.source_update(1, "drain", {}, { { "10.0.0.9:9", nil, 8, false } })))
    -- the rule goes: the endpoint is back
    runtime.source_update(1, "drain", { "10.0.0.1:1" }, {})
    local up4 = runtime.update(1, {}, {})
    assert.same({ "10.0.0.1:1" }, ids(up4))
  end)

  it("asks for more sources when the rules name them, and a dropped source's rules stop applying", function()
    runtime.update(1, {}, { { "10.0.0.1:1", nil, 5, false } })
    runtime.source_update(1, "drain", {}, { { "more", nil, 6, false } })
    runtime.update(1, {}, {})
    local s = runtime.sources(1)
    assert.equal(2, #s)
    assert.same({ key = "more", path = "/more", data = true }, s[2])
    runtime.source_update(1, "more", {}, { { "10.0.0.1:1", "x", 9, true } })
    local _, gone = runtime.update(1, {}, {})
    assert.same({ "10.0.0.1:1" }, gone)
    runtime.source_update(1, "more", nil, nil)        -- the C side retired it
    assert.same({ "10.0.0.1:1" }, ids((runtime.update(1, {}, {}))))
  end)

  it("puts the sources' routes before the policy's, in pick and in the settings nginx reads", function()
    runtime.update(1, {}, { { "10.0.0.1:1", nil, 5, false }, { "10.0.0.2:2", nil, 5, false } })
    local picked = assert(runtime.pick(1, ""))
    assert.equal("10.0.0.2", json.decode(picked).host)
    assert.same({ "=> host = 10.0.0.2" }, json.decode(runtime.settings(1)).route)
    runtime.source_update(1, "drain", {}, { { "route", nil, 6, false } })
    runtime.update(1, {}, {})
    assert.same({ { condition = "=> port = 2" }, "=> host = 10.0.0.2" }, json.decode(runtime.settings(1)).route)
    local ex = json.decode(runtime.explain(1))
    assert.same({ "drain", "policy" }, { ex.routes[1].source, ex.routes[2].source })
    assert.equal("drain", ex.sources[1].key)
    assert.equal(1, ex.sources[1].nodes)
  end)

  it("explains which rule made an endpoint's verdict", function()
    runtime.update(1, {}, { { "10.0.0.1:1", nil, 5, false } })
    runtime.source_update(1, "drain", {}, { { "10.0.0.1:1", nil, 6, false }, { "bad-x", nil, 6, false } })
    runtime.update(1, {}, {})
    local ex = json.decode(runtime.explain(1))
    assert.equal("down", ex.children[1].verdict)
    assert.same({ "drain: 10.0.0.1" }, ex.children[1].rules)
    assert.same({ { name = "bad-x", why = "bad rule" } }, ex.sources[1].invalid)
  end)
end)

describe("scout.sources", function()
  it("never raises on a provider that does: its source is refused whole, and the rest stands", function()
    local p = {
      sources = function() return { { key = "a", path = "/a" } } end,
      compile = function() error("boom") end,
      configure = function() error("boom too") end,
    }
    local st = sources.new(p, { path = "/x" }, "x")
    assert.equal(1, st:update("a", {}, { { "n", nil, 1, false } }))
    local ep = { id = "e", host = "h", port = 1 }
    local out, notes = st:shape("e", ep)
    assert.equal(ep, out)
    assert.matches("rules not applied", notes[1])
  end)

  -- A codec without built-in sources (plain) is looked up once, not once per service: each lookup is a require
  -- that searches every package.path and cpath entry (19 file opens), and at 10,000 services that was half the
  -- policy's load time. Counted at the module searcher, where every uncached require of it lands.
  it("looks a codec's built-in sources up once, however many services use it", function()
    local searched = 0
    local loaders = package.loaders
    table.insert(loaders, 1, function(name)
      if name == "scout.sources.plain" then searched = searched + 1 end
      return nil
    end)
    local lines = {}
    for i = 1, 50 do lines[i] = ('service "s%d" { path = "/s/%d", codec = "plain" }'):format(i, i) end
    local ok, conf, err = pcall(runtime.load, H.write(table.concat(lines, "\n")))
    table.remove(loaders, 1)
    H.cleanup()
    assert.is_true(ok, conf)
    assert.truthy(conf, err)
    assert.equal(50, #conf.services.name)
    assert.is_true(searched <= 1, "searched " .. searched .. " times")
    assert.is_nil(sources.provider("plain"))
  end)
end)
