-- Selector registry: turns a policy's `selector = "swrr"` (or a module name, or a table) into a selector object,
-- and holds the helpers every selector shares, so "which endpoints can be picked and with what weight" is decided
-- in one place. Selectors run inside nginx workers too, so nothing here may depend on ngx or on the agent.
--
-- The selector contract (built-ins follow it; a user's own selector must too):
--
--   module.new(endpoints[, opts]) -> sel      REQUIRED. endpoints: array of { id, host, port, weight, meta,
--                                             status, zxid }, all serving; never modify it. opts: module-defined.
--   sel:pick(ctx) -> endpoint | nil, err      REQUIRED. ctx: request attributes ({ key = ..., ... }) or nil.
--                                             Returns one of the endpoint tables it was given, or
--                                             nil, "no endpoint". Called per request: keep it allocation-free.
--   sel:feedback(ep, ok, latency_ms)          optional. The outcome of a request sent to a picked endpoint.
--   sel:update(endpoints)                     optional. A new snapshot: keep per-endpoint state (counters, EWMA,
--                                             current weights) for ids that survive, drop removed ids, start
--                                             new ids fresh.
--
-- select.new() fills in what is missing: a no-op `feedback`, and an `update` that rebuilds through `module.new`
-- and moves the fresh object's fields into the existing one (so references to `sel` stay valid; any state is
-- lost, which is all a selector without `update` can promise).
--
-- select.pool(spec, opts) keeps one selector per routed subset (see scout.route's labels) so that state follows a
-- subset across snapshots.
--
-- Weights (shared by every built-in, via select.prepare): an endpoint with weight 0 is never picked, unless every
-- endpoint has weight 0; then all count as weight 1. An all-zero set almost always means "the publisher does not
-- set weights" or a bad push, and failing closed there would take the service down on a data glitch; holding
-- back bad sets is the job of the `protect` guard, not the selector. A missing weight counts as 1; fractional
-- weights are floored (but a positive weight never drops below 1).

local type = type
local error = error
local pcall = pcall
local require = require
local setmetatable = setmetatable
local getmetatable = getmetatable
local pairs = pairs
local floor = math.floor
local tostring = tostring

local hash = require "scout.util.hash"

local M = {}

M.names = { "rr", "swrr", "random", "chash", "leastconn", "p2c" }

local BUILTIN = {}
for i = 1, #M.names do
  BUILTIN[M.names[i]] = "scout.select." .. M.names[i]
end

M.rng = hash.rng  -- select.rng(seed): a seedable [0,1) generator for opts.rng

local function weight_of(ep)
  local w = ep.weight
  if w == nil then return 1 end
  if type(w) ~= "number" or w ~= w or w <= 0 then return 0 end
  if w < 1 then return 1 end
  return floor(w)
end

-- prepare(endpoints) -> eps, weights, n, total, index
-- eps/weights: arrays of the pickable endpoints and their integer weights (> 0), in input order;
-- index: id -> position in eps. Built once per snapshot; selectors pick with integer loops over these.
function M.prepare(endpoints, level)
  if type(endpoints) ~= "table" then
    error("endpoints must be an array", (level or 1) + 1)
  end
  local eps, ws, index = {}, {}, {}
  local n, total = 0, 0
  local count = #endpoints
  for i = 1, count do
    local ep = endpoints[i]
    if type(ep) ~= "table" then
      error("endpoint " .. i .. " is not a table", (level or 1) + 1)
    end
    local w = weight_of(ep)
    if w > 0 then
      n = n + 1
      eps[n] = ep
      ws[n] = w
      total = total + w
      if ep.id ~= nil then index[ep.id] = n end
    end
  end
  if n == 0 and count > 0 then
    for i = 1, count do
      local ep = endpoints[i]
      eps[i] = ep
      ws[i] = 1
      if ep.id ~= nil then index[ep.id] = i end
    end
    n, total = count, count
  end
  return eps, ws, n, total, index
end

local function noop() end

-- resolve(spec) -> module | nil, err. Never raises (the policy loader reports err as `policy.lua:12: ...`).
function M.resolve(spec)
  local mod = spec
  if type(spec) == "string" then
    local name = BUILTIN[spec] or spec
    local ok, res = pcall(require, name)
    if not ok then
      if BUILTIN[spec] then
        return nil, "selector " .. spec .. ": " .. tostring(res)
      end
      return nil, "unknown selector \"" .. spec .. "\" (not built in and not loadable: " .. tostring(res) .. ")"
    end
    mod = res
  elseif type(spec) ~= "table" then
    return nil, "selector must be a name or a table, got " .. type(spec)
  end
  if type(mod) ~= "table" then
    return nil, "selector module " .. tostring(spec) .. " did not return a table"
  end
  if type(mod.new) ~= "function" then
    return nil, "selector has no new() function"
  end
  return mod
end

-- check(sel) -> sel | nil, err: what an object returned by new() must offer.
function M.check(sel)
  if type(sel) ~= "table" then
    return nil, "selector new() returned " .. type(sel) .. ", not a table"
  end
  if type(sel.pick) ~= "function" then
    return nil, "selector object has no pick() method"
  end
  local fb, up = sel.feedback, sel.update
  if fb ~= nil and type(fb) ~= "function" then
    return nil, "selector feedback is not a function"
  end
  if up ~= nil and type(up) ~= "function" then
    return nil, "selector update is not a function"
  end
  return sel
end

-- The update() of a selector that has none. A function of its own so that complete() captures nothing: closing
-- upvalues (UCLO) and making a closure (FNEW) are NYI for LuaJIT's trace compiler, and complete() runs inside
-- balance() in nginx whenever a subset gets its selector, where a trace may be recording (tests/lua/27_select_jit).
local function rebuilder(mod, opts)
  local function rebuild(self, endpoints)
    local fresh = mod.new(endpoints, opts)
    local ok, err = M.check(fresh)
    if not ok then error(err, 2) end
    for k in pairs(self) do self[k] = nil end
    for k, v in pairs(fresh) do self[k] = v end
    setmetatable(self, getmetatable(fresh))
    if self.feedback == nil then self.feedback = noop end
    if self.update == nil then self.update = rebuild end
  end
  return rebuild
end

local function complete(sel, mod, opts)
  if sel.feedback == nil then sel.feedback = noop end
  if sel.update == nil then sel.update = rebuilder(mod, opts) end
  return sel
end

-- new(spec, endpoints[, opts]) -> sel. spec: a built-in name, a module name to require, or a module table.
-- Bad specs are caller mistakes and raise; use resolve() first to validate without raising.
function M.new(spec, endpoints, opts)
  local mod, err = M.resolve(spec)
  if not mod then
    error(err, 2)
  end
  if type(endpoints) ~= "table" then
    error("endpoints must be an array", 2)
  end
  local sel = mod.new(endpoints, opts)
  local ok
  ok, err = M.check(sel)
  if not ok then
    error(err, 2)
  end
  return complete(sel, mod, opts)
end

-- pool(spec[, opts[, max]]) -> pool: one selector per routed subset. pool:get(endpoints[, label]) -> sel returns
-- the selector for `label` (the second result of router:apply; default ""), created on first use and update()d
-- in place whenever that label's array changes, so per-endpoint state (swrr current weights, in-flight counts,
-- EWMA) follows a subset across snapshots. More than `max` labels (default 256; $host-style routes can make
-- many) empties the pool, which only costs that state.
local Pool = {}
local pool_mt = { __index = Pool }

function M.pool(spec, opts, max)
  local mod, err = M.resolve(spec)
  if not mod then
    error(err, 2)
  end
  return setmetatable({ mod = mod, opts = opts, max = max or 256, n = 0, sels = {}, arrs = {} }, pool_mt)
end

function Pool.get(self, endpoints, label)
  if label == nil then label = "" end
  local sel = self.sels[label]
  if sel == nil then
    if self.n >= self.max then
      self.sels, self.arrs, self.n = {}, {}, 0
    end
    sel = M.new(self.mod, endpoints, self.opts)
    self.sels[label], self.arrs[label] = sel, endpoints
    self.n = self.n + 1
  elseif self.arrs[label] ~= endpoints then
    sel:update(endpoints)
    self.arrs[label] = endpoints
  end
  return sel
end

return M
