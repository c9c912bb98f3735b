"""A service over several paths (issue 12, item 1), not dubbo-specific: a codec table that declares a source path
(here a "drain" list: nodes named host:port, and one node "list" whose data names more), each watched like the
service's own path. What a user sees: a change on the source alone re-judges the list and republishes it; only the
named node's data is read; the service is synced only once the source was read (a missing source is empty);
explain names the rule that made each decision; refused rules are skipped and counted."""

import json
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import SharedZooKeeper

CODEC = r'''
codec = {
  needs_data = false,
  decode = function(name)
    local h, p = name:match("^(.+):(%d+)$")
    if not h then return nil, "not host:port" end
    return { host = h, port = tonumber(p), meta = {} }
  end,
  sources = function(conf, sets)
    local list = { { key = "drain", path = conf.path .. "-drain", kind = "drain", data = { "list", "follow" } } }
    -- a rule may name another path to follow: the set of sources changes at run time
    local follow = sets.drain and sets.drain.__follow
    if follow then list[2] = { key = "extra", path = follow, kind = "drain" } end
    return list
  end,
  compile = function(kind, nodes)
    local set, errors = {}, {}
    for _, n in ipairs(nodes) do
      if n.name == "follow" then
        set.__follow = n.data
      elseif n.name == "list" then
        for hp in (n.data or ""):gmatch("[^,%s]+") do set[hp] = "list" end
      elseif n.name:match("^bad") then
        errors[#errors + 1] = { name = n.name, why = "not host:port" }
      else
        set[n.name] = "node " .. n.name
        -- the data of a node not named in `data` is never read
        if n.data ~= nil then errors[#errors + 1] = { name = n.name, why = "its data was read" } end
      end
    end
    return set, errors
  end,
  configure = function(ep, sets)
    local hp = ep.host .. ":" .. ep.port
    local by = (sets.drain or {})[hp] or (sets.extra or {})[hp]
    if not by then return ep end
    local c = { host = ep.host, port = ep.port, weight = ep.weight, meta = ep.meta, status = "drained" }
    return c, { "drain: " .. by .. " drains it" }
  end,
  routes = function(sets)
    if sets.drain and sets.drain["route"] then
      return { { condition = "=> port = 2", source = "drain" } }
    end
    return {}
  end,
},
'''


def invalid(s, service="svc", source="drain"):
    return s.metrics().get('scout_rules_invalid_total{service="%s",source="%s"}' % (service, source), 0)


class MultiSource(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        cls.kz = cls.zk.client()

    @classmethod
    def tearDownClass(cls):
        cls.zk.stop()

    def setUp(self):
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()

    def start(self, path):
        # protection off: these tests drop to an empty list on purpose
        body = 'path = "%s", protect = false,\n%s' % (path, CODEC)
        self.scout = Scout(policy({"svc": body}), self.zk.connect).start()
        return self.scout

    def test_a_change_on_the_source_alone_republishes(self):
        self.kz.create("/ms1/a/10.0.0.1:1", makepath=True)
        self.kz.create("/ms1/a/10.0.0.2:2")
        s = self.start("/ms1/a")
        # the source path does not exist: an empty source, and the service is synced
        wait_until(lambda: s.ids("svc") == ["10.0.0.1:1", "10.0.0.2:2"], what="initial list")
        self.assertEqual(s.state("svc"), "synced")
        index = int(s.endpoints("svc")[1]["X-Scout-Index"])

        self.kz.create("/ms1/a-drain/10.0.0.1:1", makepath=True)
        wait_until(lambda: s.ids("svc") == ["10.0.0.2:2"], what="drained by the source")
        self.assertGreater(int(s.endpoints("svc")[1]["X-Scout-Index"]), index)
        ex = json.loads(s.request("/v1/explain/svc")[2])
        verdicts = {c["id"]: c for c in ex["children"]}
        self.assertEqual(verdicts["10.0.0.1:1"]["verdict"], "down")
        self.assertEqual(verdicts["10.0.0.1:1"]["rules"], ["drain: node 10.0.0.1:1 drains it"])
        self.assertNotIn("rules", verdicts["10.0.0.2:2"])
        self.assertEqual([(x["key"], x["path"]) for x in ex["sources"]], [("drain", "/ms1/a-drain")])

        # the rule goes: the endpoint is back
        self.kz.delete("/ms1/a-drain/10.0.0.1:1")
        wait_until(lambda: s.ids("svc") == ["10.0.0.1:1", "10.0.0.2:2"], what="undrained")

        # the named node's data is read and watched: a data change alone re-judges
        self.kz.create("/ms1/a-drain/list", b"10.0.0.2:2")
        wait_until(lambda: s.ids("svc") == ["10.0.0.1:1"], what="drained by the list's data")
        self.kz.set("/ms1/a-drain/list", b"10.0.0.1:1")
        wait_until(lambda: s.ids("svc") == ["10.0.0.2:2"], what="the list's data changed")

        # other nodes' data is never read
        self.kz.create("/ms1/a-drain/10.9.9.9:9", b"payload")
        wait_until(lambda: any(x.get("nodes") == 2 for x in json.loads(s.request("/v1/explain/svc")[2])["sources"]),
                   what="third node seen")
        self.assertEqual(s.ids("svc"), ["10.0.0.2:2"])
        self.assertFalse(json.loads(s.request("/v1/explain/svc")[2])["sources"][0]["invalid"])   # {} or []

    def test_refused_rules_are_skipped_and_counted(self):
        self.kz.create("/ms2/a/10.0.0.1:1", makepath=True)
        self.kz.create("/ms2/a-drain/bad-rule", makepath=True)
        s = self.start("/ms2/a")
        wait_until(lambda: s.ids("svc") == ["10.0.0.1:1"], what="initial list")
        wait_until(lambda: invalid(s) == 1, what="counted")
        self.kz.create("/ms2/a-drain/bad-two")
        self.kz.create("/ms2/a-drain/10.0.0.1:1")
        wait_until(lambda: s.ids("svc") == [], what="the good rule applies")
        self.assertEqual(invalid(s), 2)
        ex = json.loads(s.request("/v1/explain/svc")[2])
        self.assertEqual(sorted(e["name"] for e in ex["sources"][0]["invalid"]), ["bad-rule", "bad-two"])

    def test_source_routes_come_before_the_policys_and_reach_pick_and_settings(self):
        self.kz.create("/ms3/a/10.0.0.1:1", makepath=True)
        self.kz.create("/ms3/a/10.0.0.2:2")
        s = self.start("/ms3/a")
        wait_until(lambda: s.ids("svc") == ["10.0.0.1:1", "10.0.0.2:2"], what="initial list")
        picks = {json.loads(s.request("/v1/pick/svc")[2])["port"] for _ in range(10)}
        self.assertEqual(picks, {1, 2})
        self.kz.create("/ms3/a-drain/route", makepath=True)
        wait_until(lambda: [x["source"] for x in json.loads(s.request("/v1/explain/svc")[2])["routes"]] == ["drain"],
                   what="route listed with its source")
        picks = {json.loads(s.request("/v1/pick/svc")[2])["port"] for _ in range(10)}
        self.assertEqual(picks, {2})

    def test_rules_already_there_apply_to_the_first_list(self):
        # the rule is in ZooKeeper before scout starts: the first list published already has it applied (the
        # service waits for every source's first read), so the drained endpoint is never served
        self.kz.create("/ms4/a/10.0.0.1:1", makepath=True)
        self.kz.create("/ms4/a/10.0.0.2:2")
        self.kz.create("/ms4/a-drain/list", b"10.0.0.1:1", makepath=True)
        s = self.start("/ms4/a")
        wait_until(lambda: s.state("svc") == "synced", what="synced")
        self.assertEqual(s.ids("svc"), ["10.0.0.2:2"])
        self.assertEqual(s.metric("scout_service_publishes_total", "svc"), 1)

    def test_the_set_of_sources_follows_the_rules(self):
        self.kz.create("/ms5/a/10.0.0.1:1", makepath=True)
        self.kz.create("/ms5/a/10.0.0.2:2")
        self.kz.create("/ms5/x/10.0.0.1:1", makepath=True)
        self.kz.create("/ms5/y/10.0.0.2:2", makepath=True)
        s = self.start("/ms5/a")
        wait_until(lambda: s.ids("svc") == ["10.0.0.1:1", "10.0.0.2:2"], what="initial list")
        # a new source: watched, read, applied
        self.kz.create("/ms5/a-drain/follow", b"/ms5/x", makepath=True)
        wait_until(lambda: s.ids("svc") == ["10.0.0.2:2"], what="the followed path's rule applies")
        # and it follows changes of that path like any watched one
        self.kz.create("/ms5/x/10.0.0.2:2")
        wait_until(lambda: s.ids("svc") == [], what="a change on the new source")
        # moved elsewhere: the old source is retired (its rules no longer apply), the new one read
        self.kz.set("/ms5/a-drain/follow", b"/ms5/y")
        wait_until(lambda: s.ids("svc") == ["10.0.0.1:1"], what="moved to another path")
        self.assertEqual([x["path"] for x in json.loads(s.request("/v1/explain/svc")[2])["sources"]],
                         ["/ms5/a-drain", "/ms5/y"])
        self.assertGreaterEqual(s.metric("scout_zk_watches_retired_total"), 1)
        # the retired path's changes reach nothing any more; the new one's do
        self.kz.delete("/ms5/x/10.0.0.2:2")
        self.kz.delete("/ms5/y/10.0.0.2:2")
        wait_until(lambda: s.ids("svc") == ["10.0.0.1:1", "10.0.0.2:2"], what="the new source's change")


if __name__ == "__main__":
    unittest.main()
