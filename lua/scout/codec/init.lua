-- Codec registry: turns a policy's `codec = "dubbo"` (or a user table) into the one codec shape the agent and
-- OpenResty call: { name, needs_data(name, opts), decode(name, data, opts), encode(ep, opts), reads_data }, where
-- reads_data (true, false or nil) says needs_data's answer is the same for every child. Built-in codecs are
-- loaded lazily so a policy that uses only `plain` never loads cjson-heavy ones. Bad policy input returns
-- `nil, err` (the agent turns it into `policy.lua:12: ...`); it is never raised from here.
--
-- "dubbo3" (dubbo 3 app-level /services/<app>/<host:port>) is the `app` codec exported by scout.codec.dubbo, which
-- reuses the Curator JSON parser from scout.codec.curator.

local type = type
local pcall = pcall
local pairs = pairs
local require = require
local tostring = tostring
local sort = table.sort

local M = {}

local BUILTIN = {
  plain = "scout.codec.plain",
  dubbo = "scout.codec.dubbo",
  dubbo3 = "scout.codec.dubbo",   -- field "app"
  rpcx = "scout.codec.rpcx",
  curator = "scout.codec.curator",
  serverset = "scout.codec.serverset",
  nerve = "scout.codec.nerve",
}

local loaded = {}

local function always_true() return true end

local function load_builtin(name)
  local c = loaded[name]
  if c then return c end
  local ok, mod = pcall(require, BUILTIN[name])
  if not ok then return nil, "cannot load codec " .. name .. ": " .. tostring(mod) end
  if name == "dubbo3" then mod = mod.app end
  if type(mod) ~= "table" or type(mod.decode) ~= "function" then return nil, "codec " .. name .. " is broken" end
  loaded[name] = mod
  return mod
end

-- A user codec is wrapped, never mutated: missing needs_data means "always read data"; a boolean needs_data is
-- accepted as shorthand. encode is optional (only `register` needs it).
local function wrap_user(t)
  if type(t.decode) ~= "function" then return nil, "codec table has no decode function" end
  local nd, constant = t.needs_data, nil
  if nd == nil then
    nd, constant = always_true, true
  elseif type(nd) == "boolean" then
    local v = nd
    nd, constant = function() return v end, v
  elseif type(nd) ~= "function" then
    return nil, "codec needs_data must be a function or a boolean"
  end
  if t.encode ~= nil and type(t.encode) ~= "function" then return nil, "codec encode must be a function" end
  if t.name ~= nil and type(t.name) ~= "string" then return nil, "codec name must be a string" end
  return {
    name = t.name or "custom",
    needs_data = nd,
    reads_data = constant,
    decode = t.decode,
    encode = t.encode,
    user = t,
  }
end

function M.get(c)
  local tc = type(c)
  if tc == "string" then
    if not BUILTIN[c] then return nil, "unknown codec \"" .. c .. "\"" end
    return load_builtin(c)
  elseif tc == "table" then
    return wrap_user(c)
  end
  return nil, "codec must be a name or a table"
end

function M.names()
  local out = {}
  for k in pairs(BUILTIN) do out[#out + 1] = k end
  sort(out)
  return out
end

return M
