-- Routing rules: which of a service's endpoints a request may go to, before a selector picks one. Rules are
-- compiled once (parse errors are reported per rule, at policy load), and each rule's work that depends only on
-- the endpoint list (grouping by tag, filtering by static conditions, splitting into buckets) is done once per
-- snapshot and cached on the snapshot's array, so a request only compares a few strings and gets back an array
-- that already exists: no per-request garbage, and arrays with a stable identity that callers can key selectors
-- on. Nothing here depends on ngx or the agent; the same router runs in both.
--
-- The operator's reference for this syntax is docs/policy.md ("Route rules"); keep the two in step.
--
-- A policy gives rules as an array, applied IN ORDER as a pipeline: each rule narrows the previous rule's output
-- (like dubbo's router chain). A rule whose result is empty applies its fallback instead:
--   fallback = "all"   (default) the rule's input, i.e. the rule is skipped;
--   fallback = "none"  an empty list (the default only for a condition rule with an empty right side: a
--                      blacklist that fell back to "all" would do nothing);
--   fallback = "<tag>" the input's endpoints whose tag (meta.tag, or the tag rule's key) is <tag>; if there are
--                      none, the input.
-- So the result is never empty unless the input was, or a rule says "none".
--
-- Rule kinds:
--   { tag = true }  (or tag = "<meta key>", default "tag")
--       endpoints whose meta tag equals ctx.tag; a request without a tag gets the untagged endpoints (meta tag
--       absent or ""), like dubbo's tag router.
--   { tag = "dubbo.tag", force = false|true [, names = { "gray", ... }] }
--       dubbo's tag router exactly (no fallback): a request with a tag gets the endpoints with that tag, and
--       when there are none, the untagged ones (force = false) or nothing (force = true); a request without a
--       tag gets the untagged endpoints, even when there are none, plus, with `names` (the tag names of dubbo's
--       dynamic tag rule), the endpoints whose tag is none of those names.
--   "host = 10.20.* & method = get* => host = 10.20.*"   or   { condition = "...", fallback = ... }
--       dubbo condition rule. Left of "=>": the request must match all conditions (empty: always); right: the
--       endpoints kept (empty: none, see fallback). Conditions are `key = v1,v2` or `key != v1,v2`, joined by
--       "&"; a value may use "*" as a wildcard; on the right a value may be `$name`, the request's value of name.
--       A rule whose left side does not match passes its input through.
--       Request keys (left side, and $name): `host` (client address), `method`, `tag`, `key`, or any ctx field;
--       `a.b` reads ctx.a.b (`args.user`, `headers.x-canary`; header names are also tried in lowercase).
--       Endpoint keys (right side): `host`, `port`, `id`, `status`, `weight`, `address` ("host:port"),
--       `meta.<k>`, or any other name, read as meta.<name> (dubbo's `version`, `group`, ... live there).
--       `key = ...` is true only if the key has a value that matches; `key != ...` is its negation.
--   { split = { { match = { meta = { version = "2" } }, weight = 5 }, { weight = 95 } } }
--       weighted buckets for canaries. A bucket's match is a table (host, port, id, status, weight, address =
--       value patterns; meta = { k = pattern }) or a right-side condition string ("version = 2"); a bucket
--       without match gets the endpoints no other bucket matched. Each request picks a bucket by weight: from a
--       hash of ctx.key when there is one (a key stays in its bucket), else at random (opts.rng).
--
-- router:apply(endpoints, ctx) returns the array and a label naming the route that made it (see Router.apply).
-- The arrays returned are shared and cached: callers must not modify them.
--
-- The work is split by concern: scout.route.cond (value patterns, fields, parsing and matching conditions),
-- scout.route.compile (a spec to a rule); this file prepares rules per snapshot and applies them per request.

local type = type
local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local error = error
local format = string.format
local random = math.random

local hash = require "scout.util.hash"
local cond = require "scout.route.cond"
local compile = require "scout.route.compile"

local hkey = hash.key
local ctx_value = cond.ctx_value
local left_match = cond.left_match
local ep_match = cond.ep_match
local filter = cond.filter
local compile_rule = compile.rule

local SPLIT_SEED = 0x5EED5EED  -- unlike chash's, so a split and chash fed the same key do not correlate
local MEMO_MAX = cond.MEMO_MAX  -- distinct $reference values remembered per rule and snapshot
local EMPTY = setmetatable({}, { __newindex = function() error("routed arrays are read-only", 2) end })
local U32 = 4294967296

local _M = { EMPTY = EMPTY }

local FB_ALL, FB_NONE, FB_TAG = compile.FB_ALL, compile.FB_NONE, compile.FB_TAG
local R_TAG, R_COND = compile.R_TAG, compile.R_COND

-- per-snapshot preparation ----------------------------------------------------------------------------------------

local function tag_of(ep, key)
  local meta = ep.meta
  local t = meta and meta[key]
  if t == nil or t == "" then return nil end
  return tostring(t)
end

local function by_tag(eps, key, want)
  local out = {}
  for i = 1, #eps do
    if tag_of(eps[i], key) == want then
      out[#out + 1] = eps[i]
    end
  end
  return out
end

-- state for one rule and one input array. Must not reference the input itself (the cache has weak keys).
-- Every array made here gets a label in `labels` (see Router.apply).
local function prepare(rule, eps, labels, r)
  local st = {}
  local prefix = (labels[eps] or "") .. "/" .. r .. ":"
  st.prefix, st.labels = prefix, labels
  if rule.fb == FB_TAG then
    st.fb = by_tag(eps, rule.tagkey, rule.fbtag)
    labels[st.fb] = prefix .. "fallback=" .. rule.fbtag
  end
  local kind = rule.kind
  if kind == R_TAG then
    local groups, untagged = {}, {}
    for i = 1, #eps do
      local ep = eps[i]
      local t = tag_of(ep, rule.tagkey)
      if t == nil then
        untagged[#untagged + 1] = ep
      else
        local g = groups[t]
        if not g then
          g = {}
          groups[t] = g
        end
        g[#g + 1] = ep
      end
    end
    for t, g in pairs(groups) do
      labels[g] = prefix .. "tag=" .. t
    end
    labels[untagged] = prefix .. "untagged"
    st.groups, st.untagged, st.open = groups, untagged, untagged
    local names = rule.names
    if names then
      -- a request without a tag also reaches endpoints whose tag is none of the rule's names
      local open = {}
      for i = 1, #eps do
        local t = tag_of(eps[i], rule.tagkey)
        if t == nil or not names[t] then open[#open + 1] = eps[i] end
      end
      labels[open] = prefix .. "untagged"
      st.open = open
    end
  elseif kind == R_COND then
    if rule.blacklist then
      st.kept = EMPTY
    else
      st.kept = filter(eps, rule.static, nil)
      labels[st.kept] = prefix .. "then"
      if #rule.dynamic > 0 then
        st.memo, st.memo_n = {}, 0
      end
    end
  else
    local buckets = rule.buckets
    local arrays, claimed = {}, {}
    for b = 1, #buckets do
      local conds = buckets[b].conds
      if conds then
        local out = {}
        for i = 1, #eps do
          local ep = eps[i]
          if ep_match(conds, ep, nil) then
            out[#out + 1] = ep
            claimed[ep] = true
          end
        end
        arrays[b] = out
        labels[out] = prefix .. "bucket=" .. b
      end
    end
    local rest
    for b = 1, #buckets do
      if not buckets[b].conds then
        if not rest then
          rest = {}
          for i = 1, #eps do
            if not claimed[eps[i]] then rest[#rest + 1] = eps[i] end
          end
          labels[rest] = prefix .. "rest"
        end
        arrays[b] = rest
      end
    end
    st.arrays = arrays
  end
  return st
end

-- per-request application -----------------------------------------------------------------------------------------

local function fallback(rule, st, eps)
  local fb = rule.fb
  if fb == FB_ALL then
    return eps
  elseif fb == FB_NONE then
    return EMPTY
  end
  local t = st.fb
  if #t > 0 then
    return t
  end
  return eps
end

local NIL = {}  -- memo key standing for "the request has no such value"

-- A combination of $reference values not seen yet for this snapshot: filter and remember it. This is the only
-- place apply() allocates, and it is bounded: past MEMO_MAX combinations the memo starts over.
local function memo_miss(rule, st, ctx)
  if st.memo_n >= MEMO_MAX then
    st.memo, st.memo_n = {}, 0
  end
  local refs = rule.refs
  local nref = #refs
  local refv = {}
  for r = 1, nref do
    local ref = refs[r]
    refv[ref[1]] = ctx_value(ctx, ref[2], ref[3], ref[4])
  end
  local out = filter(st.kept, rule.dynamic, refv)
  local label = st.prefix .. "then"
  local node = st.memo
  for r = 1, nref do
    local v = refv[refs[r][1]]
    label = label .. "$" .. (v or "")
    if v == nil then v = NIL end
    if r == nref then
      node[v] = out
    else
      local t = node[v]
      if not t then
        t = {}
        node[v] = t
      end
      node = t
    end
  end
  st.labels[out] = label
  st.memo_n = st.memo_n + 1
  return out
end

local function dynamic(rule, st, ctx)
  local refs = rule.refs
  local node = st.memo
  for r = 1, #refs do
    local ref = refs[r]
    local v = ctx_value(ctx, ref[2], ref[3], ref[4])
    if v == nil then v = NIL end
    node = node[v]
    if node == nil then
      return memo_miss(rule, st, ctx)
    end
  end
  return node
end

local function apply_rule(rule, st, eps, ctx)
  local kind = rule.kind
  local out
  if kind == R_TAG then
    local t = ctx.tag
    if t == nil or t == "" then
      out = st.open
    else
      if type(t) ~= "string" then t = tostring(t) end
      out = st.groups[t]
      if rule.strict and (out == nil or #out == 0) then
        out = rule.force and EMPTY or st.untagged
      end
    end
    if rule.strict then
      return #out > 0 and out or EMPTY
    end
  elseif kind == R_COND then
    if not left_match(rule.when, ctx) then
      return eps
    end
    if st.memo then
      out = dynamic(rule, st, ctx)
    else
      out = st.kept
    end
  else
    local u
    local key = ctx.key
    if key ~= nil and (type(key) == "string" or type(key) == "number") then
      u = hkey(key, SPLIT_SEED) / U32
    else
      u = rule.rng()
    end
    local x = u * rule.total
    local buckets = rule.buckets
    local nb = #buckets
    local b = nb
    for i = 1, nb do
      if x < buckets[i].upto then
        b = i
        break
      end
    end
    out = st.arrays[b]
  end
  if out == nil or #out == 0 then
    return fallback(rule, st, eps)
  end
  return out
end

local Router = {}
local router_mt = { __index = Router }

local NOCTX = setmetatable({}, { __newindex = function() error("read-only", 2) end })

-- router:apply(endpoints, ctx) -> array, label. Pass the same endpoints array for the same snapshot: per-snapshot
-- work is cached on its identity. label names the subset by the path that made it ("" for the input itself,
-- "/1:tag=gray", "/1:untagged/2:then", "/3:bucket=1", "none" for an empty result, ...): the same route gives the
-- same label in every snapshot, so a caller can keep one selector per label and update() it when the array for
-- that label changes (scout.select.pool does exactly that), and per-endpoint selector state survives.
function Router.apply(self, endpoints, ctx)
  if type(endpoints) ~= "table" then
    error("endpoints must be an array", 2)
  end
  if ctx == nil then
    ctx = NOCTX
  end
  local eps = endpoints
  local rules = self.rules
  for r = 1, self.n do
    local rule = rules[r]
    local cache = rule.cache
    local st = cache[eps]
    if st == nil then
      st = prepare(rule, eps, self.labels, r)
      cache[eps] = st
    end
    eps = apply_rule(rule, st, eps, ctx)
  end
  return eps, self.labels[eps] or ""
end

-- compile(rules[, opts]) -> router | nil, err. opts.rng: [0,1) function for splits without a key.
function _M.compile(rules, opts)
  if rules == nil then
    rules = {}
  end
  if type(rules) ~= "table" then
    return nil, "rules must be an array"
  end
  local rng = opts and opts.rng or random
  if type(rng) ~= "function" then
    return nil, "opts.rng must be a function"
  end
  local n = #rules
  for k in pairs(rules) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      return nil, "rules must be an array (found key " .. format("%q", tostring(k)) .. ")"
    end
  end
  local list = {}
  for i = 1, n do
    local rule, err = compile_rule(rules[i])
    if not rule then
      return nil, "rule " .. i .. ": " .. err
    end
    rule.rng = rng
    list[i] = rule
  end
  local labels = setmetatable({}, { __mode = "k" })
  labels[EMPTY] = "none"
  return setmetatable({ rules = list, n = n, labels = labels }, router_mt)
end

return _M
