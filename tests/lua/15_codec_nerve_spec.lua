-- nerve codec: SmartStack registrations, plain and path-encoded.

local H = require "codec_helper"
local nerve = require "scout.codec.nerve"
local b64 = require "scout.util.base64"
local E = require "scout.util.endpoint"

local EXAMPLE = '{"host":"1.2.3.4","port":3000,"name":"i-abc","weight":2,"haproxy_server_options":"backup",'
  .. '"labels":{"az":"us-east-1a"}}'

local function encoded_name(json, seq)
  local enc = b64.encode_url(json)
  return "base64_" .. #enc .. "_" .. enc .. "_" .. (seq or "0000000003")
end

describe("nerve codec", function()
  it("decodes the published example from data", function()
    assert.is_true(nerve.needs_data("i-abc_0000000001"))
    local ep = H.assert_endpoint(nerve.decode("i-abc_0000000001", EXAMPLE), "i-abc_0000000001")
    assert.same({ id = "i-abc_0000000001", host = "1.2.3.4", port = 3000, weight = 2, status = "up",
      meta = { name = "i-abc", haproxy_server_options = "backup", az = "us-east-1a" } }, ep)
  end)

  it("decodes path-encoded names without data", function()
    local n = encoded_name(EXAMPLE)
    assert.is_false(nerve.needs_data(n))
    local ep = H.assert_endpoint(nerve.decode(n, nil), n)
    assert.equal("1.2.3.4", ep.host)
    assert.equal(3000, ep.port)
    assert.equal("us-east-1a", ep.meta.az)
  end)

  it("decodes Synapse's own test vector (string port, padded base64)", function()
    local json = '{"host":"127.0.0.1","port":"3000","labels":{"region":"us-east-1","az":"us-east-1b2"}}'
    local n = encoded_name(json)
    assert.matches("=_0000000003$", n)   -- Ruby pads; the padding is part of len
    local ep = H.assert_endpoint(nerve.decode(n))
    assert.equal(3000, ep.port)
    assert.same({ region = "us-east-1", az = "us-east-1b2" }, ep.meta)
  end)

  it("decodes unpadded base64 and names without a sequence", function()
    local enc = b64.encode_url('{"host":"h","port":1}', true)
    H.assert_endpoint(nerve.decode("base64_" .. #enc .. "_" .. enc .. "_"))
  end)

  it("falls back to data when the encoded name is broken, as Synapse does", function()
    local n = "base64_11_notbase64!!_0000000001"
    assert.is_true(nerve.needs_data(n))
    local ep = H.assert_endpoint(nerve.decode(n, EXAMPLE), n)
    assert.equal("1.2.3.4", ep.host)
    assert.same({ nil, "bad base64" }, { nerve.decode(n, nil) })
  end)

  local bad_names = {
    { "base64_999_abc_1", "bad path encoding" },
    { "base64_x_abc_1", "bad path encoding" },
    { "base64_4_Zm9v_x", "bad path encoding" },
    { "base64_4_Zm9v_1", "bad json" },
    { "base64_5_Zm9v=_1", "bad base64" },
    { "base64_" .. #b64.encode_url('{"host":"h"}') .. "_" .. b64.encode_url('{"host":"h"}') .. "_1", "no port" },
    { "i-abc_0000000001", "no data" },
  }
  for _, c in ipairs(bad_names) do
    it("rejects name " .. c[1], function()
      assert.same({ nil, c[2] }, { nerve.decode(c[1], nil) })
    end)
  end

  local bad = {
    { '{"port":1}', "host is not a string" },
    { '{"host":"h"}', "no port" },
    { '{"host":"h","port":0}', "bad port" },
    { '{"host":"h","port":"65536"}', "bad port" },
    { '{"host":"h","port":"80a"}', "port is not a number" },
    { '{"host":"h","port":true}', "port is not a number" },
    { '{"host":"h","port":1,"weight":-1}', "bad weight" },
    { '{"host":"h","port":1,"weight":"x"}', "weight is not a number" },
    { '{"host":"h","port":1,"labels":[1]}', "meta is not an object" },
    { '{"host":"h","port":1,"name":{}}', "bad name" },
    { '{"host":"h","port":1,"haproxy_server_options":[]}', "bad haproxy_server_options" },
    { '{"host":"h","port":1', "bad json" },
    { '', "bad json" },
  }
  for _, c in ipairs(bad) do
    it("rejects data " .. c[1], function()
      assert.same({ nil, c[2] }, { nerve.decode("x_1", c[1]) })
    end)
  end

  it("encodes plain names with data, and the path-encoded form", function()
    local ep = { host = "1.2.3.4", port = 3000, weight = 2,
      meta = { name = "i-abc", haproxy_server_options = "backup", az = "us-east-1a" } }
    local n, data, flags = nerve.encode(ep)
    assert.equal("i-abc_", n)
    assert.same({ sequential = true }, flags)
    assert.equal(EXAMPLE, data)
    n, data = nerve.encode(ep, { path_encoding = true })
    assert.equal(encoded_name(EXAMPLE, ""), n)
    assert.equal(EXAMPLE, data)
    n = nerve.encode({ host = "h", port = 1 }, { instance_id = "web-7" })
    assert.equal("web-7_", n)
    assert.has_error(function() nerve.encode({ host = "h", port = 1, status = "disabled" }) end)
    assert.has_error(function() nerve.encode({ host = "h", port = 1 }, { instance_id = "a/b" }) end)
  end)

  it("round-trips random endpoints both ways", function()
    local r = H.rng(15)
    for i = 1, 1000 do
      local ep = H.random_endpoint(r, { nasty = true })
      local pe = r.int(0, 1) == 1
      local prefix, data = nerve.encode(ep, { path_encoding = pe, instance_id = "i-" .. i })
      local n = prefix .. string.format("%010d", i)
      assert.equal(not pe, nerve.needs_data(n))
      local back = H.assert_endpoint(nerve.decode(n, pe and nil or data), n)
      local want = {}
      for k, v in pairs(ep.meta) do want[k] = v end
      want.name = "i-" .. i
      assert.same({ ep.host, ep.port, ep.weight, want }, { back.host, back.port, back.weight, back.meta })
    end
  end)

  it("keeps E.json strict about numbers", function()
    assert.is_nil(E.json.decode('{"port":Infinity}'))
  end)
end)
