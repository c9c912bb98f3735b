-- dubbo, as a dubbo consumer sees it: the providers of one interface, shaped by dubbo-admin's configurators, the
-- routers and the config center's YAML rules. `scout check examples/dubbo/policy.lua` validates it; publish.py
-- (beside it) writes providers and rules the way dubbo and dubbo-admin do, to watch scout follow them.

zookeeper { servers = "127.0.0.1:2181", session_timeout = "10s" }
api       { listen = "127.0.0.1:8500" }

-- The short form: scout derives /dubbo/com.acme.DemoService/providers, codec "dubbo", and the rules' scope.
-- group/version pick the providers this consumer calls (leave them out to take every provider of the path);
-- application scopes the rules written for this consumer ("<application>.configurators" ...); host is this
-- consumer's address, for rules scoped to consumer hosts. migration is dubbo 3's step: APPLICATION_FIRST (the
-- default) also follows /dubbo/mapping/<interface> to the applications' instances under /services/<app> and
-- serves them when there are any.
service "demo" {
  dubbo = { interface = "com.acme.DemoService", application = "demo-consumer", host = "10.0.0.5",
            migration = "APPLICATION_FIRST" },
  selector = "swrr",
}

-- The explicit form keeps working and reads the same rules; the scope comes from the path and codec_options.
service "demo-explicit" {
  path = "/dubbo/com.acme.DemoService/providers",
  codec = "dubbo",
  codec_options = { application = "demo-consumer" },
  -- the policy's own route rules come after dubbo's routers
  route = { { condition = "method = sayGoodbye => dubbo = 2.0.2" } },
}
