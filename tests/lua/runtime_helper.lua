-- Shared by the scout.runtime specs (01_runtime_spec: load, pick, explain, delay, protection; 05_runtime_update_spec:
-- the incremental update): one policy of seven services, what update() returned packed in a table, and the log
-- lines the runtime wrote during a spec.

local runtime = require "scout.runtime"
local H = require "policy_helper"

local st = H.state

local R = {}

-- Services by index: 1 "s" (plain, filter, on_change), 2 "bare" (plain, nothing else), 3 "dubbo", 4 "ss"
-- (serverset), 5 "user" (a user codec: the data is a Lua expression it returns), 6 "d" (a delay function),
-- 7 "guarded" (protection left at its default).
R.POLICY = [[
local H = require "policy_helper"
local st = H.state

zookeeper { servers = "127.0.0.1:2181/scout", session_timeout = 8000 }
api { listen = "127.0.0.1:8500" }
agent { hook_budget = 40, log_level = "debug" }

local function ids(list)
  local out = {}
  for i = 1, #list do out[i] = list[i].id end
  return table.concat(out, ",")
end

service "s" {
  path = "/svc/s",
  protect = false,
  filter = function(ep)
    st.filter_calls = (st.filter_calls or 0) + 1
    st.filtered = (st.filtered and st.filtered .. "," or "") .. ep.id
    if st.boom == ep.id then error("filter exploded on " .. ep.id, 0) end
    return ep.meta.drop == nil
  end,
  on_change = function(svc, diff)
    local rec = { svc = svc, name = svc.name, path = svc.path, diff = diff,
                  added = ids(diff.added), removed = ids(diff.removed), changed = ids(diff.changed) }
    if st.peek then
      rec.before = rawget(svc, "endpoints")
      rec.endpoints = svc.endpoints
      rec.again = svc.endpoints
    end
    st.changes[#st.changes + 1] = rec
    if st.hook_boom then error(st.hook_boom, 0) end
  end,
}

service "bare" { path = "/svc/bare", protect = false }

service "dubbo" { path = "/dubbo/com.example.Foo/providers", codec = "dubbo", protect = false }

service "ss" { path = "/aurora/jobs/web", codec = "serverset", protect = false }

service "user" {
  path = "/svc/user",
  protect = false,
  codec = { decode = function(_, data) return assert(loadstring("return " .. data))() end },
}

service "d" {
  path = "/svc/d",
  delay = function(ev)
    st.ev = ev
    if st.delay_raise then error(st.delay_raise, 0) end
    return st.delay_value
  end,
}

service "guarded" { path = "/svc/guarded", delay = 250 }

function on_session(state) st.session = state end
]]

R.S, R.BARE, R.DUBBO, R.SS, R.USER, R.D, R.GUARDED = 1, 2, 3, 4, 5, 6, 7

function R.ids(list)
  local out = {}
  for i = 1, #list do out[i] = list[i].id end
  return table.concat(out, ",")
end
local ids = R.ids

function R.json(host, port, extra)
  return '{"host":"' .. host .. '","port":' .. port .. (extra or "") .. "}"
end

-- update() with its four results packed; `ok` = false and `err` when it raised.
function R.update(i, removed, changed)
  local ok, up, gone, nerr, nhook, retry, reweigh, degraded, nrej, spared =
    pcall(runtime.update, i, removed, changed)
  if not ok then return { ok = false, err = up } end
  return { ok = true, up = up, gone = gone, nerr = nerr, nhook = nhook, retry = retry, reweigh = reweigh, ids = ids(up),
           gone_ids = table.concat(gone, ","), degraded = degraded, nrej = nrej, spared = spared }
end

local logs

function R.warns()
  local out = {}
  for _, l in ipairs(logs) do
    if l[1] == 1 then out[#out + 1] = l[2] end
  end
  return out
end

function R.debugs()
  local out = {}
  for _, l in ipairs(logs) do
    if l[1] == 3 then out[#out + 1] = l[2] end
  end
  return out
end

-- before_each: fresh state and log, the policy loaded; returns its conf and path.
function R.begin()
  H.reset_state()
  st.changes = {}
  logs = {}
  runtime.set_logger(function(level, msg) logs[#logs + 1] = { level, msg } end)
  local path = H.write(R.POLICY)
  local conf, err = runtime.load(path)
  assert(err == nil, err)
  return conf, path
end

-- teardown: the temp files removed, errors logged to stderr again.
function R.finish()
  H.cleanup()
  runtime.set_logger(function(level, msg) if level <= 1 then io.stderr:write(msg, "\n") end end)
end

-- One random batch for the property specs (07_runtime_copies, 08_runtime_untouched): up to `most` names of n1..n<pool>,
-- each once; a live one is removed one time in `drop` (else re-read), a new one created. live (name -> true) is
-- updated; data(rnd, k) makes a child's bytes. Returns removed, changed (update()'s rows) and the last zxid.
function R.random_batch(rnd, live, zxid, data, most, pool, drop)
  local removed, changed, seen = {}, {}, {}
  for _ = 1, rnd(most) do
    local k = rnd(pool)
    local name = "n" .. k
    if not seen[name] then
      seen[name] = true
      if live[name] and rnd(drop) == 1 then
        removed[#removed + 1] = name
        live[name] = nil
      else
        zxid = zxid + 1
        changed[#changed + 1] = { name, data(rnd, k), zxid, true }
        live[name] = true
      end
    end
  end
  return removed, changed, zxid
end

-- What an update returned, comparable across two services of one policy (07_runtime_copies, 31_runtime_decode_batch):
-- endpoint tables by their fields, the lists sorted, an error without its service's name.
function R.answer(ok, up, gone, nerr, nhook, retry, reweigh, degraded, nrej, spared)
  if not ok then return { error = tostring(up):gsub("service \"%a\"", "service") } end
  local u = {}
  for k, ep in ipairs(up) do
    u[k] = string.format("%s %s:%d w%d %s %s", ep.id, ep.host, ep.port, ep.weight, ep.status, tostring(ep.zxid))
  end
  table.sort(u)
  local g = {}
  for k, id in ipairs(gone) do g[k] = id end
  table.sort(g)
  return { up = u, gone = g, nerr = nerr, nhook = nhook, retry = retry, reweigh = reweigh,
           degraded = degraded, nrej = nrej, spared = spared }
end

-- Service i's explain without its name and path (the two services' differ only there).
function R.explain(i)
  local e = require("cjson").decode(runtime.explain(i))
  e.service, e.path = nil, nil
  return e
end

return R
