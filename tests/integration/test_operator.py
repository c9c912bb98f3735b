"""The operator's side of a running agent: the client commands in the same binary (`scout status`, `services`,
`show`, `explain`, `pick`, `watch`), found through --api, $SCOUT_ADDR or the policy, as tables or --json; and
systemd's notify protocol (READY, RELOADING, STOPPING) sent to the $NOTIFY_SOCKET a test listens on."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

from scoutharness import SCOUT_BIN, Scout, policy, wait_until
from zkharness import SharedZooKeeper


def scout(*args, env=None):
    e = dict(os.environ)
    e.pop("SCOUT_ADDR", None)
    e.update(env or {})
    p = subprocess.run([SCOUT_BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60, env=e)
    return p.returncode, p.stdout, p.stderr


class Client(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        kz = cls.kz = cls.zk.client()
        kz.ensure_path("/op/svc")
        kz.create("/op/svc/a", b'{"host":"10.0.0.1","port":1,"meta":{"zone":"z1"}}')
        kz.create("/op/svc/b", b'{"host":"10.0.0.2","port":2}')
        kz.create("/op/svc/canary", b'{"host":"10.0.0.9","port":9,"meta":{"tag":"canary"}}')
        kz.create("/op/svc/broken", b'{"host":')
        cls.dir = tempfile.mkdtemp(prefix="scout-op-")
        cls.sock = os.path.join(cls.dir, "scout.sock")
        cls.addr = "unix:" + cls.sock
        text = policy({
            "svc": 'path = "/op/svc", selector = "chash", route = { { tag = true } }',
        }, extra='api { listen = "%s" }' % cls.addr)
        cls.scout = Scout(text, cls.zk.connect, api=cls.addr).start()
        wait_until(lambda: len(cls.scout.ids("svc")) == 3, what="initial list")

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_status_shows_health_and_every_service(self):
        rc, out, err = scout("status", "--api", self.addr)
        self.assertEqual(rc, 0, err)
        self.assertIn("health  ok", out)
        row = [line.split() for line in out.splitlines() if line.startswith("svc ")]
        self.assertEqual(row[0][:3], ["svc", "synced", "3"], out)

    def test_services_json_is_the_apis_answer(self):
        rc, out, err = scout("services", "--json", "--api", self.addr)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), json.loads(self.scout.request("/v1/services")[2]))

    def test_show_lists_endpoints_as_a_table(self):
        rc, out, err = scout("show", "svc", "--api", self.addr)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "HOST", "PORT", "WEIGHT", "STATUS", "META"])
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        self.assertEqual(sorted(rows), ["a", "b", "canary"])
        self.assertEqual(rows["a"][1:3], ["10.0.0.1", "1"])
        self.assertEqual(rows["a"][-1], "zone=z1")

    def test_explain_says_why_a_child_is_out(self):
        rc, out, err = scout("explain", "svc", "--api", self.addr)
        self.assertEqual(rc, 0, err)
        verdicts = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:]}
        self.assertEqual(verdicts["broken"], "decode_error")
        self.assertEqual(verdicts["a"], "published")

    def test_pick_with_key_and_tag(self):
        picks = {scout("pick", "svc", "--key", "user-42", "--api", self.addr)[1] for _ in range(3)}
        self.assertEqual(len(picks), 1, picks)          # chash: one key, one endpoint
        rc, out, err = scout("pick", "svc", "--tag", "canary", "--json", "--api", self.addr)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["id"], "canary")

    def test_unknown_service_is_an_error_with_the_apis_reason(self):
        rc, out, err = scout("show", "nope", "--api", self.addr)
        self.assertEqual(rc, 1)
        self.assertIn("no such service (HTTP 404)", err)

    def test_agent_found_from_env_and_from_the_policy(self):
        rc, out, err = scout("services", "--json", env={"SCOUT_ADDR": self.addr})
        self.assertEqual(rc, 0, err)
        self.assertIn("svc", [s["name"] for s in json.loads(out)])
        rc, out, err = scout("services", "--json", "-c", self.scout.policy_file)
        self.assertEqual(rc, 0, err)
        self.assertIn("svc", [s["name"] for s in json.loads(out)])

    def test_unreachable_agent_exits_3_and_says_where_it_looked(self):
        rc, out, err = scout("status", "--api", "unix:" + os.path.join(self.dir, "none.sock"))
        self.assertEqual(rc, 3)
        self.assertIn("cannot reach the agent at unix:", err)

    def test_watch_prints_each_change(self):
        p = subprocess.Popen([SCOUT_BIN, "watch", "svc", "--json", "--api", self.addr],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        try:
            first = json.loads(p.stdout.readline())
            self.kz.create("/op/svc/new", b'{"host":"10.0.0.7","port":7}')
            second = json.loads(p.stdout.readline())
            self.assertGreater(second["index"], first["index"])
            self.assertIn("new", [ep["id"] for ep in second["endpoints"]])
            self.assertNotIn("new", [ep["id"] for ep in first["endpoints"]])
        finally:
            p.kill()
            p.wait()
            self.kz.delete("/op/svc/new")


class Version(unittest.TestCase):
    def test_version_and_dash_dash_version_name_the_commit_and_libraries(self):
        for arg in ("version", "--version"):
            rc, out, err = scout(arg)
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r"^scout \d+\.\d+\.\d+ \(commit [0-9a-f]{7,}(-dirty)?\)\n")
            for lib in ("LuaJIT 2.1", "ZooKeeper C client 3.", "libev 4.", "jansson 2.", "libcurl 7."):
                self.assertIn(lib, out)


class ClientUnhealthy(unittest.TestCase):
    def test_status_exits_1_with_the_reason_while_zookeeper_is_unreachable(self):
        s = Scout(policy({"svc": 'path = "/x"'}), "127.0.0.1:1").start()
        try:
            rc, out, err = scout("status", "--api", s.api)
            self.assertEqual(rc, 1, out + err)
            self.assertRegex(out, r"health  unavailable: ZooKeeper session 0 \w+")
        finally:
            s.stop()

    def test_liveness_stays_200_while_readiness_says_503(self):
        s = Scout(policy({"svc": 'path = "/x"'}), "127.0.0.1:1").start()
        try:
            self.assertEqual(s.request("/v1/health")[0], 503)
            self.assertEqual(s.request("/v1/health/ready")[0], 503)
            status, _, body = s.request("/v1/health/live")
            self.assertEqual((status, json.loads(body)), (200, {"status": "alive"}))
        finally:
            s.stop()


class Agent(unittest.TestCase):
    """GET /v1/agent: what runs, against what, and whether the last SIGHUP took."""

    def test_agent_reports_sessions_and_each_reloads_result(self):
        zk = SharedZooKeeper().start()
        s = Scout(policy({"svc": 'path = "/x"'}), zk.connect).start()
        try:
            def agent():
                return json.loads(s.request("/v1/agent")[2])
            wait_until(lambda: agent()["zookeeper"]["sessions"][0]["state"] == "connected", what="connected")
            a = agent()
            self.assertEqual(a["pid"], s.proc.pid)
            self.assertEqual(a["policy"], s.policy_file)
            self.assertRegex(a["version"], r"^\d+\.\d+\.\d+$")
            self.assertRegex(a["zookeeper"]["sessions"][0]["session_id"], r"^0x[0-9a-f]+$")
            self.assertNotEqual(a["zookeeper"]["sessions"][0]["session_id"], "0x0")
            self.assertEqual(a["reload"], {"count": 0})
            s.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: agent()["reload"]["count"] == 1, what="first reload")
            self.assertEqual(agent()["reload"]["result"], "ok")
            with open(s.policy_file, "w") as f:
                f.write('service "svc" {\n  path = 7,\n}\n')
            s.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: agent()["reload"]["count"] == 2, what="second reload")
            r = agent()["reload"]
            self.assertEqual(r["result"], "refused")
            self.assertRegex(r["error"], r"policy\.lua:\d+: service \"svc\": path must be")
            self.assertEqual(s.request("/v1/services/svc")[0], 200)     # the old policy still serves
        finally:
            s.stop()
            zk.stop()


class Registrations(unittest.TestCase):
    """GET /v1/registrations: each registration's node, check and the check's recent flips."""

    def test_node_check_state_and_history(self):
        zk = SharedZooKeeper().start()
        kz = zk.client()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        s = Scout(policy({}, extra='register "web" { path = "/reg/web", codec = "rpcx",\n'
                                   '  endpoint = { host = "127.0.0.1", port = %d },\n'
                                   '  check = { tcp = "127.0.0.1:%d", interval = 100, timeout = 500, rise = 1, fall = 1 } }\n'
                                   % (port, port)), zk.connect).start()
        try:
            def regs():
                return json.loads(s.request("/v1/registrations")[2])
            wait_until(lambda: regs()[0]["state"] == "registered", what="registered")
            r = regs()[0]
            self.assertEqual(r["name"], "web")
            self.assertEqual(kz.get_children("/reg/web"), [r["node"].rsplit("/", 1)[1]])
            self.assertEqual((r["check"]["kind"], r["check"]["target"], r["check"]["state"]),
                             ("tcp", "127.0.0.1:%d" % port, "up"))
            self.assertEqual([f["state"] for f in r["check"]["history"]], ["up"])
            listener.close()                                   # the service goes away: the check withdraws it
            wait_until(lambda: regs()[0]["state"] == "unhealthy", what="withdrawn")
            r = regs()[0]
            self.assertIsNone(r["node"])
            self.assertEqual(kz.get_children("/reg/web"), [])
            self.assertEqual([f["state"] for f in r["check"]["history"]], ["down", "up"])
            self.assertIn("refused", r["check"]["history"][0]["reason"])
        finally:
            listener.close()
            s.stop()
            zk.stop()


class Metrics(unittest.TestCase):
    """/metrics as Prometheus's own linter reads it, with the families an operator's dashboards need."""

    def test_promtool_accepts_a_live_scrape_with_build_process_registration_and_http_gauges(self):
        zk = SharedZooKeeper().start()
        kz = zk.client()
        kz.ensure_path("/met/svc")
        kz.create("/met/svc/a", b'{"host":"10.0.0.1","port":1}')
        s = Scout(policy({"svc": 'path = "/met/svc"'},
                         extra='register "w" { path = "/met/reg", endpoint = { host = "127.0.0.1", port = 1 } }'),
                  zk.connect).start()
        parked = None
        try:
            wait_until(lambda: s.ids("svc") == ["a"], what="the list")
            _, headers, _ = s.request("/v1/services/svc")
            index = headers["X-Scout-Index"]
            parked = s._conn()                               # a blocking query that stays parked
            parked.request("GET", "/v1/services/svc?index=%s&wait=5m" % index)
            wait_until(lambda: s.metric("scout_http_parked_queries") == 1, what="the query parked")
            wait_until(lambda: s.metric('scout_registration_up{registration="w"}') == 1, what="registered")
            body = s.request("/metrics")[2]
            p = subprocess.run(["promtool", "check", "metrics"], input=body, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            self.assertEqual(p.returncode, 0, p.stdout.decode())
            m = s.metrics()
            self.assertEqual(m['scout_registration_healthy{registration="w"}'], 1)
            self.assertGreaterEqual(m["scout_http_connections"], 2)          # the parked one and this scrape
            self.assertGreaterEqual(m['scout_zk_requests_total{op="children"}'], 1)
            self.assertLessEqual(m["process_open_fds"], m["process_max_fds"])
            self.assertGreater(m["process_resident_memory_bytes"], 1 << 20)
            build = [k for k in m if k.startswith("scout_build_info{")]
            self.assertEqual(len(build), 1)
            self.assertIn('version="', build[0])
            self.assertEqual(m['scout_reloads_total{result="ok"}'], 0)
        finally:
            if parked is not None:
                parked.close()
            s.stop()
            zk.stop()


class Logs(unittest.TestCase):
    """--log-format=json for log shippers; syslog priorities when stderr is journald's stream."""

    def test_json_lines_parse_whatever_the_message_holds(self):
        zk = SharedZooKeeper().start()
        kz = zk.client()
        kz.ensure_path("/logs")
        kz.create("/logs/a", b'{"host":"10.0.0.1","port":1}')
        # a hook whose error quotes bytes that are not UTF-8, a quote, a newline and a control character
        s = Scout(policy({"svc": 'path = "/logs", filter = function(ep) error("bad \\255\\254 \\"q\\"\\n\\1") end'}),
                  zk.connect, extra_args=["--log-format", "json"]).start()
        try:
            wait_until(lambda: s.metric("scout_service_hook_errors_total", "svc") >= 1, what="the hook error")
        finally:
            s.stop()
            zk.stop()
        with open(s.log_file, "rb") as f:                 # bytes: every line must be UTF-8 and JSON as written
            records = [json.loads(line.decode("utf-8")) for line in f.read().splitlines() if line]
        self.assertEqual(set(records[0]), {"ts", "level", "module", "msg"})
        failed = [r for r in records if "bad " in r["msg"]]
        self.assertTrue(failed, records)
        self.assertIn('bad \ufffd\ufffd "q"\n\x01', failed[0]["msg"])
        self.assertIn(failed[0]["level"], ("warn", "error"))

    def test_policy_log_and_print_carry_level_and_file_line(self):
        zk = SharedZooKeeper().start()
        zk.client().ensure_path("/plog")
        s = Scout(policy({"svc": 'path = "/plog",\n'
                                 'on_change = function(svc, diff)\n'
                                 '  log.warn("changed", svc.name)\n'
                                 '  print("printed", 42)\n'
                                 'end'}), zk.connect)
        s.start()
        try:
            zk.client().create("/plog/a", b'{"host":"10.0.0.1","port":1}')
            wait_until(lambda: "printed" in s.log(), what="the hook's print")
        finally:
            s.stop()
            zk.stop()
        lines = s.log().splitlines()
        warn = [line for line in lines if line.endswith("changed svc")][0]
        printed = [line for line in lines if line.endswith("printed\t42")][0]
        self.assertRegex(warn, r"^\d{4}-\d\d-\d\dT[\d:.]+Z WARN  policy: %s:6: changed svc$" % s.policy_file)
        self.assertRegex(printed, r"^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  policy: %s:7: printed\t42$" % s.policy_file)

    def test_journald_stream_gets_priorities(self):
        s = Scout(policy({"svc": 'path = "/x"'}), "127.0.0.1:1")
        open(s.log_file, "ab").close()
        st = os.stat(s.log_file)
        os.environ["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        try:
            s.start()
        finally:
            del os.environ["JOURNAL_STREAM"]
        s.stop()
        lines = [line for line in s.log().splitlines() if line]
        self.assertTrue(any(line.startswith("<6>http: listening on ") for line in lines), lines)
        self.assertTrue(all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines), lines)

    def test_unknown_log_format_is_a_usage_error(self):
        rc, out, err = scout("run", "-c", "/dev/null", "--log-format", "xml")
        self.assertEqual(rc, 2)
        self.assertIn("--log-format must be text or json", err)


class Notify(unittest.TestCase):
    """What systemd's Type=notify sees: the agent writes to $NOTIFY_SOCKET, a datagram socket we own."""

    def setUp(self):
        self.zk = SharedZooKeeper().start()
        self.dir = tempfile.mkdtemp(prefix="scout-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(30)

    def tearDown(self):
        self.sock.close()
        self.zk.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def next_message(self):
        return dict(line.split("=", 1) for line in self.sock.recv(4096).decode().splitlines())

    def test_ready_reloading_stopping(self):
        os.environ["NOTIFY_SOCKET"] = self.path
        try:
            s = Scout(policy({"svc": 'path = "/n"'}), self.zk.connect).start(wait=False)
        finally:
            del os.environ["NOTIFY_SOCKET"]
        msg = self.next_message()
        self.assertEqual(msg["READY"], "1")
        self.assertEqual(s.request("/v1/services")[0], 200)   # READY means the API answers
        s.proc.send_signal(signal.SIGHUP)
        msg = self.next_message()
        self.assertEqual(msg["RELOADING"], "1")
        self.assertIn("MONOTONIC_USEC", msg)
        self.assertEqual(self.next_message()["READY"], "1")
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.next_message()["STOPPING"], "1")
        # the one SIGTERM is the whole shutdown: wait for the exit (a second signal would stop it at once)
        self.assertEqual(s.proc.wait(timeout=30), 0)
        s.stop()


if __name__ == "__main__":
    unittest.main()
