-- scout.hookview: the service view an on_change or on_protect hook is handed (svc.name, svc.path, svc.endpoints).
-- svc.endpoints is the published set with this batch's diff applied, sorted by id, and it is built only if a hook
-- asks for it: most hooks read the diff alone, and building the whole list cost O(the service) per change (for a
-- service whose endpoints live in C between changes, scout.keep, it rebuilds every table). Moved out of
-- scout.runtime as a concern of its own; it keeps no state.

local pairs = pairs
local rawset = rawset
local setmetatable = setmetatable
local sort = table.sort

local store = require "scout.keep"

local M = {}

local function by_id(a, b) return a.id < b.id end

local function endpoints_after(published, up, gone_ids)
  local list, n, skip = {}, 0, {}
  for k = 1, #gone_ids do skip[gone_ids[k]] = true end
  for k = 1, #up do skip[up[k].id] = true; n = n + 1; list[n] = up[k] end
  for id, ep in pairs(published) do
    if not skip[id] then n = n + 1; list[n] = ep end
  end
  sort(list, by_id)
  return list
end

local mt = {
  __index = function(t, k)
    if k ~= "endpoints" then return nil end
    local list = endpoints_after(t._i and store.published(t._i) or t._published, t._up, t._gone)
    rawset(t, "endpoints", list)
    return list
  end,
}

-- s: the runtime's state of the service; published: its set before the batch (id -> endpoint), up and gone_ids
-- the batch's result; i: the service's index when its set is C's (a partly thawed update), else nil.
function M.new(s, published, up, gone_ids, i)
  return setmetatable({ name = s.name, path = s.path, _published = published, _up = up, _gone = gone_ids, _i = i },
                      mt)
end

return M
