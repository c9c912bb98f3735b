-- scout.explain: /v1/explain/NAME, every child scout knows of a service and why it is in or out, as JSON.
-- Split from scout.runtime, which owns the state it reads: explain reads a service's state (thawed by the caller)
-- and changes nothing, so a question from the API never moves what is published.
local json = require "cjson.safe"
local backoff = require "scout.backoff"
local utf8_clean = require("scout.util.utf8").clean

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local format, floor, sort = string.format, math.floor, table.sort

local M = {}

local function by_id(a, b) return a.id < b.id end

-- An endpoint as the API shows it.
function M.view_of(ep)
  return { id = ep.id, host = ep.host, port = ep.port, weight = ep.weight, status = ep.status, zxid = ep.zxid,
           meta = ep.meta }
end
local view_of = M.view_of

-- s: the service's runtime state; now: the clock's ms; quiet: the verdicts that are not errors (runtime's QUIET);
-- degraded: the service's degraded reason or nil; router_of(s): compiles its route rules (s.route_list after).
function M.service(s, now, QUIET, degraded, router_of)
  local out = {}
  for name, ep in pairs(s.children) do
    local e = { id = name }
    if s.src and type(ep) == "table" then
      local notes
      ep, notes = s.src:shape(name, ep)     -- what the rules made of it, and which rule did what
      if s.which and (s.extra and s.extra[name] ~= nil) ~= (s.which == "application") then
        local c = {}
        for k, v in pairs(ep) do c[k] = v end
        c.status = "not-chosen"
        ep = c
        local nn = {}
        for k, v in ipairs(type(notes) == "table" and notes or {}) do nn[k] = v end
        nn[#nn + 1] = "migration: " .. tostring(s.which_note)
        notes = nn
      end
      if type(notes) == "table" and #notes > 0 then
        local clean = {}
        for k = 1, #notes do clean[k] = utf8_clean(tostring(notes[k])) end
        e.rules = clean
      end
    end
    local failing = s.failing and s.failing[name]
    local left = failing and backoff.left(s, name, now)
    if left then
      e.retry_in_ms = floor(left)
      failing = format("%s; asked again in %.1f s (backing off), or when its data changes", failing, left / 1000)
    end
    if type(ep) == "string" and failing and s.published[name] then
      e.endpoint = view_of(s.published[name])
      e.verdict, e.reason = "kept", failing .. "; the last good endpoint stays published"
    elseif type(ep) == "string" then
      e.verdict = QUIET[ep] and "ignored" or s.rejected and s.rejected[name] and "rejected" or "decode_error"
      e.reason = ep
    elseif failing then
      e.endpoint = view_of(ep)
      if s.published[name] then
        e.verdict, e.reason = "kept", failing .. "; the last good endpoint stays published"
        e.endpoint = view_of(s.published[name])
      else
        e.verdict, e.reason = "filter_error", failing .. "; stays out until the filter answers"
      end
    else
      e.endpoint = view_of(ep)
      if ep.status ~= "up" then
        e.verdict, e.reason = "down", "status is " .. tostring(ep.status)
      elseif s.published[name] == ep then
        e.verdict = "published"
      elseif s.filtered and s.filtered[name] then
        e.verdict, e.reason = "filtered", "the filter returned false"
      elseif s.held then
        e.verdict, e.reason = "held", "protection holds back a change of the list"
      else
        e.verdict, e.reason = "pending", "not yet accepted by the policy"
      end
    end
    if e.reason then e.reason = utf8_clean(e.reason) end
    out[#out + 1] = e
  end
  for id, ep in pairs(s.published) do
    if s.children[id] == nil then
      out[#out + 1] = { id = id, endpoint = view_of(ep), verdict = s.held and "held" or "snapshot",
                        reason = s.held and "protection keeps it while a drop is confirmed"
                                 or "from the disk snapshot, not yet confirmed by ZooKeeper" }
    end
  end
  sort(out, by_id)
  -- Debian's lua-cjson encodes an empty table as {}: splice the array in
  local head = { service = s.name, path = s.path, protected = s.held ~= nil,
                 confirms = s.held and s.held.confirms or nil, degraded = degraded or false }
  if s.src then
    -- every source with its refused rules, and the route rules in the order they apply, each with its source
    head.sources = s.src:explain()
    local routes = {}
    router_of(s)
    for k, r in ipairs(s.route_list or {}) do
      routes[k] = { source = s.route_list == s.own_route and "policy" or s.route_from[k], rule = r }
    end
    head.routes = routes
  end
  head = json.encode(head)
  return head:sub(1, -2) .. ',"children":' .. (#out > 0 and json.encode(out) or "[]") .. "}"
end

return M
