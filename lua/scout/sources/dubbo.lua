-- scout.sources.dubbo: the sources of a dubbo interface-level service (codec "dubbo"), as a dubbo consumer
-- subscribes to them: its providers (the primary path) plus configurators, routers and the config center's
-- governance rules. The rule semantics are scout.codec.dubbo_rules' (R.sources, R.compile, R.configure, R.routes);
-- this module only derives the consumer's scope from the service's conf and adapts the calls to scout.sources.

local type = type
local pcall = pcall
local require = require
local match = string.match
local pairs = pairs
local sort = table.sort

local url = require "scout.util.url"
local E = require "scout.util.endpoint"
local gmatch = string.gmatch

local M = {}

local R
local function rules()
  if R == nil then
    local ok, mod = pcall(require, "scout.codec.dubbo_rules")
    R = ok and type(mod) == "table" and mod or false
  end
  return R or nil
end

-- The consumer's scope: the interface from the providers path (/dubbo/<iface>/providers, the name URL-encoded
-- as dubbo's ZookeeperRegistry writes it) unless the conf names it, plus group, version and application.
function M.scope(conf)
  local s = conf.scope
  if type(s) == "table" and s.interface then return s end
  local opts = type(conf.options) == "table" and conf.options or {}
  local iface = match(conf.path or "", "^/[^/]+/([^/]+)/providers$")
  if iface then iface = url.decode(iface) or iface end
  s = { interface = iface, group = opts.group, version = opts.version, application = opts.application,
        host = opts.host }
  conf.scope = s
  return s
end

-- The providers' applications: dubbo's tag router rule is keyed by the PROVIDER application (TagRouter reads
-- "<provider application>.tag-router"), so the config center's nodes to read follow the providers. Returns true
-- when they changed (the sources are asked again).
function M.observe(conf, published)
  local s = M.scope(conf)
  local seen, apps = {}, {}
  for _, ep in pairs(published) do
    local a = type(ep) == "table" and ep.meta and ep.meta.application
    if type(a) == "string" and a ~= "" and not seen[a] then
      seen[a] = true
      apps[#apps + 1] = a
    end
  end
  sort(apps)
  local old = s.provider_applications or {}
  local same = #old == #apps
  for k = 1, #apps do if old[k] ~= apps[k] then same = false end end
  if same then return false end
  s.provider_applications = apps
  return true
end

function M.sources(conf, sets)
  local s = M.scope(conf)
  if not s.interface then return {} end
  local r = rules()
  if not r then return {} end
  return r.sources(s, sets)
end

function M.compile(kind, nodes, conf)
  local r = rules()
  if not r then return nil, {} end
  return r.compile(kind, nodes, M.scope(conf))
end

-- UrlUtils.isMatch: a consumer that names a group (several: comma-separated; "*": any) or a version ("*": any)
-- takes only the providers of it. One that names neither keeps every provider of the path, as scout always did.
local function subscribed(ep, s)
  local meta = ep.meta or {}
  if s.group and s.group ~= "*" then
    local g, ok = meta.group or "", false
    for part in gmatch(s.group .. ",", "([^,]*),") do
      if part == g then ok = true end
    end
    if not ok then
      return false, "group " .. (g == "" and "(none)" or g) .. " is not the consumer's group " .. s.group
    end
  end
  if s.version and s.version ~= "*" and (meta.version or "") ~= s.version then
    return false, "version " .. ((meta.version or "") == "" and "(none)" or meta.version)
      .. " is not the consumer's version " .. s.version
  end
  return true
end

function M.configure(ep, sets, conf)
  local s = M.scope(conf)
  local ok, why = subscribed(ep, s)
  if not ok then
    local c = E.copy(ep)
    c.status = "not-subscribed"
    return c, { why }
  end
  local r = rules()
  if not r then return ep, {} end
  return r.configure(ep, sets, s)
end

function M.routes(sets, conf)
  local r = rules()
  if not r then return {} end
  return r.routes(sets, M.scope(conf))
end

return M
