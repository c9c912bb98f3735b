-- dubbo governance YAML (config center rules as dubbo-admin writes them), loaded with the packaged lyaml and
-- checked field by field before anything is built from it: a document of the wrong shape, a field of the wrong
-- type or a field dubbo does not define is refused whole with a short reason, never half used. Plain data out.
-- Never raises: every failure is nil, why.
--
-- Scalars resolve as YAML 1.1 does in SnakeYAML (yes/no/on/off are booleans, 010 is octal), and a number keeps
-- the text it was written with, so it reaches a URL the way Java prints it: an int as its decimal value, a float
-- as Double.toString ("1.0", not "1").

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable
local format = string.format
local floor = math.floor
local abs = math.abs

local ok_lyaml, lyaml = pcall(require, "lyaml")
local implicit = ok_lyaml and require "lyaml.implicit"

local M = {}

local NUM = {}  -- metatable of a number loaded with its text: { n = value, int = true|false }

local RESOLVE
if ok_lyaml then
  RESOLVE = {
    { implicit.null }, { implicit.octal, true }, { implicit.decimal, true }, { implicit.float, false },
    { implicit.bool }, { implicit.inf, false }, { implicit.nan, false }, { implicit.hexadecimal, true },
    { implicit.binary, true }, { implicit.sexagesimal, true }, { implicit.sexfloat, false },
  }
end

local function implicit_scalar(s)
  for _, r in ipairs(RESOLVE) do
    local v = r[1](s)
    if v ~= nil then
      if type(v) == "number" then return setmetatable({ n = v, int = r[2] }, NUM) end
      return v
    end
  end
  return s
end

local function is_num(v) return type(v) == "table" and getmetatable(v) == NUM end
M.is_num = is_num

local function null(v)
  return v == nil or (ok_lyaml and v == lyaml.null)
end

-- a real table (mapping or sequence), not a number
local function is_table(v) return type(v) == "table" and not is_num(v) end

-- load(text) -> table | nil, why. The document must be a mapping.
M.MAX_BYTES = 65536  -- lyaml costs about 1.5 ms per KB; dubbo-admin's rules are well under 4 KB

function M.load(text)
  if type(text) ~= "string" then return nil, "no data" end
  if #text > M.MAX_BYTES then return nil, "rule larger than " .. M.MAX_BYTES .. " bytes" end
  if not ok_lyaml then return nil, "lyaml is not installed" end
  local ok, doc = pcall(lyaml.load, text, { implicit_scalar = implicit_scalar })
  if not ok then
    return nil, "invalid yaml: " .. tostring(doc):gsub("^.-:%d+: ", "")
  end
  if null(doc) then return nil, "empty document" end
  if not is_table(doc) or doc[1] ~= nil then return nil, "not a yaml mapping" end
  return doc
end

-- Double.toString for the values a rule holds
local function java_double(n)
  if n ~= n then return "NaN" end
  if n == 1 / 0 then return "Infinity" end
  if n == -1 / 0 then return "-Infinity" end
  if n == floor(n) and abs(n) < 1e7 then return format("%d.0", n) end
  if abs(n) >= 1e-3 and abs(n) < 1e7 then
    for p = 1, 17 do
      local s = format("%." .. p .. "g", n)
      if tonumber(s) == n then return s end
    end
  end
  return tostring(n)
end

-- A YAML scalar as the string Java sees after SnakeYAML: ints in decimal, floats as Double.toString, booleans as
-- words. nil for anything that is not a scalar.
function M.scalar(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return v and "true" or "false" end
  if is_num(v) then
    if v.int and abs(v.n) < 2 ^ 53 then return format("%d", v.n) end
    return java_double(v.n)
  end
  if t == "number" then return M.scalar(setmetatable({ n = v, int = v == floor(v) }, NUM)) end
  return nil
end

local function is_list(v)
  if not is_table(v) then return false end
  local n = #v
  for i in pairs(v) do
    if type(i) ~= "number" or i < 1 or i > n or i ~= floor(i) then return false end
  end
  return true
end

-- check(doc, fields, where) -> true | nil, why. fields: name -> "string" | "boolean" | "integer" | "list" (of
-- scalars) | "map" (scalar keys and values) | "items" (list of mappings). Absent and null fields pass.
function M.check(doc, fields, where)
  for k, v in pairs(doc) do
    local key = M.scalar(k) or tostring(k)
    local want = type(k) == "string" and fields[k]
    local name = where .. key
    if not want then return nil, "unknown field \"" .. name .. "\"" end
    if not null(v) and want ~= "any" then  -- "any": the caller checks it
      if want == "string" then
        if not M.scalar(v) or type(v) == "boolean" then return nil, name .. " must be a string" end
      elseif want == "boolean" then
        if type(v) ~= "boolean" then return nil, name .. " must be true or false" end
      elseif want == "number" then
        if not is_num(v) then return nil, name .. " must be a number" end
      elseif want == "integer" then
        if not is_num(v) or v.n ~= floor(v.n) then return nil, name .. " must be an integer" end
      elseif want == "list" then
        if not is_list(v) then return nil, name .. " must be a list" end
        for i = 1, #v do
          if not M.scalar(v[i]) then return nil, name .. "[" .. i .. "] must be a string" end
        end
      elseif want == "map" then
        if not is_table(v) or v[1] ~= nil then return nil, name .. " must be a mapping" end
        for mk, mv in pairs(v) do
          if not M.scalar(mk) then return nil, name .. " keys must be scalars" end
          if not M.scalar(mv) then return nil, name .. "." .. M.scalar(mk) .. " must be a scalar" end
        end
      elseif want == "items" then
        if not is_list(v) then return nil, name .. " must be a list" end
        for i = 1, #v do
          if not is_table(v[i]) or v[i][1] ~= nil then return nil, name .. "[" .. i .. "] must be a mapping" end
        end
      end
    end
  end
  return true
end

function M.get(doc, k)
  local v = doc[k]
  if null(v) then return nil end
  return v
end

-- a checked list field as an array of strings ({} when absent)
function M.strings(doc, k)
  local v = M.get(doc, k)
  local out = {}
  if v then
    for i = 1, #v do out[i] = M.scalar(v[i]) end
  end
  return out
end

-- a checked map field as a sorted array of { key, value } strings ({} when absent)
function M.pairs(doc, k)
  local v = M.get(doc, k)
  local out = {}
  if v then
    for mk, mv in pairs(v) do out[#out + 1] = { M.scalar(mk), M.scalar(mv) } end
  end
  table.sort(out, function(a, b) return a[1] < b[1] end)
  return out
end

return M
