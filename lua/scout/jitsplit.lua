-- scout.jitsplit: a function run compiled for one kind of call and interpreted for another. scout.runtime's update
-- is hot for both a change (one name, interpreted: LuaJIT kept recording and aborting traces through it, ~10k
-- instructions a change) and a sync's batch (compiled: its loops gain from traces, 20 M at 1,000 x 10). LuaJIT
-- turns the JIT off per function prototype, so the batch's side is a copy: the same bytecode loaded again, its
-- upvalues joined to the original's (state stays shared), with the helpers it calls swapped for their own copies.
-- Moved out of scout.runtime as a concern of its own; it keeps no state and never changes what a function does.

local loadstring, dump = loadstring, string.dump   -- the real ones (the sandbox wraps the global)
local getupvalue, setupvalue, upvaluejoin = debug.getupvalue, debug.setupvalue, debug.upvaluejoin
local ipairs, pairs, type = ipairs, pairs, type

local M = {}

-- fn's bytecode loaded again (with the JIT on, whatever fn's is), its upvalues fn's own but those swap replaces
local function copy_of(fn, swap)
  local copy = loadstring(dump(fn))
  for k = 1, math.huge do
    local name, v = getupvalue(fn, k)
    if name == nil then break end
    if swap[v] then setupvalue(copy, k, swap[v]) else upvaluejoin(copy, k, fn, k) end
  end
  return copy
end

-- The compiled copy of fn, and the JIT off for fn, its helpers (functions among its upvalues, each copied after
-- those it calls: dependency order), the functions of modules (tables among the upvalues, copied whole), and off
-- (more functions to run interpreted only). Without the JIT, fn itself.
function M.split(fn, helpers, modules, off)
  if not jit then return fn end
  local swap, interp = {}, { fn }
  for _, f in ipairs(off or {}) do interp[#interp + 1] = f end
  for _, mod in ipairs(modules) do
    local t = {}
    for k, v in pairs(mod) do
      if type(v) == "function" then t[k] = copy_of(v, swap); interp[#interp + 1] = v else t[k] = v end
    end
    swap[mod] = t
  end
  for _, f in ipairs(helpers) do swap[f] = copy_of(f, swap); interp[#interp + 1] = f end
  local compiled = copy_of(fn, swap)
  for _, f in ipairs(interp) do jit.off(f) end
  return compiled
end

return M
