-- policy.lua — the scout agent of the storm benchmark (storm.py starts M of these).
--
-- Why: the issue's two scout strategies differ only in `delay`; storm.py sets
-- STORM_DELAY (0 or 500) in each agent's environment so one file serves both and
-- the number reaches the agent as a plain number (applied in C, no hook call per
-- event). Providers are ids with JSON data, so the plain codec must read data for
-- every new child: the "one data read per new child" half of the minimum.
zookeeper { servers = "x:1" }  -- --zk overrides servers

service "svc" {
  path = "/storm/svc", codec = "plain",
  delay = tonumber(os.getenv("STORM_DELAY") or "0"),
}
