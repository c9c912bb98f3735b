-- resty.scout.agent: the scout agent under nginx, for resty.scout's init, spawn_agent and agent. It starts
-- build/scout and restarts it with back-off when it exits: in the privileged agent process with ngx.pipe when
-- this nginx has them (OpenResty), else from worker 0 with fork/exec through the FFI (Debian's nginx has neither
-- patch). It is its own module because none of this is on the request path: balancing never needs it, and the
-- libc declarations stay out of the module every request goes through.
--
-- What it must never do: leave an agent behind, or hold a worker's loop. A process spawned by a worker is killed
-- with it (PR_SET_PDEATHSIG) and stopped when the worker shuts down: the exiting worker waits for it on a timer
-- (ngx.sleep, so requests still in flight on it are served meanwhile, and nginx keeps the worker until then), a
-- second SIGTERM past stop_timeout, SIGKILL a second later. The child closes every descriptor nginx has open
-- (listening sockets, logs) but 0-2 and runs no nginx signal handler before exec. On `nginx -s reload` the new
-- worker 0 starts a new agent once the old one is gone (its pid is in the shared dict, which a reload keeps):
-- before, the new one would find the snapshot file still held and refuse to start. It adopts the file
-- (docs/shm.md), so readers never see a gap.

local ffi = require "ffi"
local process = require "ngx.process"

local ngx = ngx
local ngx_log = ngx.log
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local ngx_update_time = ngx.update_time
local ERR, WARN, NOTICE = ngx.ERR, ngx.WARN, ngx.NOTICE
local timer_every = ngx.timer.every
local timer_at = ngx.timer.at
local worker_id = ngx.worker.id
local worker_exiting = ngx.worker.exiting

local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local match = string.match
local concat = table.concat
local sort = table.sort
local min = math.min
local io_open = io.open
local getinfo = debug.getinfo

local ffi_new = ffi.new
local ffi_cast = ffi.cast
local ffi_errno = ffi.errno
local ffi_string = ffi.string
local C = ffi.C

-- libc, for spawn. Names are bound to their symbols with __asm__ so nothing here can clash with another
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
unsigned int scout_resty_geteuid(void) __asm__("geteuid");
struct scout_resty_passwd { char *pw_name; };   /* only the first field is read */
struct scout_resty_passwd *scout_resty_getpwuid(unsigned int uid) __asm__("getpwuid");
extern char **environ;
]]

local PR_SET_PDEATHSIG = 1
local SIGTERM, SIGPIPE, SIGKILL = 15, 13, 9
local EPERM = 1
local PID_KEY = "scout:agent:pid"   -- in the shared dict: the running agent's pid, for the next worker 0
local SIG_BLOCK, SIG_SETMASK = 0, 2
local WNOHANG = 1
local O_RDWR, O_WRONLY, O_CREAT, O_APPEND = 2, 1, 0x40, 0x400
local X_OK = 1

local _M = {}

local privileged         -- true once init() enabled the privileged agent process
local agent = { pid = nil, starts = 0, attempts = 0, mode = nil }
local dict               -- the shared dict spawn() was given, or nil
local spec               -- { bin, policy, log } of spawn(), kept in every process for problem()
local problem            -- why the agent cannot start, or nil
local last_problem_check = 0

-- init([opts]) in init_by_lua: run the agent under the privileged agent process when this nginx can
-- (opts.privileged_agent = false to not try). Returns the mode spawn will use: "privileged agent" or
-- "worker 0".
function _M.init(opts)
  if opts == nil or opts.privileged_agent ~= false then
    local ok = process.enable_privileged_agent()
    privileged = ok and true or false
  end
  return privileged and "privileged agent" or "worker 0"
end

local function errstr()
  return ffi_string(C.scout_resty_strerror(ffi_errno()))
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
    return nil, "fork: " .. ffi_string(C.scout_resty_strerror(e))
  end
  return pid
end

local function whoami()
  local uid = C.scout_resty_geteuid()
  local pw = C.scout_resty_getpwuid(uid)
  if pw ~= nil and pw.pw_name ~= nil then return ffi_string(pw.pw_name) end
  return "uid " .. tostring(uid)
end

-- What the agent needs and this process can check for it, as the same user (the agent is this worker's child,
-- or the privileged agent's, and runs as nginx's worker user): the binary executable, the policy and the log
-- readable or writable. nil, or the reason in the words an operator needs.
local function preflight()
  local why
  if C.scout_resty_access(spec.bin, X_OK) ~= 0 then
    why = spec.bin .. ": " .. errstr()
  else
    local f, err = io_open(spec.policy, "r")
    if not f then
      why = err
    else
      f:close()
      if spec.log then
        f, err = io_open(spec.log, "a")
        if not f then why = err else f:close() end
      end
    end
  end
  return why and "the agent cannot start: " .. why .. " (as " .. whoami() .. ")"
end

-- A new reason is logged at error level, once; its end at notice.
local function set_problem(why)
  if why == problem then return end
  if why then
    ngx_log(ERR, "scout: ", why)
  else
    ngx_log(NOTICE, "scout: the agent can start again")
  end
  problem = why
end

-- nginx reaps its workers' children itself (its SIGCHLD handler waits for any pid), so "gone" is what we can
-- tell, not the exit status: nginx logs that ("unknown process N exited with code C").
local function alive(pid)
  return C.scout_resty_waitpid(pid, nil, WNOHANG) == 0
end

-- The privileged agent process: ngx.pipe spawns, reads the agent's output line by line (into opts.log or the
-- error log) and waits for it, all in one timer that loops until nginx exits.
local function run_piped(argv, env, log, bmin, bmax)
  local ngx_pipe = require "ngx.pipe"
  local backoff = bmin
  local function run(premature)
    while not premature and not worker_exiting() do
      local started = ngx_now()
      local proc, err = nil, preflight()
      last_problem_check = started
      agent.attempts = agent.attempts + 1
      if not err then
        proc, err = ngx_pipe.spawn(argv, { merge_stderr = true, environ = env })
        err = not proc and "the agent cannot start: " .. tostring(err) or nil
      end
      set_problem(err)
      if proc then
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
      ngx_sleep(backoff)
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

-- The agent's pid goes in the shared dict while it runs: a reload's new worker 0 waits for that one to be gone.
local function remember(pid)
  if dict then dict:set(PID_KEY, pid) end
end

local function forget(pid)
  if dict and dict:get(PID_KEY) == pid then dict:delete(PID_KEY) end
end

-- The pid of an agent another worker 0 started (the one before a reload) that still runs, or nil. A zombie
-- counts: it is gone once reaped, and nginx reaps at once.
local function previous_agent()
  local p = dict and dict:get(PID_KEY)
  if p == nil or p == agent.pid then return nil end
  if C.scout_resty_kill(p, 0) == 0 or ffi_errno() == EPERM then return p end
  return nil
end

-- nginx is stopping or reloading: stop the agent and wait for it without holding this worker's loop: ngx.sleep
-- lets the requests still in flight here be served, and nginx keeps an exiting worker while a sleep is pending,
-- so the worker exits after its agent (none outlives nginx or is left to init). Past stop_timeout a second
-- SIGTERM (the agent stops at once), a second later SIGKILL.
local function stop_agent(pid, stop_timeout)
  C.scout_resty_kill(pid, SIGTERM)
  ngx_log(NOTICE, "scout: stopping the agent (pid ", pid, "); waiting for it to exit")
  ngx_update_time()
  local t0, sent = ngx_now(), 1
  while alive(pid) do
    ngx_sleep(0.01)
    local waited = ngx_now() - t0
    if sent == 1 and waited >= stop_timeout then
      ngx_log(WARN, "scout: the agent (pid ", pid, ") still runs ", stop_timeout, "s after SIGTERM: stopping it now")
      C.scout_resty_kill(pid, SIGTERM)
      sent = 2
    elseif sent == 2 and waited >= stop_timeout + 1 then
      ngx_log(WARN, "scout: the agent (pid ", pid, ") still runs: killing it")
      C.scout_resty_kill(pid, SIGKILL)
      sent = 3
    end
  end
  forget(pid)
  ngx_log(NOTICE, "scout: the agent (pid ", pid, ") exited")
end

-- Worker 0: fork/exec, and a 0.1 s timer that notices the agent is gone and starts it again when its back-off
-- is over.
local function run_forked(argv, env, log, bmin, bmax, stop_timeout)
  local backoff = bmin
  local next_start, started = 0, 0
  local waiting_for, wait_since
  local function supervise(premature)
    local pid = agent.pid
    if premature then
      if pid then stop_agent(pid, stop_timeout) end
      return
    end
    local now = ngx_now()
    if pid then
      if alive(pid) then return end
      agent.pid = nil
      forget(pid)
      if now - started > 60 then backoff = bmin end
      next_start = now + backoff
      ngx_log(WARN, "scout: the agent (pid ", pid, ") exited; starting it again in ", backoff, "s")
      backoff = min(backoff * 2, bmax)
      return
    end
    if now < next_start then return end
    -- the last worker 0's agent (a reload) still exits: it holds the snapshot file and maybe the API address, and
    -- a new one would refuse to start. Wait for it, as long as the last worker 0 waits (then start anyway).
    local prev = previous_agent()
    if prev then
      if waiting_for ~= prev then
        waiting_for, wait_since = prev, now
        ngx_log(NOTICE, "scout: waiting for the last agent (pid ", prev, ") to exit before starting one")
      end
      if now - wait_since < stop_timeout + 2 then return end
      ngx_log(WARN, "scout: the last agent (pid ", prev, ") still runs; starting one anyway")
      if dict then dict:delete(PID_KEY) end
    end
    waiting_for = nil
    local err = preflight()
    last_problem_check = now
    agent.attempts = agent.attempts + 1
    if not err then
      pid, err = fork_exec(argv, env, log)
      err = not pid and "the agent cannot start: " .. err or nil
    end
    set_problem(err)
    if not pid then
      next_start = now + backoff
      backoff = min(backoff * 2, bmax)
      return
    end
    agent.pid, agent.starts, started = pid, agent.starts + 1, now
    remember(pid)
    ngx_log(NOTICE, "scout: started the agent, pid ", pid, ": ", concat(argv, " "))
  end
  supervise(false)
  local ok, err = timer_every(0.1, supervise)
  if not ok then return nil, err end
  return true
end

-- spawn{ bin =, policy =, args = {...}, env = {...}, log =, backoff = {min, max}, dict =, stop_timeout = }
-- -> true | nil, err.
-- Call it in init_worker_by_lua of every process: it does something in one of them only (see init). bin
-- defaults to "scout" next to this module's tree (build/scout); args are appended to `run -c POLICY`; env is
-- the agent's whole environment (a map or "K=V" strings; default: the worker's, which nginx strips down to
-- what `env` directives keep); log: a file for the agent's output (default: nginx's stderr, the error log).
-- An agent that exits is started again after backoff.min seconds (0.5), doubling up to backoff.max (30) while
-- it keeps exiting within a minute of its start. dict: a lua_shared_dict name (resty.scout passes init_worker's),
-- where worker 0 keeps its agent's pid: after `nginx -s reload` the new worker 0 starts its agent once the old
-- one is gone (without it, the new agent refuses while the old holds the snapshot file, and is started again
-- with back-off). stop_timeout: seconds a stopping worker waits for its agent before a second SIGTERM (10).
function _M.spawn(opts)
  if type(opts) ~= "table" or type(opts.policy) ~= "string" then
    error("opts.policy must be the agent's policy file", 2)
  end
  if opts.args ~= nil and type(opts.args) ~= "table" then
    error("opts.args must be an array of strings", 2)
  end
  if agent.mode then
    error("spawn_agent called twice", 2)
  end
  local bin = opts.bin
  if bin == nil then
    local src = getinfo(1, "S").source
    local root = match(src, "^@(.-)/?lua/resty/scout/agent%.lua$")
    bin = (root and root ~= "" and root .. "/" or "") .. "build/scout"
  end
  -- every worker can tell why the agent cannot start (problem()), not only the one that starts it
  spec = { bin = bin, policy = opts.policy, log = opts.log }
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
  local argv = { bin, "run", "-c", opts.policy }
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end
  local env = env_list(opts.env)
  local bmin = opts.backoff and opts.backoff.min or 0.5
  local bmax = opts.backoff and opts.backoff.max or 30
  local stop_timeout = opts.stop_timeout or 10
  if type(stop_timeout) ~= "number" or stop_timeout < 0 then
    error("opts.stop_timeout must be a number of seconds", 2)
  end
  if opts.dict ~= nil then
    dict = ngx.shared[opts.dict]
    if dict == nil then
      error("no lua_shared_dict named \"" .. tostring(opts.dict) .. "\"", 2)
    end
  end
  agent.mode = here

  if here == "privileged agent" and pcall(require, "ngx.pipe") then
    return run_piped(argv, env, opts.log, bmin, bmax)
  end
  return run_forked(argv, env, opts.log, bmin, bmax, stop_timeout)
end

-- problem([now]) -> why the agent spawn() was given cannot start ("the agent cannot start: PATH: REASON (as
-- USER)"), or nil: its binary not executable, its policy or log not readable by the user the agent runs as. The
-- process that starts the agent checks before every start; when that is worker 0 (a worker user's agent), every
-- other worker checks too, at most once a second when called with now (resty.scout's timer does). A new reason is
-- logged at error level once. Under the privileged agent process (root's agent) only that process can tell.
function _M.problem(now)
  if spec and now and now - last_problem_check >= 1 and not privileged and agent.mode == nil then
    last_problem_check = now
    set_problem(preflight())
  end
  return problem
end

-- status() -> { mode, pid, starts, attempts } in the process that supervises the agent (attempts counts the
-- starts tried, those refused because the agent cannot start included); nil elsewhere.
function _M.status()
  if agent.mode == nil then return nil end
  return { mode = agent.mode, pid = agent.pid, starts = agent.starts, attempts = agent.attempts }
end

return _M
