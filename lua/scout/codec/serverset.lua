-- serverset: Twitter commons / Finagle / Aurora ServerSet members. Only children named `member_*` are members
-- (others are locks or config: `nil, "not a member"`). The data is the JSON ServiceInstance:
-- {"serviceEndpoint":{"host":..,"port":..},"additionalEndpoints":{"http":{..}},"status":"ALIVE","shard":0}
-- with an optional `metadata` string map. Only ALIVE serves; any other of the seven statuses becomes its lowercase
-- name. opts.endpoint = "http" uses that named additional endpoint instead of serviceEndpoint. shard and metadata go
-- into meta (meta.shard wins over a metadata key of the same name). Serversets carry no weight: 1.
-- encode returns the prefix "member_" and a third value { sequential = true }: create it EPHEMERAL_SEQUENTIAL.

local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local tonumber = tonumber
local floor = math.floor
local sort = table.sort
local concat = table.concat
local lower = string.lower
local upper = string.upper
local sub = string.sub
local format = string.format

local E = require "scout.util.endpoint"

local json = E.json
local null = E.null

local M = { name = "serverset" }

local STATUSES = { DEAD = true, STARTING = true, ALIVE = true, STOPPING = true, STOPPED = true, WARNING = true,
  UNKNOWN = true }

function M.needs_data(name)
  return type(name) == "string" and sub(name, 1, 7) == "member_"
end

local function endpoint(t)
  if type(t) ~= "table" then return nil, "endpoint is not an object" end
  local host, err = E.host(t.host)
  if not host then return nil, err end
  local port
  port, err = E.port(t.port)
  if not port then return nil, err end
  return host, port
end

function M.decode(name, data, opts)
  if type(name) ~= "string" or name == "" then return nil, "bad name" end
  if sub(name, 1, 7) ~= "member_" then return nil, "not a member" end
  if data == nil then return nil, "no data" end
  local t, err = E.decode_object(data)
  if not t then return nil, err end

  local status = t.status
  if type(status) ~= "string" or not STATUSES[status] then return nil, "bad status" end

  local which = opts and opts.endpoint
  local ept
  if which ~= nil then
    local extra = t.additionalEndpoints
    if type(extra) ~= "table" then return nil, "no endpoint " .. tostring(which) end
    ept = extra[which]
    if ept == nil or ept == null then return nil, "no endpoint " .. tostring(which) end
  else
    ept = t.serviceEndpoint
    if ept == nil or ept == null then return nil, "no service endpoint" end
  end
  local host, port = endpoint(ept)
  if not host then return nil, port end

  local extra = t.additionalEndpoints
  if extra ~= nil and extra ~= null and type(extra) ~= "table" then return nil, "bad additional endpoints" end

  local meta
  meta, err = E.meta_from_json(t.metadata)
  if not meta then return nil, err end
  local shard = t.shard
  if shard ~= nil and shard ~= null then
    if type(shard) ~= "number" or shard ~= floor(shard) or shard < 0 or shard > 2147483647 then
      return nil, "bad shard"
    end
    meta.shard = format("%d", shard)
  end
  return E.new(name, host, port, 1, meta, status == "ALIVE" and "up" or lower(status))
end

local function ep_json(host, port)
  return '{"host":' .. json.encode(host) .. ',"port":' .. format("%d", port) .. "}"
end

-- encode(ep, opts): opts.additional = { name = { host =, port = } }. meta.shard (digits) becomes shard, the rest of
-- meta becomes metadata. status "up" is ALIVE, other statuses must be one of the serverset names in lowercase.
function M.encode(ep, opts)
  E.check(ep, 2)
  opts = opts or {}
  local status = (ep.status == nil or ep.status == "up") and "ALIVE" or upper(ep.status)
  if not STATUSES[status] or (status == "ALIVE" and ep.status == "alive") then
    error("serverset status must be up or one of dead, starting, stopping, stopped, warning, unknown", 2)
  end
  local meta, shard = {}, nil
  for k, v in pairs(ep.meta or {}) do
    if k == "shard" then
      if not v:find("^%d+$") or #v > 10 or tonumber(v) > 2147483647 then
        error("serverset shard must be digits", 2)
      end
      shard = v
    else
      meta[k] = v
    end
  end
  local add = {}
  local names = {}
  for k in pairs(opts.additional or {}) do names[#names + 1] = k end
  sort(names)
  for _, k in ipairs(names) do
    local a = opts.additional[k]
    E.check(a, 2)
    add[#add + 1] = json.encode(k) .. ":" .. ep_json(a.host, a.port)
  end
  local parts = {
    '"serviceEndpoint":' .. ep_json(ep.host, ep.port),
    '"additionalEndpoints":{' .. concat(add, ",") .. "}",
    '"status":"' .. status .. '"',
  }
  if shard then parts[#parts + 1] = '"shard":' .. format("%d", tonumber(shard)) end
  if next(meta) ~= nil then
    parts[#parts + 1] = '"metadata":' .. E.meta_json(meta)
  end
  return "member_", "{" .. concat(parts, ",") .. "}", { sequential = true }
end

return M
