"""Registration, observed with an independent kazoo client: the node each codec must produce (the name and bytes a
dubbo consumer, an rpcx client, Curator, Finagle or Synapse reads), re-created with its current body after session
expiry, a stale node of another session replaced, a sequential create whose answer was lost adopted rather than
duplicated, gone before the process exits on SIGTERM, and protected by ACLs under digest auth."""

import json
import unittest
import urllib.parse

from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import make_digest_acl_credential  # noqa: F401  (kazoo's digest support is what we rely on)

from scoutharness import Scout, wait_until
from zkharness import SharedZooKeeper
from zkproxy import ZkProxy
from zkwire import CloseGate

HEAD = 'zookeeper { servers = "127.0.0.1:1", session_timeout = %d%s }\n'


def node(kz, parent):
    """The only child of parent as (name, data, stat), or None when there is none or more than one. A child the
    agent deletes between the list and the read (a stale node it replaces) is not there: None, and the caller's
    wait_until asks again."""
    try:
        kids = kz.get_children(parent)
        if len(kids) != 1:
            return None
        data, stat = kz.get(parent + "/" + kids[0])
    except NoNodeError:
        return None
    return kids[0], data, stat


class Register(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        self.kz = self.zk.client()
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()

    def start(self, body, timeout=4000, auth="", connect=None):
        self.scout = Scout(HEAD % (timeout, auth) + body, connect or self.zk.connect).start()
        return self.scout

    def test_a_sequential_create_whose_answer_was_lost_is_adopted_not_duplicated(self):
        # The server creates member_N, the answer never arrives, the session survives the reconnect: creating
        # again would leave two ephemeral members of one agent, a phantom for as long as the session lives.
        proxy = ZkProxy(self.zk.connect).start()
        try:
            proxy.cut_after(b"/aurora/www/prod/web/member_")
            self.kz.ensure_path("/m/svc")
            self.start('register "ss" { path = "/aurora/www/prod/web", codec = "serverset",\n'
                       '  endpoint = { host = "10.0.0.7", port = 31943 } }\n'
                       'service "m" { path = "/m/svc", protect = false }', connect=proxy.connect)
            wait_until(lambda: proxy.cuts == 1, what="the create's answer swallowed")
            wait_until(lambda: "registered" in self.scout.log() or "adopted" in self.scout.log(),
                       what="registered again after the reconnect")
            # a later request of the same session (the read of a marker child), answered after the adoption: a
            # second create, if the agent sent one, was sent before it
            self.kz.create("/m/svc/127.0.0.1:1")
            wait_until(lambda: self.scout.ids("m") == ["127.0.0.1:1"], what="the marker read")
            kids = self.kz.get_children("/aurora/www/prod/web")
            self.assertEqual(len(kids), 1, kids)
            self.assertIn("adopted", self.scout.log())
            self.assertRegex(kids[0], r"^member_\d{10}$")
            owners = {self.kz.get("/aurora/www/prod/web/" + k)[1].ephemeralOwner for k in kids}
            self.assertEqual(len(owners), 1)
            self.assertIn("was lost", self.scout.log())
            # and the adopted node is really the agent's: SIGTERM removes it
            self.assertEqual(self.scout.stop(), 0)
            self.scout = None
            self.assertEqual(self.kz.get_children("/aurora/www/prod/web"), [])
        finally:
            proxy.stop()

    def test_each_codec_writes_what_its_clients_read(self):
        self.start('''
register "cur" { path = "/services/orders", codec = "curator",
                 endpoint = { host = "10.0.0.5", port = 8080, meta = { zone = "a" } } }
register "rp"  { path = "/rpcx_test/Arith", codec = "rpcx",
                 endpoint = { host = "127.0.0.1", port = 8972, weight = 7, meta = { group = "online" } } }
register "dub" { path = "/dubbo/com.acme.DemoService/providers", codec = "dubbo",
                 codec_options = { interface = "com.acme.DemoService" },
                 endpoint = { host = "10.0.0.6", port = 20880, weight = 50, meta = { application = "demo" } } }
register "ss"  { path = "/aurora/www/prod/web", codec = "serverset",
                 endpoint = { host = "10.0.0.7", port = 31943 } }
register "nv"  { path = "/nerve/web", codec = "nerve",
                 endpoint = { host = "10.0.0.8", port = 3000, weight = 2, meta = { az = "us-east-1a" } } }
''')
        kz = self.kz
        cur = wait_until(lambda: node(kz, "/services/orders"), what="curator node")
        self.assertEqual(cur[0], "cur")
        doc = json.loads(cur[1])
        self.assertEqual((doc["name"], doc["id"], doc["address"], doc["port"]), ("orders", "cur", "10.0.0.5", 8080))
        self.assertEqual(doc["payload"]["metadata"], {"zone": "a"})
        self.assertIn(doc["serviceType"], ("DYNAMIC", "STATIC", "PERMANENT", "DYNAMIC_SEQUENTIAL"))
        self.assertNotEqual(cur[2].ephemeralOwner, 0)

        rp = wait_until(lambda: node(kz, "/rpcx_test/Arith"), what="rpcx node")
        self.assertEqual((rp[0], rp[1]), ("tcp@127.0.0.1:8972", b"group=online&weight=7"))

        dub = wait_until(lambda: node(kz, "/dubbo/com.acme.DemoService/providers"), what="dubbo node")
        url = urllib.parse.unquote(dub[0])
        self.assertTrue(url.startswith("dubbo://10.0.0.6:20880/com.acme.DemoService?"), url)
        q = urllib.parse.parse_qs(url.split("?", 1)[1])
        self.assertEqual((q["interface"], q["side"], q["weight"], q["application"]),
                         (["com.acme.DemoService"], ["provider"], ["50"], ["demo"]))

        ss = wait_until(lambda: node(kz, "/aurora/www/prod/web"), what="serverset member")
        self.assertRegex(ss[0], r"^member_\d{10}$")          # ephemeral sequential, as Finagle's
        sdoc = json.loads(ss[1])
        self.assertEqual((sdoc["serviceEndpoint"], sdoc["status"]), ({"host": "10.0.0.7", "port": 31943}, "ALIVE"))

        nv = wait_until(lambda: node(kz, "/nerve/web"), what="nerve node")
        self.assertRegex(nv[0], r"^10\.0\.0\.8_\d{10}$")        # Nerve names instances by host by default
        ndoc = json.loads(nv[1])
        self.assertEqual((ndoc["host"], ndoc["port"], ndoc["weight"]), ("10.0.0.8", 3000, 2))

    def test_session_expiry_recreates_with_the_current_body(self):
        import os
        weight = "/tmp/scout-reg-weight-%d" % os.getpid()    # one per run: the ASan run goes beside this one
        open(weight, "w").write("3")
        s = self.start('''
register "cur" { path = "/svc/a", codec = "rpcx",
  endpoint = function()
    local w = tonumber(scout.read_file("%s") or "") or 1
    return { host = "127.0.0.1", port = 9000, weight = w }
  end }
''' % weight, timeout=2000)
        try:
            first = wait_until(lambda: node(self.kz, "/svc/a"), what="registered")
            self.assertEqual(first[1], b"weight=3")
            owner = first[2].ephemeralOwner
            s.pause()
            open(weight, "w").write("5")   # the body changes while the agent is frozen
            # the session expires while frozen: ZooKeeper deletes its ephemeral node
            wait_until(lambda: node(self.kz, "/svc/a") is None, timeout=30, what="the session's node gone")
            s.resume()
            again = wait_until(lambda: node(self.kz, "/svc/a"), what="re-registered")
            self.assertNotEqual(again[2].ephemeralOwner, owner)
            wait_until(lambda: node(self.kz, "/svc/a")[1] == b"weight=5", what="the current body, in place")
        finally:
            import os
            os.unlink(weight)

    def test_a_persistent_registration_is_adopted_after_a_crash(self):
        body = ('register "p" { path = "/svc/p", codec = "rpcx", ephemeral = false,\n'
                '  endpoint = { host = "127.0.0.1", port = 9004, weight = 3 } }')
        s = self.start(body)
        first = wait_until(lambda: node(self.kz, "/svc/p"), what="registered")
        self.assertEqual(first[2].ephemeralOwner, 0)
        s.proc.kill()                                   # a crash: no deregistration
        s.proc.wait()
        self.scout.proc = None
        self.start(body)
        wait_until(lambda: "adopted" in self.scout.log(), what="adopted")
        again = node(self.kz, "/svc/p")
        self.assertEqual(again[2].czxid, first[2].czxid)   # the same node: consumers saw no churn

    def test_a_stale_node_of_another_session_is_replaced(self):
        other = self.zk.client()
        other.create("/svc/b/tcp@127.0.0.1:9001", b"state=inactive", ephemeral=True, makepath=True)
        stale_owner = other.get("/svc/b/tcp@127.0.0.1:9001")[1].ephemeralOwner
        self.start('register "b" { path = "/svc/b", codec = "rpcx",\n'
                   '  endpoint = { host = "127.0.0.1", port = 9001, weight = 4 } }')
        fresh = wait_until(lambda: (lambda n: n if n and n[2].ephemeralOwner != stale_owner else None)(
            node(self.kz, "/svc/b")), what="replaced by the agent's own node")
        self.assertEqual(fresh[1], b"weight=4")
        self.assertIn("replacing it", self.scout.log())

    def test_sigterm_deregisters_before_exit(self):
        s = self.start('agent { drain = "500ms" }\n'
                       'register "c" { path = "/svc/c", endpoint = { host = "127.0.0.1", port = 9002 } }')
        wait_until(lambda: node(self.kz, "/svc/c"), what="registered")
        s.proc.send_signal(15)
        # gone while the agent still runs (it drains 500 ms, still answering the API)
        wait_until(lambda: node(self.kz, "/svc/c") is None, timeout=5, what="node deleted")
        self.assertIsNone(s.proc.poll(), "still draining when the node went")
        self.assertEqual(s.request("/v1/health")[0], 200)
        self.assertEqual(s.stop(), 0)

    def test_a_sighup_during_the_drain_does_not_register_again(self):
        # a config push's SIGHUP that comes while the agent drains: a reload then would load the policy and
        # register again what the stop has just deleted, for the rest of the drain
        s = self.start('agent { drain = "60s" }\n'
                       'register "c" { path = "/svc/c", endpoint = { host = "127.0.0.1", port = 9002 } }')
        wait_until(lambda: node(self.kz, "/svc/c"), what="registered")
        s.proc.send_signal(15)
        wait_until(lambda: node(self.kz, "/svc/c") is None, timeout=5, what="node deleted")
        s.proc.send_signal(1)
        wait_until(lambda: "SIGHUP while stopping: no reload, the stop goes on" in s.log(), what="the SIGHUP taken")
        self.assertNotIn("SIGHUP: reloading the policy", s.log())
        self.assertIsNone(node(self.kz, "/svc/c"))
        self.assertEqual(s.request("/v1/health")[0], 200)               # still draining, still serving
        self.assertEqual(s.stop(), 0)                                    # the second SIGTERM ends the drain

    def test_sigterm_closes_every_session_together(self):
        # zookeeper_close() sends one session's close and waits for the server to end it: n sessions closed one
        # after the other cost n of those waits (6.8 s for 50 sessions at a million endpoints). The gate holds
        # each close until every open connection has sent one: one at a time, the first connection ends
        # unanswered before the second close is sent; together, every close comes first and all are answered.
        gate = CloseGate(self.zk.connect).start()
        try:
            self.kz.ensure_path("/m/svc")
            s = self.start('register "g" { path = "/svc/g", endpoint = { host = "127.0.0.1", port = 9003 } }\n'
                           'service "m" { path = "/m/svc", protect = false }',
                           auth=", sessions = 3", connect=gate.connect)
            wait_until(lambda: node(self.kz, "/svc/g"), what="registered")
            wait_until(lambda: s.request("/v1/health")[0] == 200, what="synced")
            conns = gate.n
            self.assertGreaterEqual(conns, 3)
            self.assertEqual(s.stop(), 0)
            with gate.lock:
                events = list(gate.events)
            first_end = next((i for i, e in enumerate(events) if e[0] == "end"), len(events))
            closed = {k for what, k in events[:first_end] if what == "close"}
            self.assertEqual(closed, set(range(1, conns + 1)),
                             "closes sent before the first connection ended: %r" % events)
            self.assertIn("%d sessions closed in" % conns, s.log())
            self.assertIn("(%d ended by the server together)" % conns, s.log())
            # the server closed the registering session itself: its node is gone, not left to expire
            self.assertIsNone(node(self.kz, "/svc/g"))
        finally:
            gate.stop()

    def test_digest_auth_lets_others_read_but_not_write(self):
        import os
        os.environ["SCOUT_TEST_ZK_CRED"] = "scout:s3cret"        # the secret stays out of the policy text
        self.start('register "d" { path = "/svc/d", endpoint = { host = "127.0.0.1", port = 9003 } }',
                   auth=', auth = { scheme = "digest", credential_env = "SCOUT_TEST_ZK_CRED" }')
        n = wait_until(lambda: node(self.kz, "/svc/d"), what="registered")
        path = "/svc/d/" + n[0]
        acls, _ = self.kz.get_acls(path)
        self.assertEqual(sorted(a.perms for a in acls), [1, 31])        # world READ, creator ALL
        self.assertEqual(self.kz.get(path)[0], b"")                     # anyone reads
        with self.assertRaises(NoAuthError):
            self.kz.set(path, b"x")
        with self.assertRaises(NoAuthError):
            self.kz.delete(path)
        self.assertNotIn("s3cret", self.scout.log())
        self.assertNotIn(b"s3cret", self.scout.request("/metrics")[2])

    def test_health_checks_gate_the_registration(self):
        import os
        import socket
        from scoutharness import free_port
        port = free_port()

        def listen():
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", port))
            ls.listen(16)
            return ls
        flag = "/tmp/scout-reg-healthy-%d" % os.getpid()
        ls = listen()
        s = self.start(
            'register "tcp" { path = "/svc/h", codec = "rpcx",\n'
            '  endpoint = { host = "127.0.0.1", port = %d, weight = 2 },\n'
            '  check = { tcp = "127.0.0.1:%d", interval = 200, timeout = 200, rise = 2, fall = 2 } }\n'
            'register "lua" { path = "/svc/l", codec = "rpcx", endpoint = { host = "127.0.0.1", port = 9, weight = 2 },\n'
            '  check = { lua = function() return scout.read_file("%s") ~= nil end,\n'
            '            interval = 200, rise = 1, fall = 1 } }\n' % (port, port, flag))
        try:
            wait_until(lambda: node(self.kz, "/svc/h"), what="registered once healthy")
            self.assertIsNone(node(self.kz, "/svc/l"))          # its check never passed
            ls.close()                                          # the service goes down
            wait_until(lambda: node(self.kz, "/svc/h") is None, what="removed after fall")
            self.assertIn("unhealthy", s.log())
            ls = listen()                                       # and comes back
            wait_until(lambda: node(self.kz, "/svc/h"), what="re-created after rise")
            open(flag, "w").close()
            wait_until(lambda: node(self.kz, "/svc/l"), what="the Lua check passes")
        finally:
            ls.close()
            if os.path.exists(flag):
                os.unlink(flag)




class CuratorReadsOurRegistration(unittest.TestCase):
    """Curator 5.4's own JsonInstanceSerializer (Debian libcurator-discovery-java) reads the node scout registered."""

    JARS = ["curator-x-discovery", "curator-framework", "curator-client", "jackson-databind", "jackson-core",
            "jackson-annotations", "guava", "zookeeper", "zookeeper-jute", "slf4j-api", "slf4j-nop"]

    def test_curator_deserializes_the_registered_node(self):
        import os
        import shutil
        import subprocess
        import tempfile
        from scoutharness import ROOT
        cp = ["/usr/share/java/%s.jar" % j for j in self.JARS]
        # scripts/setup.sh installs both: missing, the test fails rather than skips
        self.assertTrue(shutil.which("javac"), "javac missing (apt-get install default-jdk-headless)")
        for j in cp:
            self.assertTrue(os.path.exists(j), "%s missing (apt-get install libcurator-discovery-java)" % j)
        out = tempfile.mkdtemp(prefix="scout-curator-")
        srcs = [os.path.join(ROOT, "tests/java", s) for s in (
            "CuratorCheck.java", "org/springframework/cloud/zookeeper/discovery/ZookeeperInstance.java",
            "org/apache/dubbo/registry/zookeeper/ZookeeperInstance.java")]
        subprocess.run(["javac", "-nowarn", "-d", out, "-cp", ":".join(cp)] + srcs, check=True)
        zk = SharedZooKeeper().start()
        s = Scout(HEAD % (4000, "") + 'register "orders-7" { path = "/services/orders", codec = "curator",\n'
                  '  endpoint = { host = "10.0.0.5", port = 8080, meta = { zone = "a" } } }\n', zk.connect).start()
        try:
            kz = zk.client()
            n = wait_until(lambda: node(kz, "/services/orders"), what="registered")
            p = subprocess.run(["java", "-cp", out + ":" + ":".join(cp), "CuratorCheck"], input=n[1],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True, timeout=120)
            fields = dict(line.split("=", 1) for line in p.stdout.decode().splitlines() if "=" in line)
            self.assertEqual((fields.get("name"), fields.get("id"), fields.get("address"), fields.get("port")),
                             ("orders", "orders-7", "10.0.0.5", "8080"), p.stdout.decode())
        finally:
            s.stop()
            zk.stop()
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
