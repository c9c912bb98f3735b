-- curator: Apache Curator ServiceDiscovery (JsonInstanceSerializer), as written by Curator 4/5 and Spring Cloud
-- Zookeeper. The child name is the instance id; the data is the instance JSON. payload.metadata (a string map,
-- Spring Cloud's ZookeeperInstance and dubbo 3's ZookeeperInstance both have one) becomes meta. `enabled` may be
-- absent (Curator compat mode, CURATOR-275) and then means true. Spring Cloud's `instance_status` metadata
-- (UP / OUT_OF_SERVICE) is honoured too, since Spring's own clients filter on it.
-- M.parse is shared with the dubbo 3 app-level codec (scout.codec.dubbo, field `app`).
-- encode writes every field Curator's Jackson deserializer expects, in Curator's own field order, with a payload
-- carrying "@class" (Spring Cloud's ZookeeperInstance unless opts.payload_class says otherwise).

local type = type
local floor = math.floor
local concat = table.concat
local format = string.format
local lower = string.lower
local find = string.find
local match = string.match
local byte = string.byte
local char = string.char
local tonumber = tonumber
local open = io.open
local os_time = os.time
local random = math.random

local E = require "scout.util.endpoint"

local json = E.json
local null = E.null

local M = { name = "curator" }

M.SPRING_PAYLOAD = "org.springframework.cloud.zookeeper.discovery.ZookeeperInstance"

local SERVICE_TYPES = { DYNAMIC = true, STATIC = true, PERMANENT = true, DYNAMIC_SEQUENTIAL = true }

function M.needs_data() return true end
M.reads_data = true   -- constant: the agent asks no per-child question

local function opt_string(v, what)
  if v == nil or v == null then return true end
  if type(v) ~= "string" then return nil, what .. " is not a string" end
  return true
end

-- Parse Curator instance JSON into an endpoint. defaults: { weight = n }.
function M.parse(name, data, opts, defaults)
  if type(name) ~= "string" or name == "" then return nil, "bad name" end
  if data == nil then return nil, "no data" end
  local t, err = E.decode_object(data)
  if not t then return nil, err end
  local ok
  ok, err = opt_string(t.name, "name")
  if not ok then return nil, err end
  ok, err = opt_string(t.id, "id")
  if not ok then return nil, err end
  local host
  host, err = E.host(t.address)
  if not host then
    if t.address == nil or t.address == null then return nil, "no address" end
    return nil, err
  end

  local port
  local p, sp = t.port, t.sslPort
  if p == null then p = nil end
  if sp == null then sp = nil end
  if p ~= nil then
    port, err = E.port(p)
    if not port then return nil, err end
  end
  if sp ~= nil then
    sp = E.port(sp)
    if not sp then return nil, "bad ssl port" end
  end
  if opts and opts.ssl then
    port = sp
  elseif port == nil then
    port = sp
  end
  if not port then return nil, "no port" end

  local st = t.serviceType
  if st ~= nil and st ~= null and not SERVICE_TYPES[st] then return nil, "bad service type" end

  local enabled = t.enabled
  if enabled == nil or enabled == null then
    enabled = true
  elseif type(enabled) ~= "boolean" then
    return nil, "bad enabled"
  end

  local reg = t.registrationTimeUTC
  if reg ~= nil and reg ~= null and type(reg) ~= "number" then return nil, "bad registration time" end

  local meta = {}
  local payload = t.payload
  if type(payload) == "table" then
    local cls = payload["@class"]
    if cls ~= nil and cls ~= null and type(cls) ~= "string" then return nil, "bad payload class" end
    meta, err = E.meta_from_json(payload.metadata)
    if not meta then return nil, err end
  end
  -- any other payload (null, a scalar of some custom payload class) carries nothing we can use

  local status = "up"
  if not enabled then
    status = "disabled"
  else
    local is = meta.instance_status
    if is and lower(is) ~= "up" then
      status = lower(is)
      if not E.status_ok(status) then status = "down" end
    end
  end
  return E.new(name, host, port, defaults and defaults.weight or 1, meta, status)
end

function M.decode(name, data, opts)
  return M.parse(name, data, opts)
end

local enc = json.encode
local meta_json = E.meta_json

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

-- Random UUID (v4) like Curator's default id; /dev/urandom when readable, else math.random.
function M.uuid()
  local f = open("/dev/urandom", "rb")
  local b
  if f then
    b = f:read(16)
    f:close()
  end
  if not b or #b ~= 16 then
    local t = {}
    for i = 1, 16 do t[i] = char(random(0, 255)) end
    b = concat(t)
  end
  local h = hex(b)
  local v = format("%x", 8 + floor(tonumber(h:sub(17, 17), 16) / 4))
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-4" .. h:sub(14, 16) .. "-" .. v .. h:sub(18, 20)
    .. "-" .. h:sub(21, 32)
end

local URI_SPEC = '{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},'
  .. '{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}'

-- Build the JSON. Shared with the dubbo 3 codec. fields: name, id, payload_class, payload_id, now.
function M.build(ep, f)
  local meta = ep.meta or {}
  local payload = "null"
  if f.payload_class ~= false then
    payload = "{" .. '"@class":' .. enc(f.payload_class or M.SPRING_PAYLOAD)
      .. ',"id":' .. enc(f.payload_id or f.id)
      .. ',"name":' .. enc(f.name)
      .. ',"metadata":' .. meta_json(meta) .. "}"
  end
  local enabled = ep.status == nil or ep.status == "up"
  return "{" .. '"name":' .. enc(f.name)
    .. ',"id":' .. enc(f.id)
    .. ',"address":' .. enc(ep.host)
    .. ',"port":' .. format("%d", ep.port)
    .. ',"sslPort":null'
    .. ',"payload":' .. payload
    .. ',"registrationTimeUTC":' .. format("%d", f.now or os_time() * 1000)
    .. ',"serviceType":"DYNAMIC"'
    .. ',"uriSpec":' .. URI_SPEC
    .. ',"enabled":' .. (enabled and "true" or "false")
    .. "}"
end

local function service_name(opts, level)
  local name = opts.name
  if name == nil and type(opts.path) == "string" then name = match(opts.path, "([^/]+)/*$") end
  if type(name) ~= "string" or name == "" then
    error("curator encode needs opts.name (the service name) or opts.path", level + 1)
  end
  return name
end
M.service_name = service_name

-- encode(ep, opts): opts.name (service name; or opts.path, whose last component is used), opts.id (default ep.id,
-- else a fresh UUID), opts.payload_class (false for a null payload), opts.payload_id, opts.now (ms).
function M.encode(ep, opts)
  E.check(ep, 2)
  opts = opts or {}
  local name = service_name(opts, 2)
  local id = opts.id or ep.id or M.uuid()
  if type(id) ~= "string" or id == "" or find(id, "/", 1, true) then error("curator instance id must be a name", 2) end
  return id, M.build(ep, {
    name = name, id = id, payload_class = opts.payload_class, payload_id = opts.payload_id, now = opts.now,
  })
end

return M
