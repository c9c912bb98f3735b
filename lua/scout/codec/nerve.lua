-- nerve: Airbnb SmartStack. Nerve registers `<zk_path>/<instance_id>_<seq>` (ephemeral sequential) with JSON data
-- {"host":..,"port":..,"name":..,"weight":..,"haproxy_server_options":..,"labels":{..}}; with use_path_encoding
-- the same JSON is also in the name: `base64_<len>_<urlsafe-base64(json)>_<seq>`, where len is the length of the
-- base64 text (Ruby pads it with "="). As in Synapse, a name that decodes is used without reading data
-- (needs_data is false for it) and a name that does not falls back to the data. labels go into meta, then name
-- (meta.name) and haproxy_server_options; port and weight may be numbers or digit strings (Synapse's own tests
-- write "3000"). No status in this format: a registered node is up.
-- encode returns the name prefix and a third value { sequential = true }: create it EPHEMERAL_SEQUENTIAL.

local type = type
local pairs = pairs
local next = next
local tonumber = tonumber
local find = string.find
local sub = string.sub
local match = string.match
local format = string.format
local concat = table.concat

local E = require "scout.util.endpoint"
local b64 = require "scout.util.base64"

local json = E.json
local null = E.null

local M = { name = "nerve" }

local PREFIX = "base64_"

local function num(v, what)
  if type(v) == "string" and find(v, "^%d+$") and #v <= 10 then v = tonumber(v) end
  if type(v) ~= "number" then return nil, what .. " is not a number" end
  return v
end

local function from_object(name, t)
  if type(t) ~= "table" then return nil, "bad json" end
  local host, err = E.host(t.host)
  if not host then return nil, err end
  if t.port == nil or t.port == null then return nil, "no port" end
  local port
  port, err = num(t.port, "port")
  if not port then return nil, err end
  port, err = E.port(port)
  if not port then return nil, err end
  local weight = 1
  if t.weight ~= nil and t.weight ~= null then
    weight, err = num(t.weight, "weight")
    if not weight then return nil, err end
    weight, err = E.weight(weight)
    if not weight then return nil, err end
  end
  local meta
  meta, err = E.meta_from_json(t.labels)
  if not meta then return nil, err end
  for _, k in pairs({ "name", "haproxy_server_options" }) do
    local v = t[k]
    if v ~= nil and v ~= null then
      local s = E.scalar_str(v)
      if not s then return nil, "bad " .. k end
      meta[k] = s
    end
  end
  return E.new(name, host, port, weight, meta, "up")
end

-- base64_<len>_<b64>_<seq> -> decoded JSON object, or nil, err
local function from_name(name)
  if sub(name, 1, #PREFIX) ~= PREFIX then return nil, "not path encoded" end
  local len, rest = match(name, "^(%d+)_(.*)$", #PREFIX + 1)
  if not len or #len > 6 then return nil, "bad path encoding" end
  len = tonumber(len)
  if len > #rest then return nil, "bad path encoding" end
  local tail = sub(rest, len + 1)
  if not find(tail, "^_%d*$") then return nil, "bad path encoding" end
  local text, err = b64.decode_url(sub(rest, 1, len))
  if not text then return nil, err end
  local t = json.decode(text)
  if type(t) ~= "table" then return nil, "bad json" end
  return from_object(name, t)
end

function M.needs_data(name)
  if type(name) ~= "string" then return true end
  return from_name(name) == nil
end

function M.decode(name, data)
  if type(name) ~= "string" or name == "" then return nil, "bad name" end
  local ep, err = from_name(name)
  if ep then return ep end
  if data == nil then
    if err == "not path encoded" then err = "no data" end
    return nil, err
  end
  local t
  t, err = E.decode_object(data)
  if not t then return nil, err end
  return from_object(name, t)
end

local function body(ep, opts)
  local meta = ep.meta or {}
  local name = opts.instance_id or meta.name or ep.host
  local labels = {}
  for k, v in pairs(meta) do
    if k ~= "name" and k ~= "haproxy_server_options" then labels[k] = v end
  end
  local parts = {
    '"host":' .. json.encode(ep.host),
    '"port":' .. format("%d", ep.port),
    '"name":' .. json.encode(name),
  }
  if ep.weight ~= nil and ep.weight ~= 1 then parts[#parts + 1] = '"weight":' .. format("%d", ep.weight) end
  if meta.haproxy_server_options then
    parts[#parts + 1] = '"haproxy_server_options":' .. json.encode(meta.haproxy_server_options)
  end
  if next(labels) ~= nil then parts[#parts + 1] = '"labels":' .. E.meta_json(labels) end
  return name, "{" .. concat(parts, ",") .. "}"
end

-- encode(ep, opts): opts.instance_id (else meta.name, else host) names the node; opts.path_encoding = true writes
-- the base64 form. Data is written either way, as Nerve does.
function M.encode(ep, opts)
  E.check(ep, 2)
  opts = opts or {}
  if ep.status ~= nil and ep.status ~= "up" then error("nerve has no status; deregister instead", 2) end
  local id, data = body(ep, opts)
  if type(id) ~= "string" or id == "" or find(id, "/", 1, true) then error("nerve instance id must be a name", 2) end
  if opts.path_encoding then
    local enc = b64.encode_url(data)
    return PREFIX .. #enc .. "_" .. enc .. "_", data, { sequential = true }
  end
  return id .. "_", data, { sequential = true }
end

return M
