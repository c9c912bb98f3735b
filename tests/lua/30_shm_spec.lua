-- scout.shm: the LuaJIT FFI reader reads what the agent's C writer (agent/publish/shm.c, driven here by
-- build/tests/shm_writer_tool) wrote: every field, generations moving, the file growing into a new one, the agent
-- restarting and removing its file, foreign files, caller mistakes; the cdef is the header's word for word and its
-- layout is the compiled library's; libscout.so is found where the module says it looks.
-- Needs `make all tests-c` (libscout.so and the writer tool).

local ffi = require "ffi"
local bit = require "bit"
local shm = require "scout.shm"

local TOOL = "build/tests/shm_writer_tool"
local HEADER = "lib/scout_shm.h"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Output and whether it exited 0 (LuaJIT's popen:close() does not say).
local function sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\"")
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body, rc == "0"
end

-- The tool's token: percent-encoded, "-" for the empty string.
local function enc(s)
  s = tostring(s)
  if s == "" then return "-" end
  return (s:gsub("[%z%%%s%-]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function line(...)
  local t = { ... }
  for i = 2, #t do t[i] = enc(t[i]) end
  return table.concat(t, " ")
end

-- Run the writer tool on `path` with the given script lines; returns the generations it published. format: the
-- file's format version (the tool's default, 2, when nil).
local function write(path, lines, unlink, format)
  local script = os.tmpname()
  local f = assert(io.open(script, "wb"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local out, ok = sh(TOOL .. " " .. path .. (unlink and " --unlink" or "")
                     .. (format and " --format " .. format or "") .. " < " .. script)
  os.remove(script)
  assert(ok, "shm_writer_tool failed: " .. out)
  local gens = {}
  for g in out:gmatch("generation (%d+)") do gens[#gens + 1] = tonumber(g) end
  return gens
end


local SETTINGS = '{"selector":"swrr","route":[{"header":"x-canary","to":"canary"}]}\0 tail é'

local SMALL = {
  line("service", "orders", "/dubbo/com.acme.OrderService/providers", "protected", "4503599627370497", SETTINGS),
  line("ep", "10.0.0.2:20880", "10.0.0.2", "-1", "0", "down", "9223372036854775807"),
  line("ep", "10.0.0.1:20880", "10.0.0.1", "20880", "100", "up", "4294967298",
       "group", "", "version", "1.0.0", "zone", "a é", "-", "dash"),
  line("ep", "", "", "65535", "-7", "", "0", "", ""),
  line("service", "idle", "/idle", "syncing", "0", ""),
  line("service", "bare", "", "", "3", ""),
  line("service", "users", "/services/users", "synced", "7", "{}"),
  line("ep", "member_0000000007", "u1.example", "8080", "1", "up", "42", "k", "v"),
  "publish",
}

local function check_small(snap)
  local s = snap.services
  local names = {}
  for name in pairs(s) do names[#names + 1] = name end
  table.sort(names)
  assert.same({ "bare", "idle", "orders", "users" }, names)

  local o = s.orders
  assert.equals("orders", o.name)
  assert.equals("/dubbo/com.acme.OrderService/providers", o.path)
  assert.equals("protected", o.state)
  assert.equals(4503599627370497, o.index)
  assert.equals(SETTINGS, o.settings)               -- opaque bytes: NUL, spaces, UTF-8 intact
  assert.equals(3, #o.endpoints)
  assert.same({ id = "", host = "", port = 65535, weight = -7, status = "", zxid = 0, meta = { [""] = "" } },
              o.endpoints[1])
  assert.same({ id = "10.0.0.1:20880", host = "10.0.0.1", port = 20880, weight = 100, status = "up",
                zxid = 4294967298, meta = { group = "", version = "1.0.0", zone = "a é", ["-"] = "dash" } },
              o.endpoints[2])
  local e3 = o.endpoints[3]
  assert.equals("10.0.0.2:20880", e3.id)
  assert.equals(-1, e3.port)
  assert.equals(0, e3.weight)
  assert.equals("down", e3.status)
  assert.equals(2 ^ 63, e3.zxid)                      -- int64 max, as the nearest double
  assert.same({}, e3.meta)

  assert.same({ name = "idle", path = "/idle", state = "syncing", index = 0, settings = "", endpoints = {} }, s.idle)
  assert.same({ name = "bare", path = "", state = "", index = 3, settings = "", endpoints = {} }, s.bare)
  assert.same({ name = "users", path = "/services/users", state = "synced", index = 7, settings = "{}",
                endpoints = { { id = "member_0000000007", host = "u1.example", port = 8080, weight = 1,
                                status = "up", zxid = 42, meta = { k = "v" } } } }, s.users)
end

describe("scout.shm", function()
  -- A fresh /dev/shm path, unique across concurrent runs: named after a /tmp file os.tmpname created (and that
  -- stays until teardown, so the name is not handed out again meanwhile).
  local paths = {}
  local function path()
    local t = os.tmpname()
    local p = "/dev/shm/scout-spec-" .. t:match("[^/]+$")
    paths[#paths + 1] = t
    paths[#paths + 1] = p
    return p
  end

  setup(function()
    assert(exists(TOOL), TOOL .. " missing: run `make all tests-c` first")
  end)

  teardown(function()
    for i = 1, #paths do os.remove(paths[i]) end
  end)

  -- first: with a wrong cdef the rest would read the wrong bytes
  describe("cdef", function()
    -- The header's declarations: comments, preprocessor lines and the inline accessors removed, whitespace
    -- normalized, split at top-level semicolons.
    local function normalize(s)
      s = s:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " "):gsub("\n%s*#[^\n]*", "\n")
      s = s:gsub("%s+", " "):gsub(" ?([%*%(%),;{}%[%]]) ?", "%1")
      return s
    end
    local function decls(s)
      local out, depth, start = {}, 0, 1
      for i = 1, #s do
        local c = s:sub(i, i)
        if c == "{" then depth = depth + 1
        elseif c == "}" then depth = depth - 1
        elseif c == ";" and depth == 0 then
          out[#out + 1] = s:sub(start, i):match("^%s*(.-)%s*$")
          start = i + 1
        end
      end
      return out
    end

    it("is the header's, declaration for declaration", function()
      local header = slurp(HEADER)
      header = header:sub(1, header:find("static inline", 1, true) - 1)
      local have = {}
      for _, d in ipairs(decls(normalize(header))) do have[d] = true end
      local mine = decls(normalize(shm._cdef))
      assert.is_true(#mine >= 14)
      for _, d in ipairs(mine) do
        assert(have[d], "cdef declaration not in " .. HEADER .. ": " .. d)
      end
    end)

    it("has the layout the library was compiled with, every field", function()
      local abi = ffi.string(shm._lib.scout_shm_abi())
      local seen = {}
      for key, val in abi:gmatch("(%S+)=(%d+)") do
        local t, f = key:match("^([%w_]+)%.([%w_]+)$")
        if t then
          assert.equals(tonumber(val), ffi.offsetof(t, f), key)
        else
          assert.equals(tonumber(val), ffi.sizeof(key), key)
        end
        seen[key] = true
      end
      -- and every struct field the cdef declares is in the library's list
      local cdef = normalize(shm._cdef)
      local nfields = 0
      for body, name in cdef:gmatch("typedef struct(%b{})([%w_]+);") do
        assert(seen[name], name .. " size not checked")
        for field in body:gmatch("([%w_]+);") do
          assert(seen[name .. "." .. field], name .. "." .. field .. " not checked")
          nfields = nfields + 1
        end
      end
      assert.equals(29, nfields)
    end)
  end)

  it("loads libscout.so from the search order", function()
    assert.is_string(shm._lib_path)
    assert.truthy(shm._lib_path:find("libscout.so", 1, true))
  end)

  it("refuses a FIFO at the path instead of waiting for a writer that never comes", function()
    local p = path()
    assert.equals(0, os.execute("mkfifo " .. p))
    local r = assert(shm.open(p))
    local snap, err = r:read()
    assert.is_nil(snap)
    assert.truthy(err:find("not a scout snapshot", 1, true))
    os.remove(p)
  end)

  it("attaches lazily: no file, then an empty one, then a snapshot", function()
    local p = path()
    local r = assert(shm.open(p))
    assert.equals(0, r:generation())
    local snap, err = r:read()
    assert.is_nil(snap)
    assert.equals("no snapshot", err)
    assert.is_false(r:moved())

    assert.same({}, write(p, {}))                      -- the agent started, published nothing yet
    assert.is_true(r:moved())
    snap, err = r:read()
    assert.is_nil(snap)
    assert.equals("no snapshot", err)
    assert.equals(0, r:generation())

    assert.same({ 1 }, write(p, { "publish" }))        -- zero services is a snapshot
    assert.equals(1, r:generation())
    snap = assert(r:read())
    assert.equals(1, snap.generation)
    assert.same({}, snap.services)
  end)

  it("reads every field the C writer wrote", function()
    local p = path()
    assert.same({ 1 }, write(p, SMALL))
    local r = assert(shm.open(p))
    local snap = assert(r:read())
    assert.equals(1, snap.generation)
    check_small(snap)
    assert.equals(1, r:generation())
  end)

  it("sees the generation move, and snapshots already read stay as they were", function()
    local p = path()
    assert.same({ 1 }, write(p, SMALL))
    local r = assert(shm.open(p))
    local first = assert(r:read())
    local seen = r:generation()

    -- a restarted agent adopts the file: generations continue
    assert.same({ 2, 3 }, write(p, {
      line("service", "orders", "/o", "synced", "9", "{}"),
      line("ep", "a", "10.0.0.9", "1", "1", "up", "5"),
      "publish",
      line("service", "orders", "/o", "stale", "10", "{}"),
      "publish",
    }))
    assert.are_not.equal(seen, r:generation())
    assert.equals(3, r:generation())
    local snap = assert(r:read())
    assert.equals(3, snap.generation)
    assert.same({ orders = { name = "orders", path = "/o", state = "stale", index = 10, settings = "{}",
                             endpoints = {} } }, snap.services)
    check_small(first)                                 -- plain Lua tables, not views of the mapping
    assert.equals(1, first.generation)
  end)

  it("follows the file into a bigger one, and builds only the services asked for", function()
    local p = path()
    assert.same({ 1 }, write(p, SMALL))
    local r = assert(shm.open(p))
    assert(r:read())
    assert.same({ 2 }, write(p, { "bulk 3000 10 t2", "publish" }))   -- ~2.5 MB: outgrows the 64 KiB slots
    assert.equals(2, r:generation())                   -- the retired file's counter moved too
    assert.is_true(r:moved())
    local snap = assert(r:read())
    assert.equals(2, snap.generation)
    local count = 0
    for _ in pairs(snap.services) do count = count + 1 end
    assert.equals(3000, count)
    local s = snap.services["bulk-02999"]
    assert.equals(10, #s.endpoints)
    assert.equals("t2", s.settings)
    assert.equals(2999, s.index)
    assert.same({ id = "10.11.249.0:8080", host = "t2", port = 8080, weight = 100, status = "up", zxid = 0,
                  meta = { tag = "t2", zone = "a" } }, s.endpoints[1])
    for i = 2, 10 do assert.is_true(s.endpoints[i - 1].id < s.endpoints[i].id) end

    local some = assert(r:read({ ["bulk-00001"] = true, ["nope"] = true }))
    assert.same({ "bulk-00001" }, (function()
      local t = {}
      for k in pairs(some.services) do t[#t + 1] = k end
      return t
    end)())
    local st = r:stats()
    assert.equals(2, st.remaps)
    assert.equals(0, st.checksum_failures)
    assert.is_true(st.reads >= 3)
  end)

  it("keeps the last snapshot when the agent removes its file, and finds the next agent's", function()
    local p = path()
    assert.same({ 1 }, write(p, SMALL, true))          -- --unlink: gone after the tool exits
    local r = assert(shm.open(p))
    local snap, err = r:read()
    assert.is_nil(snap)
    assert.equals("no snapshot", err)

    assert.same({ 1 }, write(p, SMALL))
    assert(r:read())
    assert.same({ 2 }, write(p, { line("service", "x", "/x", "synced", "1", ""), "publish" }, true))
    assert.is_false(r:moved())                         -- nothing at the path: keep what we have
    snap = assert(r:read())
    assert.equals(2, snap.generation)
    assert.truthy(snap.services.x)

    assert.same({ 1 }, write(p, SMALL))                -- a new agent, a new file
    assert.is_true(r:moved())
    snap = assert(r:read())
    assert.equals(1, snap.generation)
    check_small(snap)
  end)

  -- u32/u64 little-endian at byte offset `at` (0-based) of string s
  local function le(s, at, n)
    local v = 0
    for i = n, 1, -1 do v = v * 256 + s:byte(at + i) end
    return v
  end

  -- Flip one bit of the file's byte at offset `at` (0-based), in place: the reader's mapping sees it.
  local function flip(p, at)
    local f = assert(io.open(p, "r+b"))
    f:seek("set", at)
    local c = f:read(1)
    f:seek("set", at)
    f:write(string.char(bit.bxor(c:byte(), 0x20)))
    f:close()
  end

  it("reads a version 1 file (an older agent's, or shm { format = 1 }), checked whole", function()
    local p = path()
    assert.same({ 1 }, write(p, SMALL, false, 1))
    local head = slurp(p)
    assert.equals(1, le(head, 8, 4))                   -- version
    assert.equals(0, le(head, 48, 4))                  -- no chunk size: the body is checksummed whole
    local r = assert(shm.open(p))
    local snap = assert(r:read())
    check_small(snap)
    local at = 4096 + le(head, 24, 8) + 64 + le(head, 4096 + le(head, 24, 8) + 8, 8) - 2   -- slot 1, body's end
    flip(p, at)
    local none, err = r:read()
    assert.is_nil(none)
    assert.equals("checksum mismatch", err)
    flip(p, at)
    check_small(assert(r:read()))
    -- the agent upgraded to version 2: a new file at the path, found by the same reader
    assert.same({ 1 }, write(p, SMALL))
    assert.is_true(r:moved())
    check_small(assert(r:read()))
    assert.equals(2, le(slurp(p), 8, 4))
  end)

  it("refuses a version 2 snapshot with a byte scribbled in any one chunk, and reads it once put back", function()
    local p = path()
    assert.same({ 1 }, write(p, { "bulk 600 10 t1", "publish" }))
    local head = slurp(p)
    assert.equals(2, le(head, 8, 4))
    local chunk, slot_size = le(head, 48, 4), le(head, 24, 8)
    assert.equals(65536, chunk)
    local slot = 4096 + slot_size                      -- generation 1: slot 1
    local len = le(head, slot + 8, 8)
    local nchunks = math.ceil(len / chunk)
    assert.is_true(nchunks >= 5, "only " .. nchunks .. " chunks")
    local r = assert(shm.open(p))
    assert(r:read())
    for _, c in ipairs({ 0, 2, nchunks - 1 }) do
      local at = slot + 64 + c * chunk + (c == nchunks - 1 and (len - c * chunk) - 3 or 100)
      flip(p, at)
      local none, err = r:read()
      assert.is_nil(none, "chunk " .. c)
      assert.equals("checksum mismatch", err)
      flip(p, at)
      local snap = assert(r:read())
      assert.equals(10, #snap.services["bulk-00599"].endpoints)
    end
    assert.equals(3 * 16, r:stats().checksum_failures)
  end)

  it("refuses files that are not snapshots", function()
    local p = path()
    local f = assert(io.open(p, "wb"))
    f:write(("x"):rep(8192))
    f:close()
    local r = assert(shm.open(p))
    local snap, err = r:read()
    assert.is_nil(snap)
    assert.equals(p .. ": not a scout snapshot", err)
  end)

  it("raises on caller mistakes", function()
    assert.has_error(function() shm.open() end, "path must be a non-empty string")
    assert.has_error(function() shm.open("") end, "path must be a non-empty string")
    assert.has_error(function() shm.open(42) end, "path must be a non-empty string")
    local r = assert(shm.open(path()))
    assert.has_error(function() r:read("orders") end, "names must be a table of service names")
    r:close()
    r:close()                                          -- twice is fine
    assert.has_error(function() r:generation() end, "reader is closed")
    assert.has_error(function() r:read() end, "reader is closed")
  end)

  describe("finding libscout.so", function()
    local LUAJIT = "luajit"
    local function which(env, cwd, lua_dir)
      local code = ("package.path=%q..package.path; io.write(require('scout.shm')._lib_path)"):format(
        lua_dir .. "/?.lua;")
      return sh(("cd %s && env %s %s -e %q"):format(cwd, env, LUAJIT, code))
    end
    local root = io.popen("pwd"):read("*l")

    it("takes SCOUT_LIB first, file or directory", function()
      local lib = root .. "/build/libscout.so"
      assert.equals(lib, (which("SCOUT_LIB=" .. lib, "/", root .. "/lua")))
      assert.equals(root .. "/build/libscout.so",
                    (which("SCOUT_LIB=" .. root .. "/build", "/", root .. "/lua")))
    end)

    it("then package.cpath's directories", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir .. " && cp build/libscout.so " .. dir .. "/"))
      local out = which("LUA_CPATH='" .. dir .. "/?.so'", "/", root .. "/lua")
      os.execute("rm -rf " .. dir)
      assert.equals(dir .. "/libscout.so", out)
    end)

    it("then the source tree's build/", function()
      assert.equals(root .. "/build/libscout.so",
                    (which("SCOUT_LIB= LUA_CPATH='/nonexistent/?.so'", "/tmp", root .. "/lua")))
      assert.equals("build/libscout.so", (which("LUA_CPATH='/nonexistent/?.so'", root, "lua")))
    end)

    it("says where it looked when it finds nothing", function()
      local dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. dir .. "/lua/scout && cp lua/scout/shm.lua " .. dir .. "/lua/scout/")
      local out, ok = which("SCOUT_LIB=/nonexistent LUA_CPATH='/nowhere/?.so'", "/", dir .. "/lua")
      os.execute("rm -rf " .. dir)
      assert.is_false(ok)
      assert.truthy(out:find("libscout.so not found (tried /nonexistent/libscout.so, /nowhere/libscout.so, "
                             .. dir .. "/build/libscout.so; set SCOUT_LIB)", 1, true), out)
    end)
  end)

  it("reads 10,000 services x 10 endpoints whole, again and again, and checks the generation cheaply", function()
    local p = path()
    assert.same({ 1 }, write(p, { "bulk 10000 10 bench", "publish" }))
    local r = assert(shm.open(p))
    local snap
    for _ = 1, 2 do snap = assert(r:read()) end          -- the second read reuses the buffer
    local eps = 0
    for _, s in pairs(snap.services) do eps = eps + #s.endpoints end
    assert.equals(100000, eps)
    local g = 0
    for _ = 1, 1000 do g = g + r:generation() end
    assert.equals(1000, g)
  end)
end)
