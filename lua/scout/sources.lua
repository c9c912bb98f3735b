-- scout.sources: a service over several watched paths. Besides its primary path (the endpoints), a service may
-- depend on source paths that its codec declares -- rules that shape the list, like dubbo's configurators and
-- routers. The C side watches each source like the primary (gap-free, delays, anti-entropy, ordering gates) and
-- hands its nodes here in the same removed/changed batches; this module keeps each source's nodes, compiles them
-- with the codec, and gives the runtime two things: `shape` (one decoded endpoint through the rules, with notes
-- for explain) and `routes` (route rules placed before the policy's own). It never raises on what ZooKeeper holds:
-- a rule that does not compile is skipped and reported, never applied half.
--
-- A codec opts in with plain functions (a user codec table may define them too):
--   sources(conf, sets)         -> array of { key =, path =, kind =, data = { names whose data is read } | true
--                                  (every child's) | nil (none) }
--                                  (sets: the compiled sets so far, so a source may name others: dubbo 3's mapping)
--   compile(kind, nodes, conf)  -> set, errors    nodes: array of { name =, data = }; errors: { { name =, why = } }
--   configure(ep, sets, conf)   -> ep2, notes     never modifies ep; notes: array of strings
--   routes(sets, conf)          -> array of route specs (scout.route's format, plain data)
-- conf = { path = <primary path>, options = <codec_options>, scope = <codec-specific, e.g. dubbo's interface> }.

local type = type
local pairs = pairs
local pcall = pcall
local tostring = tostring
local sort = table.sort
local format = string.format

local M = {}
local S = {}
S.__index = S

-- The built-in providers looked up so far: codec name -> module, or false when there is none. A failed require
-- is not remembered by require itself, and it searches every entry of package.path and cpath (19 file opens and
-- an error string): once per service, that was half of loading a 10,000-service policy.
local builtin = {}

-- The provider of a codec: the built-in one for a codec name (scout.sources.<name>), or the functions a user codec
-- table carries. nil when the codec has no sources.
function M.provider(codec_name, codec)
  local user = type(codec) == "table" and codec.user
  if type(user) == "table" and type(user.sources) == "function" then return user end
  if type(codec_name) ~= "string" then return nil end
  local found = builtin[codec_name]
  if found == nil then
    local ok, mod = pcall(require, "scout.sources." .. codec_name)
    found = ok and type(mod) == "table" and type(mod.sources) == "function" and mod or false
    builtin[codec_name] = found
  end
  return found or nil
end

-- A service's sources state. name: the service's name (for messages).
function M.new(provider, conf, name)
  local st = setmetatable({ p = provider, conf = conf, name = name, nodes = {}, sets = {}, errors = {},
                            gen = 0, shaped = {}, list = {}, desc = {}, counted = {} }, S)
  st:refresh()
  return st
end

-- The source descriptors as the provider gives them now (validated): array, and key -> descriptor.
function S:refresh()
  local ok, list = pcall(self.p.sources, self.conf, self.sets)
  if not ok or type(list) ~= "table" then list = self.list end   -- keep what we watch on a failure
  local out, by_key = {}, {}
  for _, d in pairs(list) do
    if type(d) == "table" and type(d.key) == "string" and type(d.path) == "string" and d.path:sub(1, 1) == "/"
        and not by_key[d.key] then
      local data = nil
      if type(d.data) == "table" then
        data = {}
        for _, n in pairs(d.data) do if type(n) == "string" then data[#data + 1] = n end end
        sort(data)
      elseif d.data == true then
        data = true     -- every child's data
      end
      local e = { key = d.key, path = d.path, kind = d.kind, data = data }
      by_key[d.key] = e
      out[#out + 1] = e
    end
  end
  sort(out, function(a, b) return a.key < b.key end)
  self.list, self.desc = out, by_key
  return out
end

-- What the C side needs: array of { key, path, data = array | nil }.
function S:descriptors()
  return self.list
end

local function compile(self, key)
  local d = self.desc[key]
  local nodes, n = {}, 0
  for name, node in pairs(self.nodes[key] or {}) do
    n = n + 1
    nodes[n] = { name = name, data = node.data, zxid = node.zxid }
  end
  sort(nodes, function(a, b) return a.name < b.name end)
  local ok, set, errors = pcall(self.p.compile, d and d.kind, nodes, self.conf)
  if not ok then
    -- the provider promised never to raise: its whole source is refused and said so
    set, errors = nil, { { name = "*", why = "compile failed: " .. tostring(set) } }
  end
  self.sets[key] = set
  self.errors[key] = type(errors) == "table" and errors or {}
end

-- One batch of a source's nodes (as M.update's: removed names; changed = { {name, data, zxid, data_read} }).
-- Returns how many of the changed nodes were refused (counted by the C side as invalid rules).
function S:update(key, removed, changed)
  local nodes = self.nodes[key]
  if not nodes then nodes = {}; self.nodes[key] = nodes end
  for k = 1, #removed do nodes[removed[k]] = nil end
  local touched = {}
  for k = 1, #changed do
    local c = changed[k]
    nodes[c[1]] = { data = c[2], zxid = c[3] }
    touched[c[1]] = true
  end
  compile(self, key)
  self.gen = self.gen + 1
  self.dirty = true
  self.routes_cache = nil
  -- each version of a refused node is counted once, also when the same source is watched anew (other names to
  -- read) and delivers it again
  local counted = self.counted[key]
  if not counted then counted = {}; self.counted[key] = counted end
  local bad = 0
  for _, e in pairs(self.errors[key]) do
    local node = nodes[e.name]
    if e.name == "*" then
      bad = bad + 1
    elseif touched[e.name] and node and counted[e.name] ~= node.zxid then
      counted[e.name] = node.zxid
      bad = bad + 1
    end
  end
  for name in pairs(counted) do
    if not nodes[name] then counted[name] = nil end
  end
  return bad
end

-- A source the C side no longer watches (the provider dropped it).
function S:drop(key)
  if self.nodes[key] == nil and self.sets[key] == nil then return end
  self.nodes[key], self.sets[key], self.errors[key] = nil, nil, nil
  self.gen = self.gen + 1
  self.dirty = true
  self.routes_cache = nil
end

-- One decoded endpoint through the current rules: the shaped copy (or ep itself) and its notes. The result is kept
-- per child until the endpoint or the rules change, so an unchanged endpoint keeps its identity.
function S:shape(name, ep)
  local c = self.shaped[name]
  if c and c.raw == ep and c.gen == self.gen then return c.ep, c.notes end
  local configure = self.p.configure
  local out, notes = ep, nil
  if configure then
    local ok, e2, n2 = pcall(configure, ep, self.sets, self.conf)
    if ok and type(e2) == "table" then
      out, notes = e2, n2
    elseif not ok then
      notes = { "rules not applied: " .. tostring(e2) }
    end
  end
  if out ~= ep then out.id, out.zxid = ep.id, ep.zxid end
  self.shaped[name] = { raw = ep, gen = self.gen, ep = out, notes = notes }
  return out, notes
end

-- The endpoints the service now publishes, for a provider whose sources depend on them (dubbo's tag router is
-- keyed by the providers' application). true when the sources may have changed.
function S:observe(published)
  local observe = self.p.observe
  if not observe then return false end
  local ok, moved = pcall(observe, self.conf, published)
  return ok and moved and true or false
end

-- Endpoints the sources themselves provide (dubbo 3's application-level instances): id -> endpoint, or nil.
function S:endpoints()
  if not self.p.endpoints then return nil end
  local ok, eps = pcall(self.p.endpoints, self.sets, self.conf)
  return ok and type(eps) == "table" and eps or nil
end

-- Which list to serve when the sources provide endpoints too (dubbo 3's migration): "interface" (the service's
-- own children) | "application" (the sources'), and a note; nil: both.
function S:choose(icount, acount)
  if not self.p.choose then return nil end
  local ok, which, note = pcall(self.p.choose, self.conf, icount, acount)
  if not ok or (which ~= "interface" and which ~= "application") then return nil end
  return which, note
end

function S:forget(name)
  self.shaped[name] = nil
end

-- The route rules the sources make, placed before the policy's own: array of specs, each with .source naming the
-- source it comes from when the provider says so.
function S:routes()
  if self.routes_cache then return self.routes_cache end
  local list = {}
  if self.p.routes then
    local ok, r = pcall(self.p.routes, self.sets, self.conf)
    if ok and type(r) == "table" then list = r end
  end
  self.routes_cache = list
  return list
end

-- Explain's view: per source its path, node count and refused rules.
function S:explain()
  local out = {}
  for _, d in pairs(self.list) do
    local n = 0
    for _ in pairs(self.nodes[d.key] or {}) do n = n + 1 end
    local errs = {}
    for _, e in pairs(self.errors[d.key] or {}) do
      errs[#errs + 1] = { name = tostring(e.name), why = tostring(e.why) }
    end
    sort(errs, function(a, b) return a.name < b.name end)
    out[#out + 1] = { key = d.key, path = d.path, nodes = n, invalid = errs }
  end
  return out
end

-- "2 rules refused in configurators (override://...: bad weight)" for logs, or nil.
function S:invalid_summary(key)
  local errs = self.errors[key]
  if not errs or #errs == 0 then return nil end
  return format("service \"%s\": %d rule%s refused in source %s (%s: %s)", self.name, #errs,
                #errs == 1 and "" or "s", key, tostring(errs[1].name), tostring(errs[1].why))
end

return M
