-- scout.protect: the runtime's protection against a mass drop of endpoints (a glitch, a bad deploy): whether a
-- change is published now or held back until confirmed. Moved out of scout.runtime as a concern of its own; it
-- keeps no state but the service state's own `baseline` and `held` fields.

local pcall = pcall
local tostring = tostring
local format = string.format
local ceil = math.ceil

local policy_dsl = require "scout.policy"

local M = {}

local LOG_WARN = 1

-- Protection is on by default: an empty list never replaces a non-empty one until confirmed by `confirm` more
-- reads (one every `confirm_interval`) or `hold` has passed. `protect = false` turns it off; `min_ratio` also
-- holds any drop below that share of the published list.
local DEFAULT_PROTECTION
function M.settings(p)
  if p == false then return nil end
  if p == nil then
    DEFAULT_PROTECTION = DEFAULT_PROTECTION or M.settings({})   -- shared: never written to
    return DEFAULT_PROTECTION
  end
  return {
    min_ratio = p.min_ratio,
    confirm = p.confirm or 3,
    hold = policy_dsl.duration(p.hold or 60000),
    interval = policy_dsl.duration(p.confirm_interval or 1000),
  }
end

-- Should a change from `from` to `to` endpoints be held back? Returns nil (publish), or ms until the next look.
--
-- The ratio is taken against a baseline, the largest count published within the last `hold`, not against the
-- previous list: deletions that arrive one read at a time (10 -> 9 -> ... -> 2) are a mass deletion too.
-- clock(): the runtime's clock (ms), read only when a drop is looked at; log(level, msg): its logger.
function M.hold_back(s, from, to, svc_view, clock, log)
  local pr = s.protect
  if not pr then return nil end
  local base = s.baseline
  -- Counts only grow until the first drop, so the baseline is taken then (the count before it), not kept
  -- from the start: 10,000 services spare a table each.
  if not base and to >= from then return nil end
  local now = clock()
  if not base then
    base = { count = from, at = now }
    s.baseline = base
  elseif from >= base.count or now - base.at > pr.hold then
    base.count, base.at = from, now   -- in place: a service growing and shrinking by one moved it at every change
  end
  if from == 0 or not (to == 0 or (pr.min_ratio and to < pr.min_ratio * base.count)) then
    if s.held then
      log(LOG_WARN, format("service \"%s\": protection released: the drop went away", s.name))
      s.held = nil
    end
    return nil
  end
  -- A confirmation is a look at least `confirm_interval` after the last one (the re-read scheduled below):
  -- the other reads while the drop is held (each step of a staggered mass deletion) confirm nothing.
  local h = s.held
  if not h then
    h = { since = now, confirms = 0, looked = now }
    s.held = h
    log(LOG_WARN, format("service \"%s\": protection: holding a drop from %d to %d endpoints", s.name, from, to))
  elseif now - h.looked >= pr.interval then
    h.confirms = h.confirms + 1
    h.looked = now
  end
  local held_ms = now - h.since
  local accept = h.confirms >= pr.confirm
  if s.on_protect then
    local ok, verdict = pcall(s.on_protect, svc_view, { from = from, to = to, confirms = h.confirms,
                                                        held_ms = held_ms, hold_ms = pr.hold })
    if not ok then
      log(LOG_WARN, format("service \"%s\": on_protect failed: %s", s.name, tostring(verdict)))
    elseif verdict == true or verdict == false then
      accept = verdict
    end
  end
  if accept or held_ms >= pr.hold then    -- protection never outlives hold
    log(LOG_WARN, format("service \"%s\": protection: publishing the drop from %d to %d endpoints after %d "
      .. "confirmations and %d ms", s.name, from, to, h.confirms, held_ms))
    s.held = nil
    s.baseline = { count = to, at = now }
    return nil
  end
  local wait = pr.hold - held_ms
  local due = h.looked + pr.interval - now
  if due < wait then wait = due end
  return wait < 1 and 1 or ceil(wait)
end

return M
