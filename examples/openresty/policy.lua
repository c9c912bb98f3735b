-- The policy of examples/openresty: nginx (nginx.conf next to this file) starts the agent with it and balances
-- "orders" from the shared-memory snapshot the agent writes. SCOUT_ZK (kept for the agent by nginx.conf's
-- `env SCOUT_ZK;`) overrides the ZooKeeper address below.
zookeeper { servers = "127.0.0.1:2181", session_timeout = "10s" }
api       { listen = "127.0.0.1:8500" }                 -- curl 127.0.0.1:8500/v1/services/orders
shm       { path = "/dev/shm/scout-openresty-example" }  -- nginx.conf's init_worker reads the same path

service "orders" {
  path     = "/services/orders",
  codec    = "plain",           -- children "10.0.0.5:8080", or any name with JSON data
                                -- {"host": "10.0.0.6", "port": 8080, "weight": 2, "meta": {"tag": "canary"}}
  selector = "swrr",            -- nginx's smooth weighted round robin; "chash" hashes ?key= / X-Scout-Key
  route    = { { tag = true } }, -- X-Scout-Tag: canary goes to endpoints tagged canary, other requests never do
}
