-- scout.announce: what a `register` block puts in ZooKeeper (the node's name and data, through its codec) and its
-- Lua health check. Kept apart from scout.runtime, which judges what is read: this is what scout writes.

local type = type
local pairs = pairs
local tostring = tostring
local assert = assert
local error = error
local format = string.format
local sort = table.sort
local concat = table.concat

local codecs = require "scout.codec"

local M = {}

-- What the endpoint says, in a stable order: an unchanged endpoint must never rewrite the node.
local function ep_key(ep)
  local keys = {}
  for k, v in pairs(ep.meta or {}) do keys[#keys + 1] = tostring(k) .. "=" .. tostring(v) end
  sort(keys)
  return concat({ tostring(ep.host), tostring(ep.port), tostring(ep.weight), concat(keys, "&") }, "|")
end

-- A registration's node: name (a prefix when sequential), data, sequential. The body is encoded again only when
-- the endpoint changed (encoders stamp times and ids), so an unchanged endpoint never rewrites the node.
function M.body(r)
  local ep = r.endpoint
  if type(ep) == "function" then ep = ep() end
  if type(ep) ~= "table" or type(ep.host) ~= "string" or type(ep.port) ~= "number" then
    error(format("register \"%s\": endpoint must give host and port", r.name), 0)
  end
  local key = ep_key(ep)
  if r.last_key ~= key then
    local codec = assert(codecs.get(r.codec))
    local opts = {}
    for kk, v in pairs(r.codec_options or {}) do opts[kk] = v end
    opts.path = opts.path or r.path
    opts.id = opts.id or r.name
    local e = { id = ep.id or r.name, host = ep.host, port = ep.port, weight = ep.weight or 1,
                meta = ep.meta or {}, status = "up" }
    local name, data, extra = codec.encode(e, opts)
    r.last_key, r.last_name, r.last_data = key, name, data or ""
    r.last_seq = (type(extra) == "table" and extra.sequential) and true or false
  end
  return r.last_name, r.last_data, r.last_seq
end

-- A `check = { lua = function() ... end }`: true/false (or false, "reason").
function M.check(r)
  local ok, reason = r.check.lua()
  return ok and true or false, reason and tostring(reason) or nil
end

return M
