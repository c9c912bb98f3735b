-- scout.ramp: weights that ramp up after an endpoint starts (dubbo's warm-up). A codec may export
-- effective_weight(ep, now) and warmup_until(ep, now) (ms of the epoch, nil once final). A decoded weight is right
-- only at decode time, and a name-only child is never decoded again, so the runtime re-weighs the ramping endpoints
-- on every call and publishes those whose weight moved. s is the runtime's state of one service.

local pairs, next, type = pairs, next, type
local setmetatable, error = setmetatable, error
local min, max = math.min, math.max

local M = {}

local RAMP_STEP_MS = 10000

-- what reweigh returns when nothing ramps (every call of a service without a ramp): read only, never a new table
local NONE = setmetatable({}, { __newindex = function() error("ramp.reweigh's empty list is read-only", 2) end })

function M.reweigh(s, children, now)
  local ramping, weigh = s.ramping, s.codec.effective_weight
  if not ramping or not weigh then return NONE end
  local moved = {}
  for id in pairs(ramping) do
    local cur = children[id]
    if type(cur) == "table" then
      local w = weigh(cur, now)
      if w ~= cur.weight then
        local copy = {}
        for k, v in pairs(cur) do copy[k] = v end
        copy.weight = w
        children[id] = copy
        moved[#moved + 1] = id
      end
    end
  end
  return moved
end

-- Which published endpoints still ramp after this batch, and when to look again (ms), or nil.
function M.next(s, up, gone_ids, now)
  local until_ = s.codec.warmup_until
  if not until_ or not s.codec.effective_weight then return nil end
  local ramping, soonest = s.ramping or {}, nil
  for k = 1, #gone_ids do ramping[gone_ids[k]] = nil end
  for k = 1, #up do ramping[up[k].id] = until_(up[k], now) and true or nil end
  for id in pairs(ramping) do
    local ep = s.published[id]
    local t = ep and until_(ep, now)
    if t then
      soonest = min(soonest or t, t)
    else
      ramping[id] = nil
    end
  end
  if next(ramping) then s.ramping = ramping elseif s.ramping then s.ramping = nil end  -- no empty table kept
  if not soonest then return nil end
  return max(1, min(RAMP_STEP_MS, soonest - now))
end

return M
