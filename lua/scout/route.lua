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
--   { tag = "dubbo.tag", force = false|true }
--       dubbo's tag router exactly (no fallback): a request with a tag gets the endpoints with that tag, and
--       when there are none, the untagged ones (force = false) or nothing (force = true); a request without a
--       tag gets the untagged endpoints, even when there are none.
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

local type = type
local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local error = error
local find = string.find
local sub = string.sub
local gsub = string.gsub
local match = string.match
local lower = string.lower
local format = string.format
local sort = table.sort
local ipairs = ipairs
local random = math.random

local hash = require "scout.util.hash"

local hkey = hash.key

local SPLIT_SEED = 0x5EED5EED  -- unlike chash's, so a split and chash fed the same key do not correlate
local MEMO_MAX = 1024           -- distinct $reference values remembered per rule and snapshot
local EMPTY = setmetatable({}, { __newindex = function() error("routed arrays are read-only", 2) end })
local U32 = 4294967296

local _M = { EMPTY = EMPTY }

local FB_ALL, FB_NONE, FB_TAG = 1, 2, 3
local R_TAG, R_COND, R_SPLIT = 1, 2, 3

-- value patterns --------------------------------------------------------------------------------------------------

local P_EXACT, P_ANY, P_PREFIX, P_SUFFIX, P_CONTAINS, P_GLOB, P_REF = 1, 2, 3, 4, 5, 6, 7

local function compile_item(s)
  if sub(s, 1, 1) == "$" then
    return { P_REF, sub(s, 2) }
  end
  if not find(s, "*", 1, true) then
    return { P_EXACT, s }
  end
  if s == "*" or not find(s, "[^*]") then
    return { P_ANY }
  end
  local inner = sub(s, 2, -2)
  local first, last = sub(s, 1, 1) == "*", sub(s, -1) == "*"
  if last and not first and not find(sub(s, 1, -2), "*", 1, true) then
    return { P_PREFIX, sub(s, 1, -2) }
  end
  if first and not last and not find(sub(s, 2), "*", 1, true) then
    return { P_SUFFIX, sub(s, 2) }
  end
  if first and last and inner ~= "" and not find(inner, "*", 1, true) then
    return { P_CONTAINS, inner }
  end
  local pat = gsub(s, "[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
  pat = gsub(pat, "%*+", ".*")
  return { P_GLOB, "^" .. pat .. "$" }
end

-- match one non-ref item against a string value
local function item_match(it, v)
  local k = it[1]
  if k == P_EXACT then
    return v == it[2]
  elseif k == P_ANY then
    return true
  elseif k == P_PREFIX then
    return find(v, it[2], 1, true) == 1
  elseif k == P_SUFFIX then
    local s = it[2]
    local at = #v - #s + 1
    return at >= 1 and find(v, s, at, true) ~= nil
  elseif k == P_CONTAINS then
    return find(v, it[2], 1, true) ~= nil
  elseif k == P_GLOB then
    return find(v, it[2]) ~= nil
  end
  return false
end

-- does value v match any item? refs compare equal to refv[name] (the request's values)
local function list_match(items, v, refv)
  if v == nil then
    return false
  end
  for i = 1, #items do
    local it = items[i]
    if it[1] == P_REF then
      if refv and refv[it[2]] == v then
        return true
      end
    elseif item_match(it, v) then
      return true
    end
  end
  return false
end

-- field access ----------------------------------------------------------------------------------------------------

local function ctx_value(ctx, k1, k2, k2lower)
  local v = ctx[k1]
  if k2 then
    if type(v) ~= "table" then
      return nil
    end
    local t = v
    v = t[k2]
    if v == nil and k2lower then
      v = t[k2lower]
    end
  end
  if v == nil or type(v) == "string" then
    return v
  end
  if type(v) == "table" then  -- a repeated header or arg (ngx.req.get_headers): the first value
    v = v[1]
    if v == nil or type(v) == "string" then
      return v
    end
  end
  return tostring(v)
end

local EP_FIELDS = { host = true, port = true, id = true, status = true, weight = true, zxid = true }

local function ep_value(ep, name, metakey)
  if metakey then
    local meta = ep.meta
    local v = meta and meta[metakey]
    if v == nil then return nil end
    return tostring(v)
  end
  if name == "address" then
    if ep.host == nil then return nil end
    return tostring(ep.host) .. ":" .. tostring(ep.port)
  end
  local v = ep[name]
  if v == nil then return nil end
  return tostring(v)
end

-- condition parsing -----------------------------------------------------------------------------------------------

local function trim(s)
  return (match(s, "^%s*(.-)%s*$"))
end

-- request key "a.b" -> "a", "b" (and "b" lowercased, if that differs: header names); "a" -> "a"; bad -> nil
local function ctx_path(key)
  local dot = find(key, ".", 1, true)
  if not dot then return key end
  local k1, k2 = sub(key, 1, dot - 1), sub(key, dot + 1)
  if k1 == "" or k2 == "" then return nil end
  local l = lower(k2)
  return k1, k2, l ~= k2 and l or nil
end

local function split(s, sep)
  local out = {}
  local start = 1
  while true do
    local i = find(s, sep, start, true)
    if not i then
      out[#out + 1] = sub(s, start)
      return out
    end
    out[#out + 1] = sub(s, start, i - 1)
    start = i + #sep
  end
end

-- parse one side: "" -> {}; returns list of { key, neg, items, k1, k2, k2lower | metakey } or nil, err
local function parse_side(text, side)
  local conds = {}
  text = trim(text)
  if text == "" then
    return conds
  end
  local parts = split(text, "&")
  for p = 1, #parts do
    local c = trim(parts[p])
    if c == "" then return nil, "empty condition in \"" .. text .. "\"" end
    local key, op, rest = match(c, "^([%w_%.%-]*)%s*([=!~<>]*)%s*(.*)$")
    if not key or key == "" then return nil, "missing key in \"" .. c .. "\"" end
    if op ~= "=" and op ~= "!=" then
      if op == "" then
        return nil, "missing operator after \"" .. key .. "\""
      end
      return nil, "unknown operator \"" .. op .. "\""
    end
    if rest == "" then return nil, "empty value for \"" .. key .. "\"" end
    local items = {}
    local vals = split(rest, ",")
    local has_ref = false
    for v = 1, #vals do
      local s = trim(vals[v])
      if s == "" then
        return nil, "empty value in list for \"" .. key .. "\""
      end
      if sub(s, 1, 1) == "$" then
        if side == "left" then
          return nil, "$ reference on the left side (\"" .. s .. "\")"
        end
        if #s == 1 or find(s, "[^%w_%.%-]", 2) or not ctx_path(sub(s, 2)) then
          return nil, "bad reference \"" .. s .. "\""
        end
        has_ref = true
      end
      items[v] = compile_item(s)
    end
    local cond = { key = key, neg = op == "!=", items = items, ref = has_ref }
    if side == "left" then
      cond.k1, cond.k2, cond.k2lower = ctx_path(key)
      if not cond.k1 then
        return nil, "bad key \"" .. key .. "\""
      end
      if #items == 1 and items[1][1] == P_EXACT then
        cond.exact = items[1][2]
      end
      cond.memo, cond.memo_n = {}, 0
    else
      if sub(key, 1, 5) == "meta." then
        cond.metakey = sub(key, 6)
        if cond.metakey == "" then
          return nil, "bad key \"" .. key .. "\""
        end
      elseif not EP_FIELDS[key] and key ~= "address" then
        cond.metakey = key
      end
    end
    conds[#conds + 1] = cond
  end
  return conds
end

-- One request-side condition. Verdicts are remembered per distinct value (bounded), so a request usually costs a
-- table lookup per condition, and pattern matching stays off the traced path.
local function left_cond(c, ctx)
  local v = ctx_value(ctx, c.k1, c.k2, c.k2lower)
  if v == nil then
    return c.neg
  end
  local exact = c.exact
  if exact then
    return (v == exact) ~= c.neg
  end
  local memo = c.memo
  local ok = memo[v]
  if ok == nil then
    ok = list_match(c.items, v, nil) ~= c.neg
    if c.memo_n >= MEMO_MAX then
      memo = {}
      c.memo, c.memo_n = memo, 0
    end
    memo[v] = ok
    c.memo_n = c.memo_n + 1
  end
  return ok
end

local function left_match(conds, ctx)
  for i = 1, #conds do
    if not left_cond(conds[i], ctx) then
      return false
    end
  end
  return true
end

local function ep_match(conds, ep, refv)
  for i = 1, #conds do
    local c = conds[i]
    local ok = list_match(c.items, ep_value(ep, c.key, c.metakey), refv)
    if ok == c.neg then
      return false
    end
  end
  return true
end

local function filter(eps, conds, refv)
  local out = {}
  local n = 0
  for i = 1, #eps do
    local ep = eps[i]
    if ep_match(conds, ep, refv) then
      n = n + 1
      out[n] = ep
    end
  end
  return out
end

-- rule compilation ------------------------------------------------------------------------------------------------

local function compile_fallback(rule, spec, default)
  local fb = spec.fallback
  if fb == nil then fb = default end
  if type(fb) ~= "string" or fb == "" then
    return nil, "fallback must be \"all\", \"none\" or a tag"
  end
  if fb == "all" then
    rule.fb = FB_ALL
  elseif fb == "none" then
    rule.fb = FB_NONE
  else
    rule.fb, rule.fbtag = FB_TAG, fb
  end
  return true
end

local function compile_condition(rule, text)
  if type(text) ~= "string" then return nil, "condition must be a string" end
  local a, b = find(text, "=>", 1, true)
  if not a then return nil, "missing \"=>\" in \"" .. text .. "\"" end
  if find(text, "=>", b + 1, true) then return nil, "more than one \"=>\"" end
  local err
  rule.when, err = parse_side(sub(text, 1, a - 1), "left")
  if not rule.when then return nil, err end
  local thens
  thens, err = parse_side(sub(text, b + 1), "right")
  if not thens then return nil, err end
  rule.blacklist = #thens == 0
  local static, dynamic, refs, seen = {}, {}, {}, {}
  for i = 1, #thens do
    local c = thens[i]
    if c.ref then
      dynamic[#dynamic + 1] = c
      for j = 1, #c.items do
        local it = c.items[j]
        if it[1] == P_REF and not seen[it[2]] then
          seen[it[2]] = true
          refs[#refs + 1] = { it[2], ctx_path(it[2]) }
        end
      end
    else
      static[#static + 1] = c
    end
  end
  rule.static, rule.dynamic, rule.refs = static, dynamic, refs
  return true
end

local MATCH_FIELDS = { host = true, port = true, id = true, status = true, weight = true, zxid = true,
                       address = true }

local function pattern_items(v, what)
  if type(v) == "number" or type(v) == "boolean" then
    v = tostring(v)
  end
  if type(v) ~= "string" or v == "" then
    return nil, what .. " must be a non-empty string or a number"
  end
  local items = {}
  local vals = split(v, ",")
  for i = 1, #vals do
    local s = trim(vals[i])
    if s == "" or sub(s, 1, 1) == "$" then
      return nil, "bad value \"" .. v .. "\" for " .. what
    end
    items[i] = compile_item(s)
  end
  return items
end

-- a split bucket's match -> list of right-side conditions (no refs)
local function compile_match(m, b)
  local where = "bucket " .. b
  if type(m) == "string" then
    local conds, err = parse_side(m, "right")
    if not conds then return nil, where .. ": " .. err end
    for i = 1, #conds do
      if conds[i].ref then return nil, where .. ": $ references are not allowed in a match" end
    end
    return conds
  end
  if type(m) ~= "table" then
    return nil, where .. ": match must be a table or a condition string"
  end
  local conds = {}
  local names = {}
  for k in pairs(m) do names[#names + 1] = tostring(k) end
  sort(names)
  for _, k in ipairs(names) do
    local v = m[k]
    if k == "meta" then
      if type(v) ~= "table" then return nil, where .. ": meta must be a table" end
      local mk = {}
      for mkey in pairs(v) do mk[#mk + 1] = tostring(mkey) end
      sort(mk)
      for _, key in ipairs(mk) do
        local items, err = pattern_items(v[key], "meta." .. key)
        if not items then return nil, where .. ": " .. err end
        conds[#conds + 1] = { key = key, metakey = key, neg = false, items = items }
      end
    elseif MATCH_FIELDS[k] then
      local items, err = pattern_items(v, k)
      if not items then return nil, where .. ": " .. err end
      conds[#conds + 1] = { key = k, neg = false, items = items }
    else
      return nil, where .. ": unknown match field \"" .. k .. "\""
    end
  end
  return conds
end

local function compile_split(rule, buckets)
  if type(buckets) ~= "table" or #buckets == 0 then
    return nil, "split must be a non-empty array of buckets"
  end
  local total = 0
  local list = {}
  for b = 1, #buckets do
    local bk = buckets[b]
    if type(bk) ~= "table" then return nil, "bucket " .. b .. " is not a table" end
    for k in pairs(bk) do
      if k ~= "match" and k ~= "weight" then
        return nil, "bucket " .. b .. ": unknown field \"" .. tostring(k) .. "\""
      end
    end
    local w = bk.weight
    if type(w) ~= "number" or w ~= w or w < 0 or w == 1 / 0 then
      return nil, "bucket " .. b .. ": weight must be a number >= 0"
    end
    local conds = false
    if bk.match ~= nil then
      local err
      conds, err = compile_match(bk.match, b)
      if not conds then return nil, err end
    end
    total = total + w
    list[b] = { conds = conds, weight = w, upto = total }
  end
  if total <= 0 then
    return nil, "split weights add up to 0"
  end
  rule.buckets, rule.total = list, total
  return true
end

local RULE_FIELDS = { tag = true, condition = true, split = true, fallback = true, force = true }

local function compile_rule(spec)
  if type(spec) == "string" then
    spec = { condition = spec }
  end
  if type(spec) ~= "table" then return nil, "must be a string or a table" end
  for k in pairs(spec) do
    if not RULE_FIELDS[k] then return nil, "unknown field \"" .. tostring(k) .. "\"" end
  end
  local kinds = (spec.tag ~= nil and 1 or 0) + (spec.condition ~= nil and 1 or 0) + (spec.split ~= nil and 1 or 0)
  if kinds ~= 1 then
    return nil, "needs exactly one of tag, condition, split"
  end
  local rule = { cache = setmetatable({}, { __mode = "k" }) }
  local ok, err
  if spec.force ~= nil then
    if spec.tag == nil then return nil, "force is only for a tag rule" end
    if type(spec.force) ~= "boolean" then return nil, "force must be true or false" end
    if spec.fallback ~= nil then return nil, "a tag rule takes force or fallback, not both" end
    rule.strict, rule.force = true, spec.force
  end
  if spec.tag ~= nil then
    local t = spec.tag
    if t == true then t = "tag" end
    if type(t) ~= "string" or t == "" then
      return nil, "tag must be true or a meta key"
    end
    rule.kind, rule.tagkey, ok = R_TAG, t, true
  elseif spec.condition ~= nil then
    rule.kind = R_COND
    ok, err = compile_condition(rule, spec.condition)
  else
    rule.kind = R_SPLIT
    ok, err = compile_split(rule, spec.split)
  end
  if ok then
    ok, err = compile_fallback(rule, spec, rule.blacklist and "none" or "all")
  end
  if not ok then
    return nil, err
  end
  rule.tagkey = rule.tagkey or "tag"
  return rule
end

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
    st.groups, st.untagged = groups, untagged
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
      out = st.untagged
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
