-- scout.sandbox: the environment a policy file runs in, and the checks `scout check` makes before running it.
--
-- scout is one thread: a policy that blocks (os.execute, io.read), exits (os.exit) or gets its loops compiled (a
-- compiled loop never runs the budget's hook, so it cannot be stopped) takes the ZooKeeper session down with it.
-- The agent's VM runs scout's own library compiled, and every function an operator wrote stays interpreted:
-- the policy file, modules it requires from outside scout's Lua directory, and code it builds with load or
-- loadstring are marked jit.off(fn, true), which LuaJIT honours for every nested function too, and a trace that
-- reaches such a function is abandoned (a compiled loop of scout's that calls a filter just stays interpreted).
-- So the environment holds what a policy needs and nothing else, with no fallback to the real globals: a name it
-- does not hold is an error, named with the policy's file:line. Before the file runs, its bytecode is read
-- (jit.util) for every global it reads, including inside functions that only run later, so a typo or a refused
-- call fails `scout check` rather than a hook at 3 a.m.

local type = type
local pairs = pairs
local ipairs = ipairs
local error = error
local tostring = tostring
local setmetatable = setmetatable
local rawget = rawget
local format = string.format
local sort = table.sort
local concat = table.concat
local min = math.min
local band, shr = bit.band, bit.rshift
local jutil = require "jit.util"
local jit_off = jit.off   -- taken now: a module with the real globals may replace jit.off later
local real_loadfile = loadfile
local funcinfo, funcbc, funck = jutil.funcinfo, jutil.funcbc, jutil.funck

local M = {}

-- ---- what a policy may not use, and what to use instead --------------------------------------------------------

local EXEC_HINT = "use scout.exec(cmd, opts, callback)"
local FILE_HINT = "use scout.read_file(path)"
local JIT_HINT = "the agent runs policies with the JIT off so that a budget can stop any loop"

-- Libraries a policy sees in part: the fields it may use. Any other field is refused.
local PARTIAL = {
  os = { time = true, clock = true, date = true, getenv = true, difftime = true },
  io = {},
  jit = {},
  debug = { traceback = true },
}

local HINTS = {
  ["os.execute"] = EXEC_HINT, ["io.popen"] = EXEC_HINT,
  ["os.exit"] = "a policy cannot stop the agent",
  ["io.read"] = FILE_HINT, ["io.lines"] = FILE_HINT, ["io.open"] = FILE_HINT, ["io.input"] = FILE_HINT,
  ["io.write"] = "use print", ["io.stdout"] = "use print", ["io.stderr"] = "use print",
  ["debug.sethook"] = "hook budgets own the debug hook",
  getfenv = "policies see their own environment only", setfenv = "policies see their own environment only",
  loadfile = "put shared code in a module and require it", dofile = "put shared code in a module and require it",
  module = "a module returns a table",
  package = "use require",
}

-- Modules a policy may not require: they hold what the environment leaves out.
local NO_REQUIRE = { os = true, io = true, ffi = true, jit = true, debug = true, package = true }

local function refusal(name)
  local hint = HINTS[name]
  if not hint then
    local lib = name:match("^(%a+)%.")
    hint = lib == "jit" and JIT_HINT or nil
  end
  return name .. " is not available in a policy" .. (hint and (": " .. hint) or "")
end
M.refusal = refusal

-- Names of the environment that take no string suggestion: values a policy writes as strings.
local function string_values()
  local out = { error = true, warn = true, info = true, debug = true, open = true, creator = true, private = true }
  local ok, codecs = pcall(require, "scout.codec")
  if ok then for _, n in ipairs(codecs.names()) do out[n] = true end end
  local oks, select = pcall(require, "scout.select")
  if oks and type(select.names) == "table" then for _, n in ipairs(select.names) do out[n] = true end end
  return out
end

-- Operator code stays interpreted: fn and every function nested in it (see the top of this file). Returns fn.
local function interpreted(fn)
  if type(fn) == "function" then jit_off(fn, true) end
  return fn
end
M.interpreted = interpreted

-- ---- suggestions ---------------------------------------------------------------------------------------------

local function distance(a, b)
  local la, lb = #a, #b
  if la - lb > 3 or lb - la > 3 then return 99 end
  local prev, cur = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur[0] = i
    local ca = a:byte(i)
    for j = 1, lb do
      local cost = ca == b:byte(j) and 0 or 1
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[lb]
end

-- The closest of names to `name`, if close enough to be a typo of it.
function M.closest(name, names)
  local best, best_d
  local limit = #name <= 4 and 1 or 2
  for _, cand in ipairs(names) do
    local d = distance(name, cand)
    if d <= limit and (not best_d or d < best_d or (d == best_d and cand < best)) then best, best_d = cand, d end
  end
  return best
end

local VALUES
local function unknown_name(name, known, stored)
  VALUES = VALUES or string_values()
  local near = not VALUES[name] and M.closest(name, known)
  if near then return format("unknown name \"%s\" (did you mean \"%s\"?)", name, near) end
  if VALUES[name] or stored then return format("unknown name \"%s\" (did you mean the string \"%s\"?)", name, name) end
  return format("unknown name \"%s\"", name)
end

-- ---- the environment ---------------------------------------------------------------------------------------------

local SAFE = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "select", "tonumber", "tostring", "type",
  "unpack", "rawequal", "rawget", "rawset", "setmetatable", "getmetatable", "print", "_VERSION",
}
local COPIED = { "string", "table", "math", "bit", "coroutine" }

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- agent: package.loaded["scout.agent"] (exec, read_file, refused) or nil outside the agent (specs, tools).
-- dsl: name -> function, what the DSL offers (service, register, ...).
function M.environment(dsl, agent)
  local env = {}
  local function refuse(name, level)
    if agent and agent.refused then agent.refused() end
    error(refusal(name), level + 1)
  end
  for _, k in ipairs(SAFE) do env[k] = _G[k] end
  for _, k in ipairs(COPIED) do env[k] = copy(_G[k]) end
  for lib, allowed in pairs(PARTIAL) do
    local t = {}
    for k in pairs(allowed) do t[k] = _G[lib][k] end
    env[lib] = setmetatable(t, { __index = function(_, k) refuse(lib .. "." .. tostring(k), 2) end })
  end
  for name in pairs(HINTS) do
    if not name:find(".", 1, true) then
      env[name] = function() refuse(name, 2) end
    end
  end
  env.package = nil    -- refused on reading, below
  env.collectgarbage = function(opt)
    if opt == "count" then return collectgarbage("count") end
    refuse(format("collectgarbage(%q)", tostring(opt)), 2)
  end
  local real_require = require
  env.require = function(name)
    if type(name) == "string" and (NO_REQUIRE[name] or name:match("^jit%.")) then
      refuse("require \"" .. name .. "\"", 2)
    end
    return real_require(name)
  end
  -- code built at run time sees this environment too, never the real one
  env.loadstring = function(s, chunkname)
    local f, err = loadstring(s, chunkname)
    if f then setfenv(interpreted(f), env) end
    return f, err
  end
  env.load = function(fn, chunkname)
    local f, err = load(fn, chunkname)
    if f then setfenv(interpreted(f), env) end
    return f, err
  end

  local scout = {}
  scout.exec = function(cmd, opts, callback)
    if callback == nil and type(opts) == "function" then opts, callback = {}, opts end
    if type(cmd) ~= "string" or cmd == "" then error("scout.exec: cmd must be a shell command (a string)", 2) end
    if type(opts) ~= "table" then error("scout.exec: opts must be a table { timeout = \"2s\" }", 2) end
    if type(callback) ~= "function" then error("scout.exec: callback must be a function(ok, out, code)", 2) end
    local duration = require("scout.policy").duration
    local timeout = duration(opts.timeout or 5000)
    if not timeout or timeout < 1 or timeout > 3600000 then
      error("scout.exec: timeout must be a duration like \"2s\" (at most an hour)", 2)
    end
    local max_output = opts.max_output or 65536
    if type(max_output) ~= "number" or max_output < 0 or max_output > 16777216 then
      error("scout.exec: max_output must be a number of bytes up to 16 MB", 2)
    end
    if not (agent and agent.exec) then return nil, "scout.exec runs only in a running agent" end
    return agent.exec(cmd, timeout, max_output, callback)
  end
  scout.read_file = function(path)
    if type(path) ~= "string" then error("scout.read_file: path must be a string", 2) end
    if agent and agent.read_file then return agent.read_file(path) end
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("*a")
    f:close()
    return s
  end
  env.scout = scout

  -- log.info(...) and print(...) go through the agent's logger: a timestamp and level, the policy's file:line,
  -- journald priorities and --log-format=json, like every other line.  Outside the agent (scout check, specs)
  -- print prints and log writes to stderr.
  if agent and agent.log then
    local getinfo, sel = debug.getinfo, select
    local function emit(level, sep, ...)
      local parts = {}
      for i = 1, sel("#", ...) do parts[i] = tostring((sel(i, ...))) end
      local info = getinfo(3, "Sl")
      local src = info and info.source or ""
      local at = info and src:sub(1, 1) == "@" and info.currentline > 0
                 and format("%s:%d: ", src:sub(2), info.currentline) or ""
      agent.log(level, at .. concat(parts, sep))
    end
    env.print = function(...) emit(2, "\t", ...) end
    env.log = {
      error = function(...) emit(0, " ", ...) end,
      warn = function(...) emit(1, " ", ...) end,
      info = function(...) emit(2, " ", ...) end,
      debug = function(...) emit(3, " ", ...) end,
    }
  else
    local function to_stderr(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      io.stderr:write(concat(parts, " "), "\n")
    end
    env.log = { error = to_stderr, warn = to_stderr, info = to_stderr, debug = to_stderr }
  end

  for k, v in pairs(dsl) do env[k] = v end
  env._G = env

  local known
  return setmetatable(env, {
    __index = function(_, k)
      if HINTS[k] or PARTIAL[k] then refuse(tostring(k), 2) end
      if not known then
        known = {}
        for name in pairs(env) do if type(name) == "string" then known[#known + 1] = name end end
        sort(known)
      end
      error(unknown_name(tostring(k), known), 2)
    end,
  })
end

-- In the agent's VM, modules a policy requires run with the real globals: take from them too what blocks, exits
-- or undoes the budgets, so that no path leads to it. (The agent's own Lua uses none of these.)
local HARDEN = { os = { "execute", "exit" }, io = { "popen", "read", "lines", "input" }, debug = { "sethook" },
                 jit = { "on" } }

-- The Lua searcher of package.loaders, but a module found outside scout's own Lua directory (lua_dir: the agent's
-- package.path entry for it) is operator code and stays interpreted.
local function interpreting_searcher(lua_dir)
  local searchpath = package.searchpath
  local ours = lua_dir and (lua_dir:gsub("/+$", "") .. "/") or nil
  return function(name)
    local path, why = searchpath(name, package.path)
    if not path then return why end
    local f, err = real_loadfile(path)
    if not f then error(format("error loading module '%s' from file '%s':\n\t%s", name, path, err), 0) end
    if not (ours and path:sub(1, #ours) == ours) then interpreted(f) end
    return f, path
  end
end

function M.harden(agent)
  for lib, fns in pairs(HARDEN) do
    local t = _G[lib]
    for _, fn in ipairs(fns) do
      local name = lib .. "." .. fn
      t[fn] = function()
        if agent and agent.refused then agent.refused() end
        error(refusal(name), 2)
      end
    end
  end
  -- code built or loaded at run time is the operator's: interpreted, whoever asks
  local real_loadstring, real_load = loadstring, load
  _G.loadstring = function(...)
    local f, err = real_loadstring(...)
    return interpreted(f), err
  end
  _G.load = function(...)
    local f, err = real_load(...)
    return interpreted(f), err
  end
  _G.loadfile = function(...)
    local f, err = real_loadfile(...)
    return interpreted(f), err
  end
  _G.dofile = function(path)
    local f = interpreted(assert(real_loadfile(path)))
    return f()
  end
  package.loaders[2] = interpreting_searcher(agent and agent.lua_dir)
end

-- ---- the static check -------------------------------------------------------------------------------------------

-- Opcode numbers, read from probes rather than from jit.vmdef (not installed with every libluajit).
local OP
local function opcodes()
  if OP then return OP end
  local function op_of(src, pc) return band(funcbc(loadstring(src), pc), 0xff) end
  OP = {
    GGET = op_of("return g.f", 1),              -- GGET g; TGETS f
    TGETS = op_of("return g.f", 2),
    GSET = op_of("g = ...", 2),                 -- VARG; GSET g
    TSETS = op_of("local t = {} t.f = g", 3),   -- TNEW; GGET g; TSETS f
  }
  return OP
end

local function kstr(fn, d)
  local k = funck(fn, -d - 1)
  return type(k) == "string" and k or nil
end

-- Every prototype of a chunk: the main function and every function nested in it.
local function protos(fn, out)
  out[#out + 1] = fn
  if funcinfo(fn).children then
    local n = -1
    while true do
      local k = funck(fn, n)
      if k == nil then break end
      if type(k) == "proto" then protos(k, out) end
      n = n - 1
    end
  end
  return out
end

-- Reads and writes of globals in a loaded chunk: reads = { {name=, line=, field=, stored=} }, writes = set. Reads of
-- names env holds plainly are skipped: at 10,000 services that is nearly all of them, each a read of the same
-- constant ("service"), so whether a constant's reads are skipped is decided once per function and constant.
local function scan(chunk, env)
  local op = opcodes()
  local GGET, GSET, TGETS, TSETS = op.GGET, op.GSET, op.TGETS, op.TSETS
  local reads, writes = {}, {}
  for _, fn in ipairs(protos(chunk, {})) do
    local n = funcinfo(fn).bytecodes
    local looked = {}   -- constant index -> its name when a read of it is kept, false when skipped
    for pc = 1, n - 1 do
      local ins = funcbc(fn, pc)
      local o = ins % 256   -- band(ins, 0xff), also for a negative int32, without a call per instruction
      if o == GGET then
        local d = shr(ins, 16)
        local name = looked[d]
        if name == nil then
          name = kstr(fn, d)
          if not (name and (rawget(env, name) == nil or PARTIAL[name] or HINTS[name])) then name = false end
          looked[d] = name
        end
        if name then
          local a = band(shr(ins, 8), 0xff)
          local r = { name = name, line = funcinfo(fn, pc).currentline or 0 }
          local nxt = pc + 1 < n and funcbc(fn, pc + 1)
          if nxt then
            local no, na, nb, nc = band(nxt, 0xff), band(shr(nxt, 8), 0xff), shr(nxt, 24), band(shr(nxt, 16), 0xff)
            if no == TGETS and nb == a then r.field = kstr(fn, nc) end
            if no == TSETS and na == a then r.stored = true end
          end
          reads[#reads + 1] = r
        end
      elseif o == GSET then
        local name = kstr(fn, shr(ins, 16))
        if name then writes[name] = true end
      end
    end
  end
  return reads, writes
end

-- The first thing in `chunk` that would fail in `env`: returns line, message; or nil when clean.
function M.lint(chunk, env)
  local reads, writes = scan(chunk, env)
  for k = 1, #reads do reads[k].seq = k end
  sort(reads, function(a, b) return a.line < b.line or (a.line == b.line and a.seq < b.seq) end)
  local known = nil
  for _, r in ipairs(reads) do
    local name = r.name
    local lib = PARTIAL[name]
    if lib and r.field and not lib[r.field] then return r.line, refusal(name .. "." .. r.field) end
    if HINTS[name] then return r.line, refusal(name) end
    if rawget(env, name) == nil and not writes[name] then
      if not known then
        known = {}
        for k in pairs(env) do if type(k) == "string" then known[#known + 1] = k end end
        for k in pairs(writes) do known[#known + 1] = k end
        sort(known)
      end
      return r.line, unknown_name(name, known, r.stored)
    end
  end
end

-- ---- where each key of a block is written -------------------------------------------------------------------------

local TWO_CHAR_OPS = { ["=="] = true, ["~="] = true, ["<="] = true, [">="] = true }

-- A small Lua tokenizer: enough to find `name = ` at the top of a table constructor, skipping strings and comments.
local function tokens(src)
  local out, i, line, n = {}, 1, 1, #src
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then
      line = line + 1; i = i + 1
    elseif c:match("%s") then
      i = i + 1
    elseif src:sub(i, i + 1) == "--" then
      local eq = src:match("^%[(=*)%[", i + 2)
      local j
      if eq then
        j = select(2, src:find("]" .. eq .. "]", i, true)) or n
      else
        j = (src:find("\n", i, true) or n + 1) - 1
      end
      local _, nl = src:sub(i, j):gsub("\n", "")
      line = line + nl; i = j + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      out[#out + 1] = { t = "str", line = line }
      i = j + 1
    elseif src:match("^%[=*%[", i) then
      local eq = src:match("^%[(=*)%[", i)
      local j = select(2, src:find("]" .. eq .. "]", i, true)) or n
      local _, nl = src:sub(i, j):gsub("\n", "")
      out[#out + 1] = { t = "str", line = line }
      line = line + nl; i = j + 1
    elseif c:match("[%a_]") then
      local w = src:match("^[%w_]+", i)
      out[#out + 1] = { t = "name", v = w, line = line }
      i = i + #w
    elseif TWO_CHAR_OPS[src:sub(i, i + 1)] then
      out[#out + 1] = { t = "op", v = src:sub(i, i + 1), line = line }
      i = i + 2
    else
      out[#out + 1] = { t = "op", v = c, line = line }
      i = i + 1
    end
  end
  return out
end

-- For the block that `dsl_name` opens on `line` of `src`: key -> line of its own `key =`, with nested keys as
-- "key.sub". nil when the block cannot be found (a DSL function called under another name).
function M.key_lines(src, line, dsl_name)
  local toks = tokens(src)
  local k = 1
  while toks[k] and not (toks[k].line == line and toks[k].t == "name" and toks[k].v == dsl_name) do k = k + 1 end
  if not toks[k] then return nil end
  while toks[k] and not (toks[k].t == "op" and toks[k].v == "{") do k = k + 1 end
  if not toks[k] then return nil end
  local lines, depth, path = {}, 0, {}
  local last_key
  while toks[k] do
    local t = toks[k]
    if t.t == "op" and (t.v == "{" or t.v == "(" or t.v == "[") then
      depth = depth + 1
      path[depth] = last_key
      last_key = nil
    elseif t.t == "op" and (t.v == "}" or t.v == ")" or t.v == "]") then
      path[depth] = nil
      depth = depth - 1
      if depth == 0 then break end
    elseif t.t == "name" and toks[k + 1] and toks[k + 1].t == "op" and toks[k + 1].v == "="
           and (toks[k - 1].v == "{" or toks[k - 1].v == "," or toks[k - 1].v == ";") then
      local prefix = {}
      for d = 2, depth do
        if not path[d] then prefix = nil; break end
        prefix[#prefix + 1] = path[d]
      end
      if prefix then
        prefix[#prefix + 1] = t.v
        local key = concat(prefix, ".")
        lines[key] = t.line   -- the last one counts, as in Lua
      end
      last_key = t.v
    elseif t.t ~= "name" or t.v ~= "function" then
      if not (t.t == "op" and t.v == "=") then last_key = nil end
    end
    k = k + 1
  end
  return lines
end

return M
