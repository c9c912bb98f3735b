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
local concat = table.concat
local tostring = tostring
local tonumber = tonumber

local url = require "scout.util.url"
local dubbo = require "scout.codec.dubbo"
local ipairs = ipairs
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
        host = opts.host, migration = opts.migration }
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

-- dubbo 3's migration rule (MigrationRuleListener): the consumer application's "<application>.migration" in the
-- config center group DUBBO_SERVICEDISCOVERY_MIGRATION, watched as one more source (its parent, only that node's
-- data read). A valid rule decides the step and threshold over the policy's `migration` with MigrationRule's
-- precedence (this interface's entry, then a mapped application's, then the rule's own); the policy's step is the
-- default the consumer was configured with (dubbo.application.migration.step). No rule, an empty node (dubbo's
-- INIT) or a refused one: the policy's step. A rule is refused whole (counted, listed in explain), never half used.
local function migration_source(s, r)
  local p = r.migration_path(s)
  if not p or match(s.application, "/") then return nil end   -- no node of ZooKeeper's is named so
  local dir, name = match(p, "^(/.+)/([^/]+)$")
  return { key = "migration", path = dir, kind = "migration", data = { name } }
end

local function compile_migration(nodes, s, r)
  local want = match(r.migration_path(s) or "", "([^/]+)$")
  for _, n in ipairs(nodes) do
    if n.name == want and n.data ~= nil and n.data ~= "" then
      -- checked with no mapped application: validity does not depend on them (R.migration_rule checks every entry)
      local ok, why = r.migration_rule(n.data, s, {})
      if not ok then return {}, { { name = n.name, why = why } } end
      return { rule = { name = n.name, data = n.data } }, {}
    end
  end
  return {}, {}
end

-- The step and threshold that apply now and where they come from: { step, threshold, from, rule = bool }.
-- Kept in the scope for M.choose (which is given no sets), and recomputed whenever the sets are seen anew.
local function decide(s, sets, r)
  local m = type(sets) == "table" and sets.migration or nil
  local mp = type(sets) == "table" and sets.mapping or nil
  local d = s.decision
  if d and d.m == m and d.mp == mp then return d end
  d = { m = m, mp = mp, step = s.migration, from = "step from the policy" }
  local got = m and m.rule and r.migration_rule(m.rule.data, s, mp and mp.apps or {})
  if got then
    d.rule = true
    local where = "the migration rule " .. m.rule.name .. " ("
    if got.step then
      d.step, d.from = got.step, "step from " .. where .. got.step_from .. ")"
    elseif s.migration then
      d.from = "step from the policy, the migration rule " .. m.rule.name .. " names none"
    else
      d.from = "dubbo's default step, neither the migration rule " .. m.rule.name .. " nor the policy names one"
    end
    if got.threshold and got.threshold_from == got.step_from then
      d.threshold, d.from = got.threshold, "step and threshold" .. d.from:sub(5)
    elseif got.threshold then
      d.threshold = got.threshold
      d.from = d.from .. ", threshold from " .. where .. got.threshold_from .. ")"
    end
  end
  s.decision = d
  return d
end

-- dubbo 3 application-level discovery, when the scope has a migration step (the dubbo = { } form always does:
-- dubbo 3's default is APPLICATION_FIRST) or a migration rule applies (its entries may name steps per
-- application: the mapping is needed to read it, and the instances are read before its step can call them): the
-- interface -> application mapping (/dubbo/mapping/<interface>, its data "app1,app2") is followed like any
-- source, and every application it names is a source of its own, /services/<app>, whose instances become
-- providers of the interface. The set follows the mapping as it changes.
local function app_level(s, d)
  return d.rule or (s.migration ~= nil and s.migration ~= "FORCE_INTERFACE")
end

function M.sources(conf, sets)
  local s = M.scope(conf)
  if not s.interface then return {} end
  local r = rules()
  if not r then return {} end
  local list = r.sources(s)
  list[#list + 1] = migration_source(s, r)
  if app_level(s, decide(s, sets, r)) then
    list[#list + 1] = { key = "mapping", path = r.MAPPING_ROOT, kind = "mapping", data = { s.interface } }
    local m = sets and sets.mapping
    for _, app in ipairs(m and m.apps or {}) do
      list[#list + 1] = { key = "app:" .. app, path = "/services/" .. app, kind = "instances:" .. app, data = true }
    end
  end
  return list
end

-- One application's instances as providers of the interface (R.instance_provider: the port of the protocol,
-- the application's params), keyed "<app>/<instance>".
local function compile_instances(app, nodes, conf, s, r)
  local set, errors = { instances = {} }, {}
  local opts = type(conf.options) == "table" and conf.options or {}
  for _, n in ipairs(nodes) do
    local ep, why = dubbo.app.decode(n.name, n.data, { protocol = nil })
    if ep then ep, why = r.instance_provider(ep, app, s, { protocol = opts.protocol }) end
    if ep then
      local id = app .. "/" .. n.name
      ep.id, ep.zxid = id, n.zxid or 0
      set.instances[id] = ep
    else
      errors[#errors + 1] = { name = n.name, why = why or "not an instance" }
    end
  end
  return set, errors
end

function M.compile(kind, nodes, conf)
  local r = rules()
  if not r then return nil, {} end
  local s = M.scope(conf)
  if kind == "mapping" then
    for _, n in ipairs(nodes) do
      if n.name == s.interface then return { apps = r.mapping_apps(n.data) }, {} end
    end
    return { apps = {} }, {}
  end
  if kind == "migration" then return compile_migration(nodes, s, r) end
  local app = type(kind) == "string" and match(kind, "^instances:(.+)$")
  if app then return compile_instances(app, nodes, conf, s, r) end
  return r.compile(kind, nodes, s)
end

-- The application-level providers: id -> endpoint (nil when the scope has no migration step).
function M.endpoints(sets, conf)
  local s = M.scope(conf)
  local r = rules()
  if not r or not app_level(s, decide(s, sets, r)) then return nil end
  local out = {}
  for key, set in pairs(sets) do
    if type(key) == "string" and key:sub(1, 4) == "app:" and type(set) == "table" and set.instances then
      for id, ep in pairs(set.instances) do out[id] = ep end
    end
  end
  return out
end

-- Which list a dubbo 3 consumer calls (MigrationInvoker): "interface" | "application", and a note that says
-- which step applies and where it comes from. Asked after M.endpoints saw the same sets (the runtime asks for the
-- endpoints whenever a source changed), so the decision kept in the scope is current.
function M.choose(conf, icount, acount)
  local s = M.scope(conf)
  local r = rules()
  if not r then return nil end
  local d = s.decision or decide(s, nil, r)
  if not app_level(s, d) then return nil end
  local which, note = r.migrate(d.step, icount, acount, { threshold = d.threshold })
  return which, note .. "; " .. d.from
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

-- A canonical text of a plain value (sorted keys), to recognise one route spec in two lists.
local function canon(v)
  if type(v) ~= "table" then return type(v) .. ":" .. tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local out = {}
  for i, k in ipairs(keys) do out[i] = k .. "=" .. canon(v[k] == nil and v[tonumber(k)] or v[k]) end
  return "{" .. concat(out, ",") .. "}"
end

-- R.routes in dubbo's order, each spec naming the source it comes from (explain lists them so): the one whose
-- set alone yields it; dubbo's tag router is always there (static tags route too).
function M.routes(sets, conf)
  local r = rules()
  if not r then return {} end
  local s = M.scope(conf)
  local all = r.routes(sets, s)
  local from = {}
  local keys = {}
  for k in pairs(sets) do keys[#keys + 1] = k end
  sort(keys)
  for _, k in ipairs(keys) do
    for _, spec in ipairs(r.routes({ [k] = sets[k] }, s)) do
      local c = canon(spec)
      if from[c] == nil and spec.tag == nil then from[c] = k end
    end
  end
  for _, spec in ipairs(all) do
    spec.source = spec.tag ~= nil and "tag router" or from[canon(spec)] or "dubbo"
  end
  return all
end

return M
