-- scout.backoff: a child whose filter failed is not asked again at every change of its service. A filter that meets
-- the Lua heap cap costs ~100-200 ms of CPU each time; asked again at every change of a busy service, it held the
-- loop for seconds and expired the session. A failed child is asked again when its own data changes (its input
-- moved), when the policy is reloaded (a new VM starts with no back-off), or when its back-off is due: 1 s, doubling
-- to 30 s, and never less than COST times what the failed call held the loop (a heap-cap hit on a host at load 16
-- took 3.5 s of wall clock for 0.3 s of CPU: retried after 1-4 s it held the loop most of the time and expired the
-- session; at 10x a failing child takes at most ~9% of the loop). Until then its last verdict stands (runtime.lua's
-- s.failing) and explain says until when.
-- s.backoff[name] = { at = ms when it is asked again, wait = ms of the last back-off }

local pairs = pairs
local next = next

local M = {}

M.FIRST_MS, M.MAX_MS, M.COST = 1000, 30000, 10

-- name's filter failed at now, after holding the loop cost ms: back off, twice as long as last time, and at least
-- COST times what it cost.
function M.failed(s, name, now, cost)
  local b = s.backoff
  if not b then b = {}; s.backoff = b end
  local e = b[name]
  local wait = e and e.wait * 2 or M.FIRST_MS
  if wait > M.MAX_MS then wait = M.MAX_MS end
  local at = now + wait
  if cost and now + M.COST * cost > at then at = now + M.COST * cost end
  b[name] = { at = at, wait = wait }
end

-- name answered (or is gone): no back-off.
function M.clear(s, name)
  local b = s.backoff
  if b and b[name] then
    b[name] = nil
    if next(b) == nil then s.backoff = nil end
  end
end

-- May name's filter be asked again now, without its input having changed?
function M.due(s, name, now)
  local e = s.backoff and s.backoff[name]
  return e == nil or e.at <= now
end

-- ms from now until name is asked again (nil: not backing off).
function M.left(s, name, now)
  local e = s.backoff and s.backoff[name]
  if not e then return nil end
  return e.at > now and e.at - now or 0
end

-- ms until the first back-off of the service ends (the C side calls again then), or nil.
function M.next(s, now)
  local b = s.backoff
  if not b then return nil end
  local first
  for _, e in pairs(b) do
    if not first or e.at < first then first = e.at end
  end
  local left = first - now
  return left > 1 and left or 1
end

return M
