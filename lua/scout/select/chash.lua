-- Consistent hashing with bounded memory: a Maglev lookup table (Eisenbud et al., NSDI'16; what Envoy's `MAGLEV`
-- load balancer does). Every endpoint walks its own permutation of the table's slots, derived from a hash of its
-- id, and the endpoints take turns claiming their next free slot until the table is full. A pick hashes ctx.key
-- once and reads one slot: O(1), no search.
--
-- Why not a ring with weight x 160 points per endpoint: memory grows with weights (dubbo's default weight 100 gives
-- 16,000 points per endpoint; apisix#7042). The table here has a fixed size (opts.size, default 65537 slots, ~512
-- KiB) whatever the weights or the endpoint count, balance is exact to one slot (endpoint i owns
-- size * w_i / sum(w) slots), and removing one of N endpoints remaps ~1/N of the keys. The price, as the paper
-- says, is that a few keys of surviving endpoints move too (well under 1% of them at N=10 here; the spec allows
-- 2%), where a ring moves none.
-- The table is a pure function of the endpoint set (endpoints are taken in id order), so every nginx worker and
-- the agent map a key to the same endpoint whatever order or history their snapshots had.
--
-- Weights: each endpoint gets a quota of slots proportional to its weight (largest remainder); endpoints take
-- turns until their quota is used up. With equal weights that is exactly the paper's algorithm.
--
-- ctx.key (a string, or a number hashed by value) is the hash key. A request without a key is not an error: it
-- walks the table's slots in order (round robin in proportion to weight), so unkeyed traffic spreads instead of
-- piling onto one endpoint.

local setmetatable = setmetatable
local type = type
local error = error
local floor = math.floor
local sort = table.sort
local tostring = tostring
local tab_new = require "table.new"

local hash = require "scout.util.hash"
local prepare = require("scout.select").prepare

local hstr = hash.str
local hid = hash._str_portable  -- same values as hash.str; separate code, so traces formed while building
                                -- (hashing ids in a loop) are not the ones picks reuse
local hkey = hash.key

local DEFAULT_SIZE = 65537
local KEY_SEED = 0                -- ctx.key -> slot: hash.str(key) % size
local OFFSET_SEED = 0x2545F491    -- endpoint id -> permutation offset
local SKIP_SEED = 0x6C078965      -- endpoint id -> permutation step

local _M = {}
local mt = { __index = _M }

local function is_prime(m)
  if m < 2 or m ~= floor(m) then return false end
  if m % 2 == 0 then return m == 2 end
  local d = 3
  while d * d <= m do
    if m % d == 0 then return false end
    d = d + 2
  end
  return true
end

local function ident(ep)
  local id = ep.id
  if id ~= nil then return tostring(id) end
  return tostring(ep.host) .. ":" .. tostring(ep.port)
end

-- The sort orders, as functions made once: a comparator made per build would be a closure over build()'s locals,
-- and making it (FNEW) and closing those locals when build() returns (UCLO) are NYI for LuaJIT. build() runs
-- inside balance() in nginx when a snapshot changes, where a trace may be recording (tests/lua/27_select_jit).
-- The keys are set for the one sort call and dropped after it (nothing yields in between).
local by_ids, by_frac, by_rank

local function id_order(a, b)
  return by_ids[a] < by_ids[b]
end

local function frac_order(a, b)
  if by_frac[a] ~= by_frac[b] then return by_frac[a] > by_frac[b] end
  return by_rank[a] < by_rank[b]
end

local function build(self, endpoints)
  local eps, ws, n, total = prepare(endpoints, 3)
  local m = self.size
  self.eps, self.n = eps, n
  if n == 0 then
    self.tab = {}
    return
  end

  local ids, order = tab_new(n, 0), tab_new(n, 0)
  for i = 1, n do
    ids[i] = ident(eps[i])
    order[i] = i
  end
  by_ids = ids
  sort(order, id_order)
  by_ids = nil

  -- quotas: floor(m * w / total) each, the remainder to the largest fractions (ties in id order)
  local quota, frac = tab_new(n, 0), tab_new(n, 0)
  local given = 0
  for i = 1, n do
    local exact = m * ws[i] / total
    local q = floor(exact)
    quota[i] = q
    frac[i] = exact - q
    given = given + q
  end
  if given < m then
    local byfrac = tab_new(n, 0)
    for k = 1, n do byfrac[k] = order[k] end
    local rank = tab_new(n, 0)
    for k = 1, n do rank[order[k]] = k end
    by_frac, by_rank = frac, rank
    sort(byfrac, frac_order)
    by_frac, by_rank = nil, nil
    for k = 1, m - given do
      local i = byfrac[(k - 1) % n + 1]
      quota[i] = quota[i] + 1
    end
  end

  local pos, skip = tab_new(n, 0), tab_new(n, 0)
  local active = tab_new(n, 0)
  local na = 0
  for k = 1, n do
    local i = order[k]
    pos[i] = hid(ids[i], OFFSET_SEED) % m
    skip[i] = hid(ids[i], SKIP_SEED) % (m - 1) + 1
    if quota[i] > 0 then
      na = na + 1
      active[na] = i
    end
  end

  local tab = tab_new(m, 0)
  while na > 0 do
    local j = 0
    for a = 1, na do
      local i = active[a]
      local c, s = pos[i], skip[i]
      while tab[c + 1] ~= nil do
        c = c + s
        if c >= m then c = c - m end
      end
      tab[c + 1] = eps[i]
      c = c + s
      if c >= m then c = c - m end
      pos[i] = c
      local q = quota[i] - 1
      quota[i] = q
      if q > 0 then
        j = j + 1
        active[j] = i
      end
    end
    na = j
  end
  self.tab = tab
end

-- new(endpoints[, opts]); opts.size: table size, a prime (default 65537; keep it >= 100 x endpoints for balance).
function _M.new(endpoints, opts)
  local size = opts and opts.size or DEFAULT_SIZE
  if type(size) ~= "number" or not is_prime(size) or size < 3 then
    error("opts.size must be a prime >= 3", 2)
  end
  local self = setmetatable({ size = size, i = 0 }, mt)
  build(self, endpoints)
  return self
end

function _M.pick(self, ctx)
  local n = self.n
  if n == 0 then
    return nil, "no endpoint"
  end
  local key = ctx and ctx.key
  if key == nil then
    local i = self.i + 1
    if i > self.size then i = 1 end
    self.i = i
    return self.tab[i]
  end
  local h
  if type(key) == "string" then
    h = hstr(key, KEY_SEED)
  elseif type(key) == "number" then
    h = hkey(key, KEY_SEED)
  else
    error("ctx.key must be a string or a number", 2)
  end
  return self.tab[h % self.size + 1]
end

function _M.feedback()
end

function _M.update(self, endpoints)
  build(self, endpoints)
end

return _M
