"""exitpair.py -- SIGTERM -> exit at the registry's full size, the base binary and the new one side by side on one
ZooKeeper (run by run.sh with EXITPAIR=1, /usr/bin/python3).

Why: the exit's cost grows with the sessions and what they hold (at a million endpoints 50 sessions, each close
dropping its share of a million watches on the server), and a full scale.py run syncs a million endpoints once per
binary (10-20 minutes each on the shared machine). This driver reuses a registry scale.py populated (ZK_DATA=the kept
dataDir; it refuses an empty one), starts SCOUT_BASE and SCOUT together (same policy as scale.py writes, each its own
cache dir), waits until both answer health 200, lets them settle SETTLE_S (10) s, then SIGTERMs the new one, then
the base one (which so exits on a server with fewer sessions: the comparison favours the base), and prints the wall
clock SIGTERM -> exit and what each agent's exit log line says it spent. Nothing is asserted; an agent that exits before health 200 fails the run.
Env: SERVICES, ENDPOINTS, SESSION_TIMEOUT_MS, SYNC_TIMEOUT_S, SETTLE_S, SCOUT, SCOUT_BASE (required).
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from config import ENDPOINTS, ROOT_PATH, SERVICES, SESSION_TIMEOUT_MS, SYNC_TIMEOUT_S, log, svc_name  # noqa: E402
from agent import LIVE, Agent, on_signal  # noqa: E402
from measure import loadavg, schedstat  # noqa: E402
from zkutil import kazoo  # noqa: E402

SETTLE_S = float(os.environ.get("SETTLE_S", "10"))


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    zk, _zkdir, tmp = sys.argv[1:4]
    kz = kazoo(zk)
    last = "%s/%s" % (ROOT_PATH, svc_name(SERVICES - 1))
    if kz.exists(last) is None or len(kz.get_children(last)) != ENDPOINTS:
        raise SystemExit("exitpair: %s is not populated: run scale.py first with the same ZK_DATA" % last)
    kz.stop()
    kz.close()
    policy = os.path.join(tmp, "policy.lua")
    with open(policy, "w") as f:
        f.write('zookeeper { servers = "x:1"%s }\n'
                % (", session_timeout = %d" % int(SESSION_TIMEOUT_MS) if SESSION_TIMEOUT_MS else ""))
        f.write('for i = 0, %d do\n  local n = string.format("svc-%%05d", i)\n'
                '  service(n) { path = "%s/" .. n, codec = "plain" }\nend\n' % (SERVICES - 1, ROOT_PATH))
    bins = [("base", os.environ["SCOUT_BASE"]), ("new", os.environ["SCOUT"])]
    agents = {tag: Agent(b, policy, zk, tmp, tag, cache_dir=os.path.join(tmp, "cache-" + tag)) for tag, b in bins}
    synced = {}
    while len(synced) < len(agents):
        for tag, a in agents.items():
            if tag in synced:
                continue
            if not a.alive():
                raise SystemExit("exitpair: %s exited:\n%s" % (tag, a.log_tail()))
            try:
                if a.get("/v1/health", timeout=10)[0] == 200:
                    synced[tag] = (time.monotonic() - a.t0, schedstat(a.pid)[0])
                    log("exitpair: %s health 200 after %.0f s (%.0f s on-CPU)" % ((tag,) + synced[tag]))
            except OSError:
                pass
        if time.monotonic() - min(a.t0 for a in agents.values()) > SYNC_TIMEOUT_S:
            raise SystemExit("exitpair: not synced within %.0f s: %r" % (SYNC_TIMEOUT_S, synced))
        time.sleep(1)
    time.sleep(SETTLE_S)
    print("exitpair: %d services x %d endpoints, load average %s" % (SERVICES, ENDPOINTS, loadavg()))
    for tag in ("new", "base"):          # the new one first: the base one then exits on a quieter server
        a = agents[tag]
        exit_s = a.stop()
        line = next((ln for ln in a.log_lines() if "agent: exit:" in ln), "(no exit line)")
        print("%s: health 200 after %.0f s; SIGTERM -> exit %.2f s; %s"
              % (tag, synced[tag][0], exit_s, line.split("agent: ", 1)[-1]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for a in list(LIVE):
            a.stop()
