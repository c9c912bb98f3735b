-- Percent-encoding the way the publishers we read do it, byte for byte: Java's URLEncoder/URLDecoder (dubbo znode
-- names) and Go's url.QueryEscape / url.ParseQuery / url.Values.Encode (rpcx znode data). Decoders are strict:
-- a bad escape is `nil, "bad percent escape"`, never a guess, because a half-decoded name would become a wrong
-- endpoint. Pure Lua, linear time, safe on any byte string.

local type = type
local find = string.find
local gsub = string.gsub
local sub = string.sub
local byte = string.byte
local char = string.char
local format = string.format
local sort = table.sort
local concat = table.concat
local pairs = pairs

local M = {}

-- "41" -> "A" for every two-hex-digit spelling, so gsub can use a table instead of a call per escape
local HEX = {}
for i = 0, 255 do
  local lo, up = format("%02x", i), format("%02X", i)
  HEX[lo], HEX[up] = char(i), char(i)
  HEX[sub(lo, 1, 1) .. sub(up, 2, 2)] = char(i)
  HEX[sub(up, 1, 1) .. sub(lo, 2, 2)] = char(i)
end

local IS_HEX = {}
for c = 48, 57 do IS_HEX[c] = true end
for c = 65, 70 do IS_HEX[c] = true end
for c = 97, 102 do IS_HEX[c] = true end

-- Percent-decode. plus_space: "+" means " " (form encoding; both Java's URLDecoder and Go's QueryUnescape).
-- Every "%" must start a two-hex-digit escape: a "%" followed by a non-hex, by one hex and a non-hex, or too
-- close to the end is an error.
function M.decode(s, plus_space)
  if type(s) ~= "string" then return nil, "not a string" end
  if plus_space and find(s, "+", 1, true) then s = gsub(s, "+", " ") end
  if find(s, "%", 1, true) then
    local out, n, pos = {}, 0, 1
    while true do
      local i = find(s, "%", pos, true)
      if not i then break end
      local a, b = byte(s, i + 1, i + 2)
      if not (b and IS_HEX[a] and IS_HEX[b]) then return nil, "bad percent escape" end
      if i > pos then
        n = n + 1
        out[n] = sub(s, pos, i - 1)
      end
      n = n + 1
      out[n] = HEX[sub(s, i + 1, i + 2)]
      pos = i + 3
    end
    out[n + 1] = sub(s, pos)
    return concat(out)
  end
  return s
end

local function pct(c) return format("%%%02X", byte(c)) end

-- java.net.URLEncoder.encode(s, "UTF-8"): keeps [A-Za-z0-9.*_-], space -> "+", every other byte %XX.
function M.encode_java(s)
  s = gsub(s, "[^%w%.%*_%- ]", pct)
  return (gsub(s, " ", "+"))
end

-- Go url.QueryEscape: keeps [A-Za-z0-9-_.~], space -> "+", every other byte %XX.
function M.encode_go(s)
  s = gsub(s, "[^%w%-_%.~ ]", pct)
  return (gsub(s, " ", "+"))
end

-- Go url.ParseQuery, strict: returns { key = { v1, v2, ... } }, or nil, err on the first bad pair (Go keeps going
-- and returns the first error; a caller that checks err, as we do, sees the same verdict). Since Go 1.17 a ";" in
-- a key is an error.
function M.parse_query(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local out = {}
  local pos, n = 1, #s
  while pos <= n + 1 do
    local amp = find(s, "&", pos, true) or n + 1
    local pair = sub(s, pos, amp - 1)
    pos = amp + 1
    if pair ~= "" then
      if find(pair, ";", 1, true) then return nil, "invalid semicolon separator in query" end
      local eq = find(pair, "=", 1, true)
      local k, v
      if eq then
        k, v = sub(pair, 1, eq - 1), sub(pair, eq + 1)
      else
        k, v = pair, ""
      end
      local err
      k, err = M.decode(k, true)
      if not k then return nil, err end
      v, err = M.decode(v, true)
      if not v then return nil, err end
      local list = out[k]
      if not list then
        list = {}
        out[k] = list
      end
      list[#list + 1] = v
    end
    if amp > n then break end
  end
  return out
end

-- Go url.Values.Encode: keys sorted bytewise, each value in order, "k=v" joined by "&". Accepts string values or
-- lists of strings.
function M.encode_values(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys)
  local out = {}
  for i = 1, #keys do
    local k = keys[i]
    local v = t[k]
    local ek = M.encode_go(k)
    if type(v) == "table" then
      for j = 1, #v do out[#out + 1] = ek .. "=" .. M.encode_go(v[j]) end
    else
      out[#out + 1] = ek .. "=" .. M.encode_go(v)
    end
  end
  return concat(out, "&")
end

return M
