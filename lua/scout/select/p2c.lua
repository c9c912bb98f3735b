-- Power of two choices over a latency estimate (Finagle's P2C + peak EWMA, Envoy's least_request idea): pick two
-- different endpoints at random and keep the cheaper, where cost = ewma_latency * (in_flight + 1) / weight. Two
-- random candidates avoid the herd that "always the global best" causes when many balancers share stale
-- numbers, at O(1) per pick.
--
-- `pick` adds one in-flight request to the endpoint returned; `feedback(ep, ok, latency_ms)` takes it away and
-- folds the latency into the endpoint's EWMA (a failure counts as at least opts.fail_latency). An endpoint with no
-- sample yet costs 0 while idle (so new endpoints get tried) but a large penalty once it has a request in flight
-- (so they are not flooded before the first answer) — Finagle's rule. EWMA and in-flight counts survive `update`
-- by endpoint id.
--
-- opts: rng ([0,1) function, default math.random), alpha (EWMA weight of a new sample, default 0.3),
-- peak (true: a sample above the average replaces it at once, decaying afterwards; default false),
-- fail_latency (ms, default 1000).
--
-- The EWMA decays per sample, not per second: there is no clock that works the same in the agent and in nginx
-- without a syscall per pick, and a per-sample decay needs none.

local setmetatable = setmetatable
local floor = math.floor
local random = math.random
local type = type
local error = error
local tab_new = require "table.new"

local prepare = require("scout.select").prepare

local PENALTY = 1e9   -- cost of an unsampled endpoint with requests in flight
local MIN_SAMPLE = 1e-3

local _M = {}
local mt = { __index = _M }

local function build(self, endpoints, old)
  local eps, ws, n, _, index = prepare(endpoints, 3)
  local inflight, ewma = tab_new(n, 0), tab_new(n, 0)
  for i = 1, n do
    local c, e = 0, 0
    if old then
      local j = old.index[eps[i].id]
      if j then
        c, e = old.inflight[j], old.ewma[j]
      end
    end
    inflight[i], ewma[i] = c, e
  end
  self.eps, self.w, self.n, self.index = eps, ws, n, index
  self.inflight, self.ewma = inflight, ewma
end

function _M.new(endpoints, opts)
  opts = opts or {}
  local rng = opts.rng or random
  if type(rng) ~= "function" then
    error("opts.rng must be a function", 2)
  end
  local alpha = opts.alpha or 0.3
  if type(alpha) ~= "number" or not (alpha > 0 and alpha <= 1) then
    error("opts.alpha must be in (0, 1]", 2)
  end
  local fail = opts.fail_latency or 1000
  if type(fail) ~= "number" or fail ~= fail or fail < 0 then
    error("opts.fail_latency must be a number >= 0", 2)
  end
  local self = setmetatable({ rng = rng, alpha = alpha, peak = opts.peak and true or false,
                              fail_latency = fail }, mt)
  build(self, endpoints, nil)
  return self
end

function _M.pick(self)
  local n = self.n
  if n == 0 then
    return nil, "no endpoint"
  end
  local inflight = self.inflight
  local a = 1
  if n > 1 then
    local rng = self.rng
    a = floor(rng() * n) + 1
    local b = floor(rng() * (n - 1)) + 1
    if a > n then a = n end
    if b > n - 1 then b = n - 1 end
    if b >= a then b = b + 1 end
    local ewma, w = self.ewma, self.w
    local ca, cb
    local e, c = ewma[a], inflight[a]
    if e == 0 then
      ca = c > 0 and PENALTY or 0
    else
      ca = e * (c + 1)
    end
    e, c = ewma[b], inflight[b]
    if e == 0 then
      cb = c > 0 and PENALTY or 0
    else
      cb = e * (c + 1)
    end
    -- ca / wa > cb / wb without dividing
    if cb * w[a] < ca * w[b] then
      a = b
    end
  end
  inflight[a] = inflight[a] + 1
  return self.eps[a]
end

-- feedback(ep, ok, latency_ms): the request sent to ep has ended. latency_ms may be nil (count only).
function _M.feedback(self, ep, ok, latency)
  if type(ep) ~= "table" then
    error("feedback needs the picked endpoint", 2)
  end
  local i = self.index[ep.id]
  if not i then
    return
  end
  local c = self.inflight[i]
  if c > 0 then
    self.inflight[i] = c - 1
  end
  if type(latency) ~= "number" or latency ~= latency then
    return
  end
  if not ok and latency < self.fail_latency then
    latency = self.fail_latency
  end
  if latency < MIN_SAMPLE then
    latency = MIN_SAMPLE
  end
  local e = self.ewma[i]
  if e == 0 or (self.peak and latency > e) then
    e = latency
  else
    e = e + self.alpha * (latency - e)
  end
  self.ewma[i] = e
end

-- stats(id) -> in_flight, ewma_ms (0 when unsampled), for specs and metrics.
function _M.stats(self, id)
  local i = self.index[id]
  if not i then
    return 0, 0
  end
  return self.inflight[i], self.ewma[i]
end

function _M.update(self, endpoints)
  local old = { index = self.index, inflight = self.inflight, ewma = self.ewma }
  build(self, endpoints, old)
end

return _M
