-- Smooth weighted round robin, exactly nginx's (ngx_http_upstream_get_peer): every pick adds each weight to its
-- endpoint's current weight, takes the largest (first one on ties), and subtracts the total from it. Weights
-- a=5,b=1,c=1 give a a b a c a a, and the sequence is the same one nginx would produce for the same weights.
--
-- Why not just run that loop: it is O(n) per pick (~3.5 M picks/s at 100 endpoints on the bench machine, against
-- 10 M wanted). From the all-zero state the sequence repeats with period total/gcd, and from the state left
-- behind by an update it falls into such a cycle within a period or two (checked; bounded by MAX_MISSES), so the
-- selector records the live sequence as it goes (the first period after a change costs the same as nginx) and,
-- once a recorded period ends in the state it started from, replays it with one array index per pick. The
-- current weights are never lost: at position p of a recorded period they are start + p * weight - picks * total,
-- so `update` recovers them in O(n + p) and carries them over by id (what keeps a rollout smooth). Periods
-- longer than MAX_PERIOD are never recorded (plain nginx loop); weights are divided by their gcd first, so
-- dubbo's uniform 100s give a period of n.

local setmetatable = setmetatable
local floor = math.floor
local huge = math.huge
local tab_new = require "table.new"

local prepare = require("scout.select").prepare

local MAX_PERIOD = 65536  -- longest period worth recording (a Lua array of that many refs: 512 KiB)
local MAX_MISSES = 4

local _M = {}
local mt = { __index = _M }

local function gcd(a, b)
  while b ~= 0 do
    a, b = b, a % b
  end
  return a
end

-- Set up arrays for endpoints; cw (absolute current weights, by new position) are carried over by the caller.
local function build(self, endpoints, carried)
  local eps, ws, n, total, index = prepare(endpoints, 3)
  local g = 0
  for i = 1, n do
    g = gcd(ws[i], g)
  end
  if carried then
    for i = 1, n do
      local c = carried[eps[i].id]
      if c and c ~= 0 then
        g = gcd(c < 0 and -c or c, g)
      end
    end
  end
  if g == 0 then g = 1 end
  local w, cw = tab_new(n, 0), tab_new(n, 0)
  for i = 1, n do
    w[i] = ws[i] / g
    local c = carried and carried[eps[i].id]
    cw[i] = c and c / g or 0
  end
  self.eps, self.w, self.cw, self.n, self.index = eps, w, cw, n, index
  self.g = g
  self.total = total / g
  self.record = self.total <= MAX_PERIOD
  self.misses = 0     -- recorded periods that did not end where they began
  self.seq = nil      -- endpoints of the recorded period, when complete
  self.seqi = nil     -- their positions (to recover current weights)
  self.rec, self.reci = nil, nil
  self.rlen = 0       -- picks recorded so far in the period being recorded
  self.start = nil    -- current weights at the start of the period being recorded / replayed
  self.len = 0        -- length of a complete period (0 while recording: the fast path falls through)
  self.pos = 0
end

function _M.new(endpoints)
  local self = setmetatable({}, mt)
  build(self, endpoints, nil)
  return self
end

-- One step of nginx's loop on self.cw; returns the position picked.
local function step(self)
  local w, cw, n = self.w, self.cw, self.n
  local best, bestw = 1, -huge
  for i = 1, n do
    local c = cw[i] + w[i]
    cw[i] = c
    if c > bestw then
      best = i
      bestw = c
    end
  end
  cw[best] = bestw - self.total
  return best
end

local function copy(a, n)
  local b = tab_new(n, 0)
  for i = 1, n do
    b[i] = a[i]
  end
  return b
end

local function slow(self)
  local n = self.n
  if n == 0 then
    return nil, "no endpoint"
  end
  if self.len > 0 then      -- a complete period: wrap around
    self.pos = 1
    return self.seq[1]
  end
  local i = step(self)
  if not self.record then
    return self.eps[i]
  end
  local total = self.total
  local k = self.rlen
  if k == 0 then
    self.start = copy(self.cw, n)  -- cw before this pick: undo it
    local s = self.start
    for j = 1, n do
      s[j] = s[j] - self.w[j]
    end
    s[i] = s[i] + total
    self.rec, self.reci = tab_new(total, 0), tab_new(total, 0)
  end
  k = k + 1
  self.rec[k] = self.eps[i]
  self.reci[k] = i
  self.rlen = k
  if k == total then
    local s, cw = self.start, self.cw
    local same = true
    for j = 1, n do
      if s[j] ~= cw[j] then
        same = false
        break
      end
    end
    if same then
      self.seq, self.seqi = self.rec, self.reci
      self.len, self.pos = total, total
    else
      -- not on a cycle yet (after an update it gets there within a period); if it somehow never does, stop
      -- recording rather than allocate a period's worth of arrays forever
      self.misses = self.misses + 1
      if self.misses >= MAX_MISSES then
        self.record = false
      end
    end
    self.rec, self.reci, self.rlen = nil, nil, 0
  end
  return self.eps[i]
end

function _M.pick(self)
  local pos = self.pos + 1
  if pos <= self.len then
    self.pos = pos
    return self.seq[pos]
  end
  return slow(self)
end

function _M.feedback()
end

-- Current weights in absolute units, by position; the state nginx's loop would hold now.
local function current(self)
  local n = self.n
  local cw = self.cw
  if self.len > 0 then
    local start, w, total, pos, seqi = self.start, self.w, self.total, self.pos, self.seqi
    local picks = tab_new(n, 0)
    for i = 1, n do
      picks[i] = 0
    end
    for k = 1, pos do
      local i = seqi[k]
      picks[i] = picks[i] + 1
    end
    cw = tab_new(n, 0)
    for i = 1, n do
      cw[i] = start[i] + pos * w[i] - picks[i] * total
    end
  end
  local g = self.g
  local out = tab_new(n, 0)
  for i = 1, n do
    out[i] = floor(cw[i] * g + 0.5)
  end
  return out
end

-- current_weights() -> { [id] = current weight } (absolute, as nginx would hold them). For specs and debugging.
function _M.current_weights(self)
  local cw = current(self)
  local out = {}
  for i = 1, self.n do
    local id = self.eps[i].id
    if id ~= nil then out[id] = cw[i] end
  end
  return out
end

function _M.update(self, endpoints)
  local carried = self:current_weights()
  build(self, endpoints, carried)
end

return _M
