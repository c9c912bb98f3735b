-- scout.route.compile: a route spec (a condition string or a { tag | condition | split } table) checked and
-- turned into the rule scout.route applies; every mistake is a short reason (scout.route prefixes "rule N: "),
-- found at policy load, never at request time. The rule kinds and fallbacks are described in scout.route.

local type = type
local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local find = string.find
local sub = string.sub
local sort = table.sort
local ipairs = ipairs

local cond = require "scout.route.cond"

local P_REF = cond.P_REF
local compile_item = cond.compile_item
local trim = cond.trim
local ctx_path = cond.ctx_path
local split = cond.split
local parse_side = cond.parse_side

local FB_ALL, FB_NONE, FB_TAG = 1, 2, 3
local R_TAG, R_COND, R_SPLIT = 1, 2, 3

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

local RULE_FIELDS = { tag = true, condition = true, split = true, fallback = true, force = true, names = true }

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
  if spec.names ~= nil then
    if spec.force == nil then return nil, "names needs force (dubbo's tag router)" end
    if type(spec.names) ~= "table" then return nil, "names must be an array of tags" end
    local names = {}
    for k, v in pairs(spec.names) do
      if type(k) ~= "number" or type(v) ~= "string" or v == "" then return nil, "names must be an array of tags" end
      names[v] = true
    end
    rule.names = names
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

return {
  FB_ALL = FB_ALL, FB_NONE = FB_NONE, FB_TAG = FB_TAG,
  R_TAG = R_TAG, R_COND = R_COND, R_SPLIT = R_SPLIT,
  rule = compile_rule,
}
