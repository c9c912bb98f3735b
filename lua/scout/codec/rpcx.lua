-- rpcx: the smallnest/rpcx ZooKeeper registry plugin. The child is `network@addr` (tcp@127.0.0.1:8972,
-- quic@[::1]:8972, ...) and the data is url.Values text (`calls=12.50&connections=3.00&group=online&weight=7`;
-- before 2020 `tps=...`). Every key goes into meta (repeated keys joined with ","), plus meta.network. As in
-- rpcx's own selectors only `state=inactive` hides a server and `weight` is the first value. unix@ and memu@
-- servers have no port, which our endpoint cannot express; they are rejected with "no port in unix address".
-- Values are parsed the way Go's url.ParseQuery does, but strictly: any bad escape rejects the whole node.

local type = type
local pairs = pairs
local tonumber = tonumber
local find = string.find
local sub = string.sub
local format = string.format
local concat = table.concat

local E = require "scout.util.endpoint"
local url = require "scout.util.url"

local M = { name = "rpcx" }

local DEFAULT_WEIGHT = 1
local PORTLESS = { unix = true, unixgram = true, unixpacket = true, memu = true }

function M.needs_data() return true end
M.reads_data = true   -- constant: the agent asks no per-child question

local function split_name(name)
  if type(name) ~= "string" or name == "" then return nil, "bad name" end
  local at = find(name, "@", 1, true)
  if not at then return nil, "no network in name" end
  local network, addr = sub(name, 1, at - 1), sub(name, at + 1)
  if not find(network, "^%a[%w]*$") then return nil, "bad network" end
  if PORTLESS[network] then return nil, "no port in unix address" end
  local host, port = E.split_hostport(addr)
  if not host then return nil, port end
  return network, host, port
end

-- Go strconv.Atoi: optional sign, decimal digits
local function atoi(s)
  if not find(s, "^[-+]?%d+$") or #s > 12 then return nil end
  return tonumber(s)
end

function M.decode(name, data)
  local network, host, port = split_name(name)
  if not network then return nil, host end
  if data ~= nil and type(data) ~= "string" then return nil, "data is not a string" end
  local values, err = url.parse_query(data and E.trim(data) or "")
  if not values then return nil, err end
  local meta = {}
  for k, list in pairs(values) do meta[k] = concat(list, ",") end
  if meta.network == nil then meta.network = network end
  local weight = DEFAULT_WEIGHT
  local w = values.weight and values.weight[1]
  if w and w ~= "" then
    weight = atoi(w)
    if not weight or weight > E.MAX_WEIGHT then return nil, "bad weight" end
    if weight < 0 then weight = 0 end
  end
  local state = values.state and values.state[1]
  return E.new(name, host, port, weight, meta, state == "inactive" and "inactive" or "up")
end

-- encode(ep, opts): name network@host:port (opts.network, else meta.network, else tcp); data is meta as
-- url.Values.Encode() writes it, plus weight (when not 1 or already in meta) and state=inactive when not up.
function M.encode(ep, opts)
  E.check(ep, 2)
  opts = opts or {}
  local meta = ep.meta or {}
  local network = opts.network or meta.network or "tcp"
  if type(network) ~= "string" or not find(network, "^%a[%w]*$") or PORTLESS[network] then
    error("rpcx network must be a name like tcp or quic", 2)
  end
  local values = {}
  for k, v in pairs(meta) do
    if k ~= "network" then values[k] = v end
  end
  if ep.weight ~= nil and (ep.weight ~= DEFAULT_WEIGHT or values.weight ~= nil) then
    values.weight = format("%d", ep.weight)
  end
  if ep.status ~= nil and ep.status ~= "up" then
    values.state = "inactive"
  elseif values.state == "inactive" then
    values.state = nil
  end
  return network .. "@" .. E.join_hostport(ep.host, ep.port), url.encode_values(values)
end

return M
