-- Shared by the policy and runtime specs: write a policy file to a temp path (os.tmpname) and remember it for
-- cleanup; `state`, a table a policy file reaches with `require "policy_helper"`, lets a spec steer the functions
-- the policy declares (make a filter raise, pick what delay returns) and read what they saw.

local open = io.open
local remove = os.remove
local tmpname = os.tmpname
local pairs = pairs

local H = { state = {} }

local files = {}

-- Write `src` to a fresh temp file; returns its path.
function H.write(src)
  local path = tmpname()
  local f = assert(open(path, "w"))
  assert(f:write(src))
  assert(f:close())
  files[#files + 1] = path
  return path
end

function H.cleanup()
  for i = 1, #files do remove(files[i]) end
  files = {}
end

function H.reset_state()
  local s = H.state
  for k in pairs(s) do s[k] = nil end
  return s
end

-- conf.services as rows, one table per service: runtime.load hands C one column per setting (conf.c), delay_ms
-- sparse (0 when a service has none, as C reads it).
function H.conf_rows(services)
  local rows = {}
  for i = 1, #services.name do
    rows[i] = { name = services.name[i], path = services.path[i], codec = services.codec[i],
                delay_ms = services.delay_ms[i] or 0, needs_data = services.needs_data[i],
                has_sources = services.has_sources[i] }
  end
  return rows
end

return H
