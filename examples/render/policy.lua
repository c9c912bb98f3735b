-- Rendered files for tools that only read files: scout writes them atomically and runs the reload command once
-- per real change (a burst waits for `min` of quiet, never longer than `max`). Try it:
--   build/scout check examples/render/policy.lua
--   build/scout run -c examples/render/policy.lua --zk 127.0.0.1:2181
-- Templates are lua-cosmo: $name inserts a field, $list[[ ... ]] repeats for each item. The view has `services`
-- (each with name, path, endpoints) and every service's endpoints under its own name; an endpoint has id, host,
-- port, address ("host:port"), weight, status, zxid and meta.

zookeeper { servers = "127.0.0.1:2181", session_timeout = "10s" }
api { listen = "127.0.0.1:8500" }

service "orders" { path = "/services/orders", codec = "curator" }
service "users"  { path = "/services/users",  codec = "curator" }

render {
  template = "haproxy.tpl",                       -- relative to this file
  dest     = "/tmp/scout-haproxy-backends.cfg",
  command  = "haproxy -c -f /tmp/scout-haproxy-backends.cfg >/dev/null 2>&1 || true",  -- e.g. systemctl reload haproxy
  wait     = { min = "2s", max = "10s" },
}

render {
  template = "nginx-upstream.tpl",
  dest     = "/tmp/scout-nginx-upstreams.conf",
  command  = "nginx -t -q && nginx -s reload || true",
  wait     = { min = "2s", max = "10s" },
}

-- A template may also be a Lua function of the view:
render {
  template = function(view)
    local lines = {}
    for _, svc in ipairs(view.services) do
      lines[#lines + 1] = ("%s %d"):format(svc.name, #svc.endpoints)
    end
    return table.concat(lines, "\n") .. "\n"
  end,
  dest = "/tmp/scout-service-counts.txt",
}
