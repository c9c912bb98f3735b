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
-- error from set_current_peer). What to do then is the caller's choice: ngx.exit(scout.BUSY) answers 502 at once,
-- as nginx does when every server of an upstream is down ("no live upstreams"); ngx.exit(ngx.ERROR) answers 500
-- (and so does ngx.exit(502) on nginx without OpenResty's balancer status patch, e.g. Debian's); doing nothing
-- leaves nginx with the upstream's placeholder server.
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
-- the worker shuts down; on `nginx -s reload` the new worker 0 starts a new agent, which adopts the snapshot
-- file once the old one has let go (docs/shm.md), so readers never see a gap.

local ffi = require "ffi"
local balancer = require "ngx.balancer"
local process = require "ngx.process"
local cjson = require "cjson.safe"
local clear_tab = require "table.clear"
local shm = require "scout.shm"
local select = require "scout.select"
local route = require "scout.route"

local ngx = ngx
local ngx_var = ngx.var
local ngx_log = ngx.log
local ngx_now = ngx.now
local ngx_update_time = ngx.update_time
local ngx_shared = ngx.shared
local ERR, WARN, NOTICE, INFO = ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO
local timer_every = ngx.timer.every
local timer_at = ngx.timer.at
local worker_id = ngx.worker.id
local worker_exiting = ngx.worker.exiting
local set_current_peer = balancer.set_current_peer
local set_more_tries = balancer.set_more_tries
local get_last_failure = balancer.get_last_failure
local json_decode = cjson.decode
local json_null = cjson.null

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
local sub = string.sub
local gsub = string.gsub
local lower = string.lower
local match = string.match
local gmatch = string.gmatch
local concat = table.concat
local sort = table.sort
local min = math.min
local floor = math.floor
local io_open = io.open

local ffi_new = ffi.new
local ffi_cast = ffi.cast
local ffi_errno = ffi.errno
local C = ffi.C

-- libc, for spawn_agent. Names are bound to their symbols with __asm__ so nothing here can clash with another
-- module's declarations of the same functions.
ffi.cdef [[
typedef struct { unsigned long val[16]; } scout_resty_sigset_t;
int scout_resty_fork(void) __asm__("fork");
int scout_resty_execve(const char *path, const char *const argv[], const char *const envp[]) __asm__("execve");
void scout_resty_exit(int status) __asm__("_exit");
int scout_resty_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)
    __asm__("prctl");
int scout_resty_getppid(void) __asm__("getppid");
int scout_resty_getpid(void) __asm__("getpid");
int scout_resty_kill(int pid, int sig) __asm__("kill");
int scout_resty_waitpid(int pid, int *status, int options) __asm__("waitpid");
int scout_resty_open(const char *path, int flags, ...) __asm__("open");
int scout_resty_dup2(int oldfd, int newfd) __asm__("dup2");
int scout_resty_close(int fd) __asm__("close");
int scout_resty_close_range(unsigned int first, unsigned int last, int flags) __asm__("close_range");
int scout_resty_access(const char *path, int mode) __asm__("access");
int scout_resty_sigfillset(scout_resty_sigset_t *set) __asm__("sigfillset");
int scout_resty_sigemptyset(scout_resty_sigset_t *set) __asm__("sigemptyset");
int scout_resty_sigprocmask(int how, const scout_resty_sigset_t *set, scout_resty_sigset_t *old)
    __asm__("sigprocmask");
void *scout_resty_signal(int sig, void *handler) __asm__("signal");
char *scout_resty_strerror(int errnum) __asm__("strerror");
int scout_resty_usleep(unsigned int usec) __asm__("usleep");
extern char **environ;
]]

-- BUSY: ngx.exit(scout.BUSY) in balancer_by_lua ends the request with nginx's own "no live upstreams" and a 502.
-- (ngx.exit(502) there becomes a 500 unless nginx carries OpenResty's balancer status code patch.)
local _M = { _VERSION = "0.1.0", BUSY = -3 }

-- Selectors whose feedback() does nothing: their picks need no bookkeeping per request.
local STATELESS = { swrr = true, rr = true, random = true, chash = true }
local DEFAULT_SELECTOR = "swrr"

local DOWN_PREFIX = "scout:d:"    -- shared dict: "scout:d:<addr>" = time the mark ends; "scout:f:<addr>" = fails
local FAIL_PREFIX = "scout:f:"
local VERSION_KEY = "scout:v"     -- bumped on every mark, so workers re-read the marks only when it moves

-- worker state ------------------------------------------------------------------------------------------------

local conf                  -- init_worker's options, checked
local reader                -- scout.shm reader, nil until the file could be opened
local services = {}         -- name -> svc (see build_service)
local generation = 0        -- generation the current services were built from
local last_error            -- last rebuild error logged (log once, not every tick)
local dict                  -- ngx.shared[conf.dict] or nil
local dict_version          -- VERSION_KEY as last seen
local down = {}             -- addr -> time the mark ends (this worker's copy of the dict's marks)
local ndown = 0             -- entries in down
local down_until = 0        -- latest end among them: past it, down is cleared
local local_fails = {}      -- addr -> { count, since } when there is no dict

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
      ep.dkey, ep.fkey = DOWN_PREFIX .. addr, FAIL_PREFIX .. addr
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

-- passive health ------------------------------------------------------------------------------------------------

local function clear_down()
  clear_tab(down)
  ndown, down_until = 0, 0
end

local function add_down(addr, untl)
  if down[addr] == nil then ndown = ndown + 1 end
  down[addr] = untl
  if untl > down_until then down_until = untl end
end

-- Re-read the marks when another worker (or this one) changed them.
local function sync_down(now)
  if dict then
    local v = dict:get(VERSION_KEY)
    if v ~= dict_version then
      dict_version = v
      clear_down()
      local keys = dict:get_keys(0)
      local plen = #DOWN_PREFIX
      for i = 1, #keys do
        local k = keys[i]
        if sub(k, 1, plen) == DOWN_PREFIX then
          local untl = dict:get(k)
          if untl and untl > now then add_down(sub(k, plen + 1), untl) end
        end
      end
      return
    end
  end
  if ndown > 0 and now >= down_until then
    clear_down()
  end
end

local function is_down(ep, now)
  local untl = down[ep.addr]
  return untl ~= nil and untl > now
end

-- A try on ep failed: count it and mark ep down after max_fails within fail_timeout.
local function fail(ep)
  local now = ngx_now()
  local timeout, max_fails = conf.fail_timeout, conf.max_fails
  local n
  if dict then
    local err
    n, err = dict:incr(ep.fkey, 1, 0, timeout)
    if not n then
      ngx_log(WARN, "scout: shared dict \"", conf.dict, "\": ", err)
      n = 1
    end
  else
    local f = local_fails[ep.addr]
    if f == nil or now - f[2] >= timeout then
      f = { 0, now }
      local_fails[ep.addr] = f
    end
    f[1] = f[1] + 1
    n = f[1]
  end
  if n >= max_fails then
    local untl = now + timeout
    add_down(ep.addr, untl)
    if dict then
      dict:set(ep.dkey, untl, timeout)
      dict:incr(VERSION_KEY, 1, 0)
      dict:delete(ep.fkey)
    else
      local_fails[ep.addr] = nil
    end
    ngx_log(WARN, "scout: endpoint ", ep.id, " (", ep.addr, ") marked down for ", timeout, "s")
  end
end

-- picking ---------------------------------------------------------------------------------------------------------

local function acceptable(ep, tried, now)
  if tried and tried[ep.addr] then return false end
  if ndown > 0 and is_down(ep, now) then return false end
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
  if svc == nil then
    if type(name) ~= "string" then
      error("service name must be a string", 2)
    end
    if generation == 0 then return nil, "no snapshot" end
    return nil, "no such service"
  end
  local arr = svc.eps
  if svc.n == 0 then
    return nil, "no endpoint"
  end
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
    if ndown > 0 and is_down(ep, ngx_now()) then
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
        fail(prev)
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

-- the timer -----------------------------------------------------------------------------------------------------

local last_moved_check = 0
local last_open_try = 0

local function check(premature)
  if premature then
    return
  end
  local now = ngx_now()
  if reader == nil then
    if now - last_open_try < 1 then
      return
    end
    last_open_try = now
    local r, err = shm.open(conf.path)
    if not r then
      if last_error ~= err then
        last_error = err
        ngx_log(WARN, "scout: snapshot ", conf.path, ": ", err, " (retrying every second)")
      end
      return
    end
    reader = r
  end
  local moved = false
  if now - last_moved_check >= 1 then
    last_moved_check = now
    moved = reader:moved()
  end
  local g = reader:generation()
  if g ~= generation and g ~= 0 or moved then
    local ok, err = rebuild()
    if ok then
      last_error = nil
    elseif err ~= last_error then
      last_error = err
      ngx_log(WARN, "scout: snapshot ", conf.path, ": ", err)
    end
  end
  sync_down(now)
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
-- The file may not exist yet (an agent started by spawn_agent): it is looked for every second.
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
  if c.dict ~= nil then
    dict = ngx_shared[c.dict]
    if dict == nil then
      error("no lua_shared_dict named \"" .. tostring(c.dict) .. "\"", 2)
    end
  end
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

-- the agent under nginx -------------------------------------------------------------------------------------------

local PR_SET_PDEATHSIG = 1
local SIGTERM, SIGPIPE = 15, 13
local SIG_BLOCK, SIG_SETMASK = 0, 2
local WNOHANG = 1
local O_RDWR, O_WRONLY, O_CREAT, O_APPEND = 2, 1, 0x40, 0x400
local X_OK = 1

local privileged         -- true once init() enabled the privileged agent process
local agent = { pid = nil, starts = 0, mode = nil }

-- init([opts]) in init_by_lua: run the agent under the privileged agent process when this nginx can
-- (opts.privileged_agent = false to not try). Returns the mode spawn_agent will use: "privileged agent" or
-- "worker 0".
function _M.init(opts)
  if opts == nil or opts.privileged_agent ~= false then
    local ok = process.enable_privileged_agent()
    privileged = ok and true or false
  end
  return privileged and "privileged agent" or "worker 0"
end

local function errstr()
  return ffi.string(C.scout_resty_strerror(ffi_errno()))
end

local function cstrings(list)
  local arr = ffi_new("const char *[?]", #list + 1)
  for i = 1, #list do arr[i - 1] = list[i] end
  arr[#list] = nil
  return arr
end

local function env_list(env)
  if env == nil then return nil end
  local out = {}
  for k, v in pairs(env) do
    if type(k) == "number" then out[#out + 1] = v else out[#out + 1] = k .. "=" .. tostring(v) end
  end
  sort(out)
  return out
end

-- fork and exec, the child closing every descriptor nginx has open (listening sockets, logs) but 0-2, and
-- dying with this worker.
local function fork_exec(argv, env, log)
  local bin = argv[1]
  if C.scout_resty_access(bin, X_OK) ~= 0 then
    return nil, bin .. ": " .. errstr()
  end
  local c_argv = cstrings(argv)
  local c_env = env and cstrings(env) or ffi_cast("const char *const *", C.environ)
  local all, old, none = ffi_new("scout_resty_sigset_t"), ffi_new("scout_resty_sigset_t"),
                         ffi_new("scout_resty_sigset_t")
  C.scout_resty_sigfillset(all)
  C.scout_resty_sigemptyset(none)
  local parent = C.scout_resty_getpid()
  C.scout_resty_sigprocmask(SIG_BLOCK, all, old)   -- no nginx signal handler runs in the child
  local pid = C.scout_resty_fork()
  if pid == 0 then
    C.scout_resty_prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0)
    if C.scout_resty_getppid() ~= parent then C.scout_resty_exit(1) end
    local null = C.scout_resty_open("/dev/null", O_RDWR)
    if null >= 0 then C.scout_resty_dup2(null, 0) end
    if log then
      local fd = C.scout_resty_open(log, O_WRONLY + O_CREAT + O_APPEND, ffi_cast("int", 420))
      if fd >= 0 then
        C.scout_resty_dup2(fd, 1)
        C.scout_resty_dup2(fd, 2)
      end
    end
    local ok, rc = pcall(C.scout_resty_close_range, 3, 0xffffffff, 0)
    if not ok or rc ~= 0 then
      for fd = 3, 65535 do C.scout_resty_close(fd) end
    end
    C.scout_resty_signal(SIGPIPE, nil)              -- nginx ignores SIGPIPE; exec would keep that
    C.scout_resty_sigprocmask(SIG_SETMASK, none, nil)
    C.scout_resty_execve(bin, c_argv, c_env)
    C.scout_resty_exit(127)
  end
  local e = ffi_errno()
  C.scout_resty_sigprocmask(SIG_SETMASK, old, nil)
  if pid < 0 then
    return nil, "fork: " .. ffi.string(C.scout_resty_strerror(e))
  end
  return pid
end

-- nginx reaps its workers' children itself (its SIGCHLD handler waits for any pid), so "gone" is what we can
-- tell, not the exit status: nginx logs that ("unknown process N exited with code C").
local function alive(pid)
  return C.scout_resty_waitpid(pid, nil, WNOHANG) == 0
end

-- spawn_agent{ bin =, policy =, args = {...}, env = {...}, log =, backoff = {min, max} } -> true | nil, err.
-- Call it in init_worker_by_lua of every process: it does something in one of them only (see init). bin
-- defaults to "scout" next to this module's tree (build/scout); args are appended to `run -c POLICY`; env is
-- the agent's whole environment (a map or "K=V" strings; default: the worker's, which nginx strips down to
-- what `env` directives keep); log: a file for the agent's output (default: nginx's stderr, the error log).
-- An agent that exits is started again after backoff.min seconds (0.5), doubling up to backoff.max (30) while
-- it keeps exiting within a minute of its start.
function _M.spawn_agent(opts)
  if type(opts) ~= "table" or type(opts.policy) ~= "string" then
    error("opts.policy must be the agent's policy file", 2)
  end
  if opts.args ~= nil and type(opts.args) ~= "table" then
    error("opts.args must be an array of strings", 2)
  end
  if agent.mode then
    error("spawn_agent called twice", 2)
  end
  local ptype = process.type()
  local here
  if ptype == "privileged agent" then
    here = "privileged agent"
  elseif ptype == "worker" or ptype == "single" then
    here = not privileged and (worker_id() or 0) == 0 and "worker 0"
  end
  if not here then
    return true
  end
  local bin = opts.bin
  if bin == nil then
    local src = debug.getinfo(1, "S").source
    local root = match(src, "^@(.-)/?lua/resty/scout%.lua$")
    bin = (root and root ~= "" and root .. "/" or "") .. "build/scout"
  end
  local argv = { bin, "run", "-c", opts.policy }
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end
  local env = env_list(opts.env)
  local bmin = opts.backoff and opts.backoff.min or 0.5
  local bmax = opts.backoff and opts.backoff.max or 30
  local backoff = bmin
  local log = opts.log
  agent.mode = here

  local use_pipe = here == "privileged agent" and pcall(require, "ngx.pipe")
  if use_pipe then
    local ngx_pipe = require "ngx.pipe"
    local function run(premature)
      while not premature and not worker_exiting() do
        local started = ngx_now()
        local proc, err = ngx_pipe.spawn(argv, { merge_stderr = true, environ = env })
        if not proc then
          ngx_log(ERR, "scout: cannot start the agent: ", err)
        else
          agent.proc, agent.pid, agent.starts = proc, proc:pid(), agent.starts + 1
          proc:set_timeouts(nil, 0, 0, 0)
          local f = log and io_open(log, "a")
          while true do
            local line, rerr = proc:stdout_read_line()
            if line then
              if f then f:write(line, "\n") f:flush() else ngx_log(NOTICE, "scout agent: ", line) end
            elseif rerr ~= "timeout" then
              break
            end
          end
          if f then f:close() end
          local _, reason, status = proc:wait()
          agent.proc, agent.pid = nil, nil
          if worker_exiting() then return end
          ngx_log(WARN, "scout: the agent exited (", tostring(reason), " ", tostring(status), ")")
        end
        ngx_update_time()
        if ngx_now() - started > 60 then backoff = bmin end
        ngx.sleep(backoff)
        backoff = min(backoff * 2, bmax)
      end
    end
    local ok, err = timer_at(0, run)
    if not ok then return nil, err end
    -- stop it with nginx
    return timer_every(1, function(premature)
      if premature and agent.proc then agent.proc:kill(SIGTERM) end
    end)
  end

  local next_start, started = 0, 0
  local function supervise(premature)
    local pid = agent.pid
    if premature then
      -- nginx is stopping or reloading: stop the agent, and wait for it a little (the worker exits next; an
      -- agent that outlives it would be left to init)
      if pid then
        C.scout_resty_kill(pid, SIGTERM)
        for _ = 1, 200 do
          if not alive(pid) then break end
          C.scout_resty_usleep(10000)
        end
      end
      return
    end
    local now = ngx_now()
    if pid then
      if alive(pid) then return end
      agent.pid = nil
      if now - started > 60 then backoff = bmin end
      next_start = now + backoff
      ngx_log(WARN, "scout: the agent (pid ", pid, ") exited; starting it again in ", backoff, "s")
      backoff = min(backoff * 2, bmax)
      return
    end
    if now < next_start then return end
    local err
    pid, err = fork_exec(argv, env, log)
    if not pid then
      ngx_log(ERR, "scout: cannot start the agent: ", err)
      next_start = now + backoff
      backoff = min(backoff * 2, bmax)
      return
    end
    agent.pid, agent.starts, started = pid, agent.starts + 1, now
    ngx_log(NOTICE, "scout: started the agent, pid ", pid, ": ", concat(argv, " "))
  end
  supervise(false)
  local ok, err = timer_every(0.1, supervise)
  if not ok then return nil, err end
  return true
end

-- agent() -> { mode, pid, starts } in the process that supervises the agent; nil elsewhere.
function _M.agent()
  if agent.mode == nil then return nil end
  return { mode = agent.mode, pid = agent.pid, starts = agent.starts }
end

return _M
