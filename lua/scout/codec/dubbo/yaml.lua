-- dubbo governance YAML (config center rules as dubbo-admin writes them), loaded with the packaged lyaml and
-- checked field by field before anything is built from it: a document of the wrong shape, a field of the wrong
-- type or a field dubbo does not define is refused whole with a short reason, never half used. Plain data out.
-- Never raises: every failure is nil, why.

local type = type
local pairs = pairs
local pcall = pcall
local tostring = tostring
local format = string.format
local floor = math.floor

local ok_lyaml, lyaml = pcall(require, "lyaml")

local M = {}

local function null(v)
  return v == nil or (ok_lyaml and v == lyaml.null)
end

-- load(text) -> table | nil, why. The document must be a mapping.
function M.load(text)
  if type(text) ~= "string" then return nil, "no data" end
  if not ok_lyaml then return nil, "lyaml is not installed" end
  local ok, doc = pcall(lyaml.load, text)
  if not ok then
    return nil, "invalid yaml: " .. tostring(doc):gsub("^.-:%d+: ", "")
  end
  if null(doc) then return nil, "empty document" end
  if type(doc) ~= "table" or doc[1] ~= nil then return nil, "not a yaml mapping" end
  return doc
end

-- A YAML scalar as the string Java sees after SnakeYAML: integers without a fraction, booleans as words.
function M.scalar(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return v and "true" or "false" end
  if t == "number" then
    if v == floor(v) and v > -1e15 and v < 1e15 then return format("%d", v) end
    return tostring(v)
  end
  return nil
end

-- check(doc, fields, where) -> true | nil, why. fields: name -> "string" | "boolean" | "integer" | "list" (of
-- scalars) | "map" (string keys, scalar values) | "items" (list of mappings). Absent and null fields pass.
function M.check(doc, fields, where)
  for k, v in pairs(doc) do
    local want = fields[k]
    local name = where .. tostring(k)
    if not want then return nil, "unknown field \"" .. name .. "\"" end
    if not null(v) then
      local t = type(v)
      if want == "string" then
        if not M.scalar(v) or t == "boolean" then return nil, name .. " must be a string" end
      elseif want == "boolean" then
        if t ~= "boolean" then return nil, name .. " must be true or false" end
      elseif want == "integer" then
        if t ~= "number" or v ~= floor(v) then return nil, name .. " must be an integer" end
      elseif want == "list" then
        if t ~= "table" then return nil, name .. " must be a list" end
        local n = #v
        for i in pairs(v) do
          if type(i) ~= "number" or i < 1 or i > n then return nil, name .. " must be a list" end
          if not M.scalar(v[i]) then return nil, name .. "[" .. i .. "] must be a string" end
        end
      elseif want == "map" then
        if t ~= "table" or v[1] ~= nil then return nil, name .. " must be a mapping" end
        for mk, mv in pairs(v) do
          if type(mk) ~= "string" and type(mk) ~= "number" then return nil, name .. " keys must be strings" end
          if not M.scalar(mv) then return nil, name .. "." .. tostring(mk) .. " must be a scalar" end
        end
      elseif want == "items" then
        if t ~= "table" then return nil, name .. " must be a list" end
        local n = #v
        for i in pairs(v) do
          if type(i) ~= "number" or i < 1 or i > n then return nil, name .. " must be a list" end
          if type(v[i]) ~= "table" or v[i][1] ~= nil then return nil, name .. "[" .. i .. "] must be a mapping" end
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

return M
