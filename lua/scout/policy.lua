-- scout.policy: the policy DSL. A policy file is plain Lua run in an environment that offers `zookeeper {}`,
-- `api {}`, `agent {}`, `service "name" {}` (and, later, `cache {}` and `register "name" {}`); each call is
-- checked against a schema right away, so a mistake is reported as `policy.lua:12: service "orders": delay must
-- be a number or a function` with the line of the key that holds it. Loading never connects anywhere: what it
-- builds is a plain table that `scout check`, the agent and the specs can inspect. The environment itself, and the
-- check of every global the file reads before it runs, are scout.sandbox's.

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local require = require
local tostring = tostring
local format = string.format
local byte, find = string.byte, string.find
local setmetatable = setmetatable
local getinfo = debug.getinfo
local floor = math.floor
local sort = table.sort
local concat = table.concat
local sandbox = require "scout.sandbox"
local tab_new = require "table.new"
local funcinfo = require("jit.util").funcinfo

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

-- Where a `service "x"` is written, kept as cheaply as it can be: its line alone (a number) when it is in the
-- policy's own file, "file:line" when elsewhere (a module of the operator's). "file:line" is made from it only
-- for a message (at_string): a string per service was 1.7k of the ~35k instructions a service costs to load.
-- From C in the agent (scout.agent.where, which makes no table); through debug.getinfo outside it (specs, tools).
local agent_where = package.loaded["scout.agent"] and package.loaded["scout.agent"].where
local function line_of(level, file)
  local info = getinfo(level, "Sl")
  if not info then return "?" end
  local src = info.source or "?"
  if src:sub(1, 1) == "@" then src = src:sub(2) end
  if src == file then return info.currentline or 0 end
  return src .. ":" .. (info.currentline or 0)
end

-- A service's `at` as every message writes it: "file:line".
local function at_string(policy, at)
  if type(at) == "number" then return policy.file .. ":" .. at end
  return at
end
M.at_string = at_string

local function fail(at, msg)
  error(at .. ": " .. msg, 0)
end

-- ---- value checks: each returns nil when fine, or a phrase that completes "<key> ..." --------------------

-- Integers cross into C as int: keep them well inside it.
local MAX_INT = 2 ^ 31 - 1

-- A share of a whole: a number from 0 to 1.
local function is_share(v)
  if type(v) ~= "number" or v ~= v or v < 0 or v > 1 then return "must be a number from 0 to 1" end
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

-- anti-entropy requests per second, all paths together
local function is_ae_rate(v)
  if type(v) ~= "number" or v ~= floor(v) or v < 1 or v > 1000000 then
    return "must be a whole number of requests per second from 1 to 1000000"
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
local AUTH_KEYS = { scheme = true, credential = true, credential_env = true, credential_file = true }
local function is_auth(v)
  if type(v) ~= "table" then return "must be a table { scheme = \"digest\", credential = \"user:pass\" }" end
  if v.scheme ~= "digest" then return "scheme must be \"digest\" (the packaged client has no SASL)" end
  local given = 0
  for k in pairs(v) do
    if not AUTH_KEYS[k] then
      return "has an unknown key \"" .. tostring(k) .. "\""
    elseif k ~= "scheme" then
      given = given + 1
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

-- Plain searches and bytes, no patterns: asked once per service, the two pattern searches were a sixth of
-- loading 10,000 `service` blocks (callgrind, bench/coldstart's policy). In the agent the same rule is C's
-- (scout.agent.path_fault, the same phrases): these five calls were still 1.4k instructions a service.
local SLASH, DOT = ("/"):byte(), ("."):byte()
local is_path = package.loaded["scout.agent"] and package.loaded["scout.agent"].path_fault
is_path = is_path or function(v)
  if type(v) ~= "string" or byte(v, 1) ~= SLASH then return "must be an absolute ZooKeeper path" end
  local n = #v
  if n > 1 and (byte(v, n) == SLASH or find(v, "//", 1, true)) then return "must not end in / or contain //" end
  -- every component follows a "/": a "." or ".." one is "/./", "/../" or the same at the end, each with a "/."
  if find(v, "/.", 1, true) and (find(v, "/./", 1, true) or find(v, "/../", 1, true)
     or (byte(v, n) == DOT and (byte(v, n - 1) == SLASH or (byte(v, n - 1) == DOT and byte(v, n - 2) == SLASH)))) then
    return "must not contain . or .. components"
  end
end

-- A built-in codec's name, once accepted, is accepted again without asking (10,000 services name the same one).
local codec_ok = {}
local function is_codec(v)
  if codec_ok[v] then return nil end
  local ok, codec = pcall(require, "scout.codec")
  if not ok then return "cannot be checked: " .. tostring(codec) end
  local c, err = codec.get(v)
  if not c then return ": " .. err end
  if type(v) == "string" then codec_ok[v] = true end
end

local is_delay   -- a duration from 0 to a day, or a function: defined with the durations below

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

-- Durations follow one rule everywhere in a policy: a string with a unit ("250ms", "10s", "5m", "1h", "1d";
-- "1.5s" too), or a bare number of milliseconds. (The HTTP API's ?wait= is Consul's and stays seconds.)
local UNITS = { ms = 1, s = 1000, m = 60000, h = 3600000, d = 86400000 }
M.UNITS = UNITS
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

local DURATION = '("500ms", "10s", "1h"; a number is milliseconds)'

-- A check for a duration key: min and max in ms, or_what says what else the key takes (" or a function").
local function duration_check(min, max, range, or_what)
  local msg = "must be a duration " .. DURATION .. " " .. range .. (or_what or "")
  return function(v)
    local ms = M.duration(v)
    if not ms or ms < min or ms > max then return msg end
  end
end

local is_duration = duration_check(0, MAX_DELAY, "from 0 (off) to 1d")
local is_timeout = duration_check(1, MAX_DELAY, "from 1ms to 1d")
local is_interval = duration_check(0, MAX_DELAY, "from 0 to 1d")
local is_delay_value = duration_check(0, MAX_DELAY, "from 0 to 1d", ", or a function")
is_delay = function(v)
  if type(v) == "function" then return nil end
  return is_delay_value(v)
end

-- A bare number whose unit changed in 0.2 (it was seconds): loaded with the new meaning, and warned about.
local OLD_SECONDS = { cache = { max_age = true } }

-- 86400000 -> "1d", 90000 -> "90s": the largest unit that writes ms exactly.
local function duration_string(ms)
  for _, u in ipairs({ "d", "h", "m", "s" }) do
    if ms >= UNITS[u] and ms % UNITS[u] == 0 then return format("%d%s", ms / UNITS[u], u) end
  end
  return format("%dms", ms)
end

local function unit_warnings(policy, at, section, t)
  for k in pairs(OLD_SECONDS[section] or {}) do
    local v = t[k]
    if type(v) == "number" then
      policy.warnings[#policy.warnings + 1] = format(
        '%s: %s.%s = %d is milliseconds (%s s) since 0.2; write "%s" if you meant %d seconds',
        at, section, k, v, tostring(v / 1000), duration_string(v * 1000), v)
    end
  end
end

-- A size: bytes as a number, or a string "512MB", "2GB", "64KB".
local SIZE_UNITS = { B = 1, KB = 1024, MB = 1024 ^ 2, GB = 1024 ^ 3 }
function M.size(v)
  if type(v) == "number" then
    if v >= 0 and v == floor(v) then return v end
    return nil
  end
  if type(v) ~= "string" then return nil end
  local n, unit = v:match("^(%d+%.?%d*)%s*(%a+)$")
  unit = unit and SIZE_UNITS[unit:upper()]
  if not n or not unit then return nil end
  return floor(tonumber(n) * unit)
end

local function is_lua_memory(v)
  local n = M.size(v)
  if not n or n < 16 * 1024 ^ 2 or n > 64 * 1024 ^ 3 then
    return "must be a size like \"512MB\" (bytes as a number; from 16MB to 64GB)"
  end
end

local function is_dir(v)
  if type(v) ~= "string" or v:sub(1, 1) ~= "/" then return "must be an absolute directory path" end
  if v == "/dev/shm" then return "must not be /dev/shm (the shared-memory snapshot lives there)" end
end

local function is_shm_path(v)
  if type(v) ~= "string" or v:sub(1, 1) ~= "/" then return "must be an absolute file path (e.g. /dev/shm/scout)" end
end

-- format: the shm file's format version (docs/shm.md); 1 for readers that know only version 1, during an upgrade
local function is_shm_format(v)
  if v ~= 1 and v ~= 2 then return "must be 1 or 2" end
end

-- max_age: how long a disk snapshot may be served alone (C keeps it as 64-bit ms; the bound is the old one)
local is_age = duration_check(1, MAX_INT * 1000, "from 1ms")

-- render { template = "file.tpl" | function(view), dest = "/path", command = "...", wait = { min =, max = } }
local RENDER_KEYS = { template = true, dest = true, command = true, wait = true }
local WAIT_KEYS = { min = true, max = true }
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
  for k in pairs(w) do
    if not WAIT_KEYS[k] then return "wait: unknown key \"" .. tostring(k) .. "\" (known: max, min)" end
  end
  for _, k in ipairs({ "min", "max" }) do
    local why = w[k] ~= nil and is_interval(w[k])
    if why then return "wait: " .. k .. " " .. why end
  end
  local min, max = M.duration(w.min or 0), M.duration(w.max or w.min or 0)
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
    elseif k == "rise" or k == "fall" then
      if type(val) ~= "number" or val < 1 or val ~= floor(val) or val > MAX_INT then
        return k .. " must be a positive count"
      end
    elseif CHECK_NUMS[k] then
      local why = is_timeout(val)
      if why then return k .. " " .. why end
    else
      return "has an unknown key \"" .. tostring(k) .. "\" (known: exec, fall, http, interval, lua, rise, tcp, timeout)"
    end
  end
  if kinds ~= 1 then return "needs exactly one of tcp, http, exec, lua" end
  if v.http and not v.http:match("^http://[^/]+") then return "http must be an http:// URL" end
end

local ENDPOINT_KEYS = { id = true, host = true, port = true, weight = true, meta = true }
local function is_endpoint(v)
  if type(v) == "function" then return nil end
  if type(v) ~= "table" then return "must be a table { host =, port = } or a function returning one" end
  for k in pairs(v) do
    if not ENDPOINT_KEYS[k] then
      return "has an unknown key \"" .. tostring(k) .. "\" (known: host, id, meta, port, weight)"
    end
  end
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
    local why = v[k] ~= nil and is_interval(v[k])
    if why then return k .. " " .. why end
  end
end

-- service "x" { dubbo = { interface = ..., group =, version =, application =, host = } }: a dubbo consumer's
-- subscription. scout derives the providers path, the codec and the scope of the governance rules from it.
local DUBBO_KEYS = { interface = true, group = true, version = true, application = true, host = true,
                     migration = true }
local MIGRATION = { FORCE_INTERFACE = true, APPLICATION_FIRST = true, FORCE_APPLICATION = true }
local function is_dubbo(v)
  if type(v) ~= "table" then
    return "must be a table { interface = \"com.acme.OrderService\", group =, version =, application = }"
  end
  for k in pairs(v) do
    if not DUBBO_KEYS[k] then
      return "has an unknown key \"" .. tostring(k) .. "\" (known: application, group, host, interface, migration, "
        .. "version)"
    end
  end
  if type(v.interface) ~= "string" or not v.interface:match("^[%a_$][%w_$]*[%.%w_$]*$") then
    return "interface must be a Java interface name like \"com.acme.OrderService\""
  end
  if v.migration ~= nil and not MIGRATION[v.migration] then
    return "migration must be \"FORCE_INTERFACE\", \"APPLICATION_FIRST\" or \"FORCE_APPLICATION\""
  end
  for _, k in ipairs({ "group", "version", "application", "host" }) do
    if v[k] ~= nil and (type(v[k]) ~= "string" or v[k] == "" or v[k]:find("[%c/]")) then
      return k .. " must be a non-empty string without \"/\""
    end
  end
end

-- ---- schemas ------------------------------------------------------------------------------------------------

local SECTIONS = {
  zookeeper = { servers = is_servers, session_timeout = is_timeout, auth = is_auth, sessions = is_sessions,
                watch_budget = is_watch_budget },
  api = { listen = is_listen },
  cache = { dir = is_dir, max_age = is_age },
  shm = { path = is_shm_path, format = is_shm_format },
  agent = { hook_budget = is_timeout, log_level = is_level, anti_entropy = is_duration, drain = is_duration,
            lua_memory = is_lua_memory, reload_max_drop = is_share, anti_entropy_rate = is_ae_rate },
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
  dubbo = is_dubbo,
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

-- What the loader accepts, for docs/policy.md's spec (tests/lua/06_policy_doc_spec.lua): each value is a table
-- whose keys are the block's keys. Read it, never write it: these are the tables the checks use.
local CHECK_KEYS = {}
for k in pairs(CHECK_KINDS) do CHECK_KEYS[k] = true end
for k in pairs(CHECK_NUMS) do CHECK_KEYS[k] = true end
M.SCHEMA = {
  sections = SECTIONS,           -- zookeeper {}, api {}, cache {}, shm {}, agent {}
  hooks = { on_session = true }, -- globals the policy may define, read by M.load
  service = SERVICE,
  register = REGISTER,
  render = RENDER_KEYS,
  ["zookeeper.auth"] = AUTH_KEYS,
  ["service.protect"] = PROTECT_KEYS,
  ["service.dubbo"] = DUBBO_KEYS,
  ["register.endpoint"] = ENDPOINT_KEYS,
  ["register.check"] = CHECK_KEYS,
  ["render.wait"] = WAIT_KEYS,
}

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  return keys
end

local key_locator

-- Messages name where key k of the block is written (its own line when the source shows it): the block that
-- dsl_name opens at `at` in policy's file. The locator is made only when something is wrong (a closure per block
-- was a good part of loading 10,000 services).
-- label_arg: when given, label is a format for it, made only when something is wrong (a string per service block
-- was a good part of loading 10,000 services).
-- at: "file:line", or a service's line (at_string). Returns how many keys t has when all is well.
local function check_block(at, label, schema, t, policy, dsl_name, label_arg)
  if label_arg ~= nil and type(t) ~= "table" then label = format(label, label_arg) end
  if type(t) ~= "table" then fail(at_string(policy, at), label .. " expects a table { ... }") end
  local bad, n = false, 0
  for k, v in pairs(t) do
    local check = schema[k]
    if not check or check(v) then bad = true; break end
    n = n + 1
  end
  if not bad then return n end
  at = at_string(policy, at)
  if label_arg ~= nil then label = format(label, label_arg) end
  local key_at = policy and key_locator(policy, at, dsl_name) or function() return at end
  -- something is wrong: walk the keys in order so that the same file always names the same first mistake
  for _, k in ipairs(sorted_keys(t)) do
    local check = schema[k]
    if not check then
      local near = sandbox.closest(k, sorted_keys(schema))
      fail(key_at(k), format("%s: unknown key \"%s\" (%sknown: %s)", label, k,
                             near and format("did you mean \"%s\"? ", near) or "", concat(sorted_keys(schema), ", ")))
    end
    local why = check(t[k])
    if why then
      if why:sub(1, 1) == ":" then fail(key_at(k), format("%s: %s%s", label, k, why)) end
      fail(key_at(k), format("%s: %s %s", label, k, why))
    end
  end
end

-- A function key -> "file:line" for the block that `dsl_name` opens at `at` ("file:line"). The source is read
-- and scanned only when a block has something to report.
function key_locator(policy, at, dsl_name)
  return function(k)
    local file, line = at:match("^(.*):(%d+)$")
    if not file then return at end
    local src = policy.source
    if src == nil then
      local f = io.open(policy.file, "r")
      src = f and f:read("*a") or false
      if f then f:close() end
      policy.source = src
    end
    local lines = src and sandbox.key_lines(src, tonumber(line), dsl_name)
    local own = lines and lines[k]
    return own and (file .. ":" .. own) or at
  end
end

local NAME_PATTERN = "^[%w][%w_.%-]*$"
-- The same test for a service's or a register's name, from C in the agent (scout.agent.is_name: Lua's matcher was 1.2k
-- instructions a name, a tenth of a service's load); the pattern outside it (specs, tools).
local is_name = package.loaded["scout.agent"] and package.loaded["scout.agent"].is_name
  or function(name) return type(name) == "string" and find(name, NAME_PATTERN) ~= nil end

-- Build a fresh policy environment. `policy` collects what the file declares.
local function environment(policy)
  local env = {}
  local seen = {}

  for name, schema in pairs(SECTIONS) do
    env[name] = function(t)
      local at = where(3)
      if seen[name] then fail(at, name .. " {} given twice (first at " .. seen[name] .. ")") end
      seen[name] = at
      check_block(at, name, schema, t, policy, name)
      unit_warnings(policy, at, name, t)
      for k, v in pairs(t) do policy[name][k] = v end
      -- where `sessions` is written: the agent names it if the services' child lists need more
      if name == "zookeeper" and t.sessions ~= nil then
        policy.zookeeper.sessions_at = key_locator(policy, at, name)("sessions")
      end
      -- where `hook_budget` is written: the agent names it if a hook may hold the loop past the session's reach
      if name == "agent" and t.hook_budget ~= nil then
        policy.agent.hook_budget_at = key_locator(policy, at, name)("hook_budget")
      end
    end
  end

  -- policy.unfinished: what was named and has not had its block yet, by the order it was named in (a register's
  -- { name, at, kind }, a service's taker). Only those: at 10,000 services an entry per service, kept after its
  -- block came, was an array to grow and walk.
  local nunfinished = 0
  local unfinished = {}
  policy.unfinished = unfinished

  env.register = function(name)
    local at = where(3)
    if not is_name(name) then
      fail(at, "register needs a name: register \"orders-local\" { ... }")
    end
    nunfinished = nunfinished + 1
    unfinished[nunfinished] = { name = name, at = at, kind = "register" }
    local mine = nunfinished
    return function(t)
      local label = format("register \"%s\"", name)
      unfinished[mine] = nil
      at = where(3)
      for _, r in ipairs(policy.registers) do
        if r.name == name then fail(at, label .. " declared twice (first at " .. r.at .. ")") end
      end
      check_block(at, label, REGISTER, t, policy, "register")
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

  -- `service "x"` returns the block's taker: a table called through BLOCK (one allocation; a closure over name, at
  -- and its slot was four), holding { name, at, slot in policy.unfinished }, and its own entry there until its
  -- block is given. at is a line of the policy's file, or "file:line" (line_of): a string only for a message.
  local by_name, services = policy.by_name, policy.services
  local nservices = 0
  local BLOCK = {}
  BLOCK.__call = function(self, t)
    local name, at = self[1], self[2]
    unfinished[self[3]] = nil
    local first = by_name[name]
    if first then
      fail(at_string(policy, at), format("service \"%s\" declared twice (first at %s)", name,
                                         at_string(policy, first.at)))
    end
    local nkeys = check_block(at, "service \"%s\"", SERVICE, t, policy, "service", name)
    local dubbo, path, codec = t.dubbo, t.path, t.codec
    local svc
    if path ~= nil and not dubbo and nkeys == (codec == nil and 1 or 2) then
      -- the usual block, path and codec alone: one constructor, sized by its four keys (96 bytes a service)
      svc = { name = name, at = at, codec = codec or "plain", path = path }
    else
      local label = (dubbo or path == nil) and format("service \"%s\"", name)
      if dubbo and path ~= nil then
        fail(key_locator(policy, at_string(policy, at), "service")("path"), label .. ": give path or dubbo, not "
          .. "both (dubbo's providers path is /dubbo/" .. dubbo.interface .. "/providers)")
      end
      if dubbo and codec ~= nil and codec ~= "dubbo" then
        fail(key_locator(policy, at_string(policy, at), "service")("codec"), label .. ": dubbo = { ... } reads "
          .. "dubbo's providers; codec must be \"dubbo\" or left out")
      end
      if path == nil and not dubbo then
        fail(at_string(policy, at), label .. ": path is required (or dubbo = { interface = ... })")
      end
      -- sized once (filled key by key it was rehashed twice) and to fit: LuaJIT rounds to a power of two
      svc = tab_new(0, nkeys + (codec == nil and 3 or 2))
      svc.name, svc.at, svc.codec = name, at, "plain"
      for k, v in pairs(t) do svc[k] = v end
      if dubbo then
        -- what a dubbo consumer subscribes to: the interface's providers, and (scout.sources.dubbo) its rules
        svc.path, svc.codec = "/dubbo/" .. dubbo.interface .. "/providers", "dubbo"
        svc.scope = { interface = dubbo.interface, group = dubbo.group, version = dubbo.version,
                      application = dubbo.application, host = dubbo.host,
                      -- dubbo 3's default: application-level discovery, the interface's list as fallback
                      migration = dubbo.migration or "APPLICATION_FIRST" }
      end
    end
    nservices = nservices + 1
    services[nservices] = svc
    by_name[name] = svc
  end

  local file = policy.file
  env.service = function(name)
    -- where `service "name"` is written, also the block's "at": a second lookup per service was an eighth of
    -- loading 10,000 of them; the block is almost always on the same line, and where it is not, the name's line
    -- is the one to point at (a key's own line is found from it)
    local at = agent_where and agent_where(2, file) or line_of(3, file)
    nunfinished = nunfinished + 1
    local mine = nunfinished
    local taker = setmetatable({ name, at, mine }, BLOCK)
    unfinished[mine] = taker
    if not is_name(name) then
      if type(name) ~= "string" then fail(at_string(policy, at), "service needs a name: service \"orders\" { ... }") end
      fail(at_string(policy, at),
           format("service \"%s\": names are letters, digits, _ . - (starting with a letter or digit)", name))
    end
    if name == "services" then   -- a template's view lists every service under that key
      fail(at_string(policy, at),
           'service "services": the name is reserved; templates see the list of services under it')
    end
    return taker
  end

  return sandbox.environment(env, package.loaded["scout.agent"])
end

-- Load and validate a policy file. Returns the policy table, or nil and "file:line: message". What loads but
-- probably means something else (a bare number whose unit changed) is in policy.warnings, as "file:line: message".
function M.load(path)
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  sandbox.interpreted(chunk)   -- the operator's code: a budget must be able to stop any of it
  -- the services and their index by name sized once from the file's constants (a `service "x" { ... }` is two
  -- of them: LuaJIT's tables grown one service at a time were rehashed 14 times by 10,000 services)
  local hint = floor(funcinfo(chunk).gcconsts / 2)
  local policy = { file = path, zookeeper = {}, api = {}, agent = {}, cache = {}, shm = {},
                   services = tab_new(hint, 0), by_name = tab_new(0, hint), renders = {}, registers = {},
                   warnings = {} }
  local env = environment(policy)
  -- every global the file reads, in functions that run only later too, before anything runs
  local line, why = sandbox.lint(chunk, env)
  if line then return nil, format("%s:%d: %s", path, line, why) end
  setfenv(chunk, env)
  local ok, perr = pcall(chunk)
  policy.source = nil
  if not ok then return nil, tostring(perr) end
  local first
  for k in pairs(policy.unfinished or {}) do
    if not first or k < first then first = k end
  end
  local u = first and policy.unfinished[first]
  if u then
    if u.kind then
      return nil, format("%s: %s \"%s\" has no { ... } block", u.at, u.kind, tostring(u.name))
    else              -- a service's taker: { name, at, slot }
      return nil, format("%s: service \"%s\" has no { ... } block", at_string(policy, u[2]), tostring(u[1]))
    end
  end
  policy.unfinished = nil
  local on_session = rawget(env, "on_session")
  if on_session ~= nil then
    if type(on_session) ~= "function" then
      return nil, path .. ": on_session must be a function"
    end
    policy.on_session = on_session
  end
  return policy
end

return M
