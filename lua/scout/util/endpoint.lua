-- Shared checks for codecs: every decoder builds its endpoint through here so that "a decoded endpoint is always
-- fully valid" holds in one place. Decoders get `nil, err` for bad input and never raise; encoders call
-- `M.check(ep)` and raise on caller mistakes. Also holds the one JSON instance codecs share (strict: no NaN,
-- no Infinity, no hex numbers), so codec behaviour does not depend on how the host process configured cjson.

local type = type
local tostring = tostring
local pairs = pairs
local floor = math.floor
local find = string.find
local sub = string.sub
local byte = string.byte
local match = string.match
local tonumber = tonumber
local format = string.format
local sort = table.sort
local concat = table.concat
local error = error
local setmetatable = setmetatable
local next = next

local cjson = require "cjson.safe"

local M = {}

local json = cjson.new()
json.decode_invalid_numbers(false)
json.decode_max_depth(64)
json.encode_invalid_numbers(false)
json.encode_sparse_array(true)
M.json = json
M.null = json.null or cjson.null

-- Every endpoint without meta shares this one empty table (a table each was 64 bytes an endpoint: 6 MB at 100k
-- endpoints). Writing into it would reach all of them, so it refuses; M.copy gives an endpoint a meta of its own.
M.EMPTY_META = setmetatable({}, {
  __newindex = function()
    error("this endpoint's meta is the shared empty one: copy the endpoint (or set ep.meta = {...}) first", 2)
  end,
  __metatable = false,
})
local EMPTY_META = M.EMPTY_META

M.MAX_WEIGHT = 2147483647  -- Java int, what dubbo and Curator can carry

local MAX_HOST = 255

-- the bytes a host may hold (what endpoint.c's host_valid allows too)
local HOST_BYTE = {}
for c in ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%"):gmatch(".") do
  HOST_BYTE[byte(c)] = true
end

-- host: hostname, IPv4, IPv6 (without brackets, optional %zone). Characters only; no DNS-level checking.
function M.host(h)
  if type(h) ~= "string" then return nil, "host is not a string" end
  local n = #h
  if n == 0 then return nil, "empty host" end
  if n > MAX_HOST then return nil, "host too long" end
  -- [%w%.%-_:%%] byte by byte: compiled, where find's class pattern is not (LuaJIT's %w is ASCII, as here); a sync
  -- checks a host per child
  for k = 1, n do
    if not HOST_BYTE[byte(h, k)] then return nil, "bad host" end
  end
  return h
end

-- port from a JSON value: an integral number in 1..65535.
function M.port(v)
  if type(v) ~= "number" then return nil, "port is not a number" end
  if not (v >= 1 and v <= 65535) or v ~= floor(v) then return nil, "bad port" end
  return v
end

-- port from text (names, url params): 1-5 decimal digits, 1..65535.
function M.port_str(s)
  if type(s) ~= "string" or not find(s, "^%d%d?%d?%d?%d?$") then return nil, "bad port" end
  local v = tonumber(s)
  if v < 1 or v > 65535 then return nil, "bad port" end
  return v
end

-- weight from a JSON value (integral number 0..MAX_WEIGHT); nil -> default.
function M.weight(v, default)
  if v == nil or v == M.null then return default end
  if type(v) ~= "number" then return nil, "weight is not a number" end
  if not (v >= 0 and v <= M.MAX_WEIGHT) or v ~= floor(v) then return nil, "bad weight" end
  return v
end

local function scalar_str(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == 1 / 0 or v == -1 / 0 then return nil end
    if v == floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 then return format("%d", v) end
    local s = format("%.14g", v)
    if tonumber(s) ~= v then s = format("%.17g", v) end
    return s
  end
  return nil
end
M.scalar_str = scalar_str

-- meta from a decoded JSON object: string keys; string/number/boolean values become strings, null is dropped,
-- nested tables are an error (nothing we could put in a flat string map without inventing a format).
function M.meta_from_json(t, into)
  into = into or {}
  if t == nil or t == M.null then return into end
  if type(t) ~= "table" then return nil, "meta is not an object" end
  for k, v in pairs(t) do
    if type(k) ~= "string" then return nil, "meta is not an object" end
    if v ~= M.null then
      local s = scalar_str(v)
      if not s then return nil, "bad meta value" end
      into[k] = s
    end
  end
  return into
end

local function status_ok(s)
  return type(s) == "string" and #s <= 32 and find(s, "^[a-z][a-z0-9_]*$") ~= nil
end
M.status_ok = status_ok

-- For encoders: an endpoint to write; id may be absent (encoders compute the name), weight/meta/status default.
function M.check(ep, level)
  level = (level or 1) + 1
  if type(ep) ~= "table" then error("endpoint must be a table", level) end
  local ok, err = M.host(ep.host)
  if not ok then error("endpoint " .. err, level) end
  ok, err = M.port(ep.port)
  if not ok then error("endpoint " .. err, level) end
  if ep.weight ~= nil then
    ok, err = M.weight(ep.weight)
    if not ok then error("endpoint " .. err, level) end
  end
  if ep.meta ~= nil then
    if type(ep.meta) ~= "table" then error("endpoint meta must be a table", level) end
    for k, v in pairs(ep.meta) do
      if type(k) ~= "string" or type(v) ~= "string" then error("endpoint meta must map strings to strings", level) end
    end
  end
  if ep.status ~= nil and not status_ok(ep.status) then
    error("endpoint status must be a short lowercase word", level)
  end
  return ep
end

-- A meta table the caller passes stays the endpoint's own, even empty (a codec may fill it after this call); the
-- runtime swaps an empty one for EMPTY_META when it takes the endpoint.
function M.new(id, host, port, weight, meta, status)
  if meta == nil then meta = EMPTY_META end
  return { id = id, host = host, port = port, weight = weight, meta = meta, status = status or "up" }
end

-- "host:port" or "[v6]:port" -> host, port. Bare IPv6 without brackets is ambiguous and rejected.
function M.split_hostport(s)
  if type(s) ~= "string" then return nil, "bad address" end
  -- both forms need a colon: a name like "ep-1" (plain's ids, asked twice a child in a sync) skips the patterns
  if not find(s, ":", 1, true) then return nil, "bad address" end
  local host, port
  if sub(s, 1, 1) == "[" then
    host, port = match(s, "^%[([^%]]*)%]:([^:]*)$")
    if not host or not find(host, ":", 1, true) then return nil, "bad address" end
  else
    host, port = match(s, "^([^:]*):([^:]*)$")
    if not host then return nil, "bad address" end
  end
  local h, err = M.host(host)
  if not h then return nil, err end
  local p
  p, err = M.port_str(port)
  if not p then return nil, err end
  return h, p
end

function M.join_hostport(host, port)
  if find(host, ":", 1, true) then return "[" .. host .. "]:" .. format("%d", port) end
  return host .. ":" .. format("%d", port)
end

function M.copy(ep)
  local meta = {}
  for k, v in pairs(ep.meta or {}) do meta[k] = v end
  local out = {}
  for k, v in pairs(ep) do out[k] = v end
  out.meta = meta
  return out
end

-- Trim ASCII whitespace without a backtracking pattern (linear on any input). Most data has none at either end
-- (bytes above 32 are never %s): returned as it is, without the pattern calls (a sync decodes every child).
function M.trim(s)
  local b1, b2 = byte(s, 1), byte(s, -1)
  if b1 and b1 > 32 and b2 > 32 then return s end
  local i = find(s, "%S")
  if not i then return "" end
  local j = #s
  while find(sub(s, j, j), "^%s") do j = j - 1 end
  return sub(s, i, j)
end

-- A string map as JSON text with sorted keys, so encoders' output is stable and diffable.
function M.meta_json(meta)
  local keys = {}
  for k in pairs(meta) do keys[#keys + 1] = k end
  sort(keys)
  local parts = {}
  for i = 1, #keys do parts[i] = json.encode(keys[i]) .. ":" .. json.encode(meta[keys[i]]) end
  return "{" .. concat(parts, ",") .. "}"
end

-- Decode a JSON object; nil, err for anything else.
function M.decode_object(data)
  if type(data) ~= "string" then return nil, "no data" end
  local t = json.decode(data)
  if type(t) ~= "table" then return nil, "bad json" end
  return t
end

-- A meta value crosses into C as a string: 5 and "5" publish the same bytes (and an endpoint rebuilt from C holds
-- the string).
local function same_meta(a, b)
  for k, v in pairs(a) do
    local w = b[k]
    if w ~= v and (w == nil or tostring(w) ~= tostring(v)) then return false end
  end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- zxid_counts: the zxid is the node's mzxid (its data was read), so a rewrite with identical bytes is a new
-- version to publish; a name-only child's zxid is the listing's and says nothing about the endpoint.
function M.same(a, b, zxid_counts)
  return a.host == b.host and a.port == b.port and a.weight == b.weight and a.status == b.status
    and same_meta(a.meta, b.meta) and (not zxid_counts or a.zxid == b.zxid)
end

-- What the agent's runtime takes from any codec, a user's included (which may return anything): the error, or nil
-- with the defaults filled in (weight 1, status "up", an empty meta as the shared EMPTY_META).
function M.check_decoded(ep)
  if type(ep.host) ~= "string" or ep.host == "" then return "codec returned an endpoint without host" end
  local port = ep.port
  if type(port) ~= "number" or port ~= floor(port) or port < 1 or port > 65535 then
    return "codec returned an endpoint with a bad port"
  end
  local w = ep.weight
  if w == nil then ep.weight = 1
  elseif type(w) ~= "number" or w ~= w or w < 0 or w > 2147483647 then return "codec returned a bad weight"
  else ep.weight = floor(w) end
  if ep.status == nil then ep.status = "up"
  elseif type(ep.status) ~= "string" then return "codec returned a bad status" end
  local meta = ep.meta
  if meta == nil then ep.meta = EMPTY_META
  elseif type(meta) ~= "table" then return "codec returned a bad meta"
  elseif meta ~= EMPTY_META and next(meta) == nil then ep.meta = EMPTY_META end
end

return M
