-- helpers behind the codecs: percent-encoding (Java and Go flavours), base64, endpoint checks.

local url = require "scout.util.url"
local b64 = require "scout.util.base64"
local E = require "scout.util.endpoint"
local H = require "codec_helper"

describe("scout.util.url", function()
  it("decodes escapes and optionally plus as space", function()
    assert.equal("a b/c", url.decode("a+b%2Fc", true))
    assert.equal("a+b/c", url.decode("a+b%2fc"))
    assert.equal("\0\255", url.decode("%00%FF"))
    assert.equal("", url.decode(""))
  end)

  it("rejects every malformed escape", function()
    for _, s in ipairs({ "%", "%2", "%zz", "%2g", "a%", "%%41", "%4%41", "%-1" }) do
      assert.same({ nil, "bad percent escape" }, { url.decode(s, true) }, s)
    end
    assert.same({ nil, "not a string" }, { url.decode(nil) })
  end)

  it("encodes like java.net.URLEncoder", function()
    assert.equal("dubbo%3A%2F%2F1.2.3.4%3A80%2Fa.B%3Fx%3D1%26y%3Da%2Cb",
      url.encode_java("dubbo://1.2.3.4:80/a.B?x=1&y=a,b"))
    assert.equal("a+b*-_.%7E%E2%82%AC", url.encode_java("a b*-_.~\226\130\172"))
  end)

  it("encodes like Go's url.QueryEscape", function()
    assert.equal("a+b%2A-_.~%E2%82%AC%2B%26%3D%2F%3A%3B%40", url.encode_go("a b*-_.~\226\130\172+&=/:;@"))
  end)

  it("parses queries like url.ParseQuery", function()
    assert.same({ a = { "1", "3" }, b = { "" }, ["c d"] = { "e=f" } }, url.parse_query("a=1&b&&c+d=e=f&a=3"))
    assert.same({}, url.parse_query(""))
    assert.same({ nil, "invalid semicolon separator in query" }, { url.parse_query("a=1;b=2") })
    assert.same({ nil, "bad percent escape" }, { url.parse_query("a=%") })
  end)

  it("encodes values like url.Values.Encode", function()
    assert.equal("a=1&a=2&b=x+y&c%26=%3D", url.encode_values({ b = "x y", a = { "1", "2" }, ["c&"] = "=" }))
    assert.equal("", url.encode_values({}))
  end)

  it("round-trips random bytes through both encoders", function()
    local r = H.rng(16)
    for _ = 1, 3000 do
      local s = r.bytes(r.int(0, 30))
      assert.equal(s, url.decode(url.encode_java(s), true))
      assert.equal(s, url.decode(url.encode_go(s), true))
    end
  end)
end)

describe("scout.util.base64", function()
  it("matches RFC 4648 test vectors", function()
    local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
      foobar = "Zm9vYmFy" }
    for k, e in pairs(v) do
      assert.equal(e, b64.encode(k))
      assert.equal(k, b64.decode(e))
      assert.equal(k, b64.decode_url(e))
    end
    assert.equal("__79", b64.encode_url("\255\254\253"))
    assert.equal("//79", b64.encode("\255\254\253"))
  end)

  it("rejects bad input", function()
    for _, s in ipairs({ "Z", "Zg===", "Z=g=", "Zm9v=", "Zm9v!", "Zm 9v", "==" }) do
      assert.same({ nil, "bad base64" }, { b64.decode_url(s) }, s)
    end
    assert.same({ nil, "bad base64" }, { b64.decode_url("//79") })   -- not the url alphabet
    assert.same({ nil, "bad base64" }, { b64.decode(nil) })
  end)

  it("round-trips random bytes, padded and not", function()
    local r = H.rng(17)
    for _ = 1, 3000 do
      local s = r.bytes(r.int(0, 40))
      assert.equal(s, b64.decode(b64.encode(s)))
      assert.equal(s, b64.decode_url(b64.encode_url(s)))
      assert.equal(s, b64.decode_url(b64.encode_url(s, true)))
    end
  end)
end)

describe("scout.util.endpoint", function()
  it("splits host:port and bracketed IPv6", function()
    assert.same({ "h", 80 }, { E.split_hostport("h:80") })
    assert.same({ "::1", 80 }, { E.split_hostport("[::1]:80") })
    assert.same({ nil, "bad address" }, { E.split_hostport("::1:80") })
    assert.same({ nil, "bad address" }, { E.split_hostport("[h]:80") })
    assert.same({ nil, "bad port" }, { E.split_hostport("h:080000") })
    assert.equal("[::1]:80", E.join_hostport("::1", 80))
  end)

  it("validates ports and weights strictly", function()
    assert.equal(1, E.port(1))
    assert.equal(65535, E.port(65535))
    for _, v in ipairs({ 0, -1, 65536, 1.5, 0 / 0, 1 / 0, -1 / 0 }) do assert.is_nil(E.port(v)) end
    assert.is_nil(E.port("80"))
    assert.equal(7, E.weight(nil, 7))
    assert.equal(2147483647, E.weight(2147483647))
    assert.is_nil(E.weight(2147483648))
    assert.is_nil(E.weight(0 / 0))
  end)

  it("turns JSON scalars into meta strings", function()
    assert.same({ a = "1", b = "1.5", c = "true", d = "x", e = "1e+300" },
      E.meta_from_json({ a = 1, b = 1.5, c = true, d = "x", e = 1e300 }))
    assert.same({ nil, "bad meta value" }, { E.meta_from_json({ a = 0 / 0 }) })
  end)

  it("survives deep nesting and large inputs", function()
    assert.same({ nil, "bad json" }, { E.decode_object(string.rep("[", 100000)) })
    assert.same({ nil, "bad json" }, { E.decode_object(string.rep("{\"a\":", 10000) .. "1" .. string.rep("}", 10000)) })
    local big = '{"host":"h","port":1,"meta":{"a":"' .. string.rep("x", 1000000) .. '"}}'
    assert.equal(1000000, #require("scout.codec.plain").decode("n", big).meta.a)
    assert.equal("", E.trim(string.rep(" ", 100000)))
  end)

  it("trims every ASCII space at either end, and returns untouched data as it is", function()
    for _, ws in ipairs({ " ", "\t", "\n", "\v", "\f", "\r" }) do
      assert.equal("x y", E.trim(ws .. "x y"))
      assert.equal("x y", E.trim("x y" .. ws))
      assert.equal("", E.trim(ws))
    end
    assert.equal("{\"a\":1}", E.trim("{\"a\":1}"))
    assert.equal("x", E.trim("x"))
    assert.equal("", E.trim(""))
    assert.equal("\1x\31", E.trim("\1x\31"))   -- control bytes that are not %s stay
  end)

  it("checks encoder input and raises at the caller's level", function()
    local ok, err = pcall(E.check, { host = "h", port = 0 })
    assert.is_false(ok)
    assert.matches("bad port", err)
    assert.has_error(function() E.check({ host = "h", port = 1, status = "UP" }) end)
    assert.has_error(function() E.check({ host = "h", port = 1, meta = { a = true } }) end)
  end)

  -- issue 14: 100k endpoints without meta share one empty table instead of a table each
  it("gives endpoints without meta one shared, read-only empty meta; a copy gets its own", function()
    local plain = require "scout.codec.plain"
    local a = plain.decode("a", "10.0.0.1:80")
    local b = plain.decode("b", "10.0.0.2:80")
    assert.same({}, a.meta)
    assert.equals(a.meta, b.meta)
    assert.equals(E.EMPTY_META, E.new("c", "h", 1, 1).meta)
    local ok, err = pcall(function() a.meta.zone = "x" end)
    assert.is_false(ok)
    assert.matches("shared empty one", err)
    assert.is_nil(next(b.meta))                    -- nothing leaked into the others
    local c = E.copy(a)
    c.meta.zone = "x"
    assert.equals("x", c.meta.zone)
    assert.is_nil(a.meta.zone)
    local m = plain.decode("d", '{"host":"10.0.0.1","port":80,"meta":{"zone":"a"}}').meta
    assert.are_not.equal(E.EMPTY_META, m)
    m.extra = "y"                                  -- a meta of its own stays writable
    assert.equals("y", m.extra)
  end)

  -- a custom codec may build its meta after E.new: an empty table it passed must stay its own, or what it adds
  -- is lost without a word
  it("keeps an empty meta table a codec passes, so what it adds later is kept", function()
    local m = {}
    local ep = E.new("c", "h", 1, 1, m)
    m.zone = "a"
    assert.equals("a", ep.meta.zone)
  end)
end)
