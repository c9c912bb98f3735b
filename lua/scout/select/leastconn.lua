-- Weighted least connections, counted here rather than by the OS: `pick` adds one in-flight request to the
-- endpoint it returns, `feedback(ep)` takes one away, and a pick goes to the endpoint with the lowest
-- in_flight / weight (nginx's least_conn). Ties go to the higher weight, then round robin (the scan starts one
-- position later each pick), so an idle service still spreads requests. O(n) per pick, which is fine at the
-- sizes least-conn is used for; use p2c for large sets.
--
-- Every pick must be paired with exactly one feedback, or the endpoint's count stays raised. Counts are kept by
-- endpoint id across `update`, so requests in flight during a snapshot change are still accounted when they end.

local setmetatable = setmetatable
local type = type
local error = error
local tab_new = require "table.new"

local prepare = require("scout.select").prepare

local _M = {}
local mt = { __index = _M }

local function build(self, endpoints, old)
  local eps, ws, n, _, index = prepare(endpoints, 3)
  local inflight = tab_new(n, 0)
  for i = 1, n do
    local c = 0
    if old then
      local j = old.index[eps[i].id]
      if j then c = old.inflight[j] end
    end
    inflight[i] = c
  end
  self.eps, self.w, self.n, self.index, self.inflight = eps, ws, n, index, inflight
  if self.start >= n then self.start = 0 end
end

function _M.new(endpoints)
  local self = setmetatable({ start = 0 }, mt)
  build(self, endpoints, nil)
  return self
end

function _M.pick(self)
  local n = self.n
  if n == 0 then
    return nil, "no endpoint"
  end
  local w, inflight = self.w, self.inflight
  local start = self.start
  local best = start + 1
  local bc, bw = inflight[best], w[best]
  for k = 1, n - 1 do
    local i = start + k
    if i >= n then i = i - n end
    i = i + 1
    local c, wi = inflight[i], w[i]
    -- c / wi < bc / bw without dividing; equal load -> higher weight wins
    local l, r = c * bw, bc * wi
    if l < r or (l == r and wi > bw) then
      best, bc, bw = i, c, wi
    end
  end
  start = start + 1
  if start >= n then start = 0 end
  self.start = start
  inflight[best] = bc + 1
  return self.eps[best]
end

-- feedback(ep, ok, latency_ms): the request sent to ep has ended (either way).
function _M.feedback(self, ep)
  if type(ep) ~= "table" then
    error("feedback needs the picked endpoint", 2)
  end
  local i = self.index[ep.id]
  if i then
    local c = self.inflight[i]
    if c > 0 then
      self.inflight[i] = c - 1
    end
  end
end

-- in_flight(id) -> count, for specs and metrics.
function _M.in_flight(self, id)
  local i = self.index[id]
  return i and self.inflight[i] or 0
end

function _M.update(self, endpoints)
  local old = { index = self.index, inflight = self.inflight }
  build(self, endpoints, old)
end

return _M
