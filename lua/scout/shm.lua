-- scout.shm: the agent's shared-memory snapshot from LuaJIT (nginx workers, scripts), through libscout.so.
--
--   local shm = require "scout.shm"
--   local r, err = shm.open("/dev/shm/scout.snapshot")
--   if r:generation() ~= seen then                   -- one 8-byte load: per request or per 10 ms is fine
--     local snap, err = r:read()                      -- copy, verify, build Lua tables
--     seen = snap.generation
--     local orders = snap.services.orders             -- { name, path, index, state, settings, endpoints }
--   end
--
-- open() succeeds before the agent has written anything (generation() is 0 until then); read() says "no
-- snapshot". generation() cannot see a file replaced behind a crashed agent; r:moved() can (one stat(), call it
-- every second or so) and read() then maps the new file. read(names) builds only the services named in the set
-- `names` ({ orders = true }). Format and protocol: docs/shm.md; the C side: lib/scout_shm.h.
--
-- Runtime failures are `nil, err` ("no snapshot", "torn, retry" once the bounded retries are spent, "checksum
-- mismatch", "corrupt snapshot: ..."); a wrong argument or a closed reader is an error raised at the caller.
--
-- libscout.so is looked for in this order: $SCOUT_LIB (the file, or a directory holding it), then every directory
-- of package.cpath, then the build/ directory of the source tree this file is in.

local ffi = require "ffi"
local tab_new = require "table.new"

local error = error
local type = type
local tonumber = tonumber
local setmetatable = setmetatable
local pcall = pcall
local tostring = tostring
local concat = table.concat
local getenv = os.getenv
local io_open = io.open
local gmatch = string.gmatch
local match = string.match
local sub = string.sub
local floor = math.floor
local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_cast = ffi.cast
local ffi_string = ffi.string
local ffi_load = ffi.load

-- Every declaration here is the header's, word for word (tests/lua/30_shm_spec.lua checks, and checks the layout
-- against what the library was compiled with).
local CDEF = [[
typedef struct {
    uint32_t off;
    uint32_t len;
} scout_shm_str_t;

typedef struct {
    uint64_t generation;
    uint64_t size;
    uint32_t nservices;
    uint32_t nendpoints;
    uint32_t nmeta;
    uint32_t strings_len;
} scout_shm_snap_t;

typedef struct {
    scout_shm_str_t name;
    scout_shm_str_t path;
    scout_shm_str_t state;
    scout_shm_str_t settings;
    uint64_t index;
    uint32_t ep_first;
    uint32_t ep_count;
} scout_shm_svc_t;

typedef struct {
    scout_shm_str_t id;
    scout_shm_str_t host;
    scout_shm_str_t status;
    int32_t port;
    int32_t weight;
    int64_t zxid;
    uint32_t meta_first;
    uint32_t meta_count;
} scout_shm_ep_t;

typedef struct {
    scout_shm_str_t key;
    scout_shm_str_t value;
} scout_shm_meta_t;

typedef struct scout_shm_reader_s scout_shm_reader_t;

typedef struct {
    uint64_t reads;
    uint64_t retries;
    uint64_t checksum_failures;
    uint64_t remaps;
} scout_shm_stats_t;

scout_shm_reader_t *scout_shm_reader_open(const char *path, char *err);
void scout_shm_reader_close(scout_shm_reader_t *r);
uint64_t scout_shm_reader_generation(const scout_shm_reader_t *r);
int scout_shm_reader_moved(scout_shm_reader_t *r);
int scout_shm_reader_copy(scout_shm_reader_t *r, void *buf, size_t cap,
                          size_t *len, char *err);
void scout_shm_reader_stats(const scout_shm_reader_t *r,
                            scout_shm_stats_t *out);
const char *scout_shm_abi(void);
]]

-- busted (and a reloaded module) runs this file again in the same VM: declare once.
if not pcall(ffi.typeof, "scout_shm_snap_t") then
  ffi.cdef(CDEF)
end

local OK, AGAIN, SHORT = 0, -2, -3
local ERR_LEN = 256
local READ_TRIES = 16

local function candidates()
  local list = {}
  local env = getenv("SCOUT_LIB")
  if env and env ~= "" then
    if sub(env, -3) == ".so" then
      list[#list + 1] = env
    else
      list[#list + 1] = env .. "/libscout.so"
    end
  end
  for pat in gmatch(package.cpath, "[^;]+") do
    local dir = match(pat, "^(.*)/[^/]*%?[^/]*$")
    if dir and dir ~= "" then list[#list + 1] = dir .. "/libscout.so" end
  end
  local src = debug.getinfo(1, "S").source
  if sub(src, 1, 1) == "@" then
    local root = match(sub(src, 2), "^(.-)/?lua/scout/shm%.lua$")
    if root then list[#list + 1] = (root == "" and "" or root .. "/") .. "build/libscout.so" end
  end
  return list
end

local function load_lib()
  local tried = candidates()
  for i = 1, #tried do
    local f = io_open(tried[i], "rb")
    if f then
      f:close()
      return ffi_load(tried[i]), tried[i]
    end
  end
  error("scout.shm: libscout.so not found (tried " .. concat(tried, ", ") .. "; set SCOUT_LIB)")
end

local C, lib_path = load_lib()

-- A libscout.so from another version would have this module read the wrong bytes: compare every size and offset
-- the library was compiled with against the cdef above before anything is read.
do
  local abi = ffi_string(C.scout_shm_abi())
  for key, val in gmatch(abi, "(%S+)=(%d+)") do
    local t, f = match(key, "^([%w_]+)%.([%w_]+)$")
    local ok, got
    if t then
      ok, got = pcall(ffi.offsetof, t, f)
    else
      ok, got = pcall(ffi.sizeof, key)
    end
    if not ok or got ~= tonumber(val) then
      error("scout.shm: " .. lib_path .. " does not match this module (" .. key .. " is " .. val .. " there, "
            .. tostring(got) .. " here)")
    end
  end
end

local snap_ptr_t = ffi.typeof("const scout_shm_snap_t *")
local svc_ptr_t = ffi.typeof("const scout_shm_svc_t *")
local ep_ptr_t = ffi.typeof("const scout_shm_ep_t *")
local meta_ptr_t = ffi.typeof("const scout_shm_meta_t *")
local char_ptr_t = ffi.typeof("const char *")
local buf_t = ffi.typeof("uint64_t[?]")

-- Shared by every reader: a worker is one thread.
local errbuf = ffi_new("char[?]", ERR_LEN)
local lenp = ffi_new("size_t[1]")
local statbuf = ffi_new("scout_shm_stats_t")

local _M = { _VERSION = "0.1.0", _cdef = CDEF, _lib = C, _lib_path = lib_path }

local reader = {}
local mt = { __index = reader }

function _M.open(path)
  if type(path) ~= "string" or path == "" then
    error("path must be a non-empty string", 2)
  end
  local r = C.scout_shm_reader_open(path, errbuf)
  if r == nil then
    return nil, ffi_string(errbuf)
  end
  return setmetatable({ r = ffi_gc(r, C.scout_shm_reader_close), buf = nil, cap = 0, path = path }, mt)
end

function reader:generation()
  local r = self.r
  if r == nil then error("reader is closed", 2) end
  return tonumber(C.scout_shm_reader_generation(r))
end

function reader:moved()
  local r = self.r
  if r == nil then error("reader is closed", 2) end
  return C.scout_shm_reader_moved(r) == 1
end

function reader:stats()
  local r = self.r
  if r == nil then error("reader is closed", 2) end
  C.scout_shm_reader_stats(r, statbuf)
  return {
    reads = tonumber(statbuf.reads),
    retries = tonumber(statbuf.retries),
    checksum_failures = tonumber(statbuf.checksum_failures),
    remaps = tonumber(statbuf.remaps),
  }
end

function reader:close()
  local r = self.r
  if r ~= nil then
    self.r, self.buf, self.cap = nil, nil, 0
    C.scout_shm_reader_close(ffi_gc(r, nil))
  end
end

-- Lua tables from a validated copy (every offset and count in it was checked by the library).
local function build(buf, names)
  local snap = ffi_cast(snap_ptr_t, buf)
  local ns, ne, nm = snap.nservices, snap.nendpoints, snap.nmeta
  local svcs = ffi_cast(svc_ptr_t, snap + 1)
  local eps = ffi_cast(ep_ptr_t, svcs + ns)
  local metas = ffi_cast(meta_ptr_t, eps + ne)
  local strs = ffi_cast(char_ptr_t, metas + nm)
  local services = tab_new(0, names and 4 or ns)

  for i = 0, ns - 1 do
    local v = svcs[i]
    local name = ffi_string(strs + v.name.off, v.name.len)
    if names == nil or names[name] then
      local first, count = v.ep_first, v.ep_count
      local list = tab_new(count, 0)
      for e = 0, count - 1 do
        local p = eps[first + e]
        local mfirst, mcount = p.meta_first, p.meta_count
        local meta = tab_new(0, mcount)
        for k = mfirst, mfirst + mcount - 1 do
          local m = metas[k]
          meta[ffi_string(strs + m.key.off, m.key.len)] = ffi_string(strs + m.value.off, m.value.len)
        end
        list[e + 1] = {
          id = ffi_string(strs + p.id.off, p.id.len),
          host = ffi_string(strs + p.host.off, p.host.len),
          port = p.port,
          weight = p.weight,
          status = ffi_string(strs + p.status.off, p.status.len),
          zxid = tonumber(p.zxid),
          meta = meta,
        }
      end
      services[name] = {
        name = name,
        path = ffi_string(strs + v.path.off, v.path.len),
        index = tonumber(v.index),
        state = ffi_string(strs + v.state.off, v.state.len),
        settings = ffi_string(strs + v.settings.off, v.settings.len),
        endpoints = list,
      }
    end
  end
  return { generation = tonumber(snap.generation), services = services }
end

-- The current snapshot as Lua tables: { generation = G, services = { [name] = {...} } }, endpoints sorted by id.
-- The copy lands in a buffer this reader keeps (grown when a snapshot outgrows it) and is not referenced after.
function reader:read(names)
  local r = self.r
  if r == nil then error("reader is closed", 2) end
  if names ~= nil and type(names) ~= "table" then
    error("names must be a table of service names", 2)
  end
  local err = "torn, retry"
  local tries = 0
  while tries < READ_TRIES do
    local rc = C.scout_shm_reader_copy(r, self.buf, self.cap, lenp, errbuf)
    if rc == OK then
      return build(self.buf, names)
    elseif rc == SHORT then
      local need = tonumber(lenp[0])
      local words = floor((need + floor(need / 4)) / 8) + 1
      self.buf = buf_t(words)
      self.cap = words * 8
    elseif rc == AGAIN then
      tries = tries + 1
      err = ffi_string(errbuf)
    else
      return nil, ffi_string(errbuf)
    end
  end
  return nil, err
end

return _M
