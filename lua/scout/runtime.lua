-- scout.runtime: the agent's side of the policy. The C core hands it ZooKeeper children (name, data, zxid) as they
-- change; it decodes them with the service's codec, keeps the decoded endpoints, applies the filter and returns
-- the list to publish, calling on_change with the difference. It must survive being stopped at any instruction
-- (hook budgets): state that a later call depends on is only replaced once the call can no longer fail.

local type = type
local pairs = pairs
local pcall = pcall
local error = error
local tostring = tostring
local format = string.format
local floor = math.floor
local sort = table.sort

local policy_dsl = require "scout.policy"
local codecs = require "scout.codec"

local M = {}

local LOG_WARN, LOG_DEBUG = 1, 3

local agent = package.loaded["scout.agent"]
local log = agent and agent.log or function(level, msg)
  if level <= LOG_WARN then io.stderr:write(msg, "\n") end
end

function M.set_logger(fn) log = fn end

local policy            -- what scout.policy built
local services = {}     -- [i] = runtime state of the i-th service

local function by_id(a, b) return a.id < b.id end

-- Verdicts that are not errors: the child is simply not an endpoint (dubbo's empty:// marker, consumer or route
-- URLs under providers/, serverset nodes that are not members).
local QUIET = { ["empty"] = true, ["not a provider"] = true, ["not a member"] = true }

-- A codec of the user's may return anything: only well-formed endpoints get in.
local function check_endpoint(ep)
  if type(ep.host) ~= "string" or ep.host == "" then return "codec returned an endpoint without host" end
  local port = ep.port
  if type(port) ~= "number" or port ~= floor(port) or port < 1 or port > 65535 then
    return "codec returned an endpoint with a bad port"
  end
  if ep.weight == nil then ep.weight = 1
  elseif type(ep.weight) ~= "number" or ep.weight < 0 then return "codec returned a bad weight" end
  if ep.status == nil then ep.status = "up"
  elseif type(ep.status) ~= "string" then return "codec returned a bad status" end
  if ep.meta == nil then ep.meta = {}
  elseif type(ep.meta) ~= "table" then return "codec returned a bad meta" end
end

local function same_meta(a, b)
  for k, v in pairs(a) do if b[k] ~= v then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function same(a, b)
  return a.host == b.host and a.port == b.port and a.weight == b.weight and a.status == b.status
    and same_meta(a.meta, b.meta)
end

-- Load the policy; returns what the C core needs (plain values only) or nil, "file:line: message".
function M.load(path)
  local p, err = policy_dsl.load(path)
  if not p then return nil, err end
  local conf = { zookeeper = p.zookeeper, api = p.api, agent = p.agent, services = {} }
  local state = {}
  for i, svc in ipairs(p.services) do
    local codec = assert(codecs.get(svc.codec))  -- validated by the DSL
    state[i] = {
      name = svc.name, path = svc.path, codec = codec, options = svc.codec_options,
      filter = svc.filter, delay = svc.delay, on_change = svc.on_change,
      children = {}, published = {}, by_id = {},
    }
    conf.services[i] = {
      name = svc.name, path = svc.path,
      -- a number is applied in C; a function is asked per event (nil here); no delay means read at once
      delay_ms = type(svc.delay) == "function" and -1 or svc.delay or 0,
    }
  end
  policy, services = p, state
  return conf
end

function M.needs_data(i, name)
  local s = services[i]
  return s.codec.needs_data(name, s.options) and true or false
end

function M.delay(i, kind, child, pending, since_read)
  local s = services[i]
  local v = s.delay({ kind = kind, child = child, pending = pending, since_read = since_read,
                      service = s.name, path = s.path })
  if type(v) ~= "number" or v ~= v or v < 0 then
    error(format("service \"%s\": delay returned %s; want milliseconds >= 0", s.name, tostring(v)), 0)
  end
  return floor(v)
end

-- removed: array of child names gone; changed: array of { name, data (or nil), zxid }.
-- Returns list, ndiff, decode_errors, hook_errors; a failing filter raises (the C side keeps the last list).
function M.update(i, removed, changed)
  local s = services[i]
  local children = s.children
  for k = 1, #removed do children[removed[k]] = nil end

  local nerr = 0
  local decode, options = s.codec.decode, s.options
  for k = 1, #changed do
    local c = changed[k]
    local name = c[1]
    local ok, ep, err = pcall(decode, name, c[2], options)
    local why
    if not ok then
      why = tostring(ep)
    elseif type(ep) ~= "table" then
      why = err or "codec returned nothing"
    else
      why = check_endpoint(ep)
    end
    if why then
      children[name] = why
      if not QUIET[why] then
        nerr = nerr + 1
        log(LOG_WARN, format("service \"%s\": skipping child %s: %s", s.name, name, why))
      end
    else
      ep.id = name
      ep.zxid = c[3]
      children[name] = ep
    end
  end

  local list, n = {}, 0
  local filter = s.filter
  for _, ep in pairs(children) do
    if type(ep) == "table" and ep.status == "up" and (not filter or filter(ep)) then
      n = n + 1
      list[n] = ep
    end
  end
  sort(list, by_id)

  local old, new_by_id = s.by_id, {}
  local added, gone, changed_eps = {}, {}, {}
  for k = 1, n do
    local ep = list[k]
    local o = old[ep.id]
    new_by_id[ep.id] = ep
    if not o then added[#added + 1] = ep
    elseif o ~= ep and not same(o, ep) then changed_eps[#changed_eps + 1] = ep end
  end
  for id, ep in pairs(old) do
    if not new_by_id[id] then gone[#gone + 1] = ep end
  end
  sort(gone, by_id)
  local ndiff = #added + #gone + #changed_eps

  local hook_errors = 0
  if ndiff > 0 and s.on_change then
    local ok, err = pcall(s.on_change, { name = s.name, path = s.path, endpoints = list },
                          { added = added, removed = gone, changed = changed_eps })
    if not ok then
      hook_errors = 1
      log(LOG_WARN, format("service \"%s\": on_change failed: %s", s.name, tostring(err)))
    end
  end
  -- Only now: if anything above was stopped, the next call diffs against the same old list again.
  s.by_id, s.published = new_by_id, list
  if ndiff > 0 then
    log(LOG_DEBUG, format("service \"%s\": +%d -%d ~%d", s.name, #added, #gone, #changed_eps))
  end
  return list, ndiff, nerr, hook_errors
end

function M.on_session(state)
  if policy and policy.on_session then policy.on_session(state) end
end

return M
