-- Shared by the codec specs: one endpoint validator (what "a fully valid endpoint" means, checked independently of
-- scout.util.endpoint so a bug there cannot hide itself), a seeded PRNG so property tests are deterministic, and
-- generators for random endpoints and garbage inputs.

local bit = require "bit"

local type = type
local pairs = pairs
local floor = math.floor
local char = string.char
local concat = table.concat
local band, bxor, lshift, rshift, tobit = bit.band, bit.bxor, bit.lshift, bit.rshift, bit.tobit

local H = {}

-- Returns true, or false and why. Keeps its own rules on purpose.
function H.check_endpoint(ep, id)
  if type(ep) ~= "table" then return false, "not a table" end
  if type(ep.id) ~= "string" or ep.id == "" then return false, "bad id" end
  if id ~= nil and ep.id ~= id then return false, "id is not the child name" end
  if type(ep.host) ~= "string" or ep.host == "" or #ep.host > 255 then return false, "bad host" end
  if ep.host:find("[%s%c/%[%]@?#]") then return false, "host has odd characters: " .. ep.host end
  if type(ep.port) ~= "number" or ep.port ~= floor(ep.port) or ep.port < 1 or ep.port > 65535 then
    return false, "bad port"
  end
  if type(ep.weight) ~= "number" or ep.weight ~= floor(ep.weight) or ep.weight < 0 or ep.weight > 2147483647 then
    return false, "bad weight"
  end
  if type(ep.meta) ~= "table" then return false, "meta not a table" end
  for k, v in pairs(ep.meta) do
    if type(k) ~= "string" or type(v) ~= "string" then return false, "meta not string->string" end
  end
  if type(ep.status) ~= "string" or not ep.status:find("^[a-z][a-z0-9_]*$") or #ep.status > 32 then
    return false, "bad status"
  end
  for k in pairs(ep) do
    if k ~= "id" and k ~= "host" and k ~= "port" and k ~= "weight" and k ~= "meta" and k ~= "status" then
      return false, "unexpected field " .. tostring(k)
    end
  end
  return true
end

-- busted assertion wrapper
function H.assert_endpoint(ep, id)
  local ok, why = H.check_endpoint(ep, id)
  assert(ok, why)
  return ep
end

-- xorshift32: deterministic on every platform, independent of math.random's state.
function H.rng(seed)
  local s = tobit(seed ~= 0 and seed or 1)
  local r = {}
  local function nxt()
    s = bxor(s, lshift(s, 13))
    s = bxor(s, rshift(s, 17))
    s = bxor(s, lshift(s, 5))
    return s
  end
  -- integer in [lo, hi]
  function r.int(lo, hi)
    local u = band(nxt(), 0x7fffffff)
    return lo + u % (hi - lo + 1)
  end
  function r.pick(t) return t[r.int(1, #t)] end
  function r.bytes(n, alphabet)
    local out = {}
    for i = 1, n do
      if alphabet then
        local k = r.int(1, #alphabet)
        out[i] = alphabet:sub(k, k)
      else
        out[i] = char(r.int(0, 255))
      end
    end
    return concat(out)
  end
  return r
end

local WORD = "abcdefghijklmnopqrstuvwxyz0123456789"

function H.random_host(r)
  local k = r.int(1, 4)
  if k == 1 then
    return r.int(1, 254) .. "." .. r.int(0, 255) .. "." .. r.int(0, 255) .. "." .. r.int(1, 254)
  elseif k == 2 then
    return "fd00::" .. string.format("%x", r.int(1, 65535))
  elseif k == 3 then
    return r.bytes(r.int(1, 12), WORD) .. ".example.com"
  end
  return r.bytes(r.int(1, 20), WORD)
end

-- meta with keys and values safe for every codec's text (no nothing special); codecs that percent-encode get
-- nastier values from their own specs.
function H.random_meta(r, nasty)
  local meta = {}
  for _ = 1, r.int(0, 4) do
    local k = r.bytes(r.int(1, 8), WORD)
    local v = nasty and r.bytes(r.int(0, 12), WORD .. " =&%?/:,;+#\"\\{}[]\t\226\130\172")
      or r.bytes(r.int(1, 10), WORD)
    meta[k] = v
  end
  return meta
end

function H.random_endpoint(r, opts)
  opts = opts or {}
  return {
    host = H.random_host(r),
    port = r.int(1, 65535),
    weight = opts.weight or r.int(0, 1000),
    meta = H.random_meta(r, opts.nasty),
    status = "up",
  }
end

-- Garbage generator for property tests: random bytes, truncations and single-byte mutations of valid samples,
-- and token soup built from the format's own alphabet.
function H.garbage(r, samples, tokens)
  local k = r.int(1, 6)
  if k == 1 then
    return r.bytes(r.int(0, 40))
  elseif k == 2 then
    local s = r.pick(samples)
    return s:sub(1, r.int(0, #s))
  elseif k == 3 then
    local s = r.pick(samples)
    local i = r.int(1, #s)
    return s:sub(1, i - 1) .. char(r.int(0, 255)) .. s:sub(i + 1)
  elseif k == 4 then
    local s = r.pick(samples)
    local i = r.int(1, #s)
    local t = r.pick(tokens)
    return s:sub(1, i - 1) .. t .. s:sub(i + r.int(0, 3))
  elseif k == 5 then
    local out = {}
    for i = 1, r.int(1, 12) do out[i] = r.pick(tokens) end
    return concat(out)
  end
  local s = r.pick(samples)
  local i, j = r.int(1, #s), r.int(1, #s)
  if i > j then i, j = j, i end
  return s:sub(1, i) .. s:sub(j)
end

H.JSON_TOKENS = {
  "{", "}", "[", "]", ":", ",", "\"", "\"host\"", "\"port\"", "\"weight\"", "\"meta\"", "null", "true", "false",
  "0", "-1", "65536", "8080.5", "1e400", "1e2", "\"a\"", "\\u0000", "\\ud800", "\\", "NaN", "Infinity", "0x10",
  " ", "\n", "\0", "\255", "\"status\"", "\"ALIVE\"", "\"labels\"", "\"payload\"", "\"@class\"", "\"address\"",
  "\"serviceEndpoint\"", "\"additionalEndpoints\"", "{\"host\":\"h\",\"port\":1}", "\"enabled\"", "\"metadata\"",
}

H.URL_TOKENS = {
  "%", "%2", "%3A", "%2F", "%3F", "%26", "%3D", "%25", "%zz", "%00", "%FF", "&", "=", "?", ":", "/", "//", "@",
  "[", "]", "::1", "weight=", "weight=-1", "weight=99999999999", "enabled=false", "disabled=true", "warmup=",
  "timestamp=", "group=", "state=inactive", "empty://", "dubbo://", "override://", "tcp@", "unix@", "quic@", "65536",
  "0", "+", " ", "\0", "\255", "base64_", "_", "member_",
}

return H
