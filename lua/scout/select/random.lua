-- Weighted random: each pick is independent and lands on an endpoint with probability weight/total. Uses Vose's
-- alias method, built once per snapshot, so a pick is one random number, one compare and two array reads no
-- matter how many endpoints or how skewed the weights. No per-endpoint state, so `update` just rebuilds.
--
-- opts.rng: a function returning a float in [0, 1) (default math.random); specs pass select.rng(seed).

local floor = math.floor
local random = math.random
local setmetatable = setmetatable
local type = type
local error = error
local tab_new = require "table.new"

local prepare = require("scout.select").prepare

local _M = {}
local mt = { __index = _M }

local function build(self, endpoints)
  local eps, ws, n, total = prepare(endpoints, 3)
  local prob, alias = tab_new(n, 0), tab_new(n, 0)
  local p = tab_new(n, 0)
  local small, large = tab_new(n, 0), tab_new(n, 0)
  local ns, nl = 0, 0
  for i = 1, n do
    local x = ws[i] * n / total
    p[i] = x
    alias[i] = i
    if x < 1 then
      ns = ns + 1
      small[ns] = i
    else
      nl = nl + 1
      large[nl] = i
    end
  end
  while ns > 0 and nl > 0 do
    local s, l = small[ns], large[nl]
    ns, nl = ns - 1, nl - 1
    prob[s] = p[s]
    alias[s] = l
    local rest = p[l] + p[s] - 1
    p[l] = rest
    if rest < 1 then
      ns = ns + 1
      small[ns] = l
    else
      nl = nl + 1
      large[nl] = l
    end
  end
  -- leftovers are 1 up to rounding
  for k = 1, nl do
    prob[large[k]] = 1
  end
  for k = 1, ns do
    prob[small[k]] = 1
  end
  self.eps, self.prob, self.alias, self.n = eps, prob, alias, n
end

function _M.new(endpoints, opts)
  local rng = opts and opts.rng or random
  if type(rng) ~= "function" then
    error("opts.rng must be a function", 2)
  end
  local self = setmetatable({ rng = rng }, mt)
  build(self, endpoints)
  return self
end

function _M.pick(self)
  local n = self.n
  if n == 0 then
    return nil, "no endpoint"
  end
  local u = self.rng() * n
  local i = floor(u)
  local f = u - i
  i = i + 1
  if i > n then  -- an rng that returns 1.0
    i = n
  end
  if f < self.prob[i] then
    return self.eps[i]
  end
  return self.eps[self.alias[i]]
end

function _M.feedback()
end

function _M.update(self, endpoints)
  build(self, endpoints)
end

return _M
