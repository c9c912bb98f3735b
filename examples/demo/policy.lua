-- A first scout policy: three services, one per common registry shape. `make run` starts it against a throwaway
-- ZooKeeper (examples/demo/run.sh passes --zk and --api, which override the two addresses below); copy it as the
-- starting point for your own and check it with `scout check policy.lua` (no ZooKeeper needed).
--
-- A policy is plain Lua: blocks of settings plus functions. The functions (filter, delay, on_change) run inside
-- the agent on every change; one that errors or runs too long is stopped, logged, and the last good list stands.

zookeeper {
  servers = "127.0.0.1:2181",   -- host:port[,host:port...][/chroot]; --zk or $SCOUT_ZK override it
  session_timeout = "10s",      -- a duration; a bare number is ms. While ZooKeeper is unreachable scout keeps
                                -- serving what it last saw
}

api {
  listen = "127.0.0.1:8500",    -- or "unix:/run/scout/scout.sock"; --api overrides it
}

-- 1. The simplest registry: every child of the path is named host:port and is an endpoint (weight 1, no meta).
--    Nothing is read but the child list.
service "web" {
  path  = "/demo/web",
  codec = "plain",
}

-- 2. Children with JSON data: /demo/orders/<id> holds
--      {"host":"10.0.1.7","port":8080,"weight":10,"meta":{"zone":"a"}}
--    Same "plain" codec: a child whose name is not host:port is read for its data.
service "orders" {
  path  = "/demo/orders",
  codec = "plain",

  -- Which endpoints count. Canary instances register like any other; we keep them out of the published list,
  -- so clients of /v1/services/orders never see them. Return true to keep an endpoint.
  filter = function(ep)
    return ep.meta.zone ~= "canary"
  end,

  -- When to re-read after a watch fires: ms or a duration like "500ms" (0 = now); events inside the wait are
  -- folded into one read.
  -- ev.kind is one of: children, data, removed, created, deleted. A child added or removed shows up as
  -- "children" (on the parent; "removed" too, for a child whose data is watched): we wait 500 ms for those, so
  -- a rolling restart reaches clients as a few batched changes, not one per instance. A weight change ("data")
  -- goes out at once. ZooKeeper does not say which children changed, so "children" covers adds and removals.
  delay = function(ev)
    if ev.kind == "children" or ev.kind == "removed" then return 500 end
    return 0
  end,

  -- Called on every change of the list, with the new list (svc.endpoints) and what changed. Keep it short:
  -- it runs in the
  -- agent's only thread. io.stderr is unbuffered, so the line lands in the agent's log right away.
  on_change = function(svc, diff)
    local function ids(eps)
      local out = {}
      for i, ep in ipairs(eps) do out[i] = ep.id end
      return table.concat(out, ",")
    end
    print(string.format("on_change %s: %d endpoints; +[%s] -[%s] ~[%s]", svc.name, #svc.endpoints,
      ids(diff.added), ids(diff.removed), ids(diff.changed)))
  end,
}

-- 3. A real wire format: Apache Dubbo providers. Each child is a URL-encoded dubbo URL, e.g.
--      dubbo%3A%2F%2F10.0.0.1%3A20880%2Fcom.acme.DemoService%3Fapplication%3Ddemo%26...%26weight%3D100
--    The codec reads host, port and weight (with dubbo's warm-up) from it; every URL parameter lands in ep.meta.
service "demo-service" {
  path  = "/dubbo/com.acme.DemoService/providers",
  codec = "dubbo",
}
