-- The policy examples/systemd/scout.service runs: the paths match the unit's
-- RuntimeDirectory (the API socket) and StateDirectory (the disk snapshot).
zookeeper { servers = "127.0.0.1:2181", session_timeout = 10000 }
api       { listen = "unix:/run/scout/scout.sock" }
cache     { dir = "/var/lib/scout" }
agent     { drain = "5s" }

service "orders" {
  path  = "/services/orders",
  codec = "curator",
}
