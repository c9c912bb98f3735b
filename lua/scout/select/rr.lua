-- Plain round robin: every endpoint with a non-zero weight in turn, weights otherwise ignored (use swrr for
-- weights). The cheapest selector: one array index and a counter per pick. The counter survives `update`: the next
-- pick after a snapshot change continues after the endpoint picked last, if it is still there.
--
-- opts.rng: a [0,1) function; when given, the first pick starts at a random position, so many nginx workers do
-- not all start on the same endpoint.

local floor = math.floor
local setmetatable = setmetatable

local prepare = require("scout.select").prepare

local _M = {}
local mt = { __index = _M }

function _M.new(endpoints, opts)
  local eps, _, n, _, index = prepare(endpoints, 2)
  local self = setmetatable({ eps = eps, n = n, index = index, i = 0 }, mt)
  if opts and opts.rng and n > 0 then
    self.i = floor(opts.rng() * n)
  end
  return self
end

function _M.pick(self)
  local n = self.n
  if n == 0 then
    return nil, "no endpoint"
  end
  local i = self.i + 1
  if i > n then
    i = 1
  end
  self.i = i
  return self.eps[i]
end

function _M.feedback()
end

function _M.update(self, endpoints)
  local last = self.i > 0 and self.eps[self.i] or nil
  local eps, _, n, _, index = prepare(endpoints, 2)
  local i = 0
  if n > 0 then
    local at = last and index[last.id]
    if at then
      i = at
    else
      i = self.i % n
    end
  end
  self.eps, self.n, self.index, self.i = eps, n, index, i
end

return _M
