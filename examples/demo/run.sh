#!/usr/bin/env bash
# run.sh — `make run`: watch scout follow a ZooKeeper registry that keeps changing.
#
# Why: the quickest way to see what scout does is to point it at a live registry. This starts a throwaway
# ZooKeeper (scripts/zk.sh), the agent with examples/demo/policy.lua, and examples/demo/publisher.py, which adds
# and removes endpoints every second; then it shows what scout publishes (service, state, index, endpoints),
# redrawn twice a second until Ctrl-C. Everything it started is stopped and its temp dir removed on exit.
#
# Without a terminal (CI, `make run </dev/null | cat`) it runs SCOUT_DEMO_SECONDS (10) seconds, prints a few
# plain snapshots and doubles as a smoke test: it exits non-zero unless every service was seen synced with
# endpoints. Env: SCOUT_BIN (build/scout), SCOUT_DEMO_SECONDS.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCOUT_BIN=${SCOUT_BIN:-$ROOT/build/scout}
POLICY=$ROOT/examples/demo/policy.lua
PY=/usr/bin/python3            # the interpreter Debian's python3-kazoo is installed for
SECONDS_NO_TTY=${SCOUT_DEMO_SECONDS:-10}

TMP="" SCOUT_PID="" PUB_PID="" VIEW_PID=""

say() { echo "scout demo: $*" >&2; }
die() { say "$*"; exit 1; }

check_prereqs() {
    [ -x "$SCOUT_BIN" ] || die "no $SCOUT_BIN; run 'make' first"
    command -v java >/dev/null || die "java not found; run 'make setup' (installs Debian's zookeeper)"
    [ -r /usr/share/java/zookeeper.jar ] || die "no /usr/share/java/zookeeper.jar; run 'make setup'"
    "$PY" -c 'import kazoo' 2>/dev/null || die "$PY cannot import kazoo; run 'make setup' (python3-kazoo)"
    "$SCOUT_BIN" check "$POLICY" >/dev/null
}

# A free loopback port, chosen now: bind port 0, read it back, release it.
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# TERM a process we started, wait up to 5 s, then KILL. Idempotent.
stop_pid() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

show_logs() {
    echo "--- scout log (tail) ---" >&2
    tail -n 30 "$TMP/scout.log" >&2 2>/dev/null || true
    echo "--- publisher log (tail) ---" >&2
    tail -n 10 "$TMP/publisher.log" >&2 2>/dev/null || true
}

cleanup() {
    local rc=$?
    # Best effort to the end, whatever happens meanwhile: no set -e, and signals ignored rather than reset -- an
    # INT arriving now (a second Ctrl-C) or a PIPE (`make run | head` closed our stdout) must not kill us halfway
    # and leave ZooKeeper running.
    set +e
    trap - EXIT
    trap '' INT TERM PIPE
    [ -n "$TMP" ] || exit "$rc"
    # 130/143: Ctrl-C or TERM, the normal way out of the live view; anything else non-zero is a failure
    if [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ "$rc" != 143 ]; then show_logs; fi
    stop_pid "$VIEW_PID"
    stop_pid "$SCOUT_PID"
    stop_pid "$PUB_PID"
    "$ROOT/scripts/zk.sh" stop "$TMP/zk" >/dev/null 2>&1 || true
    rm -rf "$TMP"
    say "stopped scout, the publisher and ZooKeeper; removed $TMP"
    [ "$rc" = 130 ] && rc=0    # Ctrl-C is how the live view is meant to end
    exit "$rc"
}

start_all() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/scout-demo.XXXXXX")
    say "starting ZooKeeper..."
    ZK=$("$ROOT/scripts/zk.sh" start "$TMP/zk")

    # setsid: their own process group, out of reach of a Ctrl-C, which is ours to handle: cleanup stops the view
    # first (so it never reports the agent gone), then these. We are no group leader, so setsid execs: $! is right.
    setsid "$PY" "$ROOT/examples/demo/publisher.py" "$ZK" >"$TMP/publisher.log" 2>&1 </dev/null &
    PUB_PID=$!

    API=127.0.0.1:$(free_port)
    setsid "$SCOUT_BIN" run -c "$POLICY" --zk "$ZK" --api "$API" >"$TMP/scout.log" 2>&1 </dev/null &
    SCOUT_PID=$!
    say "ZooKeeper $ZK, scout API http://$API (pid $SCOUT_PID), logs in $TMP"
}

# The table: one Python process polls the API (stdlib only; curl may not be installed) and draws it.
# Plain mode exits 0 after the timed run when every service was seen synced with endpoints, else 1; the live
# view runs until cleanup TERMs it. Either way it exits 1 if the agent dies.
# Run in the background (a subshell): exec, so that $! is Python itself and cleanup's TERM reaches it.
view() { # MODE(tty|plain) SECONDS
    exec "$PY" - "$1" "$2" "$API" "$SCOUT_PID" "$TMP/publisher.log" "$ZK" <<'EOF'
import http.client, json, os, shutil, signal, sys, time

mode, seconds, api, pid, publog, zk = sys.argv[1:7]
seconds, pid, tty = float(seconds), int(pid), mode == "tty"
host, port = api.rsplit(":", 1)

def get(path):
    c = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()

def label(ep):
    # dubbo ids are whole URL-encoded provider URLs; host:port says the same in a column
    return ep["id"] if len(ep["id"]) <= 24 else "%s:%d" % (ep["host"], ep["port"])

def alive():
    try:  # a zombie counts as gone (bash reaps it only later)
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

def snapshot():
    """-> (lines, services) where services is the /v1/services answer (None when the API is not up)."""
    try:
        _, services = get("/v1/services")
        hstatus, health = get("/v1/health")
    except (OSError, http.client.HTTPException, ValueError) as e:
        return ["scout API %s not answering yet (%s)" % (api, e.__class__.__name__)], None
    width = shutil.get_terminal_size((110, 24)).columns if tty else 110
    lines = ["%-14s %-8s %6s %4s  %s" % ("SERVICE", "STATE", "INDEX", "EPS", "ENDPOINTS (id, or host:port for dubbo)")]
    indent = " " * 37
    for s in services:
        try:
            _, eps = get("/v1/services/" + s["name"])
        except (OSError, http.client.HTTPException, ValueError):
            eps = []
        head = "%-14s %-8s %6d %4d  " % (s["name"], s["state"], s["index"], s["endpoints"])
        row = head
        for word in [label(e) + ("" if e["weight"] in (1, 100) else "(w%d)" % e["weight"]) for e in eps] or ["-"]:
            if len(row) + len(word) + 1 > width and row.strip() != head.strip():
                lines.append(row.rstrip())
                row = indent
            row += word + " "
        lines.append(row.rstrip())
    lines.append("")
    if isinstance(health, dict):
        health = " ".join(str(health[k]) for k in ("status", "reason") if k in health)
    lines.append("health: %d %s" % (hstatus, health))
    try:
        with open(publog) as f:
            recent = f.read().splitlines()[-3:]
    except OSError:
        recent = []
    lines.append("publisher, last changes:")
    lines += ["  " + l for l in recent]
    return lines, services

def good(services):
    """names of services seen synced with at least one endpoint"""
    return {s["name"] for s in services or [] if s["state"] == "synced" and s["endpoints"] > 0}

def on_term(*_):
    raise SystemExit(143)               # run.sh's cleanup stops us this way; the finally below restores the cursor

signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is run.sh's to handle: its cleanup TERMs us
seen, names = set(), set()
start = time.monotonic()
try:
    if tty:
        sys.stdout.write("\033[?25l\033[2J")          # hide the cursor, clear once; then redraw in place
    next_plain = 3.0
    while True:
        if not alive():
            print("\nscout (pid %d) exited" % pid)
            sys.exit(1)
        lines, services = snapshot()
        seen |= good(services)
        names |= {s["name"] for s in services or []}
        t = time.monotonic() - start
        if tty:
            top = "scout demo  ZooKeeper %s  API http://%s  %s  (Ctrl-C to stop)" % (zk, api, time.strftime("%H:%M:%S"))
            hint = "try: curl -s http://%s/v1/services/orders     logs: %s" % (api, os.path.dirname(publog))
            out = [top, ""] + lines + ["", hint]
            sys.stdout.write("\033[H" + "".join(l + "\033[K\n" for l in out) + "\033[J")
            sys.stdout.flush()
        elif t >= next_plain or t >= seconds:
            print("--- %s (t=%.0fs)" % (time.strftime("%H:%M:%S"), t))
            print("\n".join(lines), flush=True)
            print(flush=True)
            next_plain += 3.0
        if not tty and t >= seconds:
            break
        time.sleep(0.5)
finally:
    if tty:
        sys.stdout.write("\033[?25h\n")
        sys.stdout.flush()

missing = sorted(names - seen) if names else ["(no service listed by the API)"]
if missing:
    print("FAIL: never saw these synced with endpoints: %s" % ", ".join(missing))
    sys.exit(1)
print("ok: all %d services seen synced with endpoints" % len(seen))
EOF
}

main() {
    check_prereqs
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 141' PIPE       # our output went away (`make run | head`): still clean up
    start_all
    # In the background + wait, so that INT/TERM run the trap at once: bash would hold a trap until a
    # foreground command ends, and the live view never ends by itself.
    if [ -t 1 ]; then
        view tty 0 &
    else
        view plain "$SECONDS_NO_TTY" &
    fi
    VIEW_PID=$!
    wait "$VIEW_PID"
}

main "$@"
