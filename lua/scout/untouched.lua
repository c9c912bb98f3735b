-- scout.untouched: whether the operator's code left a decoded endpoint as the boundary check read it. A change's
-- new endpoint under hooks is built into C at the check (agent.build_endpoint, from the fields as read here); a
-- filter, on_change or on_protect may then edit the table in place (a field replaced, meta replaced), and C used to
-- read the whole table again after them to publish what they made (issue 14: ~3k instructions a create). The
-- fields the build was made from are noted here, and after the hooks an endpoint whose seven fields are still the
-- same values is published as built; any other is read again, as before. Lua strings are interned, so comparing
-- them is comparing their bytes; meta is compared by identity, so only an endpoint whose meta is the shared,
-- write-refusing EMPTY_META is noted (the runtime checks that before it builds: a meta table of its own may be
-- edited in place unseen), and a rawset into EMPTY_META itself sends every noted endpoint back to C. Nothing is
-- allocated per change: the notes and the map handed to C are reused, and hold a change's (at most MAX) tables
-- until the next change under hooks.

local next = next

local EMPTY_META = require("scout.util.endpoint").EMPTY_META

local M = {}

-- A change has at most MAX names (runtime.update's batch copy takes the rest, and does not note).
M.MAX = 4
-- [8 (at - 1) + 1 .. 8 at]: the endpoint table built at place at of this update's stash, then the seven fields it
-- was built from. Places are 1, 2, ... in each update (the stash is emptied after every update).
local noted = {}
-- built endpoint table -> its place, for the endpoints left as noted (what policy_update.c takes as built)
local kept = {}

-- ep was built at place at from these fields. False past MAX (not noted: C reads it again).
function M.note(at, ep, id, host, port, weight, status, meta, zxid)
  if at > M.MAX then return false end
  local b = 8 * (at - 1)
  noted[b + 1], noted[b + 2], noted[b + 3], noted[b + 4] = ep, id, host, port
  noted[b + 5], noted[b + 6], noted[b + 7], noted[b + 8] = weight, status, meta, zxid
  return true
end

-- After every hook of the update, n the last place noted in it: the map endpoint table -> place of those whose
-- fields are still the ones noted (C reads the others again: policy_update.c takes an endpoint from the stash only
-- if the map names it).
function M.keep(n)
  for ep in next, kept do kept[ep] = nil end
  if next(EMPTY_META) ~= nil then return kept end
  for at = 1, n do
    local b = 8 * (at - 1)
    local ep = noted[b + 1]
    if ep.id == noted[b + 2] and ep.host == noted[b + 3] and ep.port == noted[b + 4] and ep.weight == noted[b + 5]
       and ep.status == noted[b + 6] and ep.meta == noted[b + 7] and ep.zxid == noted[b + 8] then
      kept[ep] = at
    end
  end
  return kept
end

if jit then jit.off(M.note); jit.off(M.keep) end

return M
