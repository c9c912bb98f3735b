-- plain: the codec for hand-made registries. A child named `host:port` (IPv6 as `[::1]:80`) is a whole endpoint
-- and needs no getData; any other child name is an id whose data is `host:port` or a JSON object
-- {"host":..,"port":..,"weight":..,"meta":{..},"status":..}. When the name itself is an address, data is ignored
-- (the agent does not even read it), so weight and meta can only be carried by the JSON form.

local type = type
local byte = string.byte

local E = require "scout.util.endpoint"

local split_hostport = E.split_hostport

local M = { name = "plain" }

local DEFAULT_WEIGHT = 1

function M.needs_data(name)
  return split_hostport(name) == nil
end
-- The agent applies this same rule in C (scout_endpoint_is_hostport), sparing a call into Lua per new child; a
-- change to split_hostport must change both (tests/c/test_hostport.c compares them on odd and random names).
M.data_unless_address = true

local function decode_json(name, data)
  local t, err = E.decode_object(data)
  if not t then return nil, err end
  local host
  host, err = E.host(t.host)
  if not host then return nil, err end
  local port
  port, err = E.port(t.port)
  if not port then return nil, err end
  local weight
  weight, err = E.weight(t.weight, DEFAULT_WEIGHT)
  if not weight then return nil, err end
  local meta, m = nil, t.meta
  if m ~= nil and m ~= E.null then
    -- no meta: the shared EMPTY_META (E.new), not a new empty table per child that the runtime swaps for it
    meta, err = E.meta_from_json(m)
    if not meta then return nil, err end
  end
  local status = t.status
  if status == nil or status == E.null then
    status = "up"
  elseif not E.status_ok(status) then
    return nil, "bad status"
  end
  return E.new(name, host, port, weight, meta, status)
end

function M.decode(name, data)
  if type(name) ~= "string" or name == "" then return nil, "bad name" end
  local host, port = split_hostport(name)
  if host then return E.new(name, host, port, DEFAULT_WEIGHT) end
  if data == nil then return nil, "no data" end
  if type(data) ~= "string" then return nil, "data is not a string" end
  local body = E.trim(data)
  if body == "" then return nil, "empty data" end
  if byte(body, 1) == 123 then return decode_json(name, body) end   -- "{"
  host, port = split_hostport(body)
  if not host then return nil, port end
  return E.new(name, host, port, DEFAULT_WEIGHT)
end

function M.encode(ep)
  E.check(ep, 2)
  return E.join_hostport(ep.host, ep.port), nil
end

return M
