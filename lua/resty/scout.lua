-- resty.scout: scout's endpoints in OpenResty/nginx. Every worker maps the agent's shared-memory snapshot
-- (scout.shm), checks its generation on a timer (one 8-byte load), and only when it moved rebuilds the
-- routers and selectors of the services that changed. balancer_by_lua then routes the request, picks with the
-- service's selector and sets the peer: no reload, no socket, no syscall per request.
--
--   lua_shared_dict scout 1m;                                   -- passive health, shared by the workers
--   init_by_lua_block { require("resty.scout").init() }         -- optional: supervise from the privileged agent
--   init_worker_by_lua_block {
--     local scout = require "resty.scout"
--     scout.init_worker{ path = "/dev/shm/scout", dict = "scout" }
--     scout.spawn_agent{ bin = "/usr/bin/scout", policy = "/etc/scout/policy.lua" }  -- or run it beside nginx
--   }
--   upstream orders {
--     server 0.0.0.1;                                           -- placeholder, never used
--     balancer_by_lua_block {
--       local ok, err = require("resty.scout").balance("orders")
--       if not ok then ngx.log(ngx.ERR, "orders: ", err) return ngx.exit(require("resty.scout").BUSY) end
--     }
--   }
--
-- balance(service[, ctx]) -> true | nil, err ("no snapshot", "no such service", "no endpoint", or nginx's own
-- error from set_current_peer; before any snapshot, why a spawned agent cannot start, e.g. "the agent cannot
-- start: /etc/scout/policy.lua: Permission denied (as nobody)"). What to do then is the caller's choice:
-- ngx.exit(scout.BUSY) answers 502 at once, as nginx does when every server of an upstream is down ("no live
-- upstreams"); ngx.exit(ngx.ERROR) answers 500 (and so does ngx.exit(502) on nginx without OpenResty's
-- balancer status patch, e.g. Debian's); doing nothing leaves nginx with the upstream's placeholder server.
--
-- The request context (routing rules and hash keys read it) is built lazily from the request when ctx is nil:
-- ctx.key = ?key= or the X-Scout-Key header, ctx.tag = X-Scout-Tag, ctx.host = client address, ctx.method,
-- ctx.headers.<name> and ctx.args.<name> read straight from ngx.var. Only what a rule or selector asks for is
-- fetched, into one table per worker that is cleared per request: nothing is allocated on the way to the peer.
--
-- Failures. The first try calls set_more_tries so that nginx comes back to us for min(tries, #endpoints) tries
-- in all (proxy_next_upstream decides which failures are retried). A retry reads $upstream_addr (the peers tried
-- so far), picks an endpoint not tried yet, reports the failed one to the selector and, after max_fails failures
-- within fail_timeout, marks it down for fail_timeout in the shared dict: every worker skips it (within one
-- timer tick) while other endpoints of the routed set are up, and uses it again if none is (fail open, as the
-- selectors do for weights). Only the retry path allocates.
--
-- Selectors that count requests in flight (leastconn, p2c, and any selector not known to be stateless) need the
-- outcome of every pick: add `log_by_lua_block { require("resty.scout").log() }` where such a service is used.
-- Their pick is kept in ngx.ctx, the only per-request table this module creates, and only for them.
--
-- spawn_agent{} starts build/scout from nginx and restarts it with back-off when it exits: in the privileged
-- agent process with ngx.pipe when this nginx has them (OpenResty), else from worker 0 with fork/exec (Debian's
-- nginx has neither patch). A process spawned by a worker is killed with it (PR_SET_PDEATHSIG) and stopped when
-- the worker shuts down, which waits for it without holding its loop; on `nginx -s reload` the new worker 0
-- starts a new agent once the old one is gone (with init_worker's dict), which adopts the snapshot file
-- (docs/shm.md), so readers never see a gap.
--
-- This file is the public module: the snapshot, the request context and picking. Passive health (the marks and
-- the shared dict) is resty.scout.health; the agent's supervision (init, spawn_agent, agent) is
-- resty.scout.agent, re-exported here (spawn_agent given init_worker's dict unless it names one).

local balancer = require "ngx.balancer"
local process = require "ngx.process"
local cjson = require "cjson.safe"
local clear_tab = require "table.clear"
local shm = require "scout.shm"
local select = require "scout.select"
local route = require "scout.route"
local health = require "resty.scout.health"
local agent = require "resty.scout.agent"

-- The built-in selectors are loaded with this module (init_by_lua or init_worker), not by a service's first
-- snapshot: a module's chunk makes closures (FNEW), which LuaJIT cannot compile, and the first snapshot may be
-- read inside balance(), where a trace may be recording (tests/nginx/run.py -k hot_path).
for i = 1, #select.names do
  assert(select.resolve(select.names[i]))
end

local ngx = ngx
local ngx_var = ngx.var
local ngx_log = ngx.log
local ngx_now = ngx.now
local ngx_shared = ngx.shared
local ERR, WARN, INFO = ngx.ERR, ngx.WARN, ngx.INFO
local timer_every = ngx.timer.every
local set_current_peer = balancer.set_current_peer
local set_more_tries = balancer.set_more_tries
local get_last_failure = balancer.get_last_failure
local json_decode = cjson.decode
local json_null = cjson.null
local health_keys = health.keys
local any_down = health.any
local is_down = health.is_down
local health_fail = health.fail
local health_sync = health.sync

local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local rawset = rawset
local find = string.find
local gsub = string.gsub
local lower = string.lower
local match = string.match
local gmatch = string.gmatch
local sort = table.sort
local min = math.min
local floor = math.floor

-- BUSY: ngx.exit(scout.BUSY) in balancer_by_lua ends the request with nginx's own "no live upstreams" and a 502.
-- (ngx.exit(502) there becomes a 500 unless nginx carries OpenResty's balancer status code patch.)
local _M = { _VERSION = "0.1.0", BUSY = -3 }

-- Selectors whose feedback() does nothing: their picks need no bookkeeping per request.
local STATELESS = { swrr = true, rr = true, random = true, chash = true }
local DEFAULT_SELECTOR = "swrr"

-- worker state ------------------------------------------------------------------------------------------------

local conf                  -- init_worker's options, checked
local reader                -- scout.shm reader, nil until the file could be opened
local services = {}         -- name -> svc (see build_service)
local generation = 0        -- generation the current services were built from
local last_error            -- last rebuild error logged (log once, not every tick)

-- the request context -----------------------------------------------------------------------------------------

local key_arg, key_hvar, tag_hvar  -- ngx.var names, set by init_worker
local VAR_NAMES_MAX = 512
local hvars, nhvars = {}, 0        -- header name -> "http_<name>" (memo, bounded)
local avars, navars = {}, 0        -- arg name -> "arg_<name>"

local function header_var(name)
  local v = hvars[name]
  if v == nil then
    if nhvars >= VAR_NAMES_MAX then
      hvars, nhvars = {}, 0
    end
    v = "http_" .. gsub(lower(name), "-", "_")
    hvars[name] = v
    nhvars = nhvars + 1
  end
  return v
end

local function arg_var(name)
  local v = avars[name]
  if v == nil then
    if navars >= VAR_NAMES_MAX then
      avars, navars = {}, 0
    end
    v = "arg_" .. name
    avars[name] = v
    navars = navars + 1
  end
  return v
end

-- ctx.headers / ctx.args: read through to ngx.var on every access (never cached, so never stale).
local headers = setmetatable({}, {
  __index = function(_, name)
    if type(name) ~= "string" then return nil end
    return ngx_var[header_var(name)]
  end,
  __newindex = function() error("ctx.headers is read-only", 2) end,
})

local args = setmetatable({}, {
  __index = function(_, name)
    if type(name) ~= "string" then return nil end
    return ngx_var[arg_var(name)]
  end,
  __newindex = function() error("ctx.args is read-only", 2) end,
})

-- One ctx per worker (a balancer call never yields): a field is fetched on first use and kept until the next
-- request clears the table.
local req_ctx = setmetatable({}, {
  __index = function(t, k)
    local v
    if k == "key" then
      v = ngx_var[key_arg]
      if v == nil and key_hvar then
        v = ngx_var[key_hvar]
      end
    elseif k == "tag" then
      v = ngx_var[tag_hvar]
    elseif k == "host" then
      v = ngx_var.remote_addr
    elseif k == "method" then
      v = ngx_var.request_method
    elseif k == "headers" then
      return headers
    elseif k == "args" then
      return args
    else
      return nil
    end
    if v ~= nil then
      rawset(t, k, v)
    end
    return v
  end,
})

-- snapshot -> services ----------------------------------------------------------------------------------------

local function is_ip(host)
  if find(host, ":", 1, true) then
    return find(host, "^[%x:%.]+$") ~= nil, true
  end
  return find(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil, false
end

local function same_list(a, b)
  local n = #a
  if n ~= #b then return false end
  for i = 1, n do
    local x, y = a[i], b[i]
    if x.id ~= y.id or x.zxid ~= y.zxid or x.host ~= y.host or x.port ~= y.port or x.weight ~= y.weight
       or x.status ~= y.status then
      return false
    end
  end
  return true
end

local function nonnull(v)
  if v == json_null then return nil end
  return v
end

-- Router, selector pool and "stateful" flag from a service's settings blob (JSON, written by the agent).
local function compile_settings(name, settings)
  local sel_name, sel_opts, rules = DEFAULT_SELECTOR, nil, nil
  if settings ~= "" then
    local t, err = json_decode(settings)
    if type(t) ~= "table" then
      ngx_log(ERR, "scout: service \"", name, "\": bad settings (", err or "not an object", "); using swrr")
    else
      local s = nonnull(t.selector)
      if type(s) == "string" and s ~= "" then sel_name = s end
      sel_opts = nonnull(t.selector_options)
      if type(sel_opts) ~= "table" then sel_opts = nil end
      rules = nonnull(t.route)
      if type(rules) ~= "table" then rules = nil end
    end
  end
  local router
  if rules and #rules > 0 then
    local err
    router, err = route.compile(rules)
    if not router then
      ngx_log(ERR, "scout: service \"", name, "\": route rules not applied: ", err)
    end
  end
  if sel_name == "custom" then
    -- a selector given as a Lua table in the policy does not travel through the snapshot
    ngx_log(INFO, "scout: service \"", name, "\": the policy's own selector is not in the snapshot; using swrr")
    sel_name, sel_opts = DEFAULT_SELECTOR, nil
  end
  local ok, pool = pcall(select.pool, sel_name, sel_opts)
  if not ok then
    ngx_log(ERR, "scout: service \"", name, "\": selector ", sel_name, ": ", tostring(pool), "; using swrr")
    sel_name = DEFAULT_SELECTOR
    pool = select.pool(sel_name)
  end
  return router, pool, sel_name, not STATELESS[sel_name]
end

local function build_service(s, old)
  local name = s.name
  local svc = {
    name = name, index = s.index, state = s.state, settings = s.settings, raw = s.endpoints,
  }
  if old and old.settings == s.settings then
    svc.router, svc.pool, svc.selector, svc.stateful = old.router, old.pool, old.selector, old.stateful
  else
    svc.router, svc.pool, svc.selector, svc.stateful = compile_settings(name, s.settings)
  end
  local eps, byaddr, n = {}, {}, 0
  local raw = s.endpoints
  for i = 1, #raw do
    local ep = raw[i]
    local ip, v6 = is_ip(ep.host)
    if ip then
      local phost = v6 and "[" .. ep.host .. "]" or ep.host
      local addr = phost .. ":" .. ep.port
      ep.phost, ep.addr = phost, addr
      ep.dkey, ep.fkey = health_keys(addr)
      n = n + 1
      eps[n] = ep
      byaddr[addr] = ep
    else
      ngx_log(WARN, "scout: service \"", name, "\": endpoint ", ep.id, " skipped: host \"", ep.host,
              "\" is not an IP address (the balancer connects to addresses only)")
    end
  end
  svc.eps, svc.byaddr, svc.n = eps, byaddr, n
  return svc
end

local function rebuild()
  local snap, err = reader:read(conf.names)
  if not snap then
    return nil, err
  end
  local new = {}
  for name, s in pairs(snap.services) do
    local old = services[name]
    if old and s.state == "syncing" and #s.endpoints == 0 and old.n > 0 then
      -- a (re)started agent publishes its services as "syncing", empty, before it has read them: keep serving
      -- what the last agent published rather than nothing
      old.state = s.state
      new[name] = old
    elseif old and old.settings == s.settings and same_list(old.raw, s.endpoints) then
      old.index, old.state = s.index, s.state
      new[name] = old
    else
      new[name] = build_service(s, old)
    end
  end
  services = new
  generation = snap.generation
  return true
end

-- the timer -----------------------------------------------------------------------------------------------------

local last_moved_check = 0
local agent_problem = agent.problem

-- Follow the snapshot: one 8-byte load while the file is mapped, and a stat() of the path (moved()) once a
-- second for a file replaced behind a crashed agent; until this worker has built a first snapshot, that stat()
-- runs every call, so the first generation is served from the tick after the agent writes it, not up to a
-- second later. Returns true when the services were rebuilt.
local function follow(now)
  if reader == nil then
    local r, err = shm.open(conf.path)
    if not r then
      if last_error ~= err then
        last_error = err
        ngx_log(WARN, "scout: snapshot ", conf.path, ": ", err)
      end
      return false
    end
    reader = r
  end
  local moved = false
  if generation == 0 or now - last_moved_check >= 1 then
    last_moved_check = now
    moved = reader:moved()
  end
  local g = reader:generation()
  if g ~= generation and g ~= 0 or moved then
    local ok, err = rebuild()
    if ok then
      last_error = nil
      return true
    elseif err ~= last_error then
      last_error = err
      ngx_log(WARN, "scout: snapshot ", conf.path, ": ", err)
    end
  end
  return false
end

local function check(premature)
  if premature then
    return
  end
  local now = ngx_now()
  follow(now)
  agent_problem(now)   -- logs a spawned agent that cannot start, once per change (at most one check a second)
  health_sync(now)
end

-- picking ---------------------------------------------------------------------------------------------------------

local function acceptable(ep, tried, now)
  if tried and tried[ep.addr] then return false end
  if any_down() and is_down(ep, now) then return false end
  return true
end

-- The selector's first choice is marked down or was tried already. Ask the selector again (rr, swrr, random,
-- p2c and unkeyed chash move on by themselves); a keyed selector answers the same, so then walk the routed array
-- from the first choice on. Everything down: any endpoint not tried (fail open), else the first choice.
local function pick_other(svc, sel, arr, ctx, first, tried)
  local now = ngx_now()
  local n = #arr
  local stateful = svc.stateful
  local ep = first
  for _ = 1, n do
    if stateful then sel:feedback(ep, true) end   -- not used: take its in-flight count back
    ep = sel:pick(ctx)
    if ep == nil then break end
    if acceptable(ep, tried, now) then return ep end
  end
  if ep and stateful then sel:feedback(ep, true) end
  local start = 0
  for i = 1, n do
    if arr[i] == first then
      start = i
      break
    end
  end
  for j = 1, n do
    local cand = arr[(start + j - 1) % n + 1]
    if acceptable(cand, tried, now) then return cand end
  end
  if tried then
    for j = 1, n do
      local cand = arr[(start + j - 1) % n + 1]
      if not tried[cand.addr] then return cand end
    end
  end
  return first
end

-- "10.0.0.1:80, 10.0.0.2:80 : 10.0.0.3:80" -> set of addresses, and the last one
local function tried_addrs(s)
  local set, last = {}, nil
  if s then
    for a in gmatch(s, "[^,:%s][^,%s]*") do
      if a ~= ":" then
        set[a] = true
        last = a
      end
    end
  end
  return set, last
end

-- ngx.ctx is a plain table per request (rawset: it is not the read-only ngx table luacheck takes it for)
local function remember(sel, ep)
  local c = ngx.ctx
  rawset(c, "scout_sel", sel)
  rawset(c, "scout_ep", ep)
end

function _M.balance(name, ctx)
  local svc = services[name]
  if svc == nil or svc.n == 0 then
    -- about to fail: first catch up with a snapshot written since the last tick (the timer would, up to
    -- one interval later), so that the first request after the agent publishes is served
    if type(name) ~= "string" then
      error("service name must be a string", 2)
    end
    if follow(ngx_now()) then
      svc = services[name]
    end
    if svc == nil then
      if generation == 0 then
        return nil, agent_problem(ngx_now()) or "no snapshot"
      end
      return nil, "no such service"
    end
    if svc.n == 0 then
      return nil, "no endpoint"
    end
  end
  local arr = svc.eps
  if ctx == nil then
    ctx = req_ctx
    clear_tab(ctx)
  end
  local label = ""
  local router = svc.router
  if router then
    arr, label = router:apply(arr, ctx)
    if #arr == 0 then
      return nil, "no endpoint"
    end
  end
  local sel = svc.pool:get(arr, label)
  local ep, err = sel:pick(ctx)
  if ep == nil then
    return nil, err or "no endpoint"
  end

  local state = get_last_failure()
  if state == nil then
    -- first try
    if any_down() and is_down(ep, ngx_now()) then
      ep = pick_other(svc, sel, arr, ctx, ep, nil)
    end
    local ok
    ok, err = set_current_peer(ep.phost, ep.port)
    if not ok then
      return nil, err
    end
    local tries = min(#arr, conf.tries)
    if tries > 1 then
      set_more_tries(tries - 1)
    end
  else
    -- a retry: nginx lists the peers tried so far in $upstream_addr, the one that just failed last
    local tried, last = tried_addrs(ngx_var.upstream_addr)
    local prev = last and svc.byaddr[last]
    if prev then
      if state == "failed" then
        health_fail(prev)
      end
      if svc.stateful then
        local c = ngx.ctx
        if c.scout_ep == prev then
          c.scout_sel:feedback(prev, false)
          rawset(c, "scout_ep", nil)
        end
      else
        sel:feedback(prev, false)
      end
    end
    if not acceptable(ep, tried, ngx_now()) then
      ep = pick_other(svc, sel, arr, ctx, ep, tried)
    end
    local ok
    ok, err = set_current_peer(ep.phost, ep.port)
    if not ok then
      return nil, err
    end
  end
  if svc.stateful then
    remember(sel, ep)
  end
  return true
end

-- log_by_lua: the outcome of the request's last try, for selectors that count requests in flight.
function _M.log()
  local c = ngx.ctx
  local ep = c.scout_ep
  if ep == nil then
    return
  end
  rawset(c, "scout_ep", nil)
  local status = match(ngx_var.upstream_status or "", "(%d+)[^%d]*$")
  local rt = match(ngx_var.upstream_response_time or "", "([%d%.]+)[^%d%.]*$")
  status, rt = tonumber(status), tonumber(rt)
  c.scout_sel:feedback(ep, status ~= nil and status < 500, rt and rt * 1000 or nil)
end

local function opt_number(opts, k, default, lo)
  local v = opts[k]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < lo then
    error("opts." .. k .. " must be a number >= " .. lo, 3)
  end
  return v
end

-- init_worker(opts) -> true | nil, err. opts:
--   path          the agent's snapshot file (required; the policy's shm { path = ... })
--   interval      seconds between generation checks (0.01)
--   dict          a lua_shared_dict name: failures and down marks shared by the workers (else per worker)
--   max_fails     failures within fail_timeout that mark an endpoint down (1)
--   fail_timeout  seconds: the failure window and how long a mark lasts (10)
--   tries         tries per request, the first included, at most the routed endpoint count (3)
--   key_arg, key_header, tag_header   where ctx.key and ctx.tag come from ("key", "X-Scout-Key", "X-Scout-Tag")
--   services      array of names: build only these (default: every service in the snapshot)
-- The file may not exist yet (an agent started by spawn_agent): it is looked for on every tick (one stat()) until
-- the first snapshot is built, and by balance() before it answers "no snapshot".
function _M.init_worker(opts)
  if conf then
    error("init_worker called twice", 2)
  end
  if type(opts) ~= "table" or type(opts.path) ~= "string" or opts.path == "" then
    error("opts.path must be the snapshot's file path", 2)
  end
  local c = {
    path = opts.path,
    interval = opt_number(opts, "interval", 0.01, 0.001),
    max_fails = opt_number(opts, "max_fails", 1, 1),
    fail_timeout = opt_number(opts, "fail_timeout", 10, 0.001),
    tries = floor(opt_number(opts, "tries", 3, 1)),
    dict = opts.dict,
  }
  if opts.services ~= nil then
    if type(opts.services) ~= "table" then
      error("opts.services must be an array of service names", 2)
    end
    c.names = {}
    for _, n in ipairs(opts.services) do c.names[n] = true end
  end
  local dict
  if c.dict ~= nil then
    dict = ngx_shared[c.dict]
    if dict == nil then
      error("no lua_shared_dict named \"" .. tostring(c.dict) .. "\"", 2)
    end
  end
  health.configure(dict, c.dict, c.max_fails, c.fail_timeout)
  key_arg = arg_var(opts.key_arg or "key")
  key_hvar = opts.key_header ~= false and header_var(opts.key_header or "X-Scout-Key") or nil
  tag_hvar = header_var(opts.tag_header or "X-Scout-Tag")
  conf = c
  if process.type() == "privileged agent" then
    return true   -- it serves no requests
  end

  -- first read now, so requests right after start do not wait for the timer
  check(false)
  local ok, err = timer_every(c.interval, check)
  if not ok then
    return nil, "cannot start the snapshot timer: " .. tostring(err)
  end
  return true
end

-- The generation this worker's services were built from (0: none yet).
function _M.generation()
  return generation
end

-- peers(name) -> { name, state, index, selector, generation, endpoints = { {id, host, port, weight, status,
-- meta, down, in_flight, ewma_ms} } } | nil, err: what this worker balances over, for status pages. in_flight
-- and ewma_ms come from the selector of the unrouted set when it counts them (leastconn, p2c) and has been used.
function _M.peers(name)
  local svc = services[name]
  if svc == nil then
    if type(name) ~= "string" then
      error("service name must be a string", 2)
    end
    return nil, generation == 0 and "no snapshot" or "no such service"
  end
  local now = ngx_now()
  local sels = svc.pool.sels
  local sel = type(sels) == "table" and sels[""] or nil
  local list = {}
  for i = 1, svc.n do
    local ep = svc.eps[i]
    local e = { id = ep.id, host = ep.host, port = ep.port, weight = ep.weight, status = ep.status,
                meta = ep.meta, down = is_down(ep, now) }
    if sel and type(sel.stats) == "function" then
      e.in_flight, e.ewma_ms = sel:stats(ep.id)
    elseif sel and type(sel.in_flight) == "function" then
      e.in_flight = sel:in_flight(ep.id)
    end
    list[i] = e
  end
  return { name = svc.name, state = svc.state, index = svc.index, selector = svc.selector,
           generation = generation, endpoints = list }
end

-- Every service name in this worker's snapshot, sorted.
function _M.services()
  local out = {}
  for name in pairs(services) do out[#out + 1] = name end
  sort(out)
  return out
end

-- the agent under nginx: see resty.scout.agent ---------------------------------------------------------------

_M.init = agent.init
function _M.spawn_agent(opts)
  if type(opts) == "table" and opts.dict == nil and conf and conf.dict then
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.dict = conf.dict
    opts = o
  end
  return agent.spawn(opts)
end
_M.agent = agent.status

return _M
