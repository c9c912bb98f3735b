-- dubbo: Apache Dubbo's ZooKeeper registry, read the way a dubbo consumer reads it.
--
-- Interface level (codec "dubbo"): each child of /dubbo/<iface>/providers is URL.encode(url.toFullString()); node
-- data is never used (needs_data is always false). The URL is parsed like dubbo's URL.valueOf: params are raw
-- after the one outer decode, a repeated key keeps its last value (a Java HashMap), `host:port` may be IPv6 without
-- brackets (dubbo writes it so; the last ":" splits). Every param goes into meta, plus meta.protocol and meta.path
-- unless a param of that name exists. Weight follows AbstractLoadBalance.getWeight: `weight` (default 100),
-- ramped by `timestamp` + `warmup` (default 10 min, as dubbo) via calculateWarmupWeight, including its float math.
-- A decoded weight is a snapshot: while M.warmup_until(ep) is in the future, re-evaluate M.effective_weight.
-- Enabled follows RegistryDirectory: `disabled` wins if present, else `enabled` (default true).
--
-- Configurators (/dubbo/<iface>/configurators): M.decode_configurator(name) -> rule, and
-- M.apply_configurators(eps, rules, opts) -> new list of copies. Matching follows the dubbo docs' admin semantics
-- (host 0.0.0.0 = every provider, else that provider host, and its port if given) rather than dubbo 2.7's
-- consumer-side code, which reads a port-less specific host as a consumer host; conditions (application, side,
-- group, version, ~key, providers) and the condition keys that are never merged are dubbo's.
-- What a dubbo consumer really does with configurators, routers and config-center rules is
-- scout.codec.dubbo_rules (the agent uses that); these two stay for policies that call them.
--
-- Dubbo 3 app level (codec "dubbo3" = M.app): /services/<app>/<host:port> holds Curator JSON whose payload is
-- org.apache.dubbo.registry.zookeeper.ZookeeperInstance; it reuses scout.codec.curator's parser, with weight
-- default 100 and opts.protocol picking the port from the `dubbo.endpoints` metadata.

local type = type
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local floor = math.floor
local frexp = math.frexp
local ldexp = math.ldexp
local find = string.find
local lower = string.lower
local sub = string.sub
local byte = string.byte
local format = string.format
local sort = table.sort
local concat = table.concat
local os_time = os.time

local E = require "scout.util.endpoint"
local url = require "scout.util.url"
local curator = require "scout.codec.curator"

local M = { name = "dubbo" }

M.DEFAULT_WEIGHT = 100
M.DEFAULT_WARMUP = 10 * 60 * 1000
local INT_MAX = 2147483647

-- keys of a configurator URL that are conditions or bookkeeping, never merged into a provider (AbstractConfigurator)
local CONDITION_KEYS = {
  category = true, check = true, dynamic = true, enabled = true, group = true, version = true, application = true,
  side = true, configVersion = true, compatible_config = true, interfaces = true,
}

local function now_ms(opts)
  if opts and type(opts.now) == "number" then return opts.now end
  return os_time() * 1000
end

-- Java String.trim(): strips chars <= U+0020 at both ends.
local function jtrim(s)
  local i, j = 1, #s
  while i <= j and byte(s, i) <= 32 do i = i + 1 end
  while j >= i and byte(s, j) <= 32 do j = j - 1 end
  return sub(s, i, j)
end

-- Java Integer.parseInt for our purposes: optional sign, digits, in int range.
-- Absent or empty values are the caller's business (URL.getParameter returns the default for both).
local function parse_int(s)
  if type(s) ~= "string" or not find(s, "^[-+]?%d+$") or #s > 12 then return nil end
  local v = tonumber(s)
  if v > INT_MAX or v < -INT_MAX - 1 then return nil end
  return v
end

local function parse_long(s)
  if type(s) ~= "string" or not find(s, "^[-+]?%d+$") or #s > 19 then return nil end
  return tonumber(s)
end

-- round a double to the nearest IEEE single (ties to even), as Java's float arithmetic does
local function f32(x)
  if x == 0 or x ~= x then return x end
  local m, e = frexp(x)          -- x = m * 2^e, 0.5 <= |m| < 1
  local s = m * 16777216         -- 24 significant bits
  local fl = floor(s)
  local d = s - fl
  if d > 0.5 or (d == 0.5 and fl % 2 == 1) then fl = fl + 1 end
  return ldexp(fl / 16777216, e)
end

-- AbstractLoadBalance.calculateWarmupWeight: (int)(uptime / ((float) warmup / weight)), at least 1, at most weight
function M.warmup_weight(uptime, warmup, weight)
  local ww = f32(f32(uptime) / f32(f32(warmup) / f32(weight)))
  ww = ww >= 0 and floor(ww) or -floor(-ww)
  if ww < 1 then return 1 end
  if ww > weight then return weight end
  return ww
end

local function present(v) return v ~= nil and v ~= "" end

local function base_weight(meta)
  local w = meta.weight
  if not present(w) then return M.DEFAULT_WEIGHT end
  w = parse_int(w)
  if not w then return nil end
  return w < 0 and 0 or w
end

-- Effective weight at now_ms (AbstractLoadBalance.getWeight). Never fails: unparsable params count as absent.
function M.effective_weight(ep, now)
  local meta = ep.meta or {}
  local weight = base_weight(meta) or M.DEFAULT_WEIGHT
  if weight > 0 then
    local ts = parse_long(meta.timestamp)
    if ts and ts > 0 then
      now = now or os_time() * 1000
      local uptime = now - ts
      if uptime < 0 then return 1 end
      local warmup = parse_int(meta.warmup) or M.DEFAULT_WARMUP
      if uptime > 0 and uptime < warmup then weight = M.warmup_weight(uptime, warmup, weight) end
    end
  end
  return weight
end

-- When the ramp ends (ms), or nil if the weight is already final.
function M.warmup_until(ep, now)
  local meta = ep.meta or {}
  local ts = parse_long(meta.timestamp)
  if not ts or ts <= 0 then return nil end
  local warmup = parse_int(meta.warmup) or M.DEFAULT_WARMUP
  now = now or os_time() * 1000
  if now - ts >= warmup then return nil end
  return ts + warmup
end

-- RegistryDirectory.toInvokers: `disabled` present decides, else `enabled` (default true)
-- (URL.getParameter: an empty value is absent; Boolean.parseBoolean: only "true", any case, is true)
local function status_of(meta)
  local d = meta.disabled
  if d ~= nil and d ~= "" then return lower(d) == "true" and "disabled" or "up" end
  local e = meta.enabled
  if e ~= nil and e ~= "" and lower(e) ~= "true" then return "disabled" end
  return "up"
end
M.status_of = status_of

-- URL.valueOf, reduced to what a registry URL can hold. Returns protocol, host, port|nil, path, params.
local function parse_url(s)
  local params = {}
  local q = find(s, "?", 1, true)
  if q then
    local rest = sub(s, q + 1)
    s = sub(s, 1, q - 1)
    local pos, n = 1, #rest
    while pos <= n do
      local amp = find(rest, "&", pos, true) or n + 1
      local part = jtrim(sub(rest, pos, amp - 1))
      pos = amp + 1
      if part ~= "" then
        local eq = find(part, "=", 1, true)
        if eq then
          params[sub(part, 1, eq - 1)] = sub(part, eq + 1)
        else
          params[part] = part
        end
      end
    end
  end
  local i = find(s, "://", 1, true)
  if not i then return nil, "bad url" end
  if i == 1 then return nil, "url has no protocol" end
  local protocol = sub(s, 1, i - 1)
  if not find(protocol, "^[%w%.%+%-_]+$") then return nil, "bad protocol" end
  s = sub(s, i + 3)
  local path
  i = find(s, "/", 1, true)
  if i then
    path = sub(s, i + 1)
    s = sub(s, 1, i - 1)
  end
  local at = find(s, "@[^@]*$")
  if at then s = sub(s, at + 1) end
  local host, port
  if sub(s, 1, 1) == "[" then
    host, port = s:match("^%[([^%]]+)%]:?(.*)$")
    if not host then return nil, "bad address" end
  else
    local c = find(s, ":[^:]*$")
    if c and c < #s and not find(s, "%", c, true) then
      host, port = sub(s, 1, c - 1), sub(s, c + 1)
    else
      host, port = s, ""
    end
  end
  if port ~= "" then
    local p = E.port_str(port)
    if not p then
      if port == "0" then port = nil else return nil, "bad port" end
    else
      port = p
    end
  else
    port = nil
  end
  return protocol, host, port, path, params
end
M.parse_url = parse_url

local function decode_name(name)
  if type(name) ~= "string" or name == "" then return nil, "bad name" end
  local s, err = url.decode(name, true)
  if not s then return nil, err end
  if sub(s, 1, 8) == "empty://" then return nil, "empty" end
  return s
end

function M.needs_data() return false end
M.reads_data = false  -- constant: the agent asks no per-child question

local NOT_PROVIDER = { consumer = true, override = true, absent = true, route = true, condition = true,
  script = true, tag = true, empty = true }

function M.decode(name, _, opts)
  local s, err = decode_name(name)
  if not s then return nil, err end
  local protocol, host, port, path, params = parse_url(s)
  if not protocol then return nil, host end
  if NOT_PROVIDER[protocol] then return nil, "not a provider" end
  if params.category and params.category ~= "providers" then return nil, "not a provider" end
  local h
  h, err = E.host(host)
  if not h then return nil, err end
  if not port then return nil, "no port" end
  local meta = {}
  for k, v in pairs(params) do meta[k] = v end
  if meta.protocol == nil then meta.protocol = protocol end
  if meta.path == nil and path and path ~= "" then meta.path = path end
  if not base_weight(meta) then return nil, "bad weight" end
  if present(meta.timestamp) and not parse_long(meta.timestamp) then return nil, "bad timestamp" end
  if present(meta.warmup) and not parse_int(meta.warmup) then return nil, "bad warmup" end
  return E.new(name, h, port, M.effective_weight({ meta = meta }, now_ms(opts)), meta, status_of(meta))
end

local function check_param(k, v, level)
  if k == "" or find(k, "[&=]") or find(v, "&", 1, true) or byte(k, 1) <= 32 or byte(v, -1) and byte(v, -1) <= 32 then
    error("dubbo param cannot hold " .. format("%q=%q", k, v), level + 1)
  end
end

-- The name dubbo writes: URL.encode of protocol://host:port/path?sorted params (toFullString).
-- path: opts.interface, else meta.path, else meta.interface. Adds interface, side=provider and timestamp (opts.now
-- or now) when meta lacks them, as dubbo's provider URL has them.
function M.encode(ep, opts)
  E.check(ep, 2)
  opts = opts or {}
  local meta = ep.meta or {}
  local path = opts.interface or meta.path or meta.interface
  if type(path) ~= "string" or path == "" then error("dubbo encode needs opts.interface or meta.interface", 2) end
  if find(path, "?", 1, true) or byte(path, 1) == 47 then
    error("dubbo interface cannot hold '?' or start with '/'", 2)
  end
  local protocol = meta.protocol or opts.protocol or "dubbo"
  if not find(protocol, "^[%w%.%+%-_]+$") then error("bad dubbo protocol", 2) end
  local params = {}
  for k, v in pairs(meta) do
    if k ~= "protocol" and k ~= "path" then params[k] = v end
  end
  if params.interface == nil then params.interface = path end
  if params.side == nil then params.side = "provider" end
  if params.timestamp == nil and opts.timestamp ~= false then params.timestamp = format("%d", now_ms(opts)) end
  if ep.weight ~= nil and (ep.weight ~= M.DEFAULT_WEIGHT or params.weight ~= nil) then
    params.weight = format("%d", ep.weight)
  end
  if ep.status == nil or ep.status == "up" then
    if params.disabled == "true" then params.disabled = nil end
    if params.enabled == "false" then params.enabled = nil end
  else
    params.disabled = nil
    params.enabled = "false"
  end
  local keys = {}
  for k, v in pairs(params) do
    check_param(k, v, 2)
    keys[#keys + 1] = k
  end
  sort(keys)
  local q = {}
  for i, k in ipairs(keys) do q[i] = k .. "=" .. params[k] end
  -- IPv6 unbracketed, as dubbo writes it; parse_url splits at the last ":"
  local full = protocol .. "://" .. ep.host .. ":" .. format("%d", ep.port) .. "/" .. path
  if #q > 0 then full = full .. "?" .. concat(q, "&") end
  return url.encode_java(full), nil
end

------------------------------------------------------------------------------------------------------------------
-- configurators

-- decode_configurator(name) -> rule | nil, err. "empty" means "no rules any more" (dubbo writes empty:// when the
-- last rule goes). rule = { id, protocol = "override"|"absent", host, port|nil, interface, active, priority,
-- params = {merged keys}, conditions = {key = value}, providers = "a,b"|nil }.
function M.decode_configurator(name)
  local s, err = decode_name(name)
  if not s then return nil, err end
  local protocol, host, port, path, params = parse_url(s)
  if not protocol then return nil, host end
  if protocol ~= "override" and protocol ~= "absent" then return nil, "not a configurator" end
  local cat = params.category
  if cat and cat ~= "configurators" and cat ~= "dynamicconfigurators" then return nil, "not a configurator" end
  if host == "" then return nil, "empty host" end
  local h
  h, err = E.host(host)
  if not h then return nil, err end
  local rule = {
    id = name, protocol = protocol, host = h, port = port, interface = path,
    active = not present(params.enabled) or lower(params.enabled) == "true",
    priority = parse_int(params.priority) or 0,
    params = {}, conditions = {}, providers = params.providers,
  }
  for k, v in pairs(params) do
    if sub(k, 1, 1) == "~" then
      rule.conditions[sub(k, 2)] = v
    elseif k == "application" or k == "side" or k == "group" or k == "version" then
      rule.conditions[k] = v
    elseif not CONDITION_KEYS[k] then
      rule.params[k] = v
    end
  end
  return rule
end

local function rule_matches(rule, ep)
  if not rule.active then return false end
  if rule.host ~= "0.0.0.0" then
    if rule.host ~= ep.host then return false end
    if rule.port and rule.port ~= ep.port then return false end
  elseif rule.port and rule.port ~= ep.port then
    return false
  end
  local providers = rule.providers
  if providers and providers ~= "" and not find(providers, "0.0.0.0", 1, true)
      and not find(providers, E.join_hostport(ep.host, ep.port), 1, true)
      and not find(providers, ep.host .. ":" .. format("%d", ep.port), 1, true) then
    return false
  end
  local meta = ep.meta or {}
  for k, v in pairs(rule.conditions) do
    if v ~= "" and v ~= "*" and meta[k] ~= v then return false end
  end
  return true
end

-- dubbo's Configurator order (Configurator.compareTo): by host string, then priority; later rules win. Ties keep
-- input order, as Collections.sort is stable. scout.codec.dubbo.configurator sorts its rules with this too.
local function ordered(rules)
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
M.sort_configurators = ordered

-- apply_configurators(endpoints, rules, opts) -> new list of copies; inputs are never mutated. Status and weight
-- are recomputed from the merged params (opts.now for the warmup ramp).
function M.apply_configurators(endpoints, rules, opts)
  if type(endpoints) ~= "table" then error("endpoints must be a list", 2) end
  if rules ~= nil and type(rules) ~= "table" then error("rules must be a list", 2) end
  local list = ordered(rules or {})
  local now = now_ms(opts)
  local out = {}
  for i, ep in ipairs(endpoints) do
    local c = E.copy(ep)
    local changed = false
    for _, rule in ipairs(list) do
      if rule_matches(rule, c) then
        for k, v in pairs(rule.params) do
          if rule.protocol == "override" or c.meta[k] == nil then
            c.meta[k] = v
            changed = true
          end
        end
      end
    end
    if changed then
      c.status = status_of(c.meta)
      c.weight = M.effective_weight(c, now)
    end
    out[i] = c
  end
  return out
end

------------------------------------------------------------------------------------------------------------------
-- dubbo 3 application level

M.DUBBO3_PAYLOAD = "org.apache.dubbo.registry.zookeeper.ZookeeperInstance"

local app = { name = "dubbo3" }
M.app = app

function app.needs_data() return true end
app.reads_data = true

function app.decode(name, data, opts)
  local ep, err = curator.parse(name, data, opts, { weight = M.DEFAULT_WEIGHT })
  if not ep then return nil, err end
  local proto = opts and opts.protocol
  if proto then
    local eps = ep.meta["dubbo.endpoints"]
    if not eps then return nil, "no endpoints" end
    local list = E.json.decode(eps)
    if type(list) ~= "table" then return nil, "bad endpoints" end
    local port
    for _, x in ipairs(list) do
      if type(x) == "table" and x.protocol == proto then
        port = E.port(x.port)
        if not port then return nil, "bad endpoint port" end
        break
      end
    end
    if not port then return nil, "no " .. tostring(proto) .. " endpoint" end
    ep.port = port
  end
  return ep
end

-- encode(ep, opts): opts.name (the application; or opts.path) is required; the id is host:port as dubbo's
-- CuratorFrameworkUtils.generateId makes it.
function app.encode(ep, opts)
  E.check(ep, 2)
  opts = opts or {}
  local name = curator.service_name(opts, 2)
  local id = ep.host .. ":" .. format("%d", ep.port)
  return id, curator.build(ep, {
    name = name, id = id, payload_class = M.DUBBO3_PAYLOAD, payload_id = id, now = opts.now,
  })
end

return M
