"""dubbo governance as a dubbo consumer sees it (issue 12): configurators, routers and the config center's YAML
rules, published with kazoo into a real ZooKeeper byte for byte as dubbo 2.6, 2.7 and 3.x write them (the
fixtures in tests/fixtures/dubbo/, each naming the dubbo class or page it comes from), change what the API lists
and what /v1/pick answers, exactly as the fixture says a dubbo consumer behaves. Every fixture scenario is a test
of its own (rules there before scout starts); more tests move rules and providers after the start, in between,
and count refused rules."""

import json
import os
import re
import signal
import unittest
import urllib.parse

from scoutharness import Scout, policy, wait_until
from zkharness import SharedZooKeeper

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "dubbo")
with open(os.path.join(FIXTURES, "fixtures.json")) as f:
    FX = json.load(f)
PROVIDERS = FX["providers"][0]["path"]
ADDRS = sorted(p["address"] for p in FX["providers"])
SOURCE_OF = {"/dubbo/%s/configurators" % FX["interface"]: "configurators",
             "/dubbo/%s/routers" % FX["interface"]: "routers",
             "/dubbo/config/dubbo": "config"}


def node_bytes(node):
    if node.get("file"):
        with open(os.path.join(FIXTURES, node["file"]), "rb") as f:
            return f.read()
    return b""


def service_body(consumer, extra=""):
    opts = ", ".join('%s = "%s"' % (k, consumer[k]) for k in ("application", "host") if consumer.get(k))
    return ('path = "%s", codec = "dubbo", codec_options = { %s },\n'
            'selector = "rr", protect = false,%s' % (PROVIDERS, opts, extra))


def invalid(s, source):
    return s.metrics().get('scout_rules_invalid_total{service="demo",source="%s"}' % source, 0)


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        cls.kz = cls.zk.client()

    @classmethod
    def tearDownClass(cls):
        cls.zk.stop()

    def setUp(self):
        self.scout = None
        if self.kz.exists("/dubbo"):
            self.kz.delete("/dubbo", recursive=True)

    def tearDown(self):
        if self.scout:
            self.scout.stop()

    def start(self, consumer=None, extra=""):
        c = dict(FX["consumer"])
        c.update(consumer or {})
        self.scout = Scout(policy({"demo": service_body(c, extra)}), self.zk.connect).start()
        return self.scout

    def add_providers(self, addrs=None):
        for p in FX["providers"]:
            if addrs is None or p["address"] in addrs:
                self.kz.create(p["path"] + "/" + p["name"], makepath=True)

    def remove_provider(self, addr):
        p = [p for p in FX["providers"] if p["address"] == addr][0]
        self.kz.delete(p["path"] + "/" + p["name"])

    def add_nodes(self, nodes):
        for n in nodes:
            self.kz.create(n["path"] + "/" + n["name"], node_bytes(n), makepath=True)

    def remove_nodes(self, nodes):
        for n in nodes:
            self.kz.delete(n["path"] + "/" + n["name"])

    # -- what a user sees --------------------------------------------------------------------------------------
    def listed(self, s=None):
        """address -> (weight, dubbo.tag, meta) of every provider served."""
        out = {}
        for ep in (s or self.scout).endpoints("demo")[0]:
            out["%s:%d" % (ep["host"], ep["port"])] = (ep["weight"], ep["meta"].get("dubbo.tag"), ep["meta"])
        return out

    def picks(self, ctx, n=8):
        """The set of providers /v1/pick answers for a request (rr: n picks visit every candidate)."""
        q = urllib.parse.urlencode(ctx)
        got = set()
        for _ in range(n):
            status, _, body = self.scout.request("/v1/pick/demo" + ("?" + q if q else ""))
            if status == 503:
                self.assertEqual(got, set(), "some picks answered, others found no endpoint")
                return set()
            self.assertEqual(status, 200, body)
            ep = json.loads(body)
            got.add("%s:%d" % (ep["host"], ep["port"]))
        return got

    def source_nodes(self):
        ex = json.loads(self.scout.request("/v1/explain/demo")[2])
        return {x["key"]: x["nodes"] for x in ex.get("sources") or []}


def expected_list(sc):
    out = {}
    for addr, e in sc["expect"].items():
        if e["status"] == "up":
            out[addr] = (e["weight"], e["tag"])
    return out


def make_scenario_test(sc):
    def test(self):
        self.add_providers()
        self.add_nodes(sc["nodes"])
        s = self.start(sc.get("consumer"))
        want = expected_list(sc)
        counts = {}
        for n in sc["nodes"]:
            key = SOURCE_OF[n["path"]]
            counts[key] = counts.get(key, 0) + 1
        refused = {}
        for n in sc["nodes"]:
            if n.get("refused"):
                key = SOURCE_OF[n["path"]]
                refused[key] = refused.get(key, 0) + 1

        def seen():
            got = {a: (w, t) for a, (w, t, _) in self.listed().items()}
            nodes = self.source_nodes()
            return (got == want and all(nodes.get(k) == v for k, v in counts.items())
                    and all(invalid(s, k) == v for k, v in refused.items()))
        wait_until(seen, what="%s: list %r, rules read and refusals counted" % (sc["id"], want))
        for addr, kv in (sc.get("meta") or {}).items():
            for k, v in kv.items():
                self.assertEqual(self.listed()[addr][2].get(k), v, "%s meta.%s" % (addr, k))
        for p in sc["picks"]:
            self.assertEqual(self.picks(p["ctx"]), set(p["addresses"]), "pick for %r" % p["ctx"])
        if refused:
            # the refused rules are named in explain, with why
            ex = json.loads(s.request("/v1/explain/demo")[2])
            named = {e["name"] for x in ex["sources"] for e in (x["invalid"] or [])}
            for n in sc["nodes"]:
                if n.get("refused"):
                    self.assertIn(n["name"], named)
    test.__doc__ = "%s (dubbo %s): %s" % (sc["id"], sc["dubbo"], sc["source"])
    return test


class Fixtures(Base):
    """Every fixture scenario, its rules in ZooKeeper before scout starts."""


for _sc in FX["scenarios"]:
    setattr(Fixtures, "test_fixture_" + re.sub(r"\W", "_", _sc["id"]), make_scenario_test(_sc))


def scenario(sid):
    return [s for s in FX["scenarios"] if s["id"] == sid][0]


class Governance(Base):
    def test_a_provider_disabled_by_an_override_after_start_is_no_longer_served(self):
        self.add_providers()
        s = self.start()
        wait_until(lambda: sorted(self.listed()) == ADDRS, what="three providers")
        rule = scenario("26-admin-disable")["nodes"]
        self.add_nodes(rule)
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.2:20880", "10.0.0.3:20880"], what="disabled")
        self.assertNotIn("10.0.0.1:20880", self.picks({}) | self.picks({"tag": "gray"}))
        ex = json.loads(s.request("/v1/explain/demo")[2])
        one = [c for c in ex["children"] if c.get("endpoint", {}).get("host") == "10.0.0.1"][0]
        self.assertEqual(one["verdict"], "down")
        self.assertTrue(any("override://10.0.0.1:20880" in r for r in one["rules"]), one)
        # the override goes: the provider is back
        self.remove_nodes(rule)
        wait_until(lambda: sorted(self.listed()) == ADDRS, what="enabled again")

    def test_a_weight_override_changes_the_weight_of_providers_that_come_later(self):
        # the rule is there first; the provider it names arrives, leaves and comes back: every time it is
        # served with the rule's weight, never with its own
        self.add_providers(["10.0.0.1:20880"])
        self.add_nodes(scenario("26-admin-weight")["nodes"])
        s = self.start()
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.1:20880"], what="one provider")
        index = int(s.endpoints("demo")[1]["X-Scout-Index"])
        self.add_providers(["10.0.0.2:20880"])
        wait_until(lambda: "10.0.0.2:20880" in self.listed(), what="second provider")
        self.assertEqual(self.listed()["10.0.0.2:20880"][0], 50)
        self.assertGreater(int(s.endpoints("demo")[1]["X-Scout-Index"]), index)
        self.remove_provider("10.0.0.2:20880")
        wait_until(lambda: "10.0.0.2:20880" not in self.listed(), what="gone")
        self.add_providers(["10.0.0.2:20880"])
        wait_until(lambda: "10.0.0.2:20880" in self.listed(), what="back")
        self.assertEqual(self.listed()["10.0.0.2:20880"][0], 50)

    def test_rules_between_provider_changes_and_a_rule_replaced(self):
        self.add_providers(["10.0.0.1:20880"])
        s = self.start()
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.1:20880"], what="one provider")
        # config-center YAML weight for 10.0.0.2 arrives before that provider does
        yaml = scenario("27-admin-weight")["nodes"]
        self.add_nodes(yaml)
        wait_until(lambda: self.source_nodes().get("config") == 1, what="rule read")
        self.add_providers(["10.0.0.2:20880", "10.0.0.3:20880"])
        wait_until(lambda: sorted(self.listed()) == ADDRS, what="all providers")
        self.assertEqual({a: w for a, (w, _, _) in self.listed().items()},
                         {"10.0.0.1:20880": 100, "10.0.0.2:20880": 200, "10.0.0.3:20880": 100})
        # the rule is rewritten in place (dubbo-admin sets the node's data): the data watch fires
        with open(os.path.join(FIXTURES, "config/27-admin-weight.configurators.yaml"), "rb") as f:
            text = f.read()
        self.assertIn(b"weight: 200", text)
        self.kz.set(yaml[0]["path"] + "/" + yaml[0]["name"], text.replace(b"weight: 200", b"weight: 300"))
        wait_until(lambda: self.listed()["10.0.0.2:20880"][0] == 300, what="rewritten rule")
        # and a rule that stops parsing is refused whole: the weight is the provider's own again, and counted
        self.kz.set(yaml[0]["path"] + "/" + yaml[0]["name"], b"configs: [oops")
        wait_until(lambda: self.listed()["10.0.0.2:20880"][0] == 100, what="refused rule")
        self.assertEqual(invalid(s, "config"), 1)

    def test_a_condition_router_changes_pick_for_the_consumer_host(self):
        self.add_providers()
        s = self.start()
        wait_until(lambda: sorted(self.listed()) == ADDRS, what="three providers")
        self.assertEqual(self.picks({"host": "10.0.0.5"}), {"10.0.0.1:20880", "10.0.0.2:20880"})
        rule = scenario("26-admin-route")["nodes"]
        self.add_nodes(rule)
        wait_until(lambda: self.picks({"host": "10.0.0.5"}) == {"10.0.0.2:20880"}, what="routed")
        # another consumer host is not concerned, and the list itself is unchanged
        self.assertEqual(self.picks({"host": "10.0.0.6"}), {"10.0.0.1:20880", "10.0.0.2:20880"})
        self.assertEqual(sorted(self.listed()), ADDRS)
        routes = json.loads(s.request("/v1/explain/demo")[2])["routes"]
        # explain lists the route rules in the order they apply, each with the source it comes from
        self.assertEqual([r["source"] for r in routes], ["routers", "tag router"])
        self.assertIn("10.0.0.1", json.dumps(routes[0]["rule"]))

    def test_a_tag_router_routes_a_tagged_request(self):
        self.add_providers()
        self.start()
        wait_until(lambda: sorted(self.listed()) == ADDRS, what="three providers")
        self.assertEqual(self.picks({"tag": "gray"}), {"10.0.0.3:20880"})    # the static tag
        self.add_nodes(scenario("27-docs-tag")["nodes"])
        wait_until(lambda: self.picks({"tag": "blue"}) == {"10.0.0.1:20880"}, what="tag rule applied")
        self.assertEqual(self.picks({"tag": "gray"}), {"10.0.0.2:20880"})
        self.assertEqual(self.listed()["10.0.0.1:20880"][1], "blue")

    def test_a_reload_keeps_the_rules_and_applies_the_new_scope(self):
        # the service is kept across SIGHUP (same name, path, codec): the new policy VM learns every source's
        # rules again, and a rule scoped to the consumer application it now names starts to apply
        self.add_providers()
        app_rule = scenario("26-manual-other-app")["nodes"]        # weight=10 for application other-consumer
        self.add_nodes(scenario("26-admin-disable")["nodes"] + app_rule)
        s = self.start()
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.2:20880", "10.0.0.3:20880"], what="disabled")
        self.assertEqual({w for w, _, _ in self.listed().values()}, {100})
        with open(s.policy_file, "w") as f:
            f.write(policy({"demo": service_body({"application": "other-consumer", "host": "10.0.0.5"})}))
        s.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: {w for w, _, _ in self.listed().values()} == {10}, what="the new scope's rule")
        self.assertEqual(sorted(self.listed()), ["10.0.0.2:20880", "10.0.0.3:20880"])   # still disabled
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)


class PolicySurface(Base):
    def test_dubbo_block_derives_path_codec_and_scope(self):
        # service "demo" { dubbo = { interface, group, application } }: the providers path and codec come from the
        # interface; the group picks the providers a dubbo consumer of that group calls, and rules scoped to it
        self.add_providers()
        grouped = ("dubbo://10.0.0.9:20880/com.acme.DemoService?application=demo-provider&group=g"
                   "&interface=com.acme.DemoService&side=provider&timestamp=1700000000000")
        self.kz.create(PROVIDERS + "/" + urllib.parse.quote(grouped, safe=""))
        body = ('dubbo = { interface = "com.acme.DemoService", group = "g", application = "demo-consumer" },\n'
                'selector = "rr", protect = false,')
        s = Scout(policy({"demo": body}), self.zk.connect).start()
        self.scout = s
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.9:20880"], what="only the group's provider")
        self.assertEqual(s.services()["demo"]["path"], PROVIDERS)
        rule = ("override://0.0.0.0/com.acme.DemoService?category=configurators&dynamic=false&group=g&weight=7")
        self.kz.create("/dubbo/com.acme.DemoService/configurators/" + urllib.parse.quote(rule, safe=""),
                       makepath=True)
        wait_until(lambda: self.listed()["10.0.0.9:20880"][0] == 7, what="the group's rule")
        ex = json.loads(s.request("/v1/explain/demo")[2])
        other = [c for c in ex["children"] if c.get("endpoint", {}).get("host") == "10.0.0.1"][0]
        self.assertEqual(other["verdict"], "down")
        self.assertIn("group (none) is not the consumer's group g", other["rules"])


class ApplicationLevel(Base):
    """dubbo 3 application-level discovery: the mapping /dubbo/mapping/<interface> names the applications whose
    instances (/services/<app>) provide the interface; APPLICATION_FIRST (dubbo 3's default) serves them when
    there are any, else the interface-level list; the mapping is followed as it changes."""

    def instance(self, app, host):
        fx = FX["dubbo3"]["instances"][0]
        with open(os.path.join(FIXTURES, fx["file"]), "rb") as f:
            data = f.read()
        data = data.replace(b"10.0.0.4", host.encode()).replace(b'"demo-provider"', b'"%s"' % app.encode())
        self.kz.create("/services/%s/%s:20880" % (app, host), data, makepath=True)

    def mapping(self, which):
        fx = [m for m in FX["dubbo3"]["mapping"] if m["file"].endswith(which)][0]
        with open(os.path.join(FIXTURES, fx["file"]), "rb") as f:
            data = f.read()
        if self.kz.exists(fx["path"]):
            self.kz.set(fx["path"], data)
        else:
            self.kz.create(fx["path"], data, makepath=True)

    def setUp(self):
        super().setUp()
        if self.kz.exists("/services"):
            self.kz.delete("/services", recursive=True)

    def start_app(self, migration=None):
        body = 'dubbo = { interface = "com.acme.DemoService", application = "demo-consumer"%s },\nprotect = false,' % (
            ', migration = "%s"' % migration if migration else "")
        self.scout = Scout(policy({"demo": body}), self.zk.connect).start()
        return self.scout

    def test_the_mapping_moves_the_interface_between_applications(self):
        self.add_providers(["10.0.0.1:20880", "10.0.0.2:20880"])
        self.mapping("mapping-one.txt")
        self.instance("demo-provider", "10.0.0.4")
        s = self.start_app()
        # application-level addresses exist: a dubbo 3 consumer calls them
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.4:20880"], what="application-level list")
        ex = json.loads(s.request("/v1/explain/demo")[2])
        one = [c for c in ex["children"] if c.get("endpoint", {}).get("host") == "10.0.0.1"][0]
        self.assertEqual(one["verdict"], "down")
        self.assertTrue(any(r.startswith("migration: step APPLICATION_FIRST: application") for r in one["rules"]))
        # the interface moves to an application with no instances yet: back to the interface-level list
        self.mapping("mapping-moved.txt")
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.1:20880", "10.0.0.2:20880"], what="interface list")
        self.assertEqual([x["key"] for x in json.loads(s.request("/v1/explain/demo")[2])["sources"]],
                         ["app:demo-provider-v2", "config", "configurators", "mapping", "migration", "routers"])
        # its first instance: the new application's list
        self.instance("demo-provider-v2", "10.0.0.6")
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.6:20880"], what="the new application's instance")
        # the old application is no longer followed
        self.instance("demo-provider", "10.0.0.7")
        self.instance("demo-provider-v2", "10.0.0.8")
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.6:20880", "10.0.0.8:20880"], what="a later instance")

    MIGRATION = "/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/demo-consumer.migration"

    def migration_rule(self, text):
        """The consumer application's MigrationRule as dubbo-admin writes it (key <application>.migration, group
        DUBBO_SERVICEDISCOVERY_MIGRATION; fields from MigrationRule, see the fixture dubbo3/migration-*.yaml)."""
        if self.kz.exists(self.MIGRATION):
            self.kz.set(self.MIGRATION, text)
        else:
            self.kz.create(self.MIGRATION, text, makepath=True)

    def migration_notes(self, s, host):
        ex = json.loads(s.request("/v1/explain/demo")[2])
        one = [c for c in ex["children"] if c.get("endpoint", {}).get("host") == host][0]
        return [r for r in one.get("rules") or [] if r.startswith("migration: ")]

    def test_the_migration_rule_moves_the_consumer_between_lists(self):
        # interface-level providers 10.0.0.1 and .2, and demo-provider's application-level instance 10.0.0.4
        self.add_providers(["10.0.0.1:20880", "10.0.0.2:20880"])
        self.mapping("mapping-one.txt")
        self.instance("demo-provider", "10.0.0.4")
        iface, app = ["10.0.0.1:20880", "10.0.0.2:20880"], ["10.0.0.4:20880"]
        s = self.start_app()        # the policy's step: APPLICATION_FIRST, dubbo 3's default
        wait_until(lambda: sorted(self.listed()) == app, what="application-level list (the policy's step)")
        # the operator moves the consumer application to interface-level addresses
        self.migration_rule(b"key: demo-consumer\nstep: FORCE_INTERFACE\n")
        wait_until(lambda: sorted(self.listed()) == iface, what="interface-level list (the rule's step)")
        notes = self.migration_notes(s, "10.0.0.4")
        self.assertTrue(notes and notes[0].startswith("migration: step FORCE_INTERFACE: interface addresses"), notes)
        self.assertIn("demo-consumer.migration", notes[0])
        # edited: the rule's entry for this interface comes before the rule's own step
        self.migration_rule(b"key: demo-consumer\nstep: FORCE_INTERFACE\ninterfaces:\n"
                            b"  - serviceKey: com.acme.DemoService\n    step: FORCE_APPLICATION\n")
        wait_until(lambda: sorted(self.listed()) == app, what="application-level list (the interface entry)")
        notes = self.migration_notes(s, "10.0.0.1")
        self.assertTrue(notes and "interfaces entry com.acme.DemoService" in notes[0], notes)
        # edited again: the entry for the mapped application gives step and threshold, over the rule's own; one
        # application address for two interface ones is under its threshold
        self.migration_rule(b"key: demo-consumer\nstep: FORCE_APPLICATION\napplications:\n"
                            b"  - serviceKey: demo-provider\n    step: APPLICATION_FIRST\n    threshold: 0.8\n")
        wait_until(lambda: sorted(self.listed()) == iface, what="interface-level list (the application entry)")
        notes = self.migration_notes(s, "10.0.0.4")
        self.assertTrue(notes and "1/2 < threshold 0.8" in notes[0], notes)
        # deleted: the policy's step again
        self.kz.delete(self.MIGRATION)
        wait_until(lambda: sorted(self.listed()) == app, what="application-level list (the policy's step again)")
        # a rule that does not parse (a threshold that is no number) is counted and refused whole: its step, valid
        # on its own, is not applied; a later instance is judged with it in place, under the policy's step
        self.migration_rule(b"key: demo-consumer\nstep: FORCE_INTERFACE\nthreshold: high\n")
        wait_until(lambda: invalid(s, "migration") == 1, what="the refused rule counted")
        # so is one whose entry for another interface names a step dubbo does not know (MigrationRule.parse throws)
        self.migration_rule(b"key: demo-consumer\nstep: FORCE_INTERFACE\ninterfaces:\n"
                            b"  - serviceKey: com.acme.OtherService\n    step: SOMETIMES\n")
        wait_until(lambda: invalid(s, "migration") == 2, what="the second refused rule counted")
        self.instance("demo-provider", "10.0.0.7")
        wait_until(lambda: "10.0.0.7:20880" in self.listed(), what="a later instance")
        self.assertEqual(sorted(self.listed()), ["10.0.0.4:20880", "10.0.0.7:20880"])
        ex = json.loads(s.request("/v1/explain/demo")[2])
        named = {e["name"] for x in ex["sources"] if x["key"] == "migration" for e in (x["invalid"] or [])}
        self.assertEqual(named, {"demo-consumer.migration"})

    def test_a_migration_rule_moves_a_path_form_consumer_to_application_level(self):
        # the explicit form with no migration step reads interface-level providers only, until its application's
        # rule asks for application-level addresses; with the rule gone it stops following the mapping again
        self.add_providers(["10.0.0.1:20880"])
        self.mapping("mapping-one.txt")
        self.instance("demo-provider", "10.0.0.4")
        s = self.start()        # path = ..., codec = "dubbo", codec_options = { application = "demo-consumer" }

        def keys():
            return [x["key"] for x in json.loads(s.request("/v1/explain/demo")[2])["sources"]]
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.1:20880"], what="interface-level list")
        self.assertNotIn("mapping", keys())
        self.migration_rule(b"key: demo-consumer\nstep: FORCE_APPLICATION\n")
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.4:20880"], what="application-level list")
        self.assertIn("mapping", keys())
        self.kz.delete(self.MIGRATION)
        wait_until(lambda: sorted(self.listed()) == ["10.0.0.1:20880"], what="interface-level list again")
        self.assertNotIn("mapping", keys())

    def test_force_interface_ignores_the_mapping(self):
        self.add_providers(["10.0.0.1:20880"])
        self.mapping("mapping-one.txt")
        self.instance("demo-provider", "10.0.0.4")
        s = self.start_app("FORCE_INTERFACE")
        wait_until(lambda: s.state("demo") == "synced", what="synced")
        self.assertEqual(sorted(self.listed()), ["10.0.0.1:20880"])
        self.assertNotIn("mapping", [x["key"] for x in json.loads(s.request("/v1/explain/demo")[2])["sources"]])


if __name__ == "__main__":
    unittest.main()
