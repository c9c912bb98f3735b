-- dubbo configurators: override:// and absent:// rules (znode names under /dubbo/<iface>/configurators, dubbo 2.6
-- and later) and config-center YAML (dubbo 2.7+, converted to the same URLs as dubbo's ConfigParser does), applied
-- to one provider the way a dubbo consumer's RegistryDirectory does (AbstractConfigurator.configure).
--
-- A consumer configures the provider URL merged with its own parameters, so on the consumer side `side` is
-- "consumer" and `application` is the consumer's. Rules a dubbo provider applies to itself (`side=provider`) are
-- applied here too, as the provider would apply them to its own URL: a dubbo 2.7+ provider re-registers the
-- configured URL, so the consumer ends up seeing the same parameters; scout just does not wait for the round trip.
-- Everything here is plain data; nothing raises on bad input (nil, why).

local type = type
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local find = string.find
local sub = string.sub
local lower = string.lower
local format = string.format
local sort = table.sort
local concat = table.concat

local url = require "scout.util.url"
local dubbo = require "scout.codec.dubbo"
local Y = require "scout.codec.dubbo.yaml"
local MT = require "scout.codec.dubbo.match"

local M = {}

local ANYHOST = "0.0.0.0"
local prepare  -- below, with the matching it serves

-- AbstractConfigurator: never merged into the provider (plus every ~key)
local CONDITION_KEYS = {
  category = true, check = true, dynamic = true, enabled = true, group = true, version = true, application = true,
  side = true, configVersion = true, compatible_config = true, interfaces = true,
}
M.CONDITION_KEYS = CONDITION_KEYS

local function present(v) return v ~= nil and v ~= "" end

-- URL.getParameter(key, true) for a boolean: absent or empty -> default; else Boolean.parseBoolean
local function bool_param(v, default)
  if not present(v) then return default end
  return lower(v) == "true"
end

local function int_param(v)
  if type(v) ~= "string" or not find(v, "^[-+]?%d+$") or #v > 11 then return nil end
  local n = tonumber(v)
  if n > 2147483647 or n < -2147483648 then return nil end
  return n
end

-- the parameters a matching rule writes (doConfigure with the condition keys removed), sorted
function M.effect(rule)
  local keys = {}
  for k in pairs(rule.params) do
    if not CONDITION_KEYS[k] and sub(k, 1, 1) ~= "~" then keys[#keys + 1] = k end
  end
  sort(keys)
  return keys
end

-- a configurator from a URL string (already decoded once, as URL.valueOf sees it)
function M.from_url(s)
  local protocol, host, port, path, params = dubbo.parse_url(s)
  if not protocol then return nil, host end
  if protocol == "empty" then return nil, "empty" end
  if protocol ~= "override" and protocol ~= "absent" then return nil, "not a configurator (" .. protocol .. "://)" end
  local cat = params.category
  if cat and cat ~= "configurators" and cat ~= "dynamicconfigurators" and cat ~= "appdynamicconfigurators" then
    return nil, "not a configurator (category=" .. cat .. ")"
  end
  if host == nil or host == "" then return nil, "no host" end
  if present(params.priority) and not int_param(params.priority) then return nil, "bad priority" end
  local merged = 0
  for k in pairs(params) do
    if k ~= "anyhost" then merged = merged + 1 end
  end
  -- Configurator.toConfigurators: a rule with no parameters but anyhost does nothing
  if merged == 0 then return nil, "no parameters" end
  local rule = {
    text = s, protocol = protocol, host = host, port = port, path = path or "", params = params,
    enabled = bool_param(params.enabled, true), priority = int_param(params.priority) or 0,
    v27 = present(params.configVersion),
    v30 = find(params.configVersion or "", "v3.0", 1, true) == 1,
  }
  rule.effect = M.effect(rule)
  prepare(rule)
  return rule
end

-- a configurator from a znode name (URL.encode of the URL)
function M.from_name(name)
  if type(name) ~= "string" or name == "" then return nil, "bad name" end
  local s, err = url.decode(name, true)
  if not s then return nil, err end
  return M.from_url(s)
end

-- UrlUtils.isMatch, the registry's filter of what a consumer subscribed to: interface, group, version, enabled.
-- Returns true, or false and why the rule is not for this consumer.
-- RegistryDirectory (2.7+) also drops what dubbo-admin registers for 2.6 consumers only (compatible_config=...):
-- a 2.7+ consumer reads the same rule from the config center.
function M.is_match(path, p, enabled, scope)
  if present(p.compatible_config) then return false, "compatible_config: a copy of a config-center rule" end
  if path ~= scope.interface and path ~= "*" then return false, "for interface " .. tostring(path) end
  local cg, rg = scope.group, p.group
  if cg ~= "*" and cg ~= rg then
    local hit = false
    if present(cg) and present(rg) then
      for g in (cg .. ","):gmatch("([^,]*),") do
        if g == rg then hit = true end
      end
    end
    if not hit then return false, "for group " .. (rg or "(none)") end
  end
  local cv, rv = scope.version, p.version
  if cv ~= "*" and cv ~= rv then return false, "for version " .. (rv or "(none)") end
  if not enabled then return false, "enabled=false" end
  return true
end

function M.for_consumer(rule, scope)
  return M.is_match(rule.path, rule.params, rule.enabled, scope)
end

------------------------------------------------------------------------------------------------------------------
-- config center YAML -> the URLs ConfigParser builds

local CONFIG_FIELDS = { configVersion = "string", scope = "string", key = "string", enabled = "boolean",
  configs = "items" }
local ITEM_FIELDS = { type = "string", enabled = "boolean", addresses = "list", providerAddresses = "list",
  services = "list", applications = "list", parameters = "map", side = "string", match = "any" }
local MATCH_FIELDS = { address = "any", providerAddress = "any", service = "any", app = "any", param = "any" }

-- ConfigItem.match (dubbo 3.1 ConditionMatch): used by v3.0 rules instead of ~key conditions
local function compile_condition(m, at)
  if type(m) ~= "table" or Y.is_num(m) or m[1] ~= nil then return nil, at .. " must be a mapping" end
  local ok, why = Y.check(m, MATCH_FIELDS, at .. ".")
  if not ok then return nil, why end
  local out = {}
  local parts = {
    { "address", MT.compile_address }, { "providerAddress", MT.compile_address },
    { "service", MT.compile_list }, { "app", MT.compile_list }, { "param", MT.compile_params },
  }
  for _, part in ipairs(parts) do
    local v = Y.get(m, part[1])
    if v ~= nil then
      out[part[1]], why = part[2](v, at .. "." .. part[1])
      if not out[part[1]] then return nil, why end
    end
  end
  return out
end

-- ConfigParser.appendService: "group/interface:version" -> "interface?group=g&version=v&"
local function append_service(key)
  if not present(key) then return nil, "no service in the rule" end
  local out = ""
  local iface = key
  local i = find(iface, "/", 1, true)
  if i and i > 1 then
    out = out .. "group=" .. sub(iface, 1, i - 1) .. "&"
    iface = sub(iface, i + 1)
  end
  local j = find(iface, ":", 1, true)
  if j and j > 1 then
    out = out .. "version=" .. sub(iface, j + 1) .. "&"
    iface = sub(iface, 1, j - 1)
  end
  return iface .. "?" .. out
end

-- ConfigParser.toParameterString (dubbo 3: side=provider without providerAddresses scopes to the addresses).
-- Parameters are written in sorted order (Java's HashMap order is not an API; only the set matters).
local function param_string(item, addresses)
  local parts = { "category=dynamicconfigurators" }
  local side = Y.get(item, "side")
  if side then parts[#parts + 1] = "side=" .. Y.scalar(side) end
  local params = Y.pairs(item, "parameters")
  if #params == 0 then
    return nil, "a config item needs at least one parameter"
  end
  for _, kv in ipairs(params) do
    parts[#parts + 1] = kv[1] .. "=" .. kv[2]
  end
  local pa = Y.strings(item, "providerAddresses")
  if #pa > 0 then
    parts[#parts + 1] = "providers=" .. concat(pa, ",")
  elseif side == "provider" then
    parts[#parts + 1] = "providers=" .. concat(addresses, ",")
  end
  return concat(parts, "&")
end

local function enabled_string(item, config)
  local t = Y.get(item, "type")
  local e
  if t == nil or t == "general" then e = Y.get(config, "enabled") else e = Y.get(item, "enabled") end
  if e == nil then
    -- ConfiguratorConfig.enabled defaults to true; ConfigItem.enabled (a Boolean) to null
    if t == nil or t == "general" then e = true else return "&enabled=null" end
  end
  return "&enabled=" .. (e and "true" or "false")
end

-- from_yaml(text) -> list of rule | nil, why. Each rule remembers the URL dubbo would build (rule.text).
function M.from_yaml(text)
  local doc, err = Y.load(text)
  if not doc then return nil, err end
  local ok, why = Y.check(doc, CONFIG_FIELDS, "")
  if not ok then return nil, why end
  local scope = Y.get(doc, "scope") or "service"
  if scope ~= "service" and scope ~= "application" then
    return nil, "scope must be \"service\" or \"application\""
  end
  local key = Y.get(doc, "key")
  if not key or key == "" then return nil, "no key" end
  key = Y.scalar(key)
  -- ConfigParser appends configVersion as it is, so a rule without one still counts as a 2.7+ rule ("null")
  local version = Y.get(doc, "configVersion") or "null"
  local configs = Y.get(doc, "configs")
  if not configs or #configs == 0 then return nil, "no configs" end
  local urls, match_of = {}, {}
  for i, item in ipairs(configs) do
    local where = "configs[" .. i .. "]."
    ok, why = Y.check(item, ITEM_FIELDS, where)
    if not ok then return nil, why end
    local cond
    if Y.get(item, "match") then
      cond, why = compile_condition(Y.get(item, "match"), where .. "match")
      if not cond then return nil, why end
    end
    local side = Y.get(item, "side")
    if side and side ~= "provider" and side ~= "consumer" then
      return nil, where .. "side must be \"provider\" or \"consumer\""
    end
    local addresses = Y.strings(item, "addresses")
    if #addresses == 0 then addresses = { ANYHOST } end
    local params
    params, why = param_string(item, addresses)
    if not params then return nil, where .. why end
    local tail = enabled_string(item, doc)
    local first = #urls + 1
    for _, addr in ipairs(addresses) do
      if scope == "application" then
        local services = Y.strings(item, "services")
        if #services == 0 then services = { "*" } end
        for _, svc in ipairs(services) do
          local s
          s, why = append_service(svc)
          if not s then return nil, where .. why end
          urls[#urls + 1] = "override://" .. addr .. "/" .. s .. params .. "&application=" .. key .. tail
            .. "&category=appdynamicconfigurators&configVersion=" .. Y.scalar(version)
        end
      else
        local s
        s, why = append_service(key)
        if not s then return nil, why end
        local u = "override://" .. addr .. "/" .. s .. params .. tail .. "&configVersion=" .. Y.scalar(version)
        local apps = Y.strings(item, "applications")
        if #apps > 0 then
          for _, app in ipairs(apps) do urls[#urls + 1] = u .. "&application=" .. app end
        else
          urls[#urls + 1] = u
        end
      end
    end
    for k = first, #urls do match_of[k] = cond end
  end
  local rules = {}
  for i, u in ipairs(urls) do
    local r
    r, why = M.from_url(u)
    if not r then return nil, "configs: " .. why .. " in " .. u end
    -- ConfigParser.appendMatchCondition: the match travels beside the URL; only a v3.0 rule consults it
    if match_of[i] and r.v30 then r.match = match_of[i] end
    rules[i] = r
  end
  return rules
end

------------------------------------------------------------------------------------------------------------------
-- order and application

-- Configurator.compareTo: by host string, then priority; Collections.sort is stable (ties keep their order).
-- The codec's own order, one copy: a rule applies the same whichever way it came.
M.sort = dubbo.sort_configurators

local function service_key(iface, group, version)
  local s = iface or ""
  if present(group) then s = group .. "/" .. s end
  if present(version) then s = s .. ":" .. version end
  return s
end

-- what configureIfMatch compares, worked out once per rule: the service key, the `providers` list, and the
-- conditions on the configured URL's params (every ~key, application, side; "*" matches anything)
function prepare(rule)
  local p = rule.params
  rule.side = p.side
  if rule.path ~= "*" then rule.svc = service_key(rule.path, p.group, p.version) end
  if present(p.providers) then
    local list = {}
    for a in (p.providers .. ","):gmatch("([^,]*),") do list[#list + 1] = a end
    rule.providers = list
  end
  local conds = {}
  for k, v in pairs(p) do
    local tilde = sub(k, 1, 1) == "~"
    -- a v3.0 rule is matched by its `match` instead of ~key conditions (AbstractConfigurator, dubbo 3)
    if (tilde and not rule.v30 or k == "application" or k == "side") and v ~= "*" then
      conds[#conds + 1] = { tilde and sub(k, 2) or k, v }
    end
  end
  rule.conds = conds
end
M.prepare = prepare

-- the service key of the URL a rule configures (the provider's group and version: they are never merged)
function M.service_of(ep, scope)
  local meta = ep.meta or {}
  return service_key(scope.interface or meta.interface or meta.path, meta.group, meta.version)
end

-- Does the rule configure this provider? AbstractConfigurator.configure and configureIfMatch, from the side the
-- rule is for: side=provider as the provider configures its own URL (its own application, side=provider); any
-- other rule as the consumer configures the merged URL (side=consumer, the consumer's application and host).
-- svc: M.service_of(ep, scope), computed once per provider by the caller.
function M.matches(rule, ep, scope, svc)
  local side = rule.side
  local provider_view = side == "provider"
  local host
  if rule.v27 then
    if provider_view then
      host = ep.host
    elseif side == "consumer" then
      host = scope.host
    else
      return false  -- 2.7+: a rule for neither side applies on neither side
    end
  elseif rule.port then
    if rule.port ~= ep.port then return false end
    host = ep.host
  elseif provider_view then
    host = ANYHOST    -- a provider takes a port-less rule only for 0.0.0.0
  else
    host = scope.host -- a port-less host is a consumer address
  end
  if rule.host ~= ANYHOST and rule.host ~= host then return false end
  local providers = rule.providers
  if providers then
    local address = ep.host .. ":" .. format("%d", ep.port)
    local hit = false
    for i = 1, #providers do
      local a = providers[i]
      if a == address or a == ANYHOST or a == ANYHOST .. ":*" or a == ANYHOST .. ":" .. format("%d", ep.port)
          or a == ep.host then
        hit = true
        break
      end
    end
    if not hit then return false end
  end
  local meta = ep.meta or {}
  local my_app = provider_view and meta.application or scope.application
  if rule.svc and rule.svc ~= (svc or M.service_of(ep, scope)) then return false end
  local conds = rule.conds
  for i = 1, #conds do
    local k, v = conds[i][1], conds[i][2]
    local mine
    if k == "side" then
      mine = provider_view and "provider" or "consumer"
    elseif k == "application" then
      mine = my_app
    else
      mine = meta[k]
    end
    if v ~= mine then return false end
  end
  local m = rule.match
  if m then
    -- ConditionMatch.isMatch(host, url): the host configureIfMatch compared, and the configured URL
    if m.address and not MT.address(m.address, host) then return false end
    if m.providerAddress and not MT.address(m.providerAddress, ep.host .. ":" .. format("%d", ep.port)) then
      return false
    end
    if m.service and not MT.list(m.service, svc or M.service_of(ep, scope)) then return false end
    if m.app and not MT.list(m.app, my_app) then return false end
    if m.param and not MT.params(m.param, function(k)
      if k == "side" then return provider_view and "provider" or "consumer" end
      if k == "application" then return my_app end
      return meta[k]
    end) then
      return false
    end
  end
  return true
end

return M
