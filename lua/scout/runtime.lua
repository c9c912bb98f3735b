-- scout.runtime: the agent's side of the policy. The C core hands it ZooKeeper children (name, data, zxid) as they
-- change; it decodes them with the service's codec, applies the filter and returns the list to publish, calling
-- on_change with the difference. Between changes a small service's endpoints live in C only (scout.keep).
-- It must survive being stopped at any instruction (hook budgets): state that a later call depends on is only
-- replaced once the call can no longer fail.

local type, pairs, ipairs, next, pcall, error = type, pairs, ipairs, next, pcall, error
local setmetatable, tostring = setmetatable, tostring
local format, floor, sort = string.format, math.floor, table.sort
local has_tnew, tnew = pcall(require, "table.new")
local new_table = has_tnew and tnew or function() return {} end

local policy_dsl = require "scout.policy"
local codecs = require "scout.codec"
local sources = require "scout.sources"
local announce = require "scout.announce"
local render = require "scout.render"
local url = require "scout.util.url"
local u8 = require "scout.util.utf8"
local ramp = require "scout.ramp"
local protect = require "scout.protect"
local hookview = require "scout.hookview"
local backoff = require "scout.backoff"
local jitsplit = require "scout.jitsplit"
local json = require "cjson.safe"
local util_endpoint = require "scout.util.endpoint"
local same = util_endpoint.same
-- Endpoint tables between changes live in C for a small service (scout.keep): thaw before reading s.children or
-- s.published, freeze after a commit.
local store = require "scout.keep"
local thaw, freeze = store.thaw, store.freeze
local untouched = require "scout.untouched"
local explain = require "scout.explain"
local note, EMPTY_META = untouched.note, util_endpoint.EMPTY_META

local M = {}
M.set_store = store.set_store

local LOG_WARN, LOG_DEBUG = 1, 3

local agent = package.loaded["scout.agent"]
if agent then require("scout.sandbox").harden(agent) end
local log = agent and agent.log or function(level, msg)
  if level <= LOG_WARN then io.stderr:write(msg, "\n") end
end
-- whether log would write a message of that level: a line nobody reads is not formatted (the debug line of every
-- change was a string.format per update). A logger set by set_logger is given every level, as before.
local log_enabled = agent and agent.log_enabled or function(level) return level <= LOG_WARN end

-- The C side's rule for what may cross into it (NUL, UTF-8, sizes, host, port, status: endpoint.h): asked before a
-- child is judged, so a refused child is handled like one that does not decode. Absent outside the agent (specs).
local boundary = agent and agent.check_endpoint
-- The same check that also builds the C endpoint and returns nil, its place, which the publish then takes as built:
-- asked instead when no code of the user's runs before the publish, or for a change whose hooks (which may edit the
-- table) scout.untouched then finds left it as it was.
local builder = agent and agent.build_endpoint
function M.set_boundary(fn, build) boundary, builder = fn, build end

function M.set_logger(fn) log, log_enabled = fn, function() return true end end

local policy            -- what scout.policy built
local services = {}     -- [i] = runtime state of the i-th service

local function by_id(a, b) return a.id < b.id end

-- Verdicts that are not errors: the child is simply not an endpoint (dubbo's empty:// marker, consumer or route
-- URLs under providers/, serverset nodes that are not members).
local QUIET = { ["empty"] = true, ["not a provider"] = true, ["not a member"] = true }

local check_endpoint = util_endpoint.check_decoded   -- a codec of the user's may return anything

local now_ms = agent and agent.now_ms or function() return os.clock() * 1000 end
function M.set_clock(fn) now_ms = fn end
-- Wall-clock ms of the epoch, for what registries stamp in wall time (dubbo's timestamp).
local wall_ms = function() return os.time() * 1000 end
function M.set_wall_clock(fn) wall_ms = fn end

-- A service's settings its state keeps when the policy gives them: { policy's key, state's key }. The state is
-- all that stays of a service's block after the load (route is the rules as written, for the shm's settings).
local OPTIONAL = { { "codec_options", "options" }, { "filter", "filter" }, { "delay", "delay" },
                   { "on_change", "on_change" }, { "on_protect", "on_protect" },
                   { "selector_options", "selector_options" }, { "selector", "selector" }, { "route", "route" } }
local OPTIONAL_TO = {}
for k = 1, #OPTIONAL do OPTIONAL_TO[OPTIONAL[k][1]] = OPTIONAL[k][2] end

-- Load the policy; returns what the C core needs (plain values only) or nil, "file:line: message".
function M.load(path)
  local p, err = policy_dsl.load(path)
  if not p then return nil, err end
  local conf = { zookeeper = p.zookeeper, api = p.api, agent = p.agent, cache = p.cache, shm = p.shm,
                 services = false, renders = {}, warnings = p.warnings }
  conf.registers = {}
  for k, r in ipairs(p.registers) do
    local c = r.check
    local kind = c and (c.tcp and "tcp" or c.http and "http" or c.exec and "exec" or "lua") or nil
    conf.registers[k] = {
      name = r.name, path = r.path, ephemeral = r.ephemeral and 1 or 0, acl = r.acl,
      check_kind = kind, check_target = c and (c.tcp or c.http or c.exec) or nil,
      check_interval_ms = c and policy_dsl.duration(c.interval or 2000) or nil,
      check_timeout_ms = c and policy_dsl.duration(c.timeout or 1000) or nil,
      check_rise = c and (c.rise or 2) or nil, check_fall = c and (c.fall or 3) or nil,
    }
  end
  for k, r in ipairs(p.renders) do
    conf.renders[k] = { dest = r.dest, command = r.command, wait_min_ms = r.wait_min_ms, wait_max_ms = r.wait_max_ms }
  end
  -- every duration reaches C in ms, under a name of its own (the DSL validated them all)
  local ms = policy_dsl.duration
  if p.zookeeper.session_timeout ~= nil then p.zookeeper.session_timeout_ms = ms(p.zookeeper.session_timeout) end
  if p.cache.max_age ~= nil then p.cache.max_age_ms = ms(p.cache.max_age) end
  if p.agent.hook_budget ~= nil then p.agent.hook_budget_ms = ms(p.agent.hook_budget) end
  if p.agent.anti_entropy ~= nil then p.agent.anti_entropy_ms = ms(p.agent.anti_entropy) end
  if p.agent.drain ~= nil then p.agent.drain_ms = ms(p.agent.drain) end
  if p.agent.lua_memory ~= nil then p.agent.lua_memory_bytes = policy_dsl.size(p.agent.lua_memory) end
  local n = #p.services
  local state = new_table(n, 0)
  -- What C reads of each service (conf.c), one column per setting rather than a table per service: at 10,000
  -- services the tables were 20,000 allocations, and C's lookups by name 60,000 (callgrind: 2.4k instructions a
  -- service with their copies and frees). delay_ms and has_sources are sparse, for the few services that have
  -- one (C reads none of an empty one): no delay is 0, no sources nil.
  local names, paths, codec_names = new_table(n, 0), new_table(n, 0), new_table(n, 0)
  local delays, needs, has_sources = {}, new_table(n, 0), {}
  conf.services = { name = names, path = paths, codec = codec_names, delay_ms = delays, needs_data = needs,
                    has_sources = has_sources }
  local default_protect = protect.settings(nil)   -- shared by every service that gives no protect
  -- a built-in codec's name -> { codec, provider or false, needs_data }: 10,000 services name one or two
  local by_codec = {}
  for i, svc in ipairs(p.services) do
    local cname = svc.codec
    local named = type(cname) == "string"
    local known = named and by_codec[cname]
    local codec, provider, nd
    if known then
      codec, provider, nd = known[1], known[2] or nil, known[3]
    else
      codec = assert(codecs.get(cname))  -- validated by the DSL
      if named then store.builtin(codec) end
      -- a codec with sources (dubbo's configurators, routers...) makes this a service over several paths
      provider = sources.provider(cname, codec)
      -- a constant answer, or plain's rule (-2: C checks host:port), spares a Lua call per new child (-1: ask)
      nd = codec.reads_data == nil and (codec.data_unless_address and -2 or -1) or codec.reads_data and 1 or 0
      if named then by_codec[cname] = { codec, provider or false, nd } end
    end
    local pr = svc.protect
    -- Only the fields every service has go in the constructor, eight of them: LuaJIT sizes a table for every
    -- key its constructor names, nil or not, in powers of two (a ninth key doubles the table: 192 bytes a
    -- service). The others are set only when the policy gives them, or when first needed: filtered (name ->
    -- true when the filter said no, for explain), baseline (protection), held, failing, list, pool.
    local st = {
      name = svc.name, path = svc.path, codec = codec,
      protect = pr == nil and default_protect or protect.settings(pr),
      count = 0,       -- endpoints published
      children = {},   -- name -> decoded endpoint, or the reason it is not one
      published = {},  -- id -> endpoint, as last accepted by the C side
      version = 0,     -- bumps with every accepted change (pick rebuilds its list)
    }
    -- held = { since = ms, confirms = n, looked = ms of the last confirmation } while a drop is held back
    -- (a nil stored under a new key still takes a slot, and the ninth doubles the table: copied if given)
    -- the block's own keys (four, usually) rather than the eight it may give
    for k, v in next, svc do
      local to = OPTIONAL_TO[k]
      if to then st[to] = v end
    end
    if svc.route then st.router = assert(require("scout.route").compile(svc.route)) end
    if provider then
      st.src = sources.new(provider, { path = svc.path, options = svc.codec_options, scope = svc.scope }, svc.name)
      st.notes = {}    -- child name -> the rules' notes on it (explain)
      st.own_route, st.router = svc.route, nil
      has_sources[i] = 1  -- C asks M.sources(i) only then
    end
    state[i] = st
    names[i], paths[i] = svc.name, svc.path
    codec_names[i] = named and cname or nil   -- a reload keeps a service only if it matches
    -- a number is applied in C; a function is asked per event (-1 here); no delay means read at once
    local delay = svc.delay
    if delay ~= nil then delays[i] = type(delay) == "function" and -1 or policy_dsl.duration(delay) end
    needs[i] = nd
  end
  -- the blocks as the DSL built them (each with where it is written) and the index by name served the load only:
  -- what the services need is in their state (268 bytes a service, 2.6 MB of Lua heap at 10,000)
  p.services, p.by_name, p.unfinished = nil, nil, nil
  policy, services = p, state
  return conf
end

-- names: the new children of one child list (a slice of it when long), overwritten in place by true (read its
-- data) or false: one call into Lua per list, not one per child.
function M.needs_data(i, names)
  local s = services[i]
  local nd, options = s.codec.needs_data, s.options
  for k = 1, #names do names[k] = nd(names[k], options) and true or false end
  return names
end

function M.delay(i, kind, child, pending, since_read)
  local s = services[i]
  local v = s.delay({ kind = kind, child = child, pending = pending, since_read = since_read,
                      service = s.name, path = s.path })
  if type(v) == "string" then v = policy_dsl.duration(v) or v end   -- "500ms", as the delay key takes
  if type(v) ~= "number" or v ~= v or v < 0 or v > policy_dsl.MAX_DELAY then
    error(format("service \"%s\": delay returned %s; want milliseconds from 0 to %d or a duration like \"500ms\"",
                 s.name, tostring(v), policy_dsl.MAX_DELAY), 0)
  end
  return floor(v)
end

-- removed: array of child names gone; changed: array of { name, data (or nil), zxid, data_read } new or re-read.
-- Work is proportional to the batch, never to the size of the service: the filter runs on new and changed
-- endpoints only. Returns up (endpoints new or replaced), gone (ids no longer published), decode_errors,
-- hook_errors, and -- when protection holds the batch back -- the ms until the C side should read again (nothing
-- is committed then, and the batch is delivered again). A failing filter raises; the C side then keeps the last
-- list and delivers the batch again. A sixth result, when some published endpoint's weight still ramps (dubbo's
-- warm-up), is the ms after which the C side should call again with no changes so the ramp moves on.
-- (ramps: scout.ramp)

-- Reasons come from codecs and hooks and may quote bytes of a znode: explain's JSON must stay valid UTF-8.
local utf8_clean = u8.clean
M.utf8_clean = utf8_clean

-- A child whose data fails (decode, the C boundary) or whose filter raises keeps its last good endpoint, or stays
-- out if it had none; s.failing[name] says why while that lasts, and makes the service "degraded": what is served
-- is then not what ZooKeeper holds. A new child that simply does not decode is not an endpoint and degrades nothing.
local function set_failing(s, name, why)
  local f = s.failing
  if why then
    if not f then f = {}; s.failing = f end
    f[name] = why
  elseif f and f[name] then
    f[name] = nil
    if next(f) == nil then s.failing = nil end
    backoff.clear(s, name)
  end
end

-- "2 children not as ZooKeeper has them (a: the filter raised: ...)", or nil: the service's degraded reason.
local function degraded_reason(s)
  local f = s.failing
  if not f then return nil end
  local n, first = 0, nil
  for name in pairs(f) do
    n = n + 1
    if not first or name < first then first = name end
  end
  return utf8_clean(format("%d %s not as ZooKeeper has %s (%s: %s)", n, n == 1 and "child" or "children",
                           n == 1 and "it" or "them", first, f[first]))
end

-- Whether a changed child's data was read (its zxid is then its mzxid): asked only of a child re-read with the
-- same content, so the map is built on the first such question, not for every batch (a sync's are all new).
local function data_read_of(j, name)
  local m = j[14]
  if not m then
    m = {}
    local changed = j[5]
    for k = 1, #changed do m[changed[k][1]] = changed[k][4] end
    j[14] = m
  end
  return m[name]
end

-- An update's context j is an array, not named fields: an index a read, not a hash lookup (issue 14); up to 15 slots
-- keep it one allocation (LuaJIT colocates an array of up to 16, slot 0 included). 1 s, 2 children, 3 published,
-- 4 the sources' { src, notes, which, which_note } or false, 5 changed (the batch), 6 up, 7 gone_ids, 8 added, 9 gone,
-- 10 changed_eps, 11 quiet (the verdicts' lists, each made when its first name goes in: a change fills two of the
-- six), 12 hook_errors, 13 now, 14 data_read (data_read_of's map), 15 the batch's size when over 4 (up and added
-- are then made with a slot for each of its names), else false.
-- A list no name went in is read as EMPTY (read-only: a hook's diff is given tables of its own).
local EMPTY = setmetatable({}, { __newindex = function() error("an empty verdict list is read-only", 2) end })

-- One name's verdict for M.update, recorded in j (the update's lists and context). A function of its own, not a
-- closure inside update: creating a closure (FNEW) is not compiled by LuaJIT, so it kept every update interpreted.
local function judge(j, name)
  local s, children, published, sw = j[1], j[2], j[3], j[4]
  local filter, src, notes, which, which_note = s.filter, nil, nil, nil, nil
  if sw then src, notes, which, which_note = sw[1], sw[2], sw[3], sw[4] end
  local ep = children[name]
  local old = published[name]
  if src and type(ep) == "table" then
    -- the sources' rules (dubbo's configurators) make the endpoint this service judges
    local why
    ep, why = src:shape(name, ep)
    notes[name] = why
  elseif src then
    src:forget(name)
    notes[name] = nil
  end
  if which and type(ep) == "table" and (s.extra[name] ~= nil) ~= (which == "application") then
    -- the other list: not served while the migration step prefers this one
    local c = {}
    for k, v in pairs(ep) do c[k] = v end
    c.status = "not-chosen"
    ep = c
    local nn = {}
    for k, v in ipairs(notes[name] or {}) do nn[k] = v end
    nn[#nn + 1] = "migration: " .. tostring(which_note)
    notes[name] = nn
  end
  if type(ep) == "string" and not QUIET[ep] then
    -- its data fails: the last good endpoint stands; a new one stays out (and is no endpoint yet)
    set_failing(s, name, old and format("its data %s: %s", s.rejected and s.rejected[name] and "is refused"
                                          or "does not decode", ep) or nil)
    if old then return end
  end
  local up_ = type(ep) == "table" and ep.status == "up"
  local keep = up_
  if up_ and filter then
    local t0 = now_ms()
    local ok, v = pcall(filter, ep)
    if not ok and v == "not enough memory" and agent and agent.memory_error then
      v = agent.memory_error() or v  -- LuaJIT's bare message: say where, and which cap
    end
    if not ok then
      -- this child's verdict is unknown: it keeps the last one (published or not), the others go on
      j[12] = j[12] + 1
      log(LOG_WARN, format("service \"%s\": filter failed on child %s, keeping its last verdict: %s", s.name,
                           name, tostring(v)))
      set_failing(s, name, "the filter raised: " .. tostring(v))
      local t1 = now_ms()
      backoff.failed(s, name, t1, t1 - t0)
      return
    end
    keep = v
  end
  if s.failing and (type(ep) ~= "string" or QUIET[ep]) then set_failing(s, name, nil) end
  if up_ and not keep then
    local f = s.filtered or {}
    s.filtered, f[name] = f, true
  elseif s.filtered then
    s.filtered[name] = nil
  end
  if keep then
    local to    -- added, changed_eps, or neither
    if not old then
      to = 8
    elseif old ~= ep and not same(old, ep) then
      to = 10
    elseif old ~= ep and not same(old, ep, data_read_of(j, name)) then
      to = false                -- a new version with the same content: the API's zxid follows it
    elseif old ~= ep then
      local quiet = j[11]       -- same content re-read (a restart, a reload): nothing to publish
      if quiet then quiet[#quiet + 1] = ep else j[11] = { ep } end
      return
    else
      return
    end
    -- a list's first name makes it with its one slot ({} then [1] = grew an empty table: a rehash each), or, in
    -- a batch (j[15]: its size), with a slot for each of its names (a sync's first listing: every name goes in
    -- both, which grew each at every power of 2)
    local up = j[6]
    if up then up[#up + 1] = ep
    elseif j[15] then up = new_table(j[15], 0); up[1] = ep; j[6] = up
    else j[6] = { ep } end
    if to then
      local list = j[to]
      if list then list[#list + 1] = ep
      elseif to == 8 and j[15] then list = new_table(j[15], 0); list[1] = ep; j[8] = list
      else j[to] = { ep } end
    end
  elseif old then
    local gone_ids, gone = j[7], j[9]
    if gone_ids then gone_ids[#gone_ids + 1] = name else j[7] = { name } end
    if gone then gone[#gone + 1] = old else j[9] = { old } end
  end
end

-- A built-in codec's batch is decoded in a loop of its own before it is judged: the same decode of each child, under
-- one pcall for the run instead of one a child. A trace cannot return into a pcall's frame from above it (LuaJIT:
-- "NYI: return to lower frame"), and cjson's decode is a C call every trace stops at, so with a pcall a child the
-- rest of every decode (the checks, the endpoint's table) ran interpreted. A child whose decode raises (a heap cap)
-- still gets its own verdict, the error, and the run goes on from the next, as the pcall a child did. Only for the
-- built-in codecs, which neither log nor keep state: a user's codec is called between the verdicts, as before.
-- DECODED[k]: child k's endpoint (or error value); DECODED_ERR[k]: its err, or RAISED when its decode raised.
local DECODED, DECODED_ERR, RAISED = {}, {}, {}
local decoding = 0   -- the child decode_run is at, which raised when its pcall fails
local function decode_run(decode, changed, from, nch, options)
  for k = from, nch do
    decoding = k
    local c = changed[k]
    local ep, err = decode(c[1], c[2], options)
    DECODED[k], DECODED_ERR[k] = ep, err
  end
end
-- The run is entered through a function run interpreted (jit.off below): the trace leaving the run's loop returns
-- into it and stops there, as the batch's copy of update does into M.update, where returning into the pcall's frame
-- was a trace abort (NYI) at every batch until LuaJIT gave up on that exit.
local function enter(run, decode, changed, from, nch, options)
  run(decode, changed, from, nch, options)
end
if jit then jit.off(enter) end
local function decode_all(decode, changed, nch, options)
  local from = 1
  while from <= nch do
    decoding = from   -- (a raise before the run's first child is that child's)
    local ok, e = pcall(enter, decode_run, decode, changed, from, nch, options)
    if ok then return end
    DECODED[decoding], DECODED_ERR[decoding] = e, RAISED
    from = decoding + 1
  end
end

-- more: the C side has more reads of this path coming (an initial sync's batches): the tables stay warm for them.
-- untaken: the C side did not take this service's last update, which may have been committed here before a
-- budget stopped it: judged against what C publishes (scout.keep), or what it committed would never reach C.
function M.update(i, removed, changed, more, untaken)
  local s = services[i]
  local nrm, nch = #removed, #changed   -- (each # is a call out of the interpreter: read once)
  if untaken then store.resync(s, i) end
  -- a frozen service's change: only the tables of the names it touches come back from C (scout.keep; _i in the
  -- hooks' view then says the whole set is C's)
  local children, published
  if not more then children, published = store.thaw_part(s, i, removed, changed) end
  local part = children ~= nil
  if not part then
    thaw(s, i)
    if nch > 4 and not s.src and next(s.children) == nil and next(s.published) == nil then
      -- a first listing (a sync): sized once for it instead of rehashed at every power of 2 as it fills
      s.children, s.published = new_table(0, nch), new_table(0, nch)
    end
    children, published = s.children, s.published
  end

  for k = 1, nrm do
    children[removed[k]] = nil
    if s.rejected then s.rejected[removed[k]] = nil end
  end
  local nerr, nrej = 0, 0
  local decode, options = s.codec.decode, s.options
  -- built: endpoint table -> its place among those the check built (policy.c's publish takes them as they are);
  -- kept: a change's one built endpoint, under hooks only if they left it as it was (untouched)
  local build, built, kept = builder and not s.src and store.is_builtin(s.codec), nil, nil
  local hooked = build and (s.filter or s.on_change or s.on_protect) and true
  if hooked and (more or nch ~= 1) then build = false end
  local batch = nch > 1 and store.is_builtin(s.codec)
  if batch then decode_all(decode, changed, nch, options) end
  for k = 1, nch do
    local c = changed[k]
    local name = c[1]
    local ok, ep, err
    if batch then
      ep, err = DECODED[k], DECODED_ERR[k]
      DECODED[k], DECODED_ERR[k] = nil, nil   -- (the scratch keeps nothing alive)
      ok = err ~= RAISED
    else
      ok, ep, err = pcall(decode, name, c[2], options)
    end
    local why, refused
    if not ok then
      why = tostring(ep)
    elseif type(ep) ~= "table" then
      why = err or "codec returned nothing"
    else
      why = check_endpoint(ep)
      if not why and boundary then
        ep.id = name
        ep.zxid = c[3]
        if not build or hooked and ep.meta ~= EMPTY_META then refused = boundary(ep)
        else   -- (the fields read here: C reading the table costs more, agent.build_endpoint)
          local host, port, weight, status, meta = ep.host, ep.port, ep.weight, ep.status, ep.meta
          local at
          -- (the shared empty meta as nil: the same no entries, without C walking an empty table)
          refused, at = builder(ep, name, host, port, weight, status, meta ~= EMPTY_META and meta or nil, c[3])
          if at and not hooked and nch == 1 then kept = ep   -- (a change's one: no map, the table is enough)
          elseif at and not hooked then built = built or new_table(0, nch); built[ep] = at
          elseif at then note(ep, name, host, port, weight, status, c[3]); kept = true end
        end
        why = refused
      end
    end
    if refused then
      s.rejected = s.rejected or {}
      s.rejected[name] = true
      nrej = nrej + 1
      children[name] = why
      log(LOG_WARN, format("service \"%s\": refusing child %s: %s", s.name, name, why))
    elseif why then
      if s.rejected then s.rejected[name] = nil end
      children[name] = why
      if not QUIET[why] then
        nerr = nerr + 1
        log(LOG_WARN, format("service \"%s\": skipping child %s: %s", s.name, name, why))
      end
    else
      if s.rejected then s.rejected[name] = nil end
      ep.id = name
      ep.zxid = c[3]
      children[name] = ep
    end
  end

  -- a partly thawed service's children as decoded: what a whole thaw would hold if it stops here (explain)
  if part then store.opened(s, children, published, removed) end
  -- Verdicts for the names this batch touched; nothing is committed yet (judge reads the filter from s).
  local src = s.src
  local notes = src and s.notes
  local rejudge = src and src.dirty
  if rejudge then
    -- endpoints the sources provide themselves (dubbo 3's application-level instances) join the children
    local extra = src:endpoints()
    for id in pairs(s.extra or {}) do
      if not (extra and extra[id]) then children[id] = nil end
    end
    for id, ep in pairs(extra or {}) do children[id] = ep end
    s.extra = extra
  end
  -- which of the two lists is served (dubbo 3's migration between interface and application level)
  local which, which_note
  if src and s.extra then
    local icount, acount = 0, 0
    for name, ep in pairs(children) do
      if type(ep) == "table" and ep.status == "up" then
        if s.extra[name] then acount = acount + 1 else icount = icount + 1 end
      end
    end
    which, which_note = src:choose(icount, acount)
    if which ~= s.which then rejudge = true end
  end
  local j = { s, children, published, src and { src, notes, which, which_note } or false, changed,
              false, false, false, false, false, false, 0, now_ms(), false, nch > 4 and nch }
  -- seen: the names judged. A change of one name with nothing else to judge goes without (two allocations); a
  -- sync's batch (more) keeps it, so 07_runtime_copies_spec judges one-name changes both ways.
  local seen, one
  if nrm + nch == 1 and not more and not rejudge and not s.seeded then
    one = nrm == 1 and removed[1] or changed[1][1]
    judge(j, one)
  else
    seen = new_table(0, nrm + nch)   -- sized once: a sync's batch would rehash it at every power of 2
    if rejudge then
      -- a source changed: its rules may concern any endpoint, so every child is judged again (and any published
      -- one, in case its child went while the rules changed)
      for name in pairs(children) do seen[name] = true; judge(j, name) end
      for id in pairs(published) do
        if not seen[id] then seen[id] = true; judge(j, id) end
      end
    end
    if s.seeded then
      -- the first batch after a cold start is ZooKeeper's full listing: what the snapshot had and the listing
      -- does not is gone (protection still guards the drop)
      for id in pairs(published) do
        if children[id] == nil then seen[id] = true; judge(j, id) end
      end
    end
    for k = 1, nrm do
      local name = removed[k]
      if not seen[name] then seen[name] = true; judge(j, name) end
    end
    for k = 1, nch do
      local name = changed[k][1]
      if not seen[name] then seen[name] = true; judge(j, name) end
    end
  end
  if not seen and (s.failing or s.ramping) then seen = { [one] = true } end
  -- children held by a failing filter are asked again once their back-off is due (the C side calls back then):
  -- what the filter depends on may have recovered without any ZooKeeper event; not at every change of the
  -- service, which paid the failure (a heap cap: ~200 ms) each time (scout.backoff)
  local spared = 0
  if s.failing then
    local again = {}
    for name in pairs(s.failing) do
      if not seen[name] then
        if backoff.due(s, name, j[13]) then again[#again + 1] = name else spared = spared + 1 end
      end
    end
    for k = 1, #again do seen[again[k]] = true; judge(j, again[k]) end
  end
  -- (the wall clock, a call into C, only for a service that ramps)
  local moved = s.ramping and ramp.reweigh(s, children, wall_ms())
  for k = 1, moved and #moved or 0 do
    if not seen[moved[k]] then seen[moved[k]] = true; judge(j, moved[k]) end
  end

  local hook_errors = j[12]
  local up, gone_ids, added, gone = j[6] or EMPTY, j[7] or EMPTY, j[8] or EMPTY, j[9] or EMPTY
  local changed_eps, quiet = j[10] or EMPTY, j[11] or EMPTY
  local nadded, ngone, nchanged = #added, #gone, #changed_eps
  local new_count = s.count + nadded - ngone
  -- the view hooks see: only when one may be called (on_change, or on_protect once protection is past its early
  -- "no drop" return; without on_protect, protection never hands the view to anyone)
  local svc
  if s.on_change or (s.on_protect and s.protect and (s.baseline or new_count < s.count)) then
    svc = hookview.new(s, published, up, gone_ids, part and i or nil)
  end
  local retry = protect.hold_back(s, s.count, new_count, svc, now_ms, log)
  if retry then
    return {}, {}, nerr, hook_errors, retry
  end
  local diff = nadded + ngone + nchanged > 0
  if s.on_change and diff then
    -- (a list of one is in order: a change's lists are, and sort is a call into C each)
    if nadded > 1 then sort(added, by_id) end
    if ngone > 1 then sort(gone, by_id) end
    if nchanged > 1 then sort(changed_eps, by_id) end
    -- the hook's diff: lists of its own, which it may keep or change
    local ok, err = pcall(s.on_change, svc, { added = j[8] or {}, removed = j[9] or {}, changed = j[10] or {} })
    if not ok then
      hook_errors = 1
      log(LOG_WARN, format("service \"%s\": on_change failed: %s", s.name, tostring(err)))
    end
  end
  -- Only now: if anything above was stopped, the next call judges the same batch against the same state.
  local nup, ngone_ids = #up, #gone_ids
  for k = 1, ngone_ids do published[gone_ids[k]] = nil end
  for k = 1, nup do published[up[k].id] = up[k] end
  for k = 1, #quiet do published[quiet[k].id] = quiet[k] end
  s.count = new_count
  if s.seeded then s.seeded = nil end   -- (a nil stored under a missing key still takes a slot)
  if src and src.dirty then
    src.dirty = nil
    s.router, s.route_list = nil, nil   -- rebuilt with the sources' routes on the next pick or settings
    s.version = s.version + 1
  end
  if src and nup + ngone_ids > 0 then src:observe(published) end
  if src then s.which, s.which_note = which, which_note end
  if nup + ngone_ids > 0 then s.version = s.version + 1 end
  if diff and log_enabled(LOG_DEBUG) then
    log(LOG_DEBUG, format("service \"%s\": +%d -%d ~%d", s.name, nadded, ngone, nchanged))
  end
  local codec = s.codec
  local reweigh = codec.warmup_until and codec.effective_weight and ramp.next(s, up, gone_ids, wall_ms()) or nil
  local degraded = degraded_reason(s)
  local due = backoff.next(s, j[13])     -- a failed child's back-off ends: call again then
  if due and (not reweigh or due < reweigh) then reweigh = due end
  if part then store.freeze_part(s, children, published, removed) elseif not more then freeze(s) end
  if kept == true then kept = untouched.kept() end   -- (the one built under hooks, if they left it as it was)
  return up, gone_ids, nerr, hook_errors, nil, reweigh, degraded, nrej, spared, built, kept
end

-- A change runs interpreted, a batch compiled (scout.jitsplit says why): a batch (more reads of the path coming, or
-- over 4 names) runs a copy of the update and its helpers with the JIT on; the originals, off.
local small = M.update
local compiled = jitsplit.split(small, { set_failing, data_read_of, degraded_reason, judge, decode_run, decode_all },
                                { protect, backoff })
function M.update(i, removed, changed, more, untaken)
  return ((more or #removed + #changed > 4) and compiled or small)(i, removed, changed, more, untaken)
end
if jit then jit.off(M.update); jit.off(hookview.new) end
M.update_copies = { compiled = compiled, small = small }   -- (specs)

-- ---- sources: a service over several paths -------------------------------------------------------------------

-- The sources service i depends on now, for the C side to watch: array of { key, path, data = names | nil }.
-- Asked at start and after every source batch (a source may add or drop others: dubbo 3's mapping).
function M.sources(i)
  local s = services[i]
  if not s.src then return {} end
  local out = {}
  for k, d in ipairs(s.src:refresh()) do out[k] = { key = d.key, path = d.path, data = d.data } end
  return out
end

-- One batch of source `key`'s nodes (removed names; changed = { {name, data, zxid, data_read} }), or removed ==
-- nil when the source is no longer watched. The next M.update judges every child again. Returns the number of
-- changed nodes refused as rules (counted by the C side) and, when some are, a line for the log.
function M.source_update(i, key, removed, changed)
  local s = services[i]
  if not s.src then return 0 end
  if removed == nil then
    s.src:drop(key)
    return 0
  end
  local bad = s.src:update(key, removed, changed)
  return bad, bad > 0 and s.src:invalid_summary(key) or nil
end

-- The route rules of service i: the sources' (dubbo's routers) first, then the policy's own; and, beside them,
-- which source each rule comes from (explain). A rule may name its source (.source), which route.lua does not take.
local route_mod
local function routes_of(s)
  if not s.src then return s.route end
  local list, from = {}, {}
  for _, r in ipairs(s.src:routes()) do
    if type(r) == "table" and r.source ~= nil then
      local c = {}
      for k, v in pairs(r) do if k ~= "source" then c[k] = v end end
      from[#list + 1] = tostring(r.source)
      r = c
    else
      from[#list + 1] = "rules"
    end
    list[#list + 1] = r
  end
  for _, r in ipairs(s.own_route or {}) do
    list[#list + 1] = r
    from[#list] = "policy"
  end
  s.route_from = from
  return #list > 0 and list or nil
end

local function router_of(s)
  if not s.src or s.router ~= nil then return s.router or nil end
  local list = routes_of(s)
  route_mod = route_mod or require "scout.route"
  local r, err = nil, nil
  if list then r, err = route_mod.compile(list) end
  if list and not r then
    -- a source's rule the router refuses: the policy's own rules stand alone, and the log says why
    log(LOG_WARN, format("service \"%s\": the sources' route rules do not compile (%s); using the policy's own",
                         s.name, tostring(err)))
    list = s.own_route
    r = list and route_mod.compile(list) or nil
  end
  s.router, s.route_list = r or false, list
  return r
end

-- What service i published before a restart (the disk snapshot): the starting point of diffs and protection.
function M.seed(i, list)
  local s = services[i]
  thaw(s, i)
  local published = {}
  for k = 1, #list do published[list[k].id] = list[k] end
  s.published, s.count, s.seeded = published, #list, true
end

-- What an nginx worker reading the shm snapshot needs to pick like the agent does: the selector, its options and
-- the route rules, as JSON. Only data travels: a selector given as a table of functions is named "custom", and
-- readers fall back to their own default for it.
function M.settings(i)
  local s = services[i]
  local sel = s.selector
  if type(sel) ~= "string" then sel = sel and "custom" or "swrr" end
  local route = s.route
  if s.src then router_of(s); route = s.route_list end   -- what the agent itself applies
  local out, err = json.encode({ selector = sel, selector_options = s.selector_options or json.null,
                                 route = route or json.null })
  if not out then return nil, "settings are not plain data: " .. tostring(err) end
  return out
end

-- ---- registration and rendered files (scout.announce, scout.render) ----------------------------------------

function M.register_body(k) return announce.body(policy.registers[k]) end
function M.register_check(k) return announce.check(policy.registers[k]) end
-- A template sees every service's published endpoints: a frozen service's are rebuilt for it, and not kept.
function M.render(k)
  local view = {}
  for i, s in ipairs(services) do
    view[i] = s.published == false and { name = s.name, path = s.path, published = store.published(i) } or s
  end
  return render.text(policy.renders[k], view)
end

local view_of = explain.view_of

-- ---- the API's questions ---------------------------------------------------------------------------------

-- /v1/explain/NAME: every child scout knows and why it is in or out, as JSON (scout.explain).
function M.explain(i)
  local s = services[i]
  thaw(s, i)
  local out = explain.service(s, now_ms(), QUIET, degraded_reason(s), router_of)
  freeze(s)
  return out
end

-- /v1/pick/NAME?key=K&tag=T...: the query's parameters are the routing context; returns the endpoint as JSON,
-- and the route's label, or nil, err.
function M.pick(i, query)
  local s = services[i]
  local args, err = url.parse_query(query or "")
  if not args then return nil, "bad query: " .. err end
  local ctx = { args = {} }
  for k, v in pairs(args) do ctx[k] = v[1]; ctx.args[k] = v[1] end
  if s.list_version ~= s.version or not s.list then
    thaw(s, i)
    local list = {}
    for _, ep in pairs(s.published) do list[#list + 1] = ep end
    sort(list, by_id)
    s.list, s.list_version = list, s.version
    freeze(s)
  end
  local list, label = s.list, nil
  local router = router_of(s)
  if router then list, label = router:apply(list, ctx) end
  if not s.pool then s.pool = require("scout.select").pool(s.selector or "swrr", s.selector_options) end
  local ep, perr = s.pool:get(list, label):pick(ctx)
  -- whatever a (custom) selector says, the answer starts "no endpoint": the API maps that to 503
  if not ep then return nil, (perr == nil or perr == "no endpoint") and "no endpoint" or "no endpoint: " .. perr end
  return json.encode(view_of(ep)), label
end

function M.on_session(state)
  if policy and policy.on_session then policy.on_session(state) end
end

return M
