-- scout.render: the text of a `render` block (a cosmo template or a function) from what every service publishes.
-- The C side (agent/publish/render.c) writes it atomically, off the loop, when the bytes changed.

local type = type
local pairs = pairs
local ipairs = ipairs
local sort = table.sort

local E = require "scout.util.endpoint"

local M = {}

local function by_id(a, b) return a.id < b.id end

-- What a template sees: services = array of { name, path, endpoints = sorted array }, and each service's endpoints
-- also under its name (for cosmo: $orders[[ server $id $host:$port ]]). services: scout.runtime's state per service.
local function view(services)
  local out = { services = {} }
  for i, s in ipairs(services) do
    local eps = {}
    for _, ep in pairs(s.published) do
      eps[#eps + 1] = { id = ep.id, host = ep.host, port = ep.port, weight = ep.weight, status = ep.status,
                        zxid = ep.zxid, meta = ep.meta,
                        address = E.join_hostport(ep.host, ep.port) }   -- [v6]:port, as nginx and HAProxy want it
    end
    sort(eps, by_id)
    out.services[i] = { name = s.name, path = s.path, endpoints = eps }
    out[s.name] = eps
  end
  sort(out.services, function(a, b) return a.name < b.name end)
  return out
end

-- The render block's text, or nil, err.
local cosmo
function M.text(r, services)
  if type(r.template) == "function" then
    local text = r.template(view(services))
    if type(text) ~= "string" then return nil, "render template function returned " .. type(text) end
    return text
  end
  cosmo = cosmo or require "cosmo"
  r.compiled = r.compiled or cosmo.compile(r.template_text)
  return r.compiled(view(services))
end

return M
