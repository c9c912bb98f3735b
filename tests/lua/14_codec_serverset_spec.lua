-- serverset codec: Finagle / Aurora members.

local H = require "codec_helper"
local serverset = require "scout.codec.serverset"
local E = require "scout.util.endpoint"

local M7 = "member_0000000007"
local EXAMPLE = '{"serviceEndpoint":{"host":"h1","port":31943},'
  .. '"additionalEndpoints":{"http":{"host":"h1","port":31943},'
  .. '"aurora":{"host":"h1","port":31944}},"status":"ALIVE","shard":0}'

local function doc(over)
  local t = E.json.decode(EXAMPLE)
  for k, v in pairs(over) do
    if v == "nil" then t[k] = nil else t[k] = v end
  end
  return E.json.encode(t)
end

describe("serverset codec", function()
  it("needs data only for members", function()
    assert.is_true(serverset.needs_data(M7))
    assert.is_false(serverset.needs_data("lock-1"))
    assert.is_false(serverset.needs_data(nil))
  end)

  it("decodes the published example", function()
    local ep = H.assert_endpoint(serverset.decode(M7, EXAMPLE), M7)
    assert.same({ id = M7, host = "h1", port = 31943, weight = 1, meta = { shard = "0" }, status = "up" }, ep)
  end)

  it("skips children that are not members", function()
    assert.same({ nil, "not a member" }, { serverset.decode("lock-0001", EXAMPLE) })
    assert.same({ nil, "not a member" }, { serverset.decode("Member_1", EXAMPLE) })
  end)

  it("maps every status, only ALIVE serving", function()
    for _, s in ipairs({ "DEAD", "STARTING", "STOPPING", "STOPPED", "WARNING", "UNKNOWN" }) do
      assert.equal(s:lower(), serverset.decode(M7, doc({ status = s })).status)
    end
    assert.same({ nil, "bad status" }, { serverset.decode(M7, doc({ status = "alive" })) })
    assert.same({ nil, "bad status" }, { serverset.decode(M7, doc({ status = "nil" })) })
    assert.same({ nil, "bad status" }, { serverset.decode(M7, doc({ status = 1 })) })
  end)

  it("selects a named additional endpoint", function()
    assert.equal(31944, serverset.decode(M7, EXAMPLE, { endpoint = "aurora" }).port)
    assert.same({ nil, "no endpoint thrift" }, { serverset.decode(M7, EXAMPLE, { endpoint = "thrift" }) })
    assert.same({ nil, "no endpoint http" },
      { serverset.decode(M7, doc({ additionalEndpoints = "nil" }), { endpoint = "http" }) })
  end)

  it("puts metadata and shard into meta, shard winning", function()
    local ep = serverset.decode(M7, doc({ metadata = { dc = "west", shard = "9" }, shard = 3 }))
    assert.same({ dc = "west", shard = "3" }, ep.meta)
    ep = H.assert_endpoint(serverset.decode(M7, doc({ shard = "nil" })))
    assert.same({}, ep.meta)
  end)

  local bad = {
    { { serviceEndpoint = "nil" }, "no service endpoint" },
    { { serviceEndpoint = E.null }, "no service endpoint" },
    { { serviceEndpoint = "h1:80" }, "endpoint is not an object" },
    { { serviceEndpoint = { host = "h1" } }, "port is not a number" },
    { { serviceEndpoint = { port = 80 } }, "host is not a string" },
    { { serviceEndpoint = { host = "h1", port = 0 } }, "bad port" },
    { { serviceEndpoint = { host = "h1", port = 65536 } }, "bad port" },
    { { serviceEndpoint = { host = "h1", port = 80.5 } }, "bad port" },
    { { additionalEndpoints = 5 }, "bad additional endpoints" },
    { { shard = -1 }, "bad shard" },
    { { shard = 0.5 }, "bad shard" },
    { { shard = "0" }, "bad shard" },
    { { metadata = { a = { b = 1 } } }, "bad meta value" },
    { { metadata = 3 }, "meta is not an object" },
  }
  for i, c in ipairs(bad) do
    it("rejects bad field case " .. i .. " (" .. c[2] .. ")", function()
      assert.same({ nil, c[2] }, { serverset.decode(M7, doc(c[1])) })
    end)
  end

  it("rejects bad JSON and missing data", function()
    assert.same({ nil, "bad json" }, { serverset.decode(M7, EXAMPLE:sub(1, -2)) })
    assert.same({ nil, "no data" }, { serverset.decode(M7, nil) })
    assert.same({ nil, "bad name" }, { serverset.decode(nil, EXAMPLE) })
  end)

  it("encodes a member prefix to create sequentially", function()
    local n, data, flags = serverset.encode({ host = "h1", port = 31943, meta = { shard = "2", dc = "west" } },
      { additional = { http = { host = "h1", port = 8080 } } })
    assert.equal("member_", n)
    assert.same({ sequential = true }, flags)
    assert.equal('{"serviceEndpoint":{"host":"h1","port":31943},"additionalEndpoints":{"http":{"host":"h1",'
      .. '"port":8080}},"status":"ALIVE","shard":2,"metadata":{"dc":"west"}}', data)
    local _, d2 = serverset.encode({ host = "h1", port = 1, status = "starting" })
    assert.equal("STARTING", E.json.decode(d2).status)
    assert.has_error(function() serverset.encode({ host = "h1", port = 1, status = "disabled" }) end)
    assert.has_error(function() serverset.encode({ host = "h1", port = 1, meta = { shard = "x" } }) end)
    assert.has_error(function()
      serverset.encode({ host = "h1", port = 1 }, { additional = { x = { host = "h" } } })
    end)
  end)

  it("round-trips random endpoints", function()
    local r = H.rng(14)
    local statuses = { "up", "dead", "starting", "stopping", "stopped", "warning", "unknown" }
    for i = 1, 1000 do
      local ep = H.random_endpoint(r, { nasty = true, weight = 1 })
      ep.status = r.pick(statuses)
      if r.int(0, 1) == 1 then ep.meta.shard = tostring(r.int(0, 1000)) end
      local prefix, data = serverset.encode(ep)
      local n = prefix .. string.format("%010d", i)
      local back = H.assert_endpoint(serverset.decode(n, data), n)
      assert.same({ ep.host, ep.port, ep.weight, ep.meta, ep.status },
        { back.host, back.port, back.weight, back.meta, back.status })
    end
  end)
end)
