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
local error = error
local setmetatable = setmetatable

local EMPTY_META = require("scout.util.endpoint").EMPTY_META

local M = {}

local agent = package.loaded["scout.agent"]
local published_of = agent and agent.published
-- fn(i, empty_meta) -> id -> endpoint table, made anew (agent.published's contract), or nil for no store
function M.set_store(fn) published_of = fn end

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

-- A frozen service gets its tables back: C's published set, and the children that are not published endpoints.
function M.thaw(s, i)
  if s.published ~= false then return end
  local rest = s.children
  local published = published_of(i, EMPTY_META) or {}
  local children = {}
  for id, ep in pairs(published) do children[id] = ep end
  for name, v in pairs(rest) do children[name] = v or nil end
  s.children, s.published = children, published
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

return M
