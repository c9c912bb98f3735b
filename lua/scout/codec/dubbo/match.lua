-- dubbo 3's match conditions (StringMatch, ListStringMatch, AddressMatch, ParamMatch), as v3.0 configurators
-- (configs[].match) and tag rules (tags[].match) use them: compiled once from checked YAML, then tested against
-- one provider. What dubbo evaluates as a Java regex (StringMatch.regex) or through NetUtils.matchIpExpression
-- forms other than IPv4 CIDR is refused at compile, never matched differently. Plain data; never raises.

local type = type
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local find = string.find
local sub = string.sub
local match = string.match
local floor = math.floor

local Y = require "scout.codec.dubbo.yaml"

local M = {}

-- StringMatch's kinds in the order its isMatch tries them (regex refused)
local STRING_OPS = { "exact", "prefix", "wildcard", "empty", "noempty" }

-- compile_string(value, at) -> { op, arg } | nil, why. value: a checked YAML mapping.
function M.compile_string(value, at)
  if type(value) ~= "table" or Y.is_num(value) or value[1] ~= nil then return nil, at .. " must be a mapping" end
  for k in pairs(value) do
    if k == "regex" then return nil, at .. ".regex (a Java regex) is not supported" end
    local known = false
    for _, op in ipairs(STRING_OPS) do known = known or k == op end
    if not known then return nil, "unknown field \"" .. at .. "." .. tostring(Y.scalar(k) or k) .. "\"" end
  end
  for _, op in ipairs(STRING_OPS) do
    local v = Y.get(value, op)
    if v ~= nil then
      local s = Y.scalar(v)
      if not s then return nil, at .. "." .. op .. " must be a string" end
      return { op, s }
    end
  end
  return nil, at .. " needs one of exact, prefix, wildcard, empty, noempty"
end

-- StringMatch.isMatch
function M.string(m, input)
  local op, arg = m[1], m[2]
  if op == "exact" then return input ~= nil and input == arg end
  if op == "prefix" then return input ~= nil and sub(input, 1, #arg) == arg end
  if op == "wildcard" then return input ~= nil and (input == arg or arg == "*") end
  if op == "empty" then return input == nil or input == "" end
  return input ~= nil and input ~= ""  -- noempty
end

-- ListStringMatch: { oneof: [StringMatch...] }
function M.compile_list(value, at)
  if type(value) ~= "table" or Y.is_num(value) or value[1] ~= nil then return nil, at .. " must be a mapping" end
  for k in pairs(value) do
    if k ~= "oneof" then return nil, "unknown field \"" .. at .. "." .. tostring(Y.scalar(k) or k) .. "\"" end
  end
  local oneof = Y.get(value, "oneof")
  if type(oneof) ~= "table" or Y.is_num(oneof) or #oneof == 0 then return nil, at .. ".oneof must be a list" end
  local out = {}
  for i = 1, #oneof do
    local m, why = M.compile_string(oneof[i], at .. ".oneof[" .. i .. "]")
    if not m then return nil, why end
    out[i] = m
  end
  return out
end

function M.list(ms, input)
  for i = 1, #ms do
    if M.string(ms[i], input) then return true end
  end
  return false
end

local function ipv4(s)
  local a, b, c, d = match(s or "", "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- UrlUtils.isMatchGlobPattern without $references: one "*" at the start, the end or in the middle
local function glob(pattern, input)
  local i = find(pattern, "*", 1, true)
  if not i then return pattern == input end
  local pre, post = sub(pattern, 1, i - 1), sub(pattern, i + 1)
  return #input >= #pre + #post and sub(input, 1, #pre) == pre and (post == "" or sub(input, -#post) == post)
end

-- AddressMatch: { cird | wildcard | exact }
function M.compile_address(value, at)
  if type(value) ~= "table" or Y.is_num(value) or value[1] ~= nil then return nil, at .. " must be a mapping" end
  local out = {}
  for k, v in pairs(value) do
    local s = Y.scalar(v)
    if k ~= "cird" and k ~= "wildcard" and k ~= "exact" then
      return nil, "unknown field \"" .. at .. "." .. tostring(Y.scalar(k) or k) .. "\""
    end
    if not s then return nil, at .. "." .. k .. " must be a string" end
    out[k] = s
  end
  if out.cird then
    local net, bits = match(out.cird, "^([%d%.]+)/(%d+)$")
    bits = tonumber(bits)
    if net and ipv4(net) and bits <= 32 then
      local size = 2 ^ (32 - bits)
      out.lo = floor(ipv4(net) / size) * size
      out.hi = out.lo + size - 1
    elseif not ipv4(out.cird) then
      return nil, at .. ".cird: only an IPv4 address or a.b.c.d/n is supported"
    end
  end
  if not (out.cird or out.wildcard or out.exact) then return nil, at .. " needs one of cird, wildcard, exact" end
  return out
end

function M.address(m, input)
  if input == nil then return false end
  if m.cird then
    if input == m.cird then return true end
    local n = ipv4((input:gsub(":%d+$", "")))
    if m.lo and n and n >= m.lo and n <= m.hi then return true end
  end
  if m.wildcard then
    return m.wildcard == "0.0.0.0" or m.wildcard == "*" or glob(m.wildcard, input)
  end
  if m.exact then return input == m.exact end
  return false
end

-- ParamMatch list: [{ key, value: StringMatch }]
function M.compile_params(list, at)
  if type(list) ~= "table" or Y.is_num(list) then return nil, at .. " must be a list" end
  local out = {}
  for i = 1, #list do
    local p = list[i]
    local where = at .. "[" .. i .. "]"
    local ok, why = Y.check(type(p) == "table" and p or {}, { key = "string", value = "any" }, where .. ".")
    if type(p) ~= "table" or Y.is_num(p) then return nil, where .. " must be a mapping" end
    if not ok then return nil, why end
    local key = Y.scalar(Y.get(p, "key"))
    if not key or key == "" then return nil, where .. " needs a key" end
    local m
    m, why = M.compile_string(Y.get(p, "value"), where .. ".value")
    if not m then return nil, why end
    out[i] = { key = key, m = m }
  end
  return out
end

-- every param matches; get(key) reads the configured URL's param
function M.params(ps, get)
  for i = 1, #ps do
    if not M.string(ps[i].m, get(ps[i].key)) then return false end
  end
  return true
end

return M
