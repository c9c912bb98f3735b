"""nginx tests for resty.scout: Debian's nginx + libnginx-mod-http-lua, a real ZooKeeper, the real agent
($SCOUT_BIN, default build/scout) and tiny HTTP backends on loopback, registered in ZooKeeper as `plain`
children. Prints `N passed, N failed[, N skipped]` at the end; no test run is a failure. spawn_agent's tests are in
spawn_tests.py, run from here too.

Usage: /usr/bin/python3 tests/nginx/run.py [-k substring]
Needs /usr/bin/python3 (kazoo), nginx, libnginx-mod-http-lua, lua-resty-core, lua-cjson, wrk and luajit2's
jit/v.lua (for the JIT test, which fails without them: scripts/setup.sh installs both), and `make` done. Env: SCOUT_BIN (default build/scout),
NGINX_TEST_KEEP=1 keeps every nginx prefix (a failed test's is always kept), JITDUMP=1 prints jit.v's log.
SIGTERM or SIGINT stops the run at once and leaves nothing behind (tests/integration/runguard.py).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import runguard  # noqa: E402
from nginxharness import ROOT, Backend, Nginx, free_port, shm_generation, wait_until  # noqa: E402
from scoutharness import Scout  # noqa: E402
from zkharness import ZooKeeper  # noqa: E402

ZK = None
KZ = None


def setUpModule():
    global ZK, KZ
    ZK = ZooKeeper().start()
    KZ = ZK.client()


def tearDownModule():
    if ZK:
        ZK.stop()


# -- config blocks ---------------------------------------------------------------------------------------------

def upstream(name):
    return """
    upstream %(n)s {
        server 0.0.0.1;
        balancer_by_lua_block {
            local ok, err = require("resty.scout").balance("%(n)s")
            if not ok then
                ngx.log(ngx.ERR, "scout %(n)s: ", err)
                return ngx.exit(require("resty.scout").BUSY)
            end
        }
    }
""" % {"n": name}


def scout_http(shm, services, opts="", init=""):
    """A shared dict, init_worker (opts: more Lua fields for it; init: more Lua code in the same block) and an
    upstream per service."""
    return """
    lua_shared_dict scout 1m;
    init_worker_by_lua_block {
        assert(require("resty.scout").init_worker{ path = "%s", dict = "scout", %s })
        %s
    }
""" % (shm, opts, init) + "".join(upstream(s) for s in services)


def proxy(name):
    return """
        location /%(n)s/ {
            proxy_pass http://%(n)s/;
            proxy_next_upstream error timeout http_502;
            proxy_connect_timeout 2s;
        }
""" % {"n": name}


STATUS = """
        location = /gen {
            content_by_lua_block { ngx.say(ngx.worker.pid(), " ", require("resty.scout").generation()) }
        }
        location = /peers {
            content_by_lua_block {
                local p, err = require("resty.scout").peers(ngx.var.arg_s)
                ngx.say(ngx.worker.pid(), " ", p and require("cjson").encode(p) or err)
            }
        }
"""


def shm_holds(path, needle):
    """The snapshot the file's generation names (docs/shm.md) contains needle."""
    try:
        with open(path, "rb") as f:
            head = f.read(48)
            if len(head) < 48 or head[:8] != b"SCOUTSHM":
                return False
            gen = int.from_bytes(head[16:24], "little")
            slot_size = int.from_bytes(head[24:32], "little")
            if gen == 0:
                return False
            f.seek(4096 + (gen & 1) * slot_size)
            slot = f.read(64)
            if int.from_bytes(slot[0:8], "little") != gen:
                return False
            return needle in f.read(int.from_bytes(slot[8:16], "little"))
    except FileNotFoundError:
        return False


def peer_ids(value, want_down=False):
    """ids in a /peers answer (value part); with want_down, {id: down}."""
    if not value.startswith("{"):
        return None
    eps = json.loads(value)["endpoints"]
    if want_down:
        return {e["id"]: e["down"] for e in eps}
    return sorted(e["id"] for e in eps)


class NginxCase(unittest.TestCase):
    """Set-up, tear-down and helpers of every nginx test (spawn_tests.py's too)."""

    def setUp(self):
        self.base = "/nt/%s" % self._testMethodName
        self.shm = "/dev/shm/scout-nginx-test-%d-%s" % (os.getpid(), self._testMethodName)
        self.backends = {}
        self.agent = None
        self.ng = None

    def tearDown(self):
        if self.ng:
            self.ng.stop()
        if self.agent:
            self.agent.stop()
            if not self._failed():
                shutil.rmtree(self.agent.dir, ignore_errors=True)
        for b in self.backends.values():
            b.stop()
        for f in (self.shm,):
            if os.path.exists(f):
                os.unlink(f)
        KZ.delete(self.base, recursive=True)
        if self.ng:
            if self._failed() or os.environ.get("NGINX_TEST_KEEP"):
                print("\n  nginx prefix kept: %s" % self.ng.dir)
            else:
                self.ng.cleanup()

    def _failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return False
        return any(t is self for t, _ in result.failures + result.errors)

    # -- helpers -------------------------------------------------------------------------------------------------
    def backend(self, name):
        b = self.backends[name] = Backend(name).start()
        return b

    def register(self, service, name, port=None, data=None):
        """A plain child: "127.0.0.1:port" (no data), or id `name` with JSON data."""
        KZ.ensure_path("%s/%s" % (self.base, service))
        if data is None:
            path = "%s/%s/127.0.0.1:%d" % (self.base, service, port)
            KZ.create(path)
        else:
            path = "%s/%s/%s" % (self.base, service, name)
            KZ.create(path, json.dumps(data).encode())
        return path

    def policy(self, services):
        out = ['zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }',
               'shm { path = "%s" }' % self.shm]
        for name, body in services.items():
            out.append('service "%s" {\n  path = "%s/%s", codec = "plain",\n  %s\n}' % (name, self.base, name, body))
        return "\n".join(out) + "\n"

    def start_agent(self, services):
        for name in services:
            KZ.ensure_path("%s/%s" % (self.base, name))
        self.agent = Scout(self.policy(services), ZK.connect).start()
        wait_until(lambda: shm_generation(self.shm) > 0, what="the agent's first snapshot")
        return self.agent

    def start_nginx(self, services, workers=1, server="", opts="", http=""):
        self.ng = Nginx(http=scout_http(self.shm, services, opts) + http,
                        server="".join(proxy(s) for s in services) + STATUS + server, workers=workers)
        return self.ng.start()

    def wait_peers(self, service, want, timeout=20):
        """Every worker balances over exactly the ids in `want`."""
        want = sorted(want)
        return self.ng.per_worker("/peers?s=" + service, lambda v: peer_ids(v) == want, timeout)

    def hits(self, path, n, headers=None):
        out = []
        for _ in range(n):
            out.append(self.ng.body(path, headers).strip())
        return out

    # -- tests -----------------------------------------------------------------------------------------------------

class ScoutNginxTest(NginxCase):
    def test_swrr_weights_exact_as_nginx(self):
        """swrr over weights 5,1,1 gives nginx's own smooth sequence (a static upstream with the same weights,
        same worker), and the weights exactly over every period."""
        for n in "abc":
            self.backend(n)
        weights = {"a": 5, "b": 1, "c": 1}
        self.start_agent({"orders": 'selector = "swrr"'})
        for n, w in weights.items():
            self.register("orders", n, data={"host": "127.0.0.1", "port": self.backends[n].port, "weight": w})
        static = "    upstream static {\n%s    }\n" % "".join(
            "        server %s weight=%d;\n" % (self.backends[n].addr, weights[n]) for n in "abc")
        self.start_nginx(["orders"], http=static, server="        location /static/ { proxy_pass http://static/; }\n")
        self.wait_peers("orders", ["a", "b", "c"])
        got = self.hits("/orders/", 70)
        ref = self.hits("/static/", 70)
        self.assertEqual(got, ref)
        self.assertEqual(got[:7], ["a", "a", "b", "a", "c", "a", "a"])
        for k in range(10):
            period = got[7 * k:7 * k + 7]
            self.assertEqual((period.count("a"), period.count("b"), period.count("c")), (5, 1, 1), period)
        self.ng.stop()
        self.ng.check_log()

    def test_chash_sticky_and_same_as_agent(self):
        """chash: a key sticks to one backend in every worker and is the one the agent's /v1/pick names; keys
        spread over all backends."""
        for n in "abc":
            self.backend(n)
        agent = self.start_agent({"carts": 'selector = "chash"'})
        for n in "abc":
            self.register("carts", n, data={"host": "127.0.0.1", "port": self.backends[n].port})
        self.start_nginx(["carts"], workers=2)
        self.wait_peers("carts", ["a", "b", "c"])
        spread = {"a": 0, "b": 0, "c": 0}
        for i in range(120):
            key = "user-%d" % i
            got = self.ng.body("/carts/?key=" + key).strip()
            spread[got] += 1
            if i % 10 == 0:
                st, _, body = agent.request("/v1/pick/carts?key=" + key)
                self.assertEqual(st, 200, body)
                self.assertEqual(json.loads(body)["id"], got, key)
                # the header works as well as the argument, and the key sticks (new connections: any worker)
                for _ in range(5):
                    self.assertEqual(self.ng.body("/carts/", {"X-Scout-Key": key}).strip(), got)
        for n, c in spread.items():
            self.assertGreater(c, 20, spread)
        self.ng.stop()
        self.ng.check_log()

    def test_module_selector_same_in_agent_and_nginx(self):
        """A selector given as a module name (docs/policy.md, "A selector of your own") picks in nginx what the
        agent's /v1/pick picks, follows a change through its update(), and, required in init_by_lua as the doc
        says, is loaded once in the master: no worker runs its chunk in a request's phase."""
        mods = tempfile.mkdtemp(prefix="scout-nginx-sel-")
        self.addCleanup(shutil.rmtree, mods, True)
        os.makedirs(os.path.join(mods, "scouttest"))
        with open(os.path.join(mods, "scouttest", "lowest.lua"), "w") as f:
            f.write("-- picks the endpoint whose id sorts first\n"
                    "local M = { loaded_in = ngx and ngx.get_phase() or \"agent\" }\n"
                    "local mt = { __index = M }\n"
                    "function M.new(endpoints) local s = setmetatable({}, mt) s:update(endpoints) return s end\n"
                    "function M:update(endpoints)\n"
                    "  local best\n"
                    "  for i = 1, #endpoints do\n"
                    "    if best == nil or endpoints[i].id < best.id then best = endpoints[i] end\n"
                    "  end\n"
                    "  self.best = best\n"
                    "end\n"
                    "function M:pick() if self.best == nil then return nil, \"no endpoint\" end return self.best end\n"
                    "return M\n")
        for n in "abc":
            self.backend(n)
        lua_path = "%s/?.lua;;" % mods
        old = os.environ.get("LUA_PATH")
        os.environ["LUA_PATH"] = lua_path      # the agent's package.path (a policy cannot set it)
        try:
            agent = self.start_agent({"orders": 'selector = "scouttest.lowest"'})
        finally:
            if old is None:
                del os.environ["LUA_PATH"]
            else:
                os.environ["LUA_PATH"] = old
        for n in "bca":
            self.register("orders", n, data={"host": "127.0.0.1", "port": self.backends[n].port})
        init = ('    init_by_lua_block {\n'
                '        package.path = "%s/?.lua;" .. package.path\n'
                '        require "resty.scout"\n'
                '        require "scouttest.lowest"\n'
                '    }\n' % mods)
        where = ('        location = /loaded-in {\n'
                 '            content_by_lua_block { ngx.say(ngx.worker.pid(), " ", require("scouttest.lowest").loaded_in) }\n'
                 '        }\n')
        self.start_nginx(["orders"], workers=2, http=init, server=where)
        self.wait_peers("orders", ["a", "b", "c"])
        self.assertEqual(set(self.hits("/orders/", 12)), {"a"})
        st, _, body = agent.request("/v1/pick/orders")
        self.assertEqual((st, json.loads(body)["id"]), (200, "a"), body)
        KZ.delete("%s/orders/a" % self.base)
        self.wait_peers("orders", ["b", "c"])
        self.assertEqual(set(self.hits("/orders/", 12)), {"b"})
        wait_until(lambda: json.loads(agent.request("/v1/pick/orders")[2])["id"] == "b",
                   what="the agent's pick after the delete")
        self.ng.per_worker("/loaded-in", lambda v: v == "init", timeout=5)
        self.ng.stop()
        self.ng.check_log()

    def test_delete_moves_traffic_off_no_5xx(self):
        """Deleting a backend's znode takes it out of every worker's set under load with no 5xx; once all
        workers moved the backend can go away and nobody notices."""
        for n in "abc":
            self.backend(n)
        self.start_agent({"orders": 'selector = "swrr"'})
        paths = {n: self.register("orders", n, port=self.backends[n].port) for n in "abc"}
        self.start_nginx(["orders"], workers=2)
        ids = {n: self.backends[n].addr for n in "abc"}
        self.wait_peers("orders", ids.values())

        results = []
        stop = threading.Event()

        def load():
            while not stop.is_set():
                t = time.monotonic()
                st, body, _ = self.ng.get("/orders/")
                results.append((t, st, body.strip()))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            # counted in requests, not seconds: b serves some, then 100 more requests after b is gone
            wait_until(lambda: [b for _, _, b in results].count("b") >= 5, what="b serving under load")
            KZ.delete(paths["b"])
            self.wait_peers("orders", [ids["a"], ids["c"]])
            moved = time.monotonic()
            self.backends["b"].stop()
            n = len(results)
            wait_until(lambda: len(results) >= n + 100, what="100 requests after b stopped")
        finally:
            stop.set()
            for t in threads:
                t.join()
        statuses = [st for _, st, _ in results]
        self.assertGreater(len(results), 100)
        self.assertEqual([s for s in statuses if s != 200], [])
        self.assertIn("b", [b for _, _, b in results])                 # b served before
        self.assertEqual([b for t, _, b in results if t > moved and b == "b"], [])
        self.ng.stop()
        self.ng.check_log()

    def test_refused_is_retried_and_marked_down(self):
        """A registered backend that refuses connections: requests are retried on another (no 5xx), it is marked
        down in the shared dict so that every worker skips it, and tried again after fail_timeout. A chash key
        whose endpoint refuses goes to the same other endpoint whether it was retried or skipped."""
        for n in "ab":
            self.backend(n)
        dead = free_port()
        dead_addr = "127.0.0.1:%d" % dead
        agent = self.start_agent({"orders": 'selector = "rr"', "carts": 'selector = "chash"'})
        for svc in ("orders", "carts"):
            for n in "ab":
                self.register(svc, n, port=self.backends[n].port)
            self.register(svc, "c", port=dead)
        # a mark lasts 8 s: far longer than the checks below take, so none of them races its expiry
        self.start_nginx(["orders", "carts"], workers=2, opts="fail_timeout = 8")
        refused_re = r"connect\(\) failed \(111: Connection refused\).*upstream: \"http://%s/" % dead_addr
        everyone = [self.backends["a"].addr, self.backends["b"].addr, dead_addr]
        self.wait_peers("orders", everyone)
        self.wait_peers("carts", everyone)
        keys = [k for k in ("k%d" % i for i in range(300))
                if json.loads(agent.request("/v1/pick/carts?key=" + k)[2])["id"] == dead_addr][:3]
        self.assertEqual(len(keys), 3)

        for k in keys:
            got = self.hits("/carts/?key=" + k, 6)                     # the first one is retried
            self.assertEqual(len(set(got)), 1, (k, got))
            self.assertIn(got[0], ("a", "b"))
        got = self.hits("/orders/", 40)
        self.assertEqual(set(got), {"a", "b"})
        refused = self.ng.count_log(refused_re)
        self.assertGreaterEqual(refused, 1)
        self.assertLessEqual(refused, 2)         # one worker marks it, the other sees the mark (or tried once)
        self.assertEqual(self.ng.count_log(r"marked down for 8s"), refused)
        marks = self.ng.per_worker("/peers?s=orders", lambda v: (peer_ids(v, True) or {}).get(dead_addr) is True,
                                   timeout=1)
        self.assertEqual(len(marks), 2)
        # after fail_timeout it is tried again, and fails over again: no request ever sees the refusal
        seen = []

        def retried():
            got = self.hits("/orders/", 4)
            seen.extend(got)
            return self.ng.count_log(refused_re) > refused
        wait_until(retried, timeout=40, what="the mark to expire and the dead endpoint to be tried again")
        self.assertEqual(set(seen), {"a", "b"})
        self.ng.stop()
        self.ng.check_log([refused_re])

    def test_inflight_selectors_need_log(self):
        """leastconn and p2c count requests in flight: with scout.log() in log_by_lua every pick is paired with
        its outcome, so after the requests the counts are back to 0 (and p2c has latency samples)."""
        for n in "ab":
            self.backend(n)
        self.start_agent({"lc": 'selector = "leastconn"', "pc": 'selector = "p2c"'})
        for svc in ("lc", "pc"):
            for n in "ab":
                self.register(svc, n, data={"host": "127.0.0.1", "port": self.backends[n].port})
        log = '        log_by_lua_block { require("resty.scout").log() }\n'
        self.start_nginx(["lc", "pc"], server=log)
        self.wait_peers("lc", ["a", "b"])
        self.wait_peers("pc", ["a", "b"])
        got = self.hits("/lc/", 20)
        self.assertEqual((got.count("a"), got.count("b")), (10, 10))   # idle: ties go round robin
        self.assertEqual(set(self.hits("/pc/", 20)), {"a", "b"})
        for svc in ("lc", "pc"):
            eps = json.loads(self.ng.body("/peers?s=" + svc).split(" ", 1)[1])["endpoints"]
            self.assertEqual([e["in_flight"] for e in eps], [0, 0], eps)
            if svc == "pc":
                self.assertTrue(all(e["ewma_ms"] > 0 for e in eps), eps)
        self.ng.stop()
        self.ng.check_log()

    def test_hot_path_compiles(self):
        """Hot path: under load (swrr, tag routing, keyed chash), LuaJIT traces scout's code and nothing in it
        aborts a trace with NYI (jit.v's log; aborts inside resty.core's ngx.var are its own)."""
        jit_dir = "/usr/share/luajit-2.1.0-beta3"
        # scripts/setup.sh installs both (luajit2, wrk): missing, the test fails rather than skips
        self.assertTrue(os.path.exists(os.path.join(jit_dir, "jit", "v.lua")), "luajit2's jit/v.lua is missing")
        self.assertTrue(shutil.which("wrk"), "wrk is missing (scripts/setup.sh installs it)")
        for n in ("a", "b", "canary"):
            self.backend(n)
        jit_log = os.path.join(tempfile.mkdtemp(prefix="scout-nginx-jit-"), "jit.log")
        os.chmod(os.path.dirname(jit_log), 0o777)
        self.addCleanup(shutil.rmtree, os.path.dirname(jit_log), True)
        # jit.v is turned on at the end of init_worker: the hot path is what runs after it. Loading modules at
        # init may abort a trace once (a chunk makes closures: FNEW), which is harmless; whether it does depends
        # on which functions LuaJIT's hash of hot counters finds hot by then (in CI, once: require's wrapper,
        # "base.lua:77 -- NYI: bytecode 51 at p2c.lua:49", resty.scout loading its selectors).
        http = '    init_by_lua_block { package.path = "%s/?.lua;" .. package.path }\n' % jit_dir
        # Which of scout's modules the worker loads after its init: none may be, since a module's chunk makes
        # closures (FNEW, NYI) and would run inside balance(), where a trace may be recording (once, in CI:
        # "NYI: bytecode 51 at chash.lua:55", carts' first request requiring the chash selector).
        loaded = ('    local function ours() local t = {} for k in pairs(package.loaded) do\n'
                  '        if k:find("^scout") or k:find("^resty%.scout") then t[k] = true end end return t end\n'
                  '    local at_init = ours()\n'
                  '    function SCOUT_TEST_LOADED_SINCE_INIT() local t = {} for k in pairs(ours()) do\n'
                  '        if not at_init[k] then t[#t + 1] = k end end table.sort(t) return table.concat(t, " ") end\n'
                  + '    require("jit.v").on("%s")\n' % jit_log)
        http = scout_http(self.shm, ["orders", "carts"], init=loaded) + http
        since_init = ('        location = /loaded-since-init {\n'
                      '            content_by_lua_block { ngx.say(SCOUT_TEST_LOADED_SINCE_INIT()) }\n'
                      '        }\n')
        self.ng = Nginx(http=http, server=proxy("orders") + proxy("carts") + STATUS + since_init, workers=1)
        self.ng.start()
        # the agent starts after nginx, so that the worker reads its first snapshot after its init, in a timer or a
        # request: the check above then sees what a service's first selector loads
        self.start_agent({"orders": 'selector = "swrr", route = { { tag = true } }', "carts": 'selector = "chash"'})
        for svc in ("orders", "carts"):
            for n in "ab":
                self.register(svc, n, port=self.backends[n].port)
        self.register("orders", "canary", data={"host": "127.0.0.1", "port": self.backends["canary"].port,
                                                "meta": {"tag": "canary"}})
        self.wait_peers("orders", [self.backends["a"].addr, self.backends["b"].addr, "canary"])
        self.wait_peers("carts", [self.backends["a"].addr, self.backends["b"].addr])
        base = "http://127.0.0.1:%d" % self.ng.port
        for args in (["/orders/"], ["-H", "X-Scout-Tag: canary", "/orders/"], ["/carts/?key=abc"]):
            out = subprocess.run(["wrk", "-t1", "-c4", "-d1s"] + args[:-1] + [base + args[-1]],
                                 stdout=subprocess.PIPE, universal_newlines=True).stdout
            self.assertNotIn("Non-2xx", out)
        self.assertEqual(self.ng.body("/loaded-since-init").strip(), "")
        self.ng.stop()
        with open(jit_log) as f:
            lines = f.read().splitlines()
        if os.environ.get("JITDUMP"):
            print("\n".join(lines))
        ours = re.compile(r"\b(scout|swrr|chash|rr|random|leastconn|p2c|route|init|shm|hash|health|agent)\.lua:")
        # Which trace balance() ends up in (a root trace of its own, or inside another) depends on LuaJIT's
        # trace selection timing; that the pick loops compile is asserted deterministically by
        # tests/lua/27_select_jit_spec.lua. What must never show under real nginx load is a construct in our code
        # the JIT cannot compile (NYI): it would stop every request's trace. (Blacklisting of code that runs once
        # per snapshot -- selector construction, chash tables -- is harmless and allowed.) That code runs inside
        # balance() too, and whether a trace is recording when it does depends on which exits got hot first, i.e.
        # on load and ordering (once: a side trace from require's return followed a first canary request into
        # select's complete() and met an upvalue close, "NYI: bytecode 50"). So it must be free of NYI as well;
        # tests/lua/27_select_jit_spec.lua loops that building until it is recorded and asserts it every run.
        # "NYI: register coalescing too complex" is no construct but the assembler's limit on one trace's shape,
        # which comes and goes with the traces that happen to form: it does not count.
        self.assertTrue([l for l in lines if "TRACE" in l and ours.search(l)], "no trace in scout's code at all")
        aborts = [l for l in lines if "TRACE ---" in l and ours.search(l) and "NYI" in l
                  and "register coalescing" not in l]
        self.maxDiff = None
        self.assertEqual(aborts, [])
        self.ng.check_log()

    def test_canary_tag_routing(self):
        """route { { tag = true } }: X-Scout-Tag: canary goes only to the canary, untagged requests never."""
        for n in ("a", "b", "canary"):
            self.backend(n)
        self.start_agent({"orders": 'selector = "swrr", route = { { tag = true } }'})
        for n in "ab":
            self.register("orders", n, data={"host": "127.0.0.1", "port": self.backends[n].port})
        self.register("orders", "canary", data={"host": "127.0.0.1", "port": self.backends["canary"].port,
                                                "meta": {"tag": "canary"}})
        self.start_nginx(["orders"], workers=2)
        self.wait_peers("orders", ["a", "b", "canary"])
        plain = self.hits("/orders/", 40)
        tagged = self.hits("/orders/", 20, {"X-Scout-Tag": "canary"})
        self.assertEqual(set(plain), {"a", "b"})
        self.assertEqual(set(tagged), {"canary"})
        self.ng.stop()
        self.ng.check_log()

    def test_dubbo_governance_reaches_nginx(self):
        """codec dubbo (issue 12): a provider disabled by a dubbo-admin override leaves nginx's list, a weight
        override changes how nginx balances, and a condition router in /routers (through the settings in shm)
        steers the requests of a consumer host, the same rules the agent's /v1/pick applies."""
        import urllib.parse
        iface = "com.acme.NginxDemo"
        root = "/dubbo/" + iface
        self.addCleanup(lambda: KZ.delete(root, recursive=True))
        names = {}
        for n in "abc":
            b = self.backend(n)
            url = ("dubbo://127.0.0.1:%d/%s?application=demo-provider&interface=%s&methods=get,put&side=provider"
                   "&timestamp=1700000000000&weight=100" % (b.port, iface, iface))
            names[n] = urllib.parse.quote(url, safe="")
            KZ.create("%s/providers/%s" % (root, names[n]), makepath=True)
        pol = ('zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }\nshm { path = "%s" }\n'
               'service "demo" { path = "%s/providers", codec = "dubbo", selector = "swrr" }\n' % (self.shm, root))
        self.agent = Scout(pol, ZK.connect).start()
        wait_until(lambda: shm_generation(self.shm) > 0, what="the agent's first snapshot")
        self.start_nginx(["demo"], workers=1)      # one worker: swrr's counts are exact
        self.wait_peers("demo", names.values())
        self.assertEqual(set(self.hits("/demo/", 30)), {"a", "b", "c"})

        def override(n, params):
            url = ("override://127.0.0.1:%d/%s?category=configurators&dynamic=false&enabled=true&%s"
                   % (self.backends[n].port, iface, params))
            KZ.create("%s/configurators/%s" % (root, urllib.parse.quote(url, safe="")), makepath=True)
        override("b", "disabled=true")
        self.wait_peers("demo", [names["a"], names["c"]])
        override("c", "weight=300")
        self.ng.per_worker("/peers?s=demo", lambda v: v.startswith("{") and sorted(
            e["weight"] for e in json.loads(v)["endpoints"]) == [100, 300])
        got = self.hits("/demo/", 40)
        self.assertEqual((got.count("a"), got.count("b"), got.count("c")), (10, 0, 30))
        # a condition router for this consumer host (nginx's ctx.host is the client address): its requests go to
        # a only; the agent's settings carry the rule to nginx, and /v1/pick answers the same
        rule = urllib.parse.quote("host = 127.0.0.1 => port = %d" % self.backends["a"].port)
        url = ("condition://0.0.0.0/%s?category=routers&dynamic=false&force=true&rule=%s" % (iface, rule))
        KZ.create("%s/routers/%s" % (root, urllib.parse.quote(url, safe="")), makepath=True)
        wait_until(lambda: shm_holds(self.shm, b"host = 127.0.0.1"), what="the router in the snapshot's settings")
        gen = shm_generation(self.shm)
        self.ng.per_worker("/gen", lambda v: int(v) >= gen)      # the worker has built that snapshot
        self.assertEqual(set(self.hits("/demo/", 20)), {"a"})
        pick = json.loads(self.agent.request("/v1/pick/demo?host=127.0.0.1")[2])
        self.assertEqual(pick["port"], self.backends["a"].port)
        self.ng.stop()
        self.ng.check_log()

    def test_four_workers_same_generation(self):
        """worker_processes 4: after each change every worker reports the generation the agent last wrote."""
        self.backend("a")
        self.start_agent({"orders": ""})
        self.start_nginx(["orders"], workers=4)
        ports = [free_port() for _ in range(3)]
        steps = [lambda: self.register("orders", "a", port=self.backends["a"].port)]
        steps += [lambda p=p: self.register("orders", "x", port=p) for p in ports]
        steps += [lambda: KZ.delete("%s/orders/127.0.0.1:%d" % (self.base, ports[0]))]
        want, last = 0, shm_generation(self.shm)
        for i, step in enumerate(steps):
            step()
            want += 1 if i < 4 else -1
            wait_until(lambda: len(self.agent.ids("orders")) == want, what="the agent to see the change")
            # the API answers the change before the writer thread has put it in the shared memory: wait for its
            # generation, then for every worker at the generation the agent wrote last. The workers are polled
            # again if the agent writes another one meanwhile (one worker read before it, the others after).
            last = wait_until(lambda: shm_generation(self.shm) > last and shm_generation(self.shm),
                              what="the change's generation in the shared memory")

            def every_worker_at_the_last():
                gens = self.ng.per_worker("/gen", lambda v: int(v) == shm_generation(self.shm))
                return len(gens) == 4 and len(set(gens.values())) == 1 and gens
            gens = wait_until(every_worker_at_the_last, what="all 4 workers at the agent's last generation")
            last = int(next(iter(gens.values())))
        self.ng.stop()
        self.ng.check_log()

    def test_no_snapshot_yet(self):
        """Block: a snapshot file that does not exist yet: balance() says so and the caller answers 502; once
        the file appears (written here with the test writer) every worker picks it up."""
        self.backend("a")
        self.ng = Nginx(http=scout_http(self.shm, ["orders"]), server=proxy("orders") + STATUS, workers=2).start()
        st, _, _ = self.ng.get("/orders/")
        self.assertEqual(st, 502)
        self.assertEqual(self.ng.body("/gen").split()[1], "0")
        tool = os.path.join(ROOT, "build", "tests", "shm_writer_tool")
        self.assertTrue(os.path.exists(tool), "make test builds %s" % tool)
        script = "service orders /o synced 7 -\nep a 127.0.0.1 %d 1 up 1\npublish\n" % self.backends["a"].port
        subprocess.run([tool, self.shm], input=script, universal_newlines=True, check=True,
                       stdout=subprocess.DEVNULL)
        self.ng.per_worker("/gen", lambda v: int(v) == 1, timeout=5)
        self.assertEqual(self.ng.body("/orders/").strip(), "a")
        self.ng.stop()
        self.assertEqual(self.ng.count_log(r"\[error\].*scout orders: no snapshot"), 1)
        self.ng.check_log([r"scout orders: no snapshot", r"no live upstreams"])

    def test_unknown_service_and_empty(self):
        """Block: a service the snapshot does not have, and one with no endpoint: nil, err; 502 by the caller."""
        self.start_agent({"orders": ""})
        self.start_nginx(["orders", "nosuch"])
        self.assertEqual(self.ng.get("/nosuch/")[0], 502)
        self.assertEqual(self.ng.get("/orders/")[0], 502)
        self.assertEqual(self.ng.body("/peers?s=nosuch").split(" ", 1)[1].strip(), "no such service")
        self.ng.stop()
        self.assertEqual(self.ng.count_log(r"scout nosuch: no such service"), 1)
        self.assertEqual(self.ng.count_log(r"scout orders: no endpoint"), 1)
        self.assertEqual(self.ng.count_log(r"no live upstreams"), 2)
        self.ng.check_log([r"scout nosuch: no such service", r"scout orders: no endpoint", r"no live upstreams"])

    def test_first_request_after_publish_is_served(self):
        """nginx up before the agent: 502 until the agent publishes, and the very first request after the
        snapshot holding the endpoint is in the file is served (a worker must not sit out up to a second before
        it looks at the file again)."""
        self.backend("a")
        self.register("orders", "a", port=self.backends["a"].port)
        self.ng = Nginx(http=scout_http(self.shm, ["orders"]), server=proxy("orders") + STATUS, workers=2).start()
        self.assertEqual(self.ng.get("/orders/")[0], 502)
        self.agent = Scout(self.policy({"orders": ""}), ZK.connect).start()
        wait_until(lambda: shm_holds(self.shm, self.backends["a"].addr.encode()), 20, 0.001,
                   what="the agent's snapshot with the endpoint")
        st, body, _ = self.ng.get("/orders/")
        self.assertEqual((st, body.strip()), (200, "a"))
        self.ng.stop()
        self.ng.check_log([r"scout orders: no snapshot", r"no live upstreams"])

    def test_worker_started_while_the_agent_restarts_serves_the_last_list(self):
        """A worker that reads the snapshot for the first time while a restarted agent has not read ZooKeeper yet
        (a worker of `nginx -s reload`, started beside the new agent) serves the last agent's list: the new agent
        that adopts the file publishes nothing before its services have synced. The new agent here cannot reach
        ZooKeeper, so it stays unsynced for the whole test."""
        self.backend("a")
        self.register("orders", "a", port=self.backends["a"].port)
        self.start_agent({"orders": ""})
        wait_until(lambda: shm_holds(self.shm, self.backends["a"].addr.encode()),
                   what="the agent's snapshot with the endpoint")
        self.agent.stop()
        shutil.rmtree(self.agent.dir, ignore_errors=True)
        self.agent = Scout(self.policy({"orders": ""}), "127.0.0.1:%d" % free_port()).start()
        # its API answers once its loop runs, after the first generation it would write (shmpub_new schedules it)
        wait_until(lambda: self.agent.request("/v1/services")[0] == 200, what="the new agent's API")
        self.ng = Nginx(http=scout_http(self.shm, ["orders"]), server=proxy("orders") + STATUS, workers=2).start()
        self.assertEqual(self.hits("/orders/", 4), ["a"] * 4)
        self.ng.stop()
        self.ng.check_log()

def main(argv):
    pattern = None
    if len(argv) >= 2 and argv[0] == "-k":
        pattern = argv[1]
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = ["*%s*" % pattern]
    # spawn_tests.py (spawn_agent's tests) uses this module's ZooKeeper and helpers as `run`
    sys.modules.setdefault("run", sys.modules[__name__])
    import spawn_tests
    suite = unittest.TestSuite([loader.loadTestsFromModule(sys.modules[__name__]),
                                loader.loadTestsFromModule(spawn_tests)])
    runguard.install("scout-nginx-run-")
    t = time.monotonic()
    result, interrupted = runguard.run(suite)
    # a failed test's nginx prefix is kept (it says where); a killed run leaves nothing
    runguard.finish(remove=bool(interrupted) or result.wasSuccessful())
    print("nginx tests took %.1fs" % (time.monotonic() - t))
    return runguard.report(result, interrupted)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
