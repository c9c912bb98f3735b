-- dubbo's rule semantics as a library: what a dubbo consumer does with configurators, routers, config-center
-- governance rules, the dubbo 3 interface -> application mapping and migration between the two kinds of lists.
-- The agent (or anything else) watches the sources R.sources names, hands each source's nodes to R.compile, and
-- applies the compiled sets with R.configure (one provider at a time) and R.routes (route rules for scout.route).
--
-- Plain data in and out, no agent or ngx dependency. Bad input never raises: a rule that does not parse is
-- refused whole (listed in compile's errors with why) and the rest still apply. Caller mistakes (a scope without
-- an interface) are also answered with nil/empty results and a reason, as the contract with the agent says.
--
-- Where dubbo versions differ, the consumer of the newest one is followed (dubbo 3.x AbstractConfigurator,
-- ConfigParser, TagStateRouter, MigrationInvoker), which reads 2.6 and 2.7 rules as those consumers do; the
-- differences that remain are listed in docs/policy.md.

local type = type
local ipairs = ipairs
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local find = string.find
local format = string.format
local sort = table.sort
local concat = table.concat

local dubbo = require "scout.codec.dubbo"
local E = require "scout.util.endpoint"
local C = require "scout.codec.dubbo.configurator"
local RT = require "scout.codec.dubbo.router"
local Y = require "scout.codec.dubbo.yaml"

local R = {}

R.TAG_KEY = RT.TAG_KEY
R.SHADOWED = "shadowed-by-tag-router:"  -- prefix of a static tag a dynamic tag rule makes unreachable
R.CONFIG_ROOT = "/dubbo/config/dubbo"  -- ZookeeperDynamicConfiguration: /<namespace>/config/<group>
R.MAPPING_ROOT = "/dubbo/mapping"      -- ZookeeperMetadataReport: /<root>/<mapping group>/<interface>

local function present(v) return v ~= nil and v ~= "" end

local function check_scope(scope)
  if type(scope) ~= "table" then return nil, "scope must be a table" end
  if type(scope.interface) ~= "string" or scope.interface == "" or find(scope.interface, "/", 1, true) then
    return nil, "scope.interface must be an interface name"
  end
  for _, k in ipairs({ "group", "version", "application", "host" }) do
    if scope[k] ~= nil and type(scope[k]) ~= "string" then return nil, "scope." .. k .. " must be a string" end
  end
  return true
end

-- URL.getColonSeparatedKey, the config-center rule key of a service: interface:version:group (empty parts kept)
function R.service_key(scope)
  return scope.interface .. ":" .. (scope.version or "") .. ":" .. (scope.group or "")
end

-- The config-center node names a consumer reads (AppRouter/ServiceRouter, ConsumerConfigurationListener,
-- ReferenceConfigurationListener, TagRouter keyed by the PROVIDER application: scope.provider_applications).
function R.config_names(scope)
  local names = {}
  local seen = {}
  local function add(n)
    if not seen[n] then
      seen[n] = true
      names[#names + 1] = n
    end
  end
  local app = scope.application
  if present(app) then
    add(app .. ".configurators")
    add(app .. ".condition-router")
    add(app .. ".tag-router")
  end
  local sk = R.service_key(scope)
  add(sk .. ".configurators")
  add(sk .. ".condition-router")
  if type(scope.provider_applications) == "table" then
    for _, a in ipairs(scope.provider_applications) do
      if type(a) == "string" and a ~= "" then add(a .. ".tag-router") end
    end
  end
  return names
end

-- R.sources(scope) -> array of { key, path, kind, data } (empty and a reason if the scope is unusable)
function R.sources(scope)
  local ok, why = check_scope(scope)
  if not ok then return {}, why end
  local base = "/dubbo/" .. scope.interface
  return {
    { key = "configurators", path = base .. "/configurators", kind = "configurators" },
    { key = "routers", path = base .. "/routers", kind = "routers" },
    { key = "config", path = R.CONFIG_ROOT, kind = "config", data = R.config_names(scope) },
  }
end

------------------------------------------------------------------------------------------------------------------
-- compile

local function compile_configurators(nodes, scope, set, errors)
  local rules = {}
  for _, node in ipairs(nodes) do
    local rule, why = C.from_name(node.name)
    if rule then
      local mine
      mine, why = C.for_consumer(rule, scope)
      if mine then
        rule.label = "configurators: " .. rule.text
        rules[#rules + 1] = rule
      else
        set.ignored[#set.ignored + 1] = { name = node.name, why = why }
      end
    elseif why == "empty" then
      set.empty = true  -- empty:// clears every configurator (Configurator.toConfigurators)
    else
      errors[#errors + 1] = { name = node.name, why = why }
    end
  end
  if set.empty then rules = {} end
  set.configurators = C.sort(rules)
end

local function compile_routers(nodes, scope, set, errors)
  local list = {}
  for _, node in ipairs(nodes) do
    local entry, why, not_mine = RT.from_name(node.name, scope)
    if entry then
      entry.label = "routers: " .. entry.text
      list[#list + 1] = entry
    elseif not_mine then
      set.ignored[#set.ignored + 1] = { name = node.name, why = why }
    elseif why ~= "empty" then
      errors[#errors + 1] = { name = node.name, why = why }
    end
  end
  sort(list, function(a, b)
    if a.priority ~= b.priority then return a.priority < b.priority end
    return a.text < b.text
  end)
  set.routers = list
end

local function ends_with(s, suffix)
  return #s > #suffix and s:sub(-#suffix) == suffix
end

local function compile_config(nodes, scope, set, errors)
  local app = scope.application
  local sk = R.service_key(scope)
  set.app_configurators, set.service_configurators = {}, {}
  set.tags = {}
  for _, node in ipairs(nodes) do
    local name, data = node.name, node.data
    if type(name) ~= "string" then
      errors[#errors + 1] = { name = tostring(name), why = "bad name" }
    elseif data == nil then
      -- a node whose data was not read (not one of R.sources' `data` names, or not read yet): no rule
      set.ignored[#set.ignored + 1] = { name = name, why = "no data read" }
    elseif ends_with(name, ".configurators") and (name == sk .. ".configurators"
        or (present(app) and name == app .. ".configurators")) then
      local rules, why = C.from_yaml(data)
      if not rules then
        errors[#errors + 1] = { name = name, why = why }
      else
        local mine = {}
        for _, r in ipairs(rules) do
          r.label = "config " .. name .. ": " .. r.text
          if r.enabled then mine[#mine + 1] = r end
        end
        if #mine == 0 and #rules > 0 then
          set.ignored[#set.ignored + 1] = { name = name, why = "enabled: false" }
        end
        if name == sk .. ".configurators" then
          set.service_configurators = C.sort(mine)
        else
          set.app_configurators = C.sort(mine)
        end
      end
    elseif name == sk .. ".condition-router" or (present(app) and name == app .. ".condition-router") then
      local rule, why = RT.condition_yaml(data)
      if not rule then
        errors[#errors + 1] = { name = name, why = why }
      elseif rule.enabled then
        rule.label = "config " .. name
        if name == sk .. ".condition-router" then set.service_router = rule else set.app_router = rule end
      else
        set.ignored[#set.ignored + 1] = { name = name, why = "enabled: false" }
      end
    elseif ends_with(name, ".tag-router") then
      local rule, why = RT.tag_yaml(data)
      if not rule then
        errors[#errors + 1] = { name = name, why = why }
      elseif rule.enabled then
        rule.label = "config " .. name
        -- keyed by the provider application the node is named after (TagRouter: remote.application)
        set.tags[name:sub(1, -#".tag-router" - 1)] = rule
      else
        set.ignored[#set.ignored + 1] = { name = name, why = "enabled: false" }
      end
    end
    -- any other node under /dubbo/config/dubbo is not for this consumer: not an error
  end
end

-- R.compile(kind, nodes, scope) -> set, errors. kind: "configurators" | "routers" | "config" (R.sources' kinds).
-- nodes: { name = child name, data = string | nil }. errors: { name, why } for each node refused (counted as
-- invalid). The set is opaque to callers except set.ignored: { name, why } for valid rules that are not for this
-- consumer (another group, enabled=false, a compatible_config copy, config data not read), for explain.
-- scope may carry `now` (ms) for the warmup ramp R.configure recomputes, and `provider_applications` (the
-- applications seen in the provider list) so R.sources names their "<app>.tag-router" nodes.
function R.compile(kind, nodes, scope)
  local errors = {}
  local set = { kind = kind, ignored = {} }
  local ok, why = check_scope(scope)
  if not ok then
    errors[1] = { name = "", why = why }
    return set, errors
  end
  if type(nodes) ~= "table" then
    errors[1] = { name = "", why = "nodes must be an array" }
    nodes = {}
  end
  local clean = {}
  for i = 1, #nodes do
    local n = nodes[i]
    if type(n) == "table" and type(n.name) == "string" and (n.data == nil or type(n.data) == "string") then
      clean[#clean + 1] = n
    else
      errors[#errors + 1] = { name = type(n) == "table" and tostring(n.name) or "", why = "not a { name, data } node" }
    end
  end
  nodes = clean
  if kind == "configurators" then
    compile_configurators(nodes, scope, set, errors)
  elseif kind == "routers" then
    compile_routers(nodes, scope, set, errors)
  elseif kind == "config" then
    compile_config(nodes, scope, set, errors)
  else
    errors[#errors + 1] = { name = "", why = "unknown kind " .. tostring(kind) }
  end
  return set, errors
end

------------------------------------------------------------------------------------------------------------------
-- configure

-- every configurator list in the order a consumer applies them (RegistryDirectory.overrideWithConfigurator):
-- the registry's /configurators, then "<application>.configurators", then "<servicekey>.configurators"
local function configurator_lists(sets)
  local url_lists, app_lists, svc_lists = {}, {}, {}
  local keys = {}
  for k in pairs(sets) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  for _, k in ipairs(keys) do
    local set = sets[k]
    if type(set) == "table" then
      if type(set.configurators) == "table" then url_lists[#url_lists + 1] = set.configurators end
      if type(set.app_configurators) == "table" then app_lists[#app_lists + 1] = set.app_configurators end
      if type(set.service_configurators) == "table" then svc_lists[#svc_lists + 1] = set.service_configurators end
    end
  end
  local out = {}
  for _, group in ipairs({ url_lists, app_lists, svc_lists }) do
    for _, l in ipairs(group) do out[#out + 1] = l end
  end
  return out, keys
end

local function tag_rules(sets, keys)
  for _, k in ipairs(keys) do
    local set = sets[k]
    if type(set) == "table" and type(set.tags) == "table" then return set.tags end
  end
  return nil
end

-- R.configure(ep, sets, scope) -> ep2, notes
function R.configure(ep, sets, scope)
  local notes = {}
  if type(ep) ~= "table" or type(ep.host) ~= "string" or type(ep.port) ~= "number"
      or (ep.meta ~= nil and type(ep.meta) ~= "table") then
    return ep, notes
  end
  if type(sets) ~= "table" or not check_scope(scope) then return ep, notes end
  local lists, keys = configurator_lists(sets)
  local meta = ep.meta or {}
  local svc = C.service_of(ep, scope)
  local copy
  for _, list in ipairs(lists) do
    for _, rule in ipairs(list) do
      if C.matches(rule, copy or ep, scope, svc) then
        local set_kv = {}
        for _, k in ipairs(rule.effect) do
          local v = rule.params[k]
          local cur = copy and copy.meta or meta
          if rule.protocol == "override" or cur[k] == nil then
            if not copy then copy = E.copy(ep) end
            copy.meta[k] = v
            set_kv[#set_kv + 1] = k .. "=" .. v
          end
        end
        if #set_kv > 0 then
          notes[#notes + 1] = rule.label .. " sets " .. concat(set_kv, "&")
        end
      end
    end
  end
  -- TagRouter with a dynamic rule for the provider's application: a provider in a tag's addresses (or matched by
  -- a v3.0 tag's params) carries that tag; one outside them whose static tag names a tag with addresses is reached
  -- by no request (a request for that tag gets the rule's addresses only; one without a tag skips the rule's tag
  -- names), so its tag is replaced by one no request carries.
  local tags = tag_rules(sets, keys)
  local app = meta.application
  if tags and app and tags[app] then
    local rule = tags[app]
    local cur = (copy and copy.meta or meta)[R.TAG_KEY]
    local t = RT.tag_of(rule, ep)
    local why
    if t then
      why = " tags " .. ep.host .. ":" .. format("%d", ep.port) .. " " .. t
    elseif present(cur) and RT.has_addresses(rule, cur) then
      t = R.SHADOWED .. cur
      why = " shadows the static tag " .. cur .. " of " .. ep.host .. ":" .. format("%d", ep.port)
    end
    if t and t ~= cur then
      if not copy then copy = E.copy(ep) end
      copy.meta[R.TAG_KEY] = t
      notes[#notes + 1] = rule.label .. why
    end
  end
  if not copy then return ep, notes end
  copy.status = dubbo.status_of(copy.meta)
  copy.weight = dubbo.effective_weight(copy, scope.now)
  if copy.status ~= "up" and ep.status == "up" then
    notes[#notes + 1] = "disabled by configurators"
  end
  return copy, notes
end

------------------------------------------------------------------------------------------------------------------
-- routes

-- R.routes(sets, scope) -> array of scout.route specs, in dubbo's router order: /routers condition routers by
-- their priority (default 0), the tag router (100; always there: static tags route too), the service's
-- condition-router (140), the application's (150).
function R.routes(sets, _scope)
  local entries = {}
  local function add(priority, label, spec)
    entries[#entries + 1] = { p = priority, n = #entries, label = label, spec = spec }
  end
  if type(sets) ~= "table" then sets = {} end
  local keys = {}
  for k in pairs(sets) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local force_tag = false
  local names = {}
  for _, k in ipairs(keys) do
    local set = sets[k]
    if type(set) == "table" then
      for _, e in ipairs(set.routers or {}) do add(e.priority, e.label, e.spec) end
      if set.service_router then
        for _, spec in ipairs(set.service_router.specs) do add(RT.SERVICE_PRIORITY, set.service_router.label, spec) end
      end
      if set.app_router then
        for _, spec in ipairs(set.app_router.specs) do add(RT.APP_PRIORITY, set.app_router.label, spec) end
      end
      for _, t in pairs(set.tags or {}) do
        if t.force then force_tag = true end
        for _, tag in ipairs(t.tags) do
          names[tag.name] = true
          names[R.SHADOWED .. tag.name] = true
        end
      end
    end
  end
  -- with a dynamic tag rule, an untagged request also reaches providers whose static tag is not one of its names
  local tag_spec = { tag = R.TAG_KEY, force = force_tag }
  local list = {}
  for n in pairs(names) do list[#list + 1] = n end
  if #list > 0 then
    sort(list)
    tag_spec.names = list
  end
  add(RT.TAG_PRIORITY, "tag router", tag_spec)
  sort(entries, function(a, b)
    if a.p ~= b.p then return a.p < b.p end
    return a.n < b.n
  end)
  local out = {}
  for i, e in ipairs(entries) do
    local spec = {}
    for k, v in pairs(e.spec) do spec[k] = v end
    out[i] = spec
  end
  return out
end

------------------------------------------------------------------------------------------------------------------
-- dubbo 3: mapping and migration

-- where a dubbo 3 consumer finds which applications serve an interface, and where an application's instances are
-- (ZookeeperMetadataReport: /<root>/mapping/<interface>; ZookeeperServiceDiscovery: /services/<application>)
function R.mapping_path(scope)
  if not check_scope(scope) then return nil end
  return R.MAPPING_ROOT .. "/" .. scope.interface
end

function R.instances_path(app)
  if not present(app) or type(app) ~= "string" or find(app, "/", 1, true) then return nil end
  return "/services/" .. app
end

-- ServiceNameMapping.getAppNames: comma separated, trimmed, empties dropped, sorted (a TreeSet)
function R.mapping_apps(data)
  local out = {}
  if type(data) ~= "string" then return out end
  local seen = {}
  for part in (data .. ","):gmatch("([^,]*),") do
    local a = part:gsub("^[%z\1-\32]+", ""):gsub("[%z\1-\32]+$", "")
    if a ~= "" and not seen[a] then
      seen[a] = true
      out[#out + 1] = a
    end
  end
  sort(out)
  return out
end

R.DEFAULT_STEP = "APPLICATION_FIRST"  -- MigrationRule's default step
R.DEFAULT_THRESHOLD = 0.0             -- DefaultMigrationAddressComparator.DEFAULT_THRESHOLD_STRING

local STEPS = { FORCE_INTERFACE = true, APPLICATION_FIRST = true, FORCE_APPLICATION = true }

-- R.migrate(step, interface_count, application_count, opts) -> "interface" | "application", note.
-- opts.threshold: the rule's threshold (a number >= 0), else dubbo.application.migration.threshold's default.
function R.migrate(step, icount, acount, opts)
  if step == nil or step == "" then step = R.DEFAULT_STEP end
  icount, acount = tonumber(icount) or 0, tonumber(acount) or 0
  if not STEPS[step] then
    return "interface", "unknown migration step " .. tostring(step) .. ", using interface addresses"
  end
  if step == "FORCE_INTERFACE" then return "interface", "step FORCE_INTERFACE: interface addresses" end
  if step == "FORCE_APPLICATION" then return "application", "step FORCE_APPLICATION: application addresses" end
  local threshold = opts and tonumber(opts.threshold)
  if not threshold or threshold < 0 then threshold = R.DEFAULT_THRESHOLD end
  local why
  local use_app
  if acount <= 0 then
    use_app, why = false, "no application addresses"
  elseif icount <= 0 then
    use_app, why = true, "no interface addresses"
  else
    use_app = acount / icount >= threshold
    why = format("application/interface addresses %d/%d %s threshold %s", acount, icount,
      use_app and ">=" or "<", tostring(threshold))
  end
  local which = use_app and "application" or "interface"
  return which, "step APPLICATION_FIRST: " .. which .. " addresses (" .. why .. ")"
end

-- the consumer application's migration rule in the config center (MigrationRuleListener: key
-- "<application>.migration", group DUBBO_SERVICEDISCOVERY_MIGRATION)
function R.migration_path(scope)
  if type(scope) ~= "table" or not present(scope.application) then return nil end
  return "/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/" .. scope.application .. ".migration"
end

local MIGRATION_FIELDS = { key = "string", step = "string", threshold = "number", proportion = "integer",
  delay = "integer", force = "boolean", interfaces = "items", applications = "items" }
local SUB_FIELDS = { serviceKey = "string", step = "string", threshold = "number", proportion = "integer",
  delay = "integer", force = "boolean" }

-- a step dubbo's MigrationStep.valueOf takes, or nil, why (it throws on any other: the whole rule is refused)
local function check_step(t, where)
  local v = Y.get(t, "step")
  if v ~= nil and not STEPS[Y.scalar(v)] then return nil, "unknown " .. where .. "step " .. tostring(Y.scalar(v)) end
  return true
end

-- R.migration_rule(data, scope, apps) -> { step, threshold, step_from, threshold_from } | nil, why.
-- MigrationRule.getStep/getThreshold: the interfaces entry for this service ("<interface>[:<version>]",
-- URL.getDisplayServiceKey) first, then the applications entry of the first mapped application (apps, as
-- R.mapping_apps returns them) that has one, then the rule's own step and threshold; R.migrate fills in dubbo's
-- defaults for what is still missing. *_from says which of them gave the value ("interfaces entry I",
-- "applications entry A", "rule"). A step dubbo does not know, in any entry, refuses the rule whole, as
-- MigrationRule.parse does.
function R.migration_rule(data, scope, apps)
  local ok, why = check_scope(scope)
  if not ok then return nil, why end
  local doc
  doc, why = Y.load(data)
  if not doc then return nil, why end
  ok, why = Y.check(doc, MIGRATION_FIELDS, "")
  if not ok then return nil, why end
  ok, why = check_step(doc, "")
  if not ok then return nil, why end
  local subs = {}
  for _, list in ipairs({ "interfaces", "applications" }) do
    subs[list] = {}
    for i, sub in ipairs(Y.get(doc, list) or {}) do
      ok, why = Y.check(sub, SUB_FIELDS, list .. "[" .. i .. "].")
      if ok then ok, why = check_step(sub, list .. "[" .. i .. "].") end
      if not ok then return nil, why end
      local k = Y.scalar(Y.get(sub, "serviceKey"))
      if k then subs[list][k] = sub end
    end
  end
  local chain, from = {}, {}
  local display = scope.interface .. (present(scope.version) and ":" .. scope.version or "")
  if subs.interfaces[display] then
    chain[#chain + 1] = subs.interfaces[display]
    from[#chain] = "interfaces entry " .. display
  end
  for _, app in ipairs(type(apps) == "table" and apps or {}) do
    if subs.applications[app] then
      chain[#chain + 1] = subs.applications[app]
      from[#chain] = "applications entry " .. app
    end
  end
  chain[#chain + 1] = doc
  from[#chain] = "rule"
  local out = {}
  for _, field in ipairs({ "step", "threshold" }) do
    for k, t in ipairs(chain) do
      local v = Y.get(t, field)
      if v ~= nil then
        out[field] = field == "step" and Y.scalar(v) or tonumber(Y.scalar(v))
        out[field .. "_from"] = from[k]
        break
      end
    end
  end
  return out
end

------------------------------------------------------------------------------------------------------------------
-- dubbo 3 application-level instances as providers of one interface

-- where a provider application's MetadataInfo lives when dubbo.metadata.storage-type is "remote"
-- (ZookeeperMetadataReport.publishAppMetadata: /<root>/metadata/<application>/<revision>)
function R.metadata_path(app, revision)
  if not present(app) or not present(revision) then return nil end
  return "/dubbo/metadata/" .. app .. "/" .. revision
end

local function scope_service_key(scope)
  local s = scope.interface
  if present(scope.group) then s = scope.group .. "/" .. s end
  if present(scope.version) then s = s .. ":" .. scope.version end
  return s
end

-- R.instance_provider(ep, app, scope, opts) -> ep2, note | nil, why. ep: scout.codec.dubbo's `app` decoder output
-- for /services/<app>/<host:port>. Gives what the interface-level list holds for the same provider: the port of
-- opts.protocol (default "dubbo") from dubbo.endpoints, meta.application = app, interface/path/protocol, and when
-- opts.metadata (the MetadataInfo JSON, see R.metadata_path) is given, the service's own params (group, version,
-- weight, dubbo.tag, ...) and a check that the application really serves the interface in scope. Without
-- metadata (storage-type "local": dubbo asks the provider's MetadataService over RPC) the mapping is trusted.
function R.instance_provider(ep, app, scope, opts)
  if type(ep) ~= "table" or type(ep.meta) ~= "table" or type(ep.host) ~= "string" then return nil, "bad instance" end
  if not present(app) then return nil, "no application" end
  local ok, why = check_scope(scope)
  if not ok then return nil, why end
  opts = opts or {}
  local protocol = opts.protocol or "dubbo"
  local port = ep.port
  local eps = ep.meta["dubbo.endpoints"]
  if present(eps) then
    local list = E.json.decode(eps)
    if type(list) ~= "table" then return nil, "bad dubbo.endpoints" end
    port = nil
    for _, x in ipairs(list) do
      if type(x) == "table" and x.protocol == protocol then port = E.port(x.port) end
    end
    if not port then return nil, "no " .. protocol .. " endpoint" end
  end
  local c = E.copy(ep)
  c.port = port
  c.meta.application = app
  c.meta.interface = scope.interface
  c.meta.path = scope.interface
  c.meta.protocol = protocol
  c.meta.side = "provider"
  local note = "instance " .. app .. "/" .. tostring(ep.id or ep.host) .. " serves " .. scope.interface
  if opts.metadata ~= nil then
    local md = type(opts.metadata) == "string" and E.json.decode(opts.metadata) or opts.metadata
    if type(md) ~= "table" or type(md.services) ~= "table" then return nil, "bad metadata" end
    local want = scope_service_key(scope)
    local svc = md.services[want .. ":" .. protocol]
    if type(svc) ~= "table" then return nil, app .. " does not serve " .. want .. " over " .. protocol end
    if type(svc.params) == "table" then
      for k, v in pairs(svc.params) do
        if type(k) == "string" and (type(v) == "string" or type(v) == "number") then
          c.meta[k] = type(v) == "number" and format("%d", v) or v
        end
      end
    end
    if type(svc.port) == "number" and svc.port > 0 and svc.port < 65536 then c.port = svc.port end
    note = note .. " (metadata " .. tostring(md.revision) .. ")"
  end
  c.meta.application = app
  c.status = dubbo.status_of(c.meta)
  c.weight = dubbo.effective_weight(c, opts.now)
  return c, note
end

return R
