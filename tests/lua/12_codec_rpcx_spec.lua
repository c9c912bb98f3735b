-- rpcx codec: network@addr names and url.Values data.

local H = require "codec_helper"
local rpcx = require "scout.codec.rpcx"

describe("rpcx codec", function()
  it("always needs data", function()
    assert.is_true(rpcx.needs_data("tcp@127.0.0.1:8972"))
  end)

  it("decodes the published example", function()
    local data = "calls=12.50&connections=3.00&group=online&weight=7"
    local ep = H.assert_endpoint(rpcx.decode("tcp@127.0.0.1:8972", data), "tcp@127.0.0.1:8972")
    assert.equal("127.0.0.1", ep.host)
    assert.equal(8972, ep.port)
    assert.equal(7, ep.weight)
    assert.equal("up", ep.status)
    assert.same({ calls = "12.50", connections = "3.00", group = "online", weight = "7", network = "tcp" }, ep.meta)
  end)

  it("decodes the pre-2020 tps format and empty or missing data", function()
    local ep = H.assert_endpoint(rpcx.decode("tcp@10.0.0.1:8972", "tps=0"))
    assert.equal("0", ep.meta.tps)
    assert.equal(1, ep.weight)
    ep = H.assert_endpoint(rpcx.decode("tcp@10.0.0.1:8972", ""))
    assert.same({ network = "tcp" }, ep.meta)
    H.assert_endpoint(rpcx.decode("tcp@10.0.0.1:8972", nil))
  end)

  it("hides state=inactive and nothing else", function()
    assert.equal("inactive", rpcx.decode("tcp@h:1", "state=inactive").status)
    assert.equal("up", rpcx.decode("tcp@h:1", "state=active").status)
    assert.equal("up", rpcx.decode("tcp@h:1", "state=").status)
  end)

  it("joins repeated keys and decodes escapes like Go", function()
    local ep = H.assert_endpoint(rpcx.decode("tcp@h:1", "group=a&group=b&note=x+y%2Fz&flag"))
    assert.equal("a,b", ep.meta.group)
    assert.equal("x y/z", ep.meta.note)
    assert.equal("", ep.meta.flag)
  end)

  it("handles quic, IPv6 and other networks", function()
    local ep = H.assert_endpoint(rpcx.decode("quic@[::1]:8972", ""))
    assert.equal("::1", ep.host)
    assert.equal("quic", ep.meta.network)
    ep = H.assert_endpoint(rpcx.decode("kcp@example.com:9000", ""))
    assert.equal("example.com", ep.host)
  end)

  local bad = {
    { "unix@/tmp/rpcx.sock", "", "no port in unix address" },
    { "127.0.0.1:8972", "", "no network in name" },
    { "@127.0.0.1:8972", "", "bad network" },
    { "tc p@127.0.0.1:8972", "", "bad network" },
    { "tcp@127.0.0.1", "", "bad address" },
    { "tcp@:8972", "", "empty host" },
    { "tcp@::1:8972", "", "bad address" },
    { "tcp@h:0", "", "bad port" },
    { "tcp@h:65536", "", "bad port" },
    { "tcp@h:1", "a=%zz", "bad percent escape" },
    { "tcp@h:1", "a=%4", "bad percent escape" },
    { "tcp@h:1", "%=1", "bad percent escape" },
    { "tcp@h:1", "a=1;b=2", "invalid semicolon separator in query" },
    { "tcp@h:1", "weight=x", "bad weight" },
    { "tcp@h:1", "weight=1.5", "bad weight" },
    { "tcp@h:1", "weight=99999999999", "bad weight" },
    { "", "", "bad name" },
  }
  for _, c in ipairs(bad) do
    it("rejects " .. c[1] .. " / " .. c[2], function()
      assert.same({ nil, c[3] }, { rpcx.decode(c[1], c[2]) })
    end)
  end

  it("clamps a negative weight to 0 and keeps the first weight", function()
    assert.equal(0, rpcx.decode("tcp@h:1", "weight=-3").weight)
    assert.equal(2, rpcx.decode("tcp@h:1", "weight=2&weight=9").weight)
  end)

  it("rejects non-string data", function()
    assert.same({ nil, "data is not a string" }, { rpcx.decode("tcp@h:1", {}) })
  end)

  it("encodes like url.Values.Encode (sorted keys, Go escaping)", function()
    local n, data = rpcx.encode({ host = "127.0.0.1", port = 8972, weight = 7,
      meta = { group = "online", connections = "3.00", calls = "12.50", note = "a b/c~" } })
    assert.equal("tcp@127.0.0.1:8972", n)
    assert.equal("calls=12.50&connections=3.00&group=online&note=a+b%2Fc~&weight=7", data)
    n, data = rpcx.encode({ host = "::1", port = 1, status = "inactive" }, { network = "quic" })
    assert.equal("quic@[::1]:1", n)
    assert.equal("state=inactive", data)
    local _, empty = rpcx.encode({ host = "h", port = 1 })
    assert.equal("", empty)
    assert.has_error(function() rpcx.encode({ host = "h", port = 1 }, { network = "unix" }) end)
    assert.has_error(function() rpcx.encode({ host = "h", port = 70000 }) end)
  end)

  it("round-trips nasty meta values", function()
    local r = H.rng(12)
    for _ = 1, 500 do
      local ep = H.random_endpoint(r, { nasty = true })
      local n, data = rpcx.encode(ep)
      local back = H.assert_endpoint(rpcx.decode(n, data), n)
      assert.equal(ep.host, back.host)
      assert.equal(ep.port, back.port)
      assert.equal(ep.weight, back.weight)
      for k, v in pairs(ep.meta) do assert.equal(v, back.meta[k]) end
    end
  end)
end)
