-- Shared helpers for the selector and routing specs (20_* .. 28_*): endpoint builders, a chi-square check with a
-- generous threshold (the seeds are fixed, so a pass is deterministic; the threshold only has to be sane), and a
-- recorder of JIT trace events. Not a spec itself (no _spec suffix).

local format = string.format

local M = {}

function M.ep(id, weight, meta, host, port)
  return { id = id, host = host or ("10.0.0." .. (#id % 250 + 1)), port = port or 8080, weight = weight or 1,
           meta = meta or {}, status = "up", zxid = 1 }
end

-- eps{ a = 5, b = 1 } is unordered; use list form: eps({ "a", 5 }, { "b", 1 })
function M.eps(...)
  local out = {}
  for i = 1, select("#", ...) do
    local spec = select(i, ...)
    out[i] = M.ep(spec[1], spec[2], spec[3])
  end
  return out
end

function M.ids(n, weight)
  local out = {}
  for i = 1, n do
    out[i] = M.ep("node" .. i, weight or 1)
  end
  return out
end

-- chi-square statistic of observed counts against expected probabilities
function M.chi2(counts, probs, total)
  local x = 0
  for k, p in pairs(probs) do
    local e = p * total
    local o = counts[k] or 0
    x = x + (o - e) ^ 2 / e
  end
  return x
end

-- upper critical value of chi-square with df degrees of freedom at alpha ~ 1e-6 (Wilson-Hilferty, z = 4.75)
function M.chi2_crit(df)
  local z = 4.75
  local a = 2 / (9 * df)
  return df * (1 - a + z * math.sqrt(a)) ^ 3
end

-- run fn() with trace recorders attached; returns the number of traces completed, a list of abort messages, the
-- set of Lua functions with bytecode inside a completed trace (from the "record" events of traces that stopped
-- rather than aborted), and a list of traces that ended in a stitch (a call the JIT could not compile).
function M.record_traces(fn)
  local jutil = require "jit.util"
  local vmdef = require "jit.vmdef"
  local stops, aborts, compiled, stitches = 0, {}, {}, {}
  local pending = {}
  local function fmtloc(func, pc)
    local fi = jutil.funcinfo(func, pc)
    if fi.loc then return fi.loc end
    if fi.ffid then return vmdef.ffnames[fi.ffid] or "builtin" end
    return tostring(func)
  end
  local function on_trace(what, tr, func, pc, otr, oex)
    if what == "start" then
      pending[tr] = {}
    elseif what == "stop" then
      stops = stops + 1
      for f in pairs(pending[tr] or {}) do compiled[f] = true end
      local ti = jutil.traceinfo(tr)
      if ti and ti.linktype == "stitch" then
        stitches[#stitches + 1] = fmtloc(func, pc) .. " -- stitch"
      end
      pending[tr] = nil
    elseif what == "abort" then
      pending[tr] = nil
      local msg = otr
      if type(otr) == "number" then
        local info = oex
        if type(info) == "function" then info = fmtloc(info, 0) end
        local ok, m = pcall(format, vmdef.traceerr[otr] or tostring(otr), info)
        msg = ok and m or tostring(vmdef.traceerr[otr])
      end
      aborts[#aborts + 1] = fmtloc(func, pc) .. " -- " .. tostring(msg)
    end
  end
  local function on_record(tr, func)
    local p = pending[tr]
    if p then p[func] = true end
  end
  jit.flush()
  jit.attach(on_trace, "trace")
  jit.attach(on_record, "record")
  local ok, err = pcall(fn)
  jit.attach(on_record)
  jit.attach(on_trace)
  if not ok then error(err, 0) end
  return stops, aborts, compiled, stitches
end

return M
