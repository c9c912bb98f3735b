-- scout.keep: where a service's endpoint tables live between changes. A small service's decoded endpoints are not
-- kept in Lua once a change is committed: C holds the published set (agent.published rebuilds it: the same seven
-- fields, endpoints without meta sharing the read-only EMPTY_META), and the runtime keeps only what C cannot give
-- back, the children that are not the published endpoint itself (filtered, down, failing, not an endpoint: rare).
-- At 10,000 services x 10 that is ~340 bytes an endpoint and most of the garbage of a sync (issue 14). Kept warm
-- instead: services over FREEZE_MAX children (a rebuild per change would cost O(service)), services with sources
-- or a ramp (their tables are not C's), a user's codec (its tables may carry more than C keeps), and anything run
-- outside the agent unless a store is set (specs). s is scout.runtime's state of one service: frozen, it holds
-- published == false and children = the rest (name -> endpoint, reason, or false: published, no such child).

local pairs = pairs
local next = next
local error = error
local setmetatable = setmetatable

local util_endpoint = require "scout.util.endpoint"
local EMPTY_META, same = util_endpoint.EMPTY_META, util_endpoint.same

local M = {}

local agent = package.loaded["scout.agent"]
local published_of = agent and agent.published
local one_of = agent and agent.published_one
-- fn(i, empty_meta) -> id -> endpoint table, made anew (agent.published's contract), or nil for no store;
-- one(i, id, empty_meta[, only_whether]) -> that one endpoint table (or true, when only_whether) or nil
-- (agent.published_one), or nil: thaw whole always
function M.set_store(fn, one) published_of, one_of = fn, one end

local FREEZE_MAX = 256
local NO_REST = setmetatable({}, { __newindex = function() error("frozen service state is read-only", 2) end })
local builtin = setmetatable({}, { __mode = "k" })   -- codec tables of scout's own codecs

-- codec is one of scout's own: its endpoints carry nothing C does not keep
function M.builtin(codec) builtin[codec] = true end
function M.is_builtin(codec) return builtin[codec] == true end

-- Service i's published endpoints rebuilt from C (not kept: a render's view of a frozen service).
function M.published(i)
  return published_of(i, EMPTY_META) or {}
end

-- An update of a partly thawed service that was stopped, or held back by protection, before its commit: its
-- children as decoded are what a whole thaw would have kept (explain tells them "pending", "held"). Noted by
-- M.opened as the update goes, put into rest only if a later call finds the update never closed.
local open_s, open_c, open_p, open_r

local settle   -- (below)

-- A frozen service gets its tables back: C's published set, and the children that are not published endpoints.
function M.thaw(s, i)
  if open_s then settle() end
  if s.published ~= false then return end
  local rest = s.children
  local published = published_of(i, EMPTY_META) or {}
  local children = {}
  for id, ep in pairs(published) do children[id] = ep end
  for name, v in pairs(rest) do children[name] = v or nil end
  s.children, s.published = children, published
end

-- The C side did not take s's last update, which may have committed here before it was stopped: C's published set
-- is what the next update is judged against. An endpoint C holds as Lua does keeps its Lua table (explain tells a
-- published child by its table). A frozen service's set is C's already (thaw and thaw_part read it).
function M.resync(s, i)
  if s.published == false or not published_of then return end
  local mine, published, n = s.published, published_of(i, EMPTY_META) or {}, 0
  for id, ep in pairs(published) do
    local old = mine[id]
    if old and same(old, ep, true) then published[id] = old end
    n = n + 1
  end
  s.published, s.count, s.version = published, n, s.version + 1
end

-- One name of a partly thawed service: its published endpoint from C, its child from rest or that endpoint. With
-- only_whether, a removed name's endpoint may be just true (published): nothing of it is read then (below).
local function hold(i, rest, published, children, name, only_whether)
  local p = published[name]
  if p == nil or p == true and not only_whether then
    local ep = one_of(i, name, EMPTY_META, only_whether)
    if ep then published[name] = ep end
  end
  local v = rest[name]
  if v then children[name] = v elseif v == nil then children[name] = published[name] end
end

-- For one update of a frozen service: the tables of only the names it touches (removed, changed, the failing
-- children it may judge again), from C one by one, not the whole set (one change under a service of 200 rebuilt
-- 200 tables: issue 14). Returns children, published holding just those, or nil when the service is not frozen or
-- the update could leave it too large to freeze again (then thaw it whole). The service stays frozen meanwhile, so
-- an update stopped half-way leaves it as it was; freeze_part puts the result back.
function M.thaw_part(s, i, removed, changed)
  if open_s then settle() end
  if s.published ~= false or not one_of or s.seeded or s.codec.warmup_until
     or s.count + #changed > FREEZE_MAX then
    return nil
  end
  local rest, failing = s.children, s.failing
  local n = #removed + #changed
  for _ in pairs(rest) do n = n + 1 end
  if failing then for _ in pairs(failing) do n = n + 1 end end
  if n > FREEZE_MAX then return nil end
  local children, published = {}, {}
  -- A removed name's endpoint is only counted and dropped, unless a hook is handed it (on_change's diff, the
  -- view on_protect gets) or the name is also judged as a child (changed, failing: its endpoint is compared):
  -- then hold makes the table after all.
  local only_whether = not (s.on_change or s.on_protect)
  for k = 1, #removed do hold(i, rest, published, children, removed[k], only_whether) end
  for k = 1, #changed do hold(i, rest, published, children, changed[k][1]) end
  if failing then for name in pairs(failing) do hold(i, rest, published, children, name) end end
  return children, published
end

-- One name re-decided: rest copied at the first that changes it (replaced in one step, never changed in place).
-- Its entry in rest after the update: the child when it is not the published endpoint, false when an endpoint is
-- published with no child, nil otherwise.
local function redo(old, rest, children, published, name)
  local r, p = children[name], published[name]
  if r == nil then
    if p ~= nil then r = false end
  elseif r == p then
    r = nil
  end
  if r == (rest or old)[name] then return rest end
  if not rest then
    rest = {}
    for k, v in pairs(old) do rest[k] = v end
  end
  rest[name] = r
  return rest
end

-- After a partly thawed update's commit: rest with the names it held re-decided; most changes leave it as it was.
function M.freeze_part(s, children, published, removed)
  local old, rest = s.children, nil
  for name in pairs(children) do rest = redo(old, rest, children, published, name) end
  for id in pairs(published) do rest = redo(old, rest, children, published, id) end
  for k = 1, #removed do rest = redo(old, rest, children, published, removed[k]) end
  if rest then s.children = next(rest) ~= nil and rest or NO_REST end
  if open_s == s then open_s, open_c, open_p, open_r = nil, nil, nil, nil end
end

-- The update of partly thawed s has decoded its children (children, published, removed: its tables): until it
-- commits, they are what any later look at s must find.
function M.opened(s, children, published, removed)
  open_s, open_c, open_p, open_r = s, children, published, removed
end

settle = function()
  local s = open_s
  open_s = nil
  if s.published == false then M.freeze_part(s, open_c, open_p, open_r) end
  open_c, open_p, open_r = nil, nil, nil
end

-- After a commit (or a question answered): let the endpoint tables go if C can give them back.
function M.freeze(s)
  if not published_of or s.published == false or s.src or s.ramping or s.count > FREEZE_MAX
     or not builtin[s.codec] then
    return
  end
  local children, published = s.children, s.published
  local rest, n = nil, 0
  for name, v in pairs(children) do
    if published[name] ~= v then
      n = n + 1
      if n > FREEZE_MAX then return end
      rest = rest or {}
      rest[name] = v
    end
  end
  for id in pairs(published) do
    if children[id] == nil then
      n = n + 1
      if n > FREEZE_MAX then return end
      rest = rest or {}
      rest[id] = false
    end
  end
  s.children, s.published = rest or NO_REST, false
end

-- The partial thaw and freeze serve only a change (never a sync's batches): interpreted, as runtime.update's copy
-- for changes is (runtime.lua says why).
if jit then
  for _, fn in pairs({ M.thaw_part, hold, M.freeze_part, redo, M.opened, settle }) do jit.off(fn) end
end

return M
