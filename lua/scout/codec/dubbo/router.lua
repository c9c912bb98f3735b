-- dubbo routers as scout.route rules: condition routers (2.6 condition:// URLs under /dubbo/<iface>/routers, and
-- 2.7+ config-center YAML `conditions:`) and the tag router (2.7+ YAML `tags:`, plus the static `dubbo.tag`
-- provider param), with dubbo's priorities. Every route spec made here is compiled by scout.route before it is
-- accepted, so a rule route.lua cannot run is refused whole at compile time, never at request time.
-- Plain data in and out; nothing raises on bad input (nil, why).

local type = type
local ipairs = ipairs
local find = string.find
local sub = string.sub
local gsub = string.gsub
local lower = string.lower
local format = string.format
local tonumber = tonumber

local url = require "scout.util.url"
local dubbo = require "scout.codec.dubbo"
local route = require "scout.route"
local Y = require "scout.codec.dubbo.yaml"

local M = {}

-- dubbo 2.7 RouterChain priorities (lower runs first): URL condition routers default to 0
M.TAG_PRIORITY = 100      -- TagRouter
M.SERVICE_PRIORITY = 140  -- ServiceRouter: <servicekey>.condition-router
M.APP_PRIORITY = 150      -- AppRouter: <application>.condition-router
M.TAG_KEY = "dubbo.tag"   -- CommonConstants.TAG_KEY: the provider URL param and the request attachment

local function present(v) return v ~= nil and v ~= "" end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- ConditionRouter.init: "consumer."/"provider." prefixes dropped, "true" when and "false" then, no "=>" means a
-- then-only rule. Returns a scout.route condition spec (fallback from force) or nil, why.
function M.condition_spec(rule, force)
  if type(rule) ~= "string" or trim(rule) == "" then return nil, "empty route rule" end
  rule = gsub(gsub(rule, "consumer%.", ""), "provider%.", "")
  local i = find(rule, "=>", 1, true)
  local when, thens
  if i then
    when, thens = trim(sub(rule, 1, i - 1)), trim(sub(rule, i + 2))
  else
    when, thens = "", trim(rule)
  end
  if when == "true" then when = "" end
  if thens == "false" then thens = "" end
  local spec = { condition = when .. " => " .. thens }
  -- empty then: a blacklist, empty whatever force says; else an empty result is kept only when forced
  if thens ~= "" then spec.fallback = force and "none" or "all" end
  local ok, err = route.compile({ spec })
  if not ok then return nil, (err:gsub("^rule 1: ", "")) end
  return spec
end

local function bool_param(v, default)
  if not present(v) then return default end
  return lower(v) == "true"
end

-- a router URL (decoded znode name) -> entry { priority, text, spec } | nil, why
function M.from_name(name, scope)
  if type(name) ~= "string" or name == "" then return nil, "bad name" end
  local s, err = url.decode(name, true)
  if not s then return nil, err end
  local protocol, host, _, path, params = dubbo.parse_url(s)
  if not protocol then return nil, host end
  if protocol == "empty" then return nil, "empty" end
  local cat = params.category
  if cat and cat ~= "routers" then return nil, "not a router (category=" .. cat .. ")" end
  if path ~= scope.interface and path ~= "*" then return nil, "for interface " .. tostring(path), true end
  if scope.group ~= "*" and params.group ~= scope.group then return nil, "for another group", true end
  if scope.version ~= "*" and params.version ~= scope.version then return nil, "for another version", true end
  if not bool_param(params.enabled, true) then return nil, "enabled=false", true end
  if protocol ~= "condition" and protocol ~= "route" then
    return nil, protocol .. ":// routers are not supported"
  end
  local router = params.router
  if protocol == "route" and router ~= "condition" then
    return nil, "route:// with router=" .. tostring(router) .. " is not supported"
  end
  if present(params.priority) and not find(params.priority, "^[-+]?%d+$") then return nil, "bad priority" end
  local rule = params.rule
  if not present(rule) then return nil, "no rule" end
  rule, err = url.decode(rule, true)  -- getParameterAndDecoded
  if not rule then return nil, "rule: " .. err end
  local spec
  spec, err = M.condition_spec(rule, bool_param(params.force, false))
  if not spec then return nil, err end
  return { priority = tonumber(params.priority) or 0, text = s, spec = spec, runtime = bool_param(params.runtime) }
end

local COMMON = { scope = "string", key = "string", force = "boolean", runtime = "boolean", enabled = "boolean",
  priority = "integer", dynamic = "boolean", valid = "boolean", configVersion = "string" }

local function common_check(doc, extra)
  local fields = {}
  for k, v in pairs(COMMON) do fields[k] = v end
  for k, v in pairs(extra) do fields[k] = v end
  local ok, why = Y.check(doc, fields, "")
  if not ok then return nil, why end
  if not present(Y.scalar(Y.get(doc, "key"))) then return nil, "no key" end
  local scope = Y.get(doc, "scope")
  if scope and scope ~= "service" and scope ~= "application" then
    return nil, "scope must be \"service\" or \"application\""
  end
  return true
end

-- ConditionRouterRule (YAML) -> { enabled, force, key, scope, specs = {spec...} } | nil, why
function M.condition_yaml(text)
  local doc, err = Y.load(text)
  if not doc then return nil, err end
  local ok, why = common_check(doc, { conditions = "list" })
  if not ok then return nil, why end
  local conds = Y.strings(doc, "conditions")
  if #conds == 0 then return nil, "no conditions" end
  local force = Y.get(doc, "force") == true
  local out = { key = Y.scalar(Y.get(doc, "key")), scope = Y.get(doc, "scope"),
    enabled = Y.get(doc, "enabled") ~= false, force = force, specs = {} }
  for i, c in ipairs(conds) do
    local spec
    spec, err = M.condition_spec(c, force)
    if not spec then return nil, "conditions[" .. i .. "]: " .. err end
    out.specs[i] = spec
  end
  return out
end

-- TagRouterRule (YAML) -> { enabled, force, key = provider application, tags = { {name, addresses} } } | nil, why
function M.tag_yaml(text)
  local doc, err = Y.load(text)
  if not doc then return nil, err end
  local ok, why = common_check(doc, { tags = "items" })
  if not ok then return nil, why end
  local tags = Y.get(doc, "tags")
  if not tags or #tags == 0 then return nil, "no tags" end
  local out = { key = Y.scalar(Y.get(doc, "key")), enabled = Y.get(doc, "enabled") ~= false,
    force = Y.get(doc, "force") == true, tags = {} }
  for i, t in ipairs(tags) do
    ok, why = Y.check(t, { name = "string", addresses = "list", match = "items" }, "tags[" .. i .. "].")
    if not ok then return nil, why end
    if Y.get(t, "match") then return nil, "tags[" .. i .. "].match (dubbo 3 param match) is not supported" end
    local name = Y.scalar(Y.get(t, "name"))
    if not present(name) then return nil, "tags[" .. i .. "] has no name" end
    out.tags[i] = { name = name, addresses = Y.strings(t, "addresses") }
  end
  return out
end

-- TagStateRouter.addressMatches: "host:port", "host", "0.0.0.0:port", "0.0.0.0", and "*" wildcards in the host
local function address_matches(addr, ep)
  local port = format("%d", ep.port)
  local h, p = addr:match("^(.*):(%d+)$")
  if not h or find(h, ":", 1, true) then h, p = addr, nil end
  if p and p ~= port then return false end
  if h == ep.host or h == "0.0.0.0" or h == "*" then return true end
  if find(h, "*", 1, true) then
    local pat = "^" .. gsub(gsub(h, "[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"), "%*", "[^.:]*") .. "$"
    return find(ep.host, pat) ~= nil
  end
  return false
end

function M.has_tag(rule, name)
  for _, t in ipairs(rule.tags) do
    if t.name == name then return true end
  end
  return false
end

-- the dynamic tag a tag rule gives this provider, or nil
function M.tag_of(rule, ep)
  for _, t in ipairs(rule.tags) do
    for _, a in ipairs(t.addresses) do
      if address_matches(a, ep) then return t.name end
    end
  end
  return nil
end

return M
