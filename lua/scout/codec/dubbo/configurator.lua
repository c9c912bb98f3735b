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
local find = string.find
local sub = string.sub
local lower = string.lower
local format = string.format
local sort = table.sort
local concat = table.concat

local url = require "scout.util.url"
local dubbo = require "scout.codec.dubbo"
local Y = require "scout.codec.dubbo.yaml"

local M = {}

local ANYHOST = "0.0.0.0"

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
  return {
    text = s, protocol = protocol, host = host, port = port, path = path or "", params = params,
    enabled = bool_param(params.enabled, true), priority = int_param(params.priority) or 0,
    v27 = present(params.configVersion),
  }
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
function M.for_consumer(rule, scope)
  local p = rule.params
  if rule.path ~= scope.interface and rule.path ~= "*" then return false, "for interface " .. rule.path end
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
  if not rule.enabled then return false, "enabled=false" end
  return true
end

------------------------------------------------------------------------------------------------------------------
-- config center YAML -> the URLs ConfigParser builds

local CONFIG_FIELDS = { configVersion = "string", scope = "string", key = "string", enabled = "boolean",
  configs = "items" }
local ITEM_FIELDS = { type = "string", enabled = "boolean", addresses = "list", providerAddresses = "list",
  services = "list", applications = "list", parameters = "map", side = "string", match = "map" }

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

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = Y.scalar(k) end
  sort(keys)
  return keys
end

-- ConfigParser.toParameterString (dubbo 3: side=provider without providerAddresses scopes to the addresses).
-- Parameters are written in sorted order (Java's HashMap order is not an API; only the set matters).
local function param_string(item, addresses)
  local parts = { "category=dynamicconfigurators" }
  local side = Y.get(item, "side")
  if side then parts[#parts + 1] = "side=" .. Y.scalar(side) end
  local params = Y.get(item, "parameters")
  if not params or next(params) == nil then
    return nil, "a config item needs at least one parameter"
  end
  for _, k in ipairs(sorted_keys(params)) do
    local v = params[k]
    if v == nil then v = params[tonumber(k)] end
    parts[#parts + 1] = k .. "=" .. Y.scalar(v)
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
  local version = Y.get(doc, "configVersion")
  if not version then return nil, "no configVersion" end
  local configs = Y.get(doc, "configs")
  if not configs or #configs == 0 then return nil, "no configs" end
  local urls = {}
  for i, item in ipairs(configs) do
    local where = "configs[" .. i .. "]."
    ok, why = Y.check(item, ITEM_FIELDS, where)
    if not ok then return nil, why end
    if Y.get(item, "match") then return nil, where .. "match (dubbo 3.1 match conditions) is not supported" end
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
  end
  local rules = {}
  for i, u in ipairs(urls) do
    local r
    r, why = M.from_url(u)
    if not r then return nil, "configs: " .. why .. " in " .. u end
    rules[i] = r
  end
  return rules
end

------------------------------------------------------------------------------------------------------------------
-- order and application

-- Configurator.compareTo: by host string, then priority; Collections.sort is stable (ties keep their order).
function M.sort(rules)
  local list = {}
  for i, r in ipairs(rules) do list[i] = { r = r, i = i } end
  sort(list, function(a, b)
    if a.r.host ~= b.r.host then return a.r.host < b.r.host end
    if a.r.priority ~= b.r.priority then return a.r.priority < b.r.priority end
    return a.i < b.i
  end)
  for i, x in ipairs(list) do list[i] = x.r end
  return list
end

local function service_key(iface, group, version)
  local s = iface or ""
  if present(group) then s = group .. "/" .. s end
  if present(version) then s = s .. ":" .. version end
  return s
end

-- AbstractConfigurator.configureIfMatch against the URL as seen from one side. view: { host = the host compared
-- with the rule's, address = "host:port" of the provider, port, application, param = function(k) }.
local function if_match(rule, view, ep, scope)
  if rule.host ~= ANYHOST and rule.host ~= view.host then return false end
  local p = rule.params
  local providers = p.providers
  if present(providers) then
    local hit = false
    for a in (providers .. ","):gmatch("([^,]*),") do
      if a == view.address or a == ANYHOST or a == ANYHOST .. ":*" or a == ANYHOST .. ":" .. format("%d", ep.port)
          or a == ep.host then
        hit = true
      end
    end
    if not hit then return false end
  end
  local app = p.application
  if app ~= nil and app ~= "*" and app ~= view.application then return false end
  if rule.path ~= "*" then
    local meta = ep.meta or {}
    local mine = service_key(scope.interface or meta.interface or meta.path, meta.group, meta.version)
    if service_key(rule.path, p.group, p.version) ~= mine then return false end
  end
  for k, v in pairs(p) do
    local tilde = sub(k, 1, 1) == "~"
    if tilde or k == "application" or k == "side" then
      if v ~= "*" and v ~= view.param(tilde and sub(k, 2) or k) then return false end
    end
  end
  return true
end

-- Does the rule configure this provider? Returns true or false.
function M.matches(rule, ep, scope)
  local p = rule.params
  local meta = ep.meta or {}
  local address = ep.host .. ":" .. format("%d", ep.port)
  local side = p.side
  if side == "provider" then
    -- as the provider configures its own URL (side=provider, its own application)
    local view = { host = ep.host, address = address, application = meta.application,
      param = function(k)
        if k == "side" then return "provider" end
        return meta[k]
      end }
    if rule.v27 then return if_match(rule, view, ep, scope) end
    if rule.port then
      return rule.port == ep.port and if_match(rule, view, ep, scope)
    end
    view.host = ANYHOST
    return if_match(rule, view, ep, scope)
  end
  -- as the consumer configures the merged URL (side=consumer, the consumer's application)
  local view = { host = scope.host, address = address, application = scope.application,
    param = function(k)
      if k == "side" then return "consumer" end
      if k == "application" then return scope.application end
      return meta[k]
    end }
  if rule.v27 then
    if side ~= "consumer" then return false end
    return if_match(rule, view, ep, scope)
  end
  if rule.port then
    if rule.port ~= ep.port then return false end
    view.host = ep.host
    return if_match(rule, view, ep, scope)
  end
  return if_match(rule, view, ep, scope)
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

return M
