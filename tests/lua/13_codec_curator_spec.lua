-- curator codec: Curator ServiceDiscovery JSON (Spring Cloud Zookeeper and friends).

local H = require "codec_helper"
local curator = require "scout.codec.curator"
local E = require "scout.util.endpoint"

local ID = "53565860-2cdd-493f-ac9d-f7d4a546cbf6"
local EXAMPLE = '{"name":"waiter-service","id":"53565860-2cdd-493f-ac9d-f7d4a546cbf6","address":"10.20.14.30",'
  .. '"port":52930,"sslPort":null,"payload":{'
  .. '"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance",'
  .. '"id":"waiter-service-1","name":"waiter-service","metadata":{}},"registrationTimeUTC":1628750040704,'
  .. '"serviceType":"DYNAMIC","uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},'
  .. '{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}}'

local function doc(over)
  local t = E.json.decode(EXAMPLE)
  for k, v in pairs(over) do
    if v == "nil" then t[k] = nil else t[k] = v end
  end
  return E.json.encode(t)
end

describe("curator codec", function()
  it("always needs data", function()
    assert.is_true(curator.needs_data(ID))
  end)

  it("decodes the published example", function()
    local ep = H.assert_endpoint(curator.decode(ID, EXAMPLE), ID)
    assert.same({ id = ID, host = "10.20.14.30", port = 52930, weight = 1, meta = {}, status = "up" }, ep)
  end)

  it("puts payload metadata in meta", function()
    local ep = H.assert_endpoint(curator.decode(ID, doc({ payload = { ["@class"] = "x.Y",
      metadata = { zone = "a", version = "2", n = 5 } } })))
    assert.same({ zone = "a", version = "2", n = "5" }, ep.meta)
  end)

  it("maps enabled=false to disabled and treats a missing enabled as true", function()
    assert.equal("disabled", curator.decode(ID, doc({ enabled = false })).status)
    assert.equal("up", curator.decode(ID, doc({ enabled = true })).status)
    assert.equal("up", curator.decode(ID, doc({ enabled = E.null })).status)
    assert.same({ nil, "bad enabled" }, { curator.decode(ID, doc({ enabled = "no" })) })
  end)

  it("honours Spring Cloud's instance_status metadata", function()
    local ep = curator.decode(ID, doc({ payload = { metadata = { instance_status = "OUT_OF_SERVICE" } } }))
    assert.equal("out_of_service", ep.status)
    ep = curator.decode(ID, doc({ payload = { metadata = { instance_status = "UP" } } }))
    assert.equal("up", ep.status)
    ep = curator.decode(ID, doc({ payload = { metadata = { instance_status = "?!" } } }))
    assert.equal("down", ep.status)
  end)

  it("uses sslPort when port is null, or when opts.ssl asks", function()
    assert.equal(8443, curator.decode(ID, doc({ port = E.null, sslPort = 8443 })).port)
    assert.equal(8443, curator.decode(ID, doc({ sslPort = 8443 }), { ssl = true }).port)
    assert.same({ nil, "no port" }, { curator.decode(ID, doc({}), { ssl = true }) })
  end)

  it("accepts null or non-object payloads and all service types", function()
    H.assert_endpoint(curator.decode(ID, doc({ payload = E.null })))
    H.assert_endpoint(curator.decode(ID, doc({ payload = "nil" })))
    H.assert_endpoint(curator.decode(ID, doc({ payload = { "java.lang.String", "x" } })))
    for _, st in ipairs({ "DYNAMIC", "STATIC", "PERMANENT", "DYNAMIC_SEQUENTIAL" }) do
      H.assert_endpoint(curator.decode(ID, doc({ serviceType = st })))
    end
  end)

  it("decodes IPv6 addresses", function()
    assert.equal("fe80::1", curator.decode(ID, doc({ address = "fe80::1" })).host)
  end)

  local bad = {
    { { address = "nil" }, "no address" },
    { { address = E.null }, "no address" },
    { { address = 5 }, "host is not a string" },
    { { address = "" }, "empty host" },
    { { address = "a b" }, "bad host" },
    { { port = E.null }, "no port" },
    { { port = "nil" }, "no port" },
    { { port = 0 }, "bad port" },
    { { port = -1 }, "bad port" },
    { { port = 8080.5 }, "bad port" },
    { { port = 70000 }, "bad port" },
    { { port = 1e300 }, "bad port" },
    { { port = "8080" }, "port is not a number" },
    { { sslPort = 0 }, "bad ssl port" },
    { { serviceType = "EPHEMERAL" }, "bad service type" },
    { { serviceType = 1 }, "bad service type" },
    { { name = 1 }, "name is not a string" },
    { { id = {} }, "id is not a string" },
    { { registrationTimeUTC = "now" }, "bad registration time" },
    { { payload = { metadata = "x" } }, "meta is not an object" },
    { { payload = { metadata = { a = { 1 } } } }, "bad meta value" },
    { { payload = { ["@class"] = 1 } }, "bad payload class" },
  }
  for i, c in ipairs(bad) do
    it("rejects bad field case " .. i .. " (" .. c[2] .. ")", function()
      assert.same({ nil, c[2] }, { curator.decode(ID, doc(c[1])) })
    end)
  end

  it("rejects bad JSON, truncation and missing data", function()
    assert.same({ nil, "bad json" }, { curator.decode(ID, EXAMPLE:sub(1, 100)) })
    assert.same({ nil, "bad json" }, { curator.decode(ID, "[1,2") })
    assert.same({ nil, "bad json" }, { curator.decode(ID, "42") })
    assert.same({ nil, "no data" }, { curator.decode(ID, nil) })
    assert.same({ nil, "bad name" }, { curator.decode("", EXAMPLE) })
    assert.same({ nil, "bad json" }, { curator.decode(ID, '{"address":"h","port":NaN}') })
  end)

  it("encodes every field Curator expects, with a Spring payload", function()
    local n, data = curator.encode({ host = "10.0.0.5", port = 8080, meta = { zone = "a" } },
      { name = "orders", id = "i-1", now = 1628750040704 })
    assert.equal("i-1", n)
    local t = E.json.decode(data)
    assert.equal("orders", t.name)
    assert.equal("i-1", t.id)
    assert.equal("10.0.0.5", t.address)
    assert.equal(8080, t.port)
    assert.equal(E.null, t.sslPort)
    assert.equal(curator.SPRING_PAYLOAD, t.payload["@class"])
    assert.same({ zone = "a" }, t.payload.metadata)
    assert.equal(1628750040704, t.registrationTimeUTC)
    assert.equal("DYNAMIC", t.serviceType)
    assert.is_table(t.uriSpec.parts)
    assert.is_true(t.enabled)
    -- field order is Curator's own
    assert.matches('^{"name":"orders","id":"i%-1","address":"10.0.0.5","port":8080,"sslPort":null,"payload":', data)
  end)

  it("derives the service name from opts.path, ids from ep.id or a UUID", function()
    local n, data = curator.encode({ host = "h", port = 1 }, { path = "/services/orders/" })
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", n)
    assert.equal(36, #n)
    assert.equal("orders", E.json.decode(data).name)
    n = curator.encode({ id = "fixed", host = "h", port = 1 }, { name = "x" })
    assert.equal("fixed", n)
    assert.is_not.equal(curator.uuid(), curator.uuid())
  end)

  it("writes enabled=false for endpoints that are not up, and a null payload on request", function()
    local _, data = curator.encode({ host = "h", port = 1, status = "disabled" }, { name = "x", payload_class = false })
    local t = E.json.decode(data)
    assert.is_false(t.enabled)
    assert.equal(E.null, t.payload)
  end)

  it("raises on caller mistakes", function()
    assert.has_error(function() curator.encode({ host = "h", port = 1 }) end)
    assert.has_error(function() curator.encode({ host = "h", port = 1 }, { name = "x", id = "a/b" }) end)
    assert.has_error(function() curator.encode({ host = "h", port = 1, meta = { a = 1 } }, { name = "x" }) end)
  end)

  it("round-trips random endpoints", function()
    local r = H.rng(13)
    for _ = 1, 1000 do
      local ep = H.random_endpoint(r, { nasty = true, weight = 1 })
      local n, data = curator.encode(ep, { name = "svc", id = "id-" .. r.int(1, 1e6) })
      local back = H.assert_endpoint(curator.decode(n, data), n)
      assert.same({ ep.host, ep.port, ep.weight, ep.meta, ep.status },
        { back.host, back.port, back.weight, back.meta, back.status })
    end
  end)
end)
