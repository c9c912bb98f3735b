-- scout.policy: the policy DSL. A policy file is plain Lua run in an environment that offers `zookeeper {}`,
-- `api {}`, `agent {}`, `service "name" {}` (and, later, `cache {}` and `register "name" {}`); each call is
-- checked against a schema right away, so a mistake is reported as `policy.lua:12: service "orders": delay must
-- be a number or a function` with the line of the block that holds it. Loading never connects anywhere: what it
-- builds is a plain table that `scout check`, the agent and the specs can inspect.

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local require = require
local tostring = tostring
local format = string.format
local setmetatable = setmetatable
local getinfo = debug.getinfo
local floor = math.floor
local sort = table.sort
local concat = table.concat

local M = {}

-- Where a DSL call was made: the policy file and line (level 3 = the caller of the DSL function). Asked twice per
-- block, so the source name is looked up once per calling function: with 10,000 services this is most of a load.
local source_of = setmetatable({}, { __mode = "k" })
local function at_of(info)
  if not info then return "?" end
  local src = source_of[info.func]
  if not src then
    src = getinfo(info.func, "S").source or "?"
    if src:sub(1, 1) == "@" then src = src:sub(2) end
    source_of[info.func] = src
  end
  return src .. ":" .. (info.currentline or 0)
end

local function where(level)
  return at_of(getinfo(level, "fl"))
end

local function fail(at, msg)
  error(at .. ": " .. msg, 0)
end

-- ---- value checks: each returns nil when fine, or a phrase that completes "<key> ..." --------------------

-- Integers cross into C as int: keep them well inside it.
local MAX_INT = 2 ^ 31 - 1
local function is_posint(v)
  if type(v) ~= "number" or v ~= floor(v) or v <= 0 or v > MAX_INT then
    return "must be a positive integer (at most 2^31-1)"
  end
end

local function is_sessions(v)
  if type(v) ~= "number" or v ~= floor(v) or v < 1 or v > 64 then return "must be a whole number from 1 to 64" end
end

-- bytes of watched paths per session before a big service's data watches spread to more sessions; 0 = never spread
local function is_watch_budget(v)
  if type(v) ~= "number" or v ~= floor(v) or (v ~= 0 and (v < 4096 or v > 900000)) then
    return "must be 0 (do not spread) or a whole number of bytes from 4096 to 900000"
  end
end

local MAX_DELAY = 24 * 3600 * 1000
M.MAX_DELAY = MAX_DELAY

local function is_function(v)
  if type(v) ~= "function" then return "must be a function" end
end

local function is_table(v)
  if type(v) ~= "table" then return "must be a table" end
end

local LEVELS = { error = true, warn = true, info = true, debug = true }
local function is_level(v)
  if not LEVELS[v] then return "must be one of error, warn, info, debug" end
end

local function is_listen(v)
  if type(v) ~= "string" then return "must be a string like \"unix:/run/scout.sock\" or \"127.0.0.1:8500\"" end
  if v:match("^unix:/.") then return nil end
  local port = v:match("^%[[%x:]+%]:(%d+)$") or v:match("^[%w%.%-]+:(%d+)$")
  if not port or tonumber(port) > 65535 then
    return "must be \"unix:/path\" or \"host:port\" (got \"" .. v .. "\")"
  end
end

local function is_servers(v)
  if type(v) ~= "string" or v == "" then return "must be a string like \"127.0.0.1:2181,10.0.0.2:2181/chroot\"" end
  local hosts = v:match("^([^/]*)") or ""
  local n = 0
  for hp in hosts:gmatch("[^,]+") do
    local port = hp:match("^[%w%.%-]+:(%d+)$") or hp:match("^%[[%x:]+%]:(%d+)$")
    if not port or tonumber(port) < 1 or tonumber(port) > 65535 then
      return "has a bad server \"" .. hp .. "\" (want host:port)"
    end
    n = n + 1
  end
  if n == 0 then return "names no server (want \"host:port[,host:port...][/chroot]\")" end
end

-- auth = { scheme = "digest", credential = "user:pass" | credential_env = "VAR" | credential_file = "/path" }
-- The secret is read at load (file or environment) and never printed.
local function is_auth(v)
  if type(v) ~= "table" then return "must be a table { scheme = \"digest\", credential = \"user:pass\" }" end
  if v.scheme ~= "digest" then return "scheme must be \"digest\" (the packaged client has no SASL)" end
  local given = 0
  for k in pairs(v) do
    if k == "credential" or k == "credential_env" or k == "credential_file" then
      given = given + 1
    elseif k ~= "scheme" then
      return "has an unknown key \"" .. tostring(k) .. "\""
    end
  end
  if given ~= 1 then return "needs exactly one of credential, credential_env, credential_file" end
  local cred = v.credential
  if v.credential_env then
    cred = os.getenv(tostring(v.credential_env))
    if not cred then return "credential_env: $" .. tostring(v.credential_env) .. " is not set" end
  elseif v.credential_file then
    local f, err = io.open(tostring(v.credential_file), "r")
    if not f then return "credential_file: " .. tostring(err) end
    cred = (f:read("*l") or ""):gsub("%s+$", "")
    f:close()
  end
  if type(cred) ~= "string" or not cred:find(":", 1, true) then
    return "credential must be \"user:password\""
  end
  v.credential, v.credential_env, v.credential_file = cred, nil, nil
end

local function is_path(v)
  if type(v) ~= "string" or v:sub(1, 1) ~= "/" then return "must be an absolute ZooKeeper path" end
  if v ~= "/" and (v:sub(-1) == "/" or v:find("//", 1, true)) then return "must not end in / or contain //" end
  -- every component follows a "/": a "." or ".." one is "/./", "/../" or the same at the end
  if v:find("/%.%.?/") or v:find("/%.%.?$") then return "must not contain . or .. components" end
end

local function is_codec(v)
  local ok, codec = pcall(require, "scout.codec")
  if not ok then return "cannot be checked: " .. tostring(codec) end
  local c, err = codec.get(v)
  if not c then return ": " .. err end
end

local function is_delay(v)
  if type(v) == "function" then return nil end
  if type(v) ~= "number" or v ~= v or v < 0 or v ~= floor(v) or v > MAX_DELAY then
    return "must be a number of milliseconds from 0 to 86400000 (a day), or a function"
  end
end

local function is_selector(v)
  local ok, select = pcall(require, "scout.select")
  if not ok then return "cannot be checked: " .. tostring(select) end
  local mod, err = select.resolve(v)
  -- require's search list is noise here: the first line says what is wrong
  if not mod then
    err = tostring(err)
    local first = err:match("^[^\n]*")
    if first ~= err then                       -- cut before the search list: close what was opened
      first = first:gsub(":%s*$", "")
      local _, opened = first:gsub("%(", "")
      local _, closed = first:gsub("%)", "")
      first = first .. string.rep(")", opened - closed)
    end
    return ": " .. first
  end
end

local function is_route(v)
  local ok, route = pcall(require, "scout.route")
  if not ok then return "cannot be checked: " .. tostring(route) end
  if type(v) ~= "table" then return "must be a list of rules" end
  local router, err = route.compile(v)
  if not router then return ": " .. err end
end

-- A duration: milliseconds as a number, or a string "500ms", "2s", "1m".
local UNITS = { ms = 1, s = 1000, m = 60000, h = 3600000 }
function M.duration(v)
  if type(v) == "number" then
    if v >= 0 and v == floor(v) then return v end
    return nil
  end
  if type(v) ~= "string" then return nil end
  local n, unit = v:match("^(%d+%.?%d*)(%a+)$")
  if not n or not UNITS[unit] then return nil end
  return floor(tonumber(n) * UNITS[unit])
end

local function is_duration(v)
  local ms = M.duration(v)
  if not ms or ms > MAX_DELAY then return "must be milliseconds or a duration like \"60s\" (at most a day; 0 = off)" end
end

local function is_dir(v)
  if type(v) ~= "string" or v:sub(1, 1) ~= "/" then return "must be an absolute directory path" end
  if v == "/dev/shm" then return "must not be /dev/shm (the shared-memory snapshot lives there)" end
end

local function is_shm_path(v)
  if type(v) ~= "string" or v:sub(1, 1) ~= "/" then return "must be an absolute file path (e.g. /dev/shm/scout)" end
end

-- max_age: seconds as a number (86400), or a duration string ("24h")
local function is_age(v)
  if type(v) == "number" then
    if v > 0 and v == floor(v) and v <= MAX_INT then return nil end
  elseif M.duration(v) and M.duration(v) >= 1000 then
    return nil
  end
  return "must be seconds (a whole number) or a duration like \"24h\""
end

-- render { template = "file.tpl" | function(view), dest = "/path", command = "...", wait = { min =, max = } }
local RENDER_KEYS = { template = true, dest = true, command = true, wait = true }
local function check_render(t, base_dir)
  if type(t) ~= "table" then return "expects a table { template = ..., dest = ... }" end
  for k in pairs(t) do
    if not RENDER_KEYS[k] then return "unknown key \"" .. tostring(k) .. "\" (known: command, dest, template, wait)" end
  end
  if type(t.dest) ~= "string" or t.dest:sub(1, 1) ~= "/" then return "dest must be an absolute file path" end
  if t.command ~= nil and (type(t.command) ~= "string" or t.command == "") then
    return "command must be a shell command (a string)"
  end
  if type(t.template) == "string" then
    local file = t.template:sub(1, 1) == "/" and t.template or (base_dir .. t.template)
    local f, err = io.open(file, "r")
    if not f then return "template: " .. tostring(err) end
    local text = f:read("*a")
    f:close()
    local ok, cosmo = pcall(require, "cosmo")
    if not ok then return "template: the cosmo library is missing (Debian package lua-cosmo)" end
    local okc, cerr = pcall(cosmo.compile, text)
    if not okc then return "template " .. file .. ": " .. tostring(cerr) end
    t.template_file, t.template_text = file, text
  elseif type(t.template) ~= "function" then
    return "template must be a template file name or a function(view)"
  end
  local w = t.wait or {}
  if type(w) ~= "table" then return "wait must be a table { min = \"2s\", max = \"10s\" }" end
  local min, max = M.duration(w.min or 0), M.duration(w.max or w.min or 0)
  if not min or not max then return "wait: min and max must be durations like \"2s\"" end
  if max < min then return "wait: max must not be less than min" end
  t.wait_min_ms, t.wait_max_ms = min, max
end

-- register "name" { path, codec, codec_options, endpoint = {host, port, weight, meta} | function, ephemeral,
--                   check = { tcp | http | exec | lua = ..., interval, timeout, rise, fall }, acl }
local CHECK_KINDS = { tcp = "string", http = "string", exec = "string", lua = "function" }
local CHECK_NUMS = { interval = true, timeout = true, rise = true, fall = true }
local function is_check(v)
  if type(v) ~= "table" then return "must be a table { tcp = \"host:port\", interval = 2000, ... }" end
  local kinds = 0
  for k, val in pairs(v) do
    if CHECK_KINDS[k] then
      if type(val) ~= CHECK_KINDS[k] then return k .. " must be a " .. CHECK_KINDS[k] end
      kinds = kinds + 1
    elseif CHECK_NUMS[k] then
      local ms = (k == "rise" or k == "fall") and val or M.duration(val)
      if type(ms) ~= "number" or ms < 1 or ms ~= floor(ms) or ms > MAX_DELAY then
        return k .. " must be a positive " .. ((k == "rise" or k == "fall") and "count" or "duration")
      end
    else
      return "has an unknown key \"" .. tostring(k) .. "\" (known: exec, fall, http, interval, lua, rise, tcp, timeout)"
    end
  end
  if kinds ~= 1 then return "needs exactly one of tcp, http, exec, lua" end
  if v.http and not v.http:match("^http://[^/]+") then return "http must be an http:// URL" end
end

local function is_endpoint(v)
  if type(v) == "function" then return nil end
  if type(v) ~= "table" then return "must be a table { host =, port = } or a function returning one" end
  if type(v.host) ~= "string" or v.host == "" then return "needs a host" end
  if type(v.port) ~= "number" or v.port ~= floor(v.port) or v.port < 1 or v.port > 65535 then
    return "needs a port from 1 to 65535"
  end
end

local ACLS = { open = true, creator = true, private = true }
local function is_acl(v)
  if not ACLS[v] then return "must be \"open\", \"creator\" (creator all, world read) or \"private\"" end
end

local function is_bool(v)
  if type(v) ~= "boolean" then return "must be true or false" end
end

local PROTECT_KEYS = { min_ratio = true, confirm = true, hold = true, confirm_interval = true }
local function is_protect(v)
  if v == false then return nil end
  if type(v) ~= "table" then return "must be a table { min_ratio =, confirm =, hold = } or false" end
  for k in pairs(v) do
    if not PROTECT_KEYS[k] then return "has an unknown key \"" .. tostring(k) .. "\"" end
  end
  if v.min_ratio ~= nil and (type(v.min_ratio) ~= "number" or v.min_ratio <= 0 or v.min_ratio > 1) then
    return "min_ratio must be a number in (0, 1]"
  end
  if v.confirm ~= nil and (type(v.confirm) ~= "number" or v.confirm < 0 or v.confirm ~= floor(v.confirm)) then
    return "confirm must be a whole number of reads >= 0"
  end
  for _, k in ipairs({ "hold", "confirm_interval" }) do
    if v[k] ~= nil and not M.duration(v[k]) then
      return k .. " must be milliseconds or a duration like \"60s\""
    end
  end
end

-- ---- schemas ------------------------------------------------------------------------------------------------

local SECTIONS = {
  zookeeper = { servers = is_servers, session_timeout = is_posint, auth = is_auth, sessions = is_sessions,
                watch_budget = is_watch_budget },
  api = { listen = is_listen },
  cache = { dir = is_dir, max_age = is_age },
  shm = { path = is_shm_path },
  agent = { hook_budget = is_posint, log_level = is_level, anti_entropy = is_duration, drain = is_duration },
}

local SERVICE = {
  path = is_path,
  codec = is_codec,
  codec_options = is_table,
  filter = is_function,
  delay = is_delay,
  selector = is_selector,
  selector_options = is_table,
  route = is_route,
  on_change = is_function,
  protect = is_protect,
  on_protect = is_function,
}

local REGISTER = {
  path = is_path,
  codec = is_codec,
  codec_options = is_table,
  endpoint = is_endpoint,
  ephemeral = is_bool,
  check = is_check,
  acl = is_acl,
}

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  return keys
end

local function check_block(at, label, schema, t)
  if type(t) ~= "table" then fail(at, label .. " expects a table { ... }") end
  local bad = false
  for k, v in pairs(t) do
    local check = schema[k]
    if not check or check(v) then bad = true; break end
  end
  if not bad then return end
  -- something is wrong: walk the keys in order so that the same file always names the same first mistake
  for _, k in ipairs(sorted_keys(t)) do
    local check = schema[k]
    if not check then
      fail(at, format("%s: unknown key \"%s\" (known: %s)", label, k, concat(sorted_keys(schema), ", ")))
    end
    local why = check(t[k])
    if why then
      if why:sub(1, 1) == ":" then fail(at, format("%s: %s%s", label, k, why)) end
      fail(at, format("%s: %s %s", label, k, why))
    end
  end
end

local NAME_PATTERN = "^[%w][%w_.%-]*$"

-- Build a fresh policy environment. `policy` collects what the file declares.
local function environment(policy)
  local env = setmetatable({}, { __index = _G })
  local seen = {}

  for name, schema in pairs(SECTIONS) do
    env[name] = function(t)
      local at = where(3)
      if seen[name] then fail(at, name .. " {} given twice (first at " .. seen[name] .. ")") end
      seen[name] = at
      check_block(at, name, schema, t)
      for k, v in pairs(t) do policy[name][k] = v end
    end
  end

  env.register = function(name)
    local at = where(3)
    if type(name) ~= "string" or not name:match(NAME_PATTERN) then
      fail(at, "register needs a name: register \"orders-local\" { ... }")
    end
    policy.unfinished = policy.unfinished or {}
    policy.unfinished[#policy.unfinished + 1] = { name = name, at = at, kind = "register" }
    local mine = #policy.unfinished
    return function(t)
      local label = format("register \"%s\"", name)
      policy.unfinished[mine] = false
      at = where(3)
      for _, r in ipairs(policy.registers) do
        if r.name == name then fail(at, label .. " declared twice (first at " .. r.at .. ")") end
      end
      check_block(at, label, REGISTER, t)
      if t.path == nil then fail(at, label .. ": path is required") end
      if t.endpoint == nil then fail(at, label .. ": endpoint is required") end
      local reg = { name = name, at = at, codec = "plain", ephemeral = true }
      for k, v in pairs(t) do reg[k] = v end
      -- the codec must be able to write what it reads
      local codec = require("scout.codec").get(reg.codec)
      if not codec.encode then fail(at, label .. ": codec " .. tostring(reg.codec) .. " cannot encode") end
      policy.registers[#policy.registers + 1] = reg
    end
  end

  env.render = function(t)
    local at = where(3)
    local dir = (policy.file:match("^(.*/)") or "./")
    local why = check_render(t, dir)
    if why then fail(at, "render: " .. why) end
    policy.renders[#policy.renders + 1] = t
  end

  env.service = function(name)
    local info = getinfo(2, "fl")   -- the line, made a string only if this call has no block
    policy.unfinished = policy.unfinished or {}
    policy.unfinished[#policy.unfinished + 1] = { name = name, info = info }
    local at = info
    if type(name) ~= "string" then fail(at_of(at), "service needs a name: service \"orders\" { ... }") end
    if not name:match(NAME_PATTERN) then
      fail(at_of(at), format("service \"%s\": names are letters, digits, _ . - (starting with a letter or digit)",
                             name))
    end
    if name == "services" then   -- a template's view lists every service under that key
      fail(at_of(at), 'service "services": the name is reserved; templates see the list of services under it')
    end
    local mine = #policy.unfinished
    return function(t)
      local label = format("service \"%s\"", name)
      policy.unfinished[mine] = false
      at = where(3)
      if policy.by_name[name] then
        fail(at, label .. " declared twice (first at " .. policy.by_name[name].at .. ")")
      end
      check_block(at, label, SERVICE, t)
      if t.path == nil then fail(at, label .. ": path is required") end
      local svc = { name = name, at = at, codec = "plain" }
      for k, v in pairs(t) do svc[k] = v end
      policy.services[#policy.services + 1] = svc
      policy.by_name[name] = svc
    end
  end

  return env
end

-- Load and validate a policy file. Returns the policy table, or nil and "file:line: message".
function M.load(path)
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  local policy = { file = path, zookeeper = {}, api = {}, agent = {}, cache = {}, shm = {}, services = {},
                   by_name = {}, renders = {}, registers = {} }
  local env = environment(policy)
  setfenv(chunk, env)
  local ok, perr = pcall(chunk)
  if not ok then return nil, tostring(perr) end
  for _, u in ipairs(policy.unfinished or {}) do
    if u then
      return nil, format("%s: %s \"%s\" has no { ... } block", u.at or at_of(u.info), u.kind or "service",
                         tostring(u.name))
    end
  end
  policy.unfinished = nil
  if env.on_session ~= nil then
    if type(env.on_session) ~= "function" then
      return nil, path .. ": on_session must be a function"
    end
    policy.on_session = env.on_session
  end
  return policy
end

return M
