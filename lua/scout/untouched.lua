-- scout.untouched: whether the operator's code left a decoded endpoint as the boundary check read it. A change's
-- one new endpoint under hooks is built into C at the check (agent.build_endpoint, from the fields as the runtime
-- read them); a filter, on_change or on_protect may then edit the table in place (a field replaced, meta replaced),
-- and C used to read the whole table again after them to publish what they made (issue 14: ~3k instructions a
-- create). The fields the build was made from are noted here, and after the hooks the endpoint is handed to C as
-- built only if its seven fields are still the same values; otherwise C reads it again, as before. Lua strings are
-- interned, so comparing them is comparing their bytes; meta is compared by identity, so only an endpoint whose meta
-- is the shared, write-refusing EMPTY_META is noted (the runtime checks that before it builds: a meta table of its
-- own may be edited in place unseen), and a rawset into EMPTY_META itself sends it back to C. One endpoint, in
-- upvalues: a table of notes and a map for C cost more in the interpreter than the read they spared.

local next = next

local EMPTY_META = require("scout.util.endpoint").EMPTY_META

local M = {}

local ep_, id_, host_, port_, weight_, status_, zxid_

-- ep was built (the update's one build) from these fields, and EMPTY_META.
function M.note(ep, id, host, port, weight, status, zxid)
  ep_, id_, host_, port_, weight_, status_, zxid_ = ep, id, host, port, weight, status, zxid
end

-- After every hook of the update: the noted endpoint if its fields are still the ones it was built from, else nil
-- (policy_update.c then reads it again). Lets the note go either way.
function M.kept()
  local ep = ep_
  ep_ = nil
  if ep and next(EMPTY_META) == nil and ep.id == id_ and ep.host == host_ and ep.port == port_
     and ep.weight == weight_ and ep.status == status_ and ep.meta == EMPTY_META and ep.zxid == zxid_ then
    return ep
  end
  return nil
end

if jit then jit.off(M.note); jit.off(M.kept) end

return M
