-- plain codec and the codec registry.

local H = require "codec_helper"
local codec = require "scout.codec"
local plain = require "scout.codec.plain"

describe("codec registry", function()
  it("lists the built-in names", function()
    assert.same({ "curator", "dubbo", "dubbo3", "nerve", "plain", "rpcx", "serverset" }, codec.names())
  end)

  it("returns the built-in codec for every name, with the full contract", function()
    for _, n in ipairs(codec.names()) do
      local c = assert(codec.get(n))
      assert.is_string(c.name)
      assert.is_function(c.needs_data)
      assert.is_function(c.decode)
      assert.is_function(c.encode)
    end
    assert.equal(plain, codec.get("plain"))
  end)

  it("rejects unknown names and wrong types without raising", function()
    local c, err = codec.get("zookeeper")
    assert.is_nil(c)
    assert.matches("unknown codec", err)
    c, err = codec.get(42)
    assert.is_nil(c)
    assert.is_string(err)
    c, err = codec.get(nil)
    assert.is_nil(c)
    assert.is_string(err)
  end)

  it("accepts a user table with decode, filling needs_data, and does not mutate it", function()
    local user = { decode = function(name) return { id = name } end }
    local c = assert(codec.get(user))
    assert.is_true(c.needs_data("x"))
    assert.equal("custom", c.name)
    assert.same({ id = "n" }, c.decode("n"))
    assert.is_nil(user.needs_data)
    assert.is_nil(user.name)
  end)

  it("accepts a boolean needs_data", function()
    local c = assert(codec.get({ name = "mine", decode = function() end, needs_data = false }))
    assert.is_false(c.needs_data("x"))
    assert.equal("mine", c.name)
  end)

  it("rejects a user table without decode or with bad fields", function()
    assert.is_nil((codec.get({ encode = function() end })))
    assert.is_nil((codec.get({ decode = "x" })))
    assert.is_nil((codec.get({ decode = function() end, needs_data = 1 })))
    assert.is_nil((codec.get({ decode = function() end, encode = 1 })))
  end)
end)

describe("plain codec", function()
  it("decodes host:port child names without data", function()
    assert.is_false(plain.needs_data("10.0.0.1:8080"))
    local ep = H.assert_endpoint(plain.decode("10.0.0.1:8080", nil), "10.0.0.1:8080")
    assert.same({ id = "10.0.0.1:8080", host = "10.0.0.1", port = 8080, weight = 1, meta = {}, status = "up" }, ep)
  end)

  it("decodes bracketed IPv6 names", function()
    assert.is_false(plain.needs_data("[::1]:80"))
    local ep = H.assert_endpoint(plain.decode("[::1]:80"))
    assert.equal("::1", ep.host)
    assert.equal(80, ep.port)
    ep = H.assert_endpoint(plain.decode("[fe80::1%eth0]:443"))
    assert.equal("fe80::1%eth0", ep.host)
  end)

  it("needs data for names that are not addresses", function()
    assert.is_true(plain.needs_data("node-1"))
    assert.is_true(plain.needs_data("::1:80"))      -- bare IPv6 is ambiguous
    assert.is_true(plain.needs_data("h:0"))
    assert.is_true(plain.needs_data("h:65536"))
    local ep, err = plain.decode("node-1", nil)
    assert.is_nil(ep)
    assert.equal("no data", err)
  end)

  it("decodes host:port data", function()
    local ep = H.assert_endpoint(plain.decode("node-1", " 10.0.0.2:9000\n"), "node-1")
    assert.equal("10.0.0.2", ep.host)
    assert.equal(9000, ep.port)
    ep = H.assert_endpoint(plain.decode("node-1", "[2001:db8::2]:9000"))
    assert.equal("2001:db8::2", ep.host)
  end)

  it("decodes JSON data with weight, meta and status", function()
    local ep = H.assert_endpoint(plain.decode("n",
      '{"host":"h.example","port":8080,"weight":5,"meta":{"zone":"a","n":3,"ok":true,"gone":null},"status":"drain"}'))
    assert.same({ id = "n", host = "h.example", port = 8080, weight = 5,
      meta = { zone = "a", n = "3", ok = "true" }, status = "drain" }, ep)
  end)

  it("defaults weight to 1 and status to up", function()
    local ep = H.assert_endpoint(plain.decode("n", '{"host":"h","port":1}'))
    assert.equal(1, ep.weight)
    assert.equal("up", ep.status)
    assert.same({}, ep.meta)
  end)

  local bad = {
    { '{"host":"h","port":8080.5}', "bad port" },
    { '{"host":"h","port":0}', "bad port" },
    { '{"host":"h","port":-80}', "bad port" },
    { '{"host":"h","port":65536}', "bad port" },
    { '{"host":"h","port":1e400}', "bad port" },
    { '{"host":"h","port":"80"}', "port is not a number" },
    { '{"host":"h","port":null}', "port is not a number" },
    { '{"host":"h"}', "port is not a number" },
    { '{"port":80}', "host is not a string" },
    { '{"host":null,"port":80}', "host is not a string" },
    { '{"host":"","port":80}', "empty host" },
    { '{"host":"a b","port":80}', "bad host" },
    { '{"host":"h/x","port":80}', "bad host" },
    { '{"host":"h","port":80,"weight":-1}', "bad weight" },
    { '{"host":"h","port":80,"weight":1.5}', "bad weight" },
    { '{"host":"h","port":80,"weight":1e300}', "bad weight" },
    { '{"host":"h","port":80,"weight":"3"}', "weight is not a number" },
    { '{"host":"h","port":80,"meta":[1]}', "meta is not an object" },
    { '{"host":"h","port":80,"meta":"x"}', "meta is not an object" },
    { '{"host":"h","port":80,"meta":{"a":{"b":1}}}', "bad meta value" },
    { '{"host":"h","port":80,"status":"UP"}', "bad status" },
    { '{"host":"h","port":80,"status":5}', "bad status" },
    { '{"host":"h","port":NaN}', "bad json" },
    { '{"host":"h","port":0x50}', "bad json" },
    { '{"host":"h","port":80', "bad json" },
    { '{"host":"h\\u0000","port":80}', "bad host" },
    { '[1,2]', "bad address" },
    { '{"a":[1,2]}', "host is not a string" },
    { "h:", "bad port" },
    { "h:99999", "bad port" },
    { "h:+80", "bad port" },
    { ":80", "empty host" },
    { "::1:80", "bad address" },
    { "[::1]80", "bad address" },
    { "[1.2.3.4]:80", "bad address" },
    { "h", "bad address" },
    { "   ", "empty data" },
    { "", "empty data" },
  }
  for _, c in ipairs(bad) do
    it("rejects " .. c[1]:gsub("%z", "\\0"), function()
      local ep, err = plain.decode("n", c[1])
      assert.is_nil(ep)
      assert.equal(c[2], err)
    end)
  end

  it("rejects non-string name and data without raising", function()
    assert.is_nil((plain.decode(nil, "h:1")))
    assert.is_nil((plain.decode("", "h:1")))
    assert.is_nil((plain.decode("n", 42)))
    assert.is_nil((plain.decode("n", {})))
  end)

  it("encodes host:port names and raises on caller mistakes", function()
    assert.same({ "10.0.0.1:80" }, { plain.encode({ host = "10.0.0.1", port = 80 }) })
    local name, data = plain.encode({ host = "::1", port = 80 })
    assert.equal("[::1]:80", name)
    assert.is_nil(data)
    assert.has_error(function() plain.encode({ host = "h", port = 0 }) end)
    assert.has_error(function() plain.encode({ port = 1 }) end)
    assert.has_error(function() plain.encode("h:1") end)
  end)

  it("round-trips random endpoints through the name", function()
    local r = H.rng(10)
    for _ = 1, 2000 do
      local ep = H.random_endpoint(r)
      local name, data = plain.encode(ep)
      assert.is_false(plain.needs_data(name))
      local got = H.assert_endpoint(plain.decode(name, data), name)
      assert.equal(ep.host, got.host)
      assert.equal(ep.port, got.port)
    end
  end)
end)
