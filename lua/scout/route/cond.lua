-- scout.route.cond: the condition language of route rules (docs/policy.md, "Route rules"): value patterns
-- ("10.20.*", "$name"), reading a request's or an endpoint's field, parsing one side of a dubbo condition rule, and
-- matching. scout.route.compile builds rules from these; scout.route applies them. Nothing here keeps state but
-- a left-side condition's memo of verdicts (bounded by MEMO_MAX).

local type = type
local tostring = tostring
local find = string.find
local sub = string.sub
local gsub = string.gsub
local match = string.match
local lower = string.lower

local MEMO_MAX = 1024           -- distinct $reference values remembered per rule and snapshot

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

return {
  MEMO_MAX = MEMO_MAX,
  P_EXACT = P_EXACT, P_REF = P_REF,
  compile_item = compile_item,
  list_match = list_match,
  ctx_value = ctx_value,
  ep_value = ep_value,
  trim = trim,
  ctx_path = ctx_path,
  split = split,
  parse_side = parse_side,
  left_match = left_match,
  ep_match = ep_match,
  filter = filter,
}
