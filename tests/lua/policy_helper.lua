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

return H
