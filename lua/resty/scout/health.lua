-- resty.scout.health: passive health for resty.scout. A try that failed is counted against its endpoint; after
-- max_fails failures within fail_timeout the endpoint is marked down for fail_timeout. With a lua_shared_dict the
-- counts and marks are shared by the workers ("scout:f:<addr>" = failures, "scout:d:<addr>" = time the mark
-- ends, "scout:v" bumped on every mark); without one they are this worker's own. Each worker keeps a copy of the
-- marks and re-reads the dict from its timer only when "scout:v" moved.
--
-- What it must never do: touch the dict or allocate on a pick. The pick path asks any() and is_down(), which
-- read this worker's copy only; the dict is written on failure (the retry path) and read from the timer. Marks
-- only ever steer picks: whether to fail open when everything is down is the caller's call.

local clear_tab = require "table.clear"

local ngx = ngx
local ngx_log = ngx.log
local ngx_now = ngx.now
local WARN = ngx.WARN

local sub = string.sub

local DOWN_PREFIX = "scout:d:"    -- shared dict: "scout:d:<addr>" = time the mark ends; "scout:f:<addr>" = fails
local FAIL_PREFIX = "scout:f:"
local VERSION_KEY = "scout:v"     -- bumped on every mark, so workers re-read the marks only when it moves

local _M = {}

local dict                  -- ngx.shared[dict_name] or nil
local dict_name
local max_fails = 1
local fail_timeout = 10
local dict_version          -- VERSION_KEY as last seen
local down = {}             -- addr -> time the mark ends (this worker's copy of the dict's marks)
local ndown = 0             -- entries in down
local down_until = 0        -- latest end among them: past it, down is cleared
local local_fails = {}      -- addr -> { count, since } when there is no dict

-- configure(shared_dict | nil, its name, max_fails, fail_timeout): from init_worker, options already checked.
function _M.configure(d, name, fails, timeout)
  dict, dict_name, max_fails, fail_timeout = d, name, fails, timeout
end

-- keys(addr) -> the dict keys of addr's down mark and failure count, built once per endpoint per snapshot.
function _M.keys(addr)
  return DOWN_PREFIX .. addr, FAIL_PREFIX .. addr
end

local function clear_down()
  clear_tab(down)
  ndown, down_until = 0, 0
end

local function add_down(addr, untl)
  if down[addr] == nil then ndown = ndown + 1 end
  down[addr] = untl
  if untl > down_until then down_until = untl end
end

-- sync(now), from the timer: re-read the marks when another worker (or this one) changed them; forget them
-- once they are all over.
function _M.sync(now)
  if dict then
    local v = dict:get(VERSION_KEY)
    if v ~= dict_version then
      dict_version = v
      clear_down()
      local keys = dict:get_keys(0)
      local plen = #DOWN_PREFIX
      for i = 1, #keys do
        local k = keys[i]
        if sub(k, 1, plen) == DOWN_PREFIX then
          local untl = dict:get(k)
          if untl and untl > now then add_down(sub(k, plen + 1), untl) end
        end
      end
      return
    end
  end
  if ndown > 0 and now >= down_until then
    clear_down()
  end
end

-- any() -> whether some endpoint may be down: when not, a pick needs neither the clock nor a lookup.
function _M.any()
  return ndown > 0
end

function _M.is_down(ep, now)
  local untl = down[ep.addr]
  return untl ~= nil and untl > now
end

-- fail(ep): a try on ep failed: count it and mark ep down after max_fails within fail_timeout.
function _M.fail(ep)
  local now = ngx_now()
  local timeout = fail_timeout
  local n
  if dict then
    local err
    n, err = dict:incr(ep.fkey, 1, 0, timeout)
    if not n then
      ngx_log(WARN, "scout: shared dict \"", dict_name, "\": ", err)
      n = 1
    end
  else
    local f = local_fails[ep.addr]
    if f == nil or now - f[2] >= timeout then
      f = { 0, now }
      local_fails[ep.addr] = f
    end
    f[1] = f[1] + 1
    n = f[1]
  end
  if n >= max_fails then
    local untl = now + timeout
    add_down(ep.addr, untl)
    if dict then
      dict:set(ep.dkey, untl, timeout)
      dict:incr(VERSION_KEY, 1, 0)
      dict:delete(ep.fkey)
    else
      local_fails[ep.addr] = nil
    end
    ngx_log(WARN, "scout: endpoint ", ep.id, " (", ep.addr, ") marked down for ", timeout, "s")
  end
end

return _M
