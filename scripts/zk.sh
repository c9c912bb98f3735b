#!/usr/bin/env bash
# zk.sh — start and stop a throwaway ZooKeeper (Debian's 3.8 jar) on 127.0.0.1.
#
# Why: integration tests and benchmarks need a *real* server, one per run, on free
# loopback ports with a temp dataDir, killable node by node for failover tests, and
# always cleaned up by a trap. Never use the system service (zookeeperd, port 2181).
#
#   zk.sh start DIR [--nodes N] [--tick MS]  -> prints the connect string (only stdout line)
#   zk.sh stop DIR                           all nodes, TERM then KILL; idempotent
#   zk.sh stop-node DIR N | kill-node DIR N  TERM(+KILL) / KILL one node
#   zk.sh start-node DIR N                   same cfg/dataDir/port; waits until it serves
#   zk.sh leader DIR                         prints N of the leader (1 when standalone)
#   zk.sh 4lw DIR N CMD                      prints the four-letter-word answer
#   zk.sh connect DIR                        prints the connect string again
#
# Layout: DIR/connect, DIR/nodes, DIR/nodeN/{zoo.cfg,data/,server.log,pid,port}.
# Typical use:
#   D=$(mktemp -d); trap 'scripts/zk.sh stop $D; rm -rf $D' EXIT; ZK=$(scripts/zk.sh start $D)
# Env: ZK_JAVA (java), ZK_START_TIMEOUT (60 s), ZK_HEAP (128m),
#      ZK_JVM_OPTS (-XX:TieredStopAtLevel=1: C1 only, starts faster, steadier),
#      ZK_CDS (1; 0: no class-data sharing archive, see cds_flags).
# fsync is off (zookeeper.forceSync=no): these are throwaway servers and it keeps write
# latency about the watch path, not about the disk.
set -euo pipefail

JAVA=${ZK_JAVA:-java}
CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
TIMEOUT=${ZK_START_TIMEOUT:-60}
PY=/usr/bin/python3

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CDS=$ROOT/build/zk-cds.jsa

die() { echo "zk.sh: $*" >&2; exit 1; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# Free TCP ports on 127.0.0.1: bind port 0 for all of them at once (so they are
# distinct), then release. A port may in theory be grabbed between release and
# java's bind; start() checks the log and reports that case.
free_ports() {
    "$PY" -S - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# four-letter word to 127.0.0.1:$1; empty output (status 0) when nothing answers.
fourlw() {
    local port=$1 cmd=$2
    # shellcheck disable=SC2016  # expanded by the inner bash
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 0
        printf %s "$1" >&3
        cat <&3
    ' "$port" "$cmd" 2>/dev/null || true
}

node_port() { cat "$1/node$2/port" 2>/dev/null || die "no node $2 in $1"; }
nnodes() { cat "$1/nodes" 2>/dev/null || die "$1 was not started by zk.sh"; }

# A zombie counts as gone: java is reparented to PID 1 (setsid), which may
# reap it late (seconds, in some containers). Builtins only (read, not sed):
# this runs in wait loops, and a fork costs ~10 ms of CPU on a loaded machine.
running() { # PID
    local st
    kill -0 "$1" 2>/dev/null || return 1
    read -r st 2>/dev/null < "/proc/$1/stat" || return 1
    st=${st##*) }
    [ -n "$st" ] && [ "${st:0:1}" != Z ]
}

alive() { # DIR N
    local pid=
    read -r pid 2>/dev/null < "$1/node$2/pid" || true
    [ -n "$pid" ] && running "$pid"
}

# The waits run in one Python process each, polling with sockets and /proc:
# a bash loop forked timeout, bash, sed and sleep every 50 ms, which cost more
# CPU than the JVM's own start (0.5-0.7 s a start, 0.25 s a stop, at load 4),
# and the integration passes start ~650 servers on the two cores they share.
#   waitpy ready TIMEOUT quorum|any N:PORT:PIDFILE...  0 once they serve (quorum:
#       every node leader/follower/standalone, one leader when several; any:
#       node N serves); 1 "exited N" when one's java is gone; 2 "timeout"
#   waitpy gone TIMEOUT PID                              0 once PID is gone (a
#       zombie is gone), 1 when still running at the timeout
waitpy() {
    "$PY" -S - "$@" <<'EOF'
import os, socket, sys, time

def running(pid):
    try:
        os.kill(pid, 0)
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

def pid_of(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0

def mode(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.settimeout(3)
            s.sendall(b"srvr")
            out = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                out += b
    except OSError:
        return ""
    for line in out.decode("latin-1").splitlines():
        if line.startswith("Mode: "):
            return line[6:].strip()
    return ""

cmd, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
if cmd == "gone":
    pid = int(sys.argv[3])
    while running(pid):
        if time.monotonic() >= deadline:
            sys.exit(1)
        time.sleep(0.05)
    sys.exit(0)
how = sys.argv[3]
nodes = [a.split(":", 2) for a in sys.argv[4:]]
while True:
    modes = [mode(int(port)) for _, port, _ in nodes]
    leaders = modes.count("leader")
    if how == "any" and modes[0]:
        sys.exit(0)
    if how == "quorum" and all(m in ("leader", "follower", "standalone") for m in modes) and leaders <= 1 \
            and (len(nodes) == 1 or leaders == 1):
        sys.exit(0)
    for n, _, pidfile in nodes:
        pid = pid_of(pidfile)
        if not pid or not running(pid):
            print("exited %s" % n)
            sys.exit(1)
    if time.monotonic() >= deadline:
        print("timeout")
        sys.exit(2)
    time.sleep(0.05)
EOF
}

mode() { # DIR N -> standalone|leader|follower|"" (not serving)
    fourlw "$(node_port "$1" "$2")" srvr | sed -n 's/^Mode: //p'
}

log_tail() { # DIR N
    echo "--- $1/node$2/server.log (tail) ---" >&2
    tail -n 25 "$1/node$2/server.log" >&2 2>/dev/null || true
}

# Class-data sharing: ZooKeeper's classes mapped from an archive instead of loaded
# and verified at every start, ~25% of a start's CPU here (73 -> 53 ticks), and
# the integration passes start ~650 servers on a CPU they share. The first server
# started once build/ exists dumps the archive when it exits after a TERM (one at
# a time: a lock directory); later ones map it. A JVM that finds the archive made
# by another JDK or jar ignores it and loads the classes as before.
cds_flags() { # DIR N -> java options on stdout
    [ "${ZK_CDS:-1}" = 1 ] && [ -d "$ROOT/build" ] || return 0
    if [ -s "$CDS" ]; then
        echo "-XX:SharedArchiveFile=$CDS"
    elif mkdir "$CDS.making" 2>/dev/null; then
        echo "$CDS.$$.tmp" > "$1/node$2/cds-making"
        echo "-XX:ArchiveClassesAtExit=$CDS.$$.tmp"
    fi
}

# After node N's JVM is gone: its archive is kept only if it exited on its own
# after the TERM (a KILL may have cut the dump short).
cds_done() { # DIR N KILLED
    local f=$1/node$2/cds-making tmp
    [ -f "$f" ] || return 0
    tmp=$(cat "$f")
    rm -f "$f"
    if [ "$3" = 0 ] && [ -s "$tmp" ]; then mv -f "$tmp" "$CDS"; else rm -f "$tmp"; fi
    rmdir "$CDS.making" 2>/dev/null || true
}

launch() { # DIR N
    local d=$1/node$2 cds
    cds=$(cds_flags "$1" "$2")
    : > "$d/server.log"
    # setsid: own process group, so a Ctrl-C aimed at the test doesn't race our
    # stop; stdin/stdout/stderr all detached so $(zk.sh start) returns at once.
    # shellcheck disable=SC2086
    setsid "$JAVA" -Xmx"${ZK_HEAP:-128m}" -XX:+UseSerialGC ${ZK_JVM_OPTS--XX:TieredStopAtLevel=1} $cds \
        -Dzookeeper.jmx.log4j.disable=true -Dzookeeper.forceSync=no \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
        -cp "$CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
        </dev/null >>"$d/server.log" 2>&1 &
    echo $! > "$d/pid"
}

# Wait until node N serves (standalone: Mode present; ensemble: leader/follower).
wait_serving() { # DIR N
    local why
    why=$(waitpy ready "$TIMEOUT" any "$2:$(node_port "$1" "$2"):$1/node$2/pid") && return 0
    log_tail "$1" "$2"
    case $why in
        exited*) die "node $2 exited before serving" ;;
        *) die "node $2 not serving after ${TIMEOUT}s" ;;
    esac
}

# Ensemble ready: every live node serves, exactly one leader.
wait_quorum() { # DIR
    local n i why args=()
    n=$(nnodes "$1")
    for i in $(seq 1 "$n"); do args+=("$i:$(node_port "$1" "$i"):$1/node$i/pid"); done
    why=$(waitpy ready "$TIMEOUT" quorum "${args[@]}") && return 0
    case $why in
        "exited "*) log_tail "$1" "${why#exited }"; die "node ${why#exited } exited before quorum" ;;
        *) for i in $(seq 1 "$n"); do log_tail "$1" "$i"; done; die "no quorum after ${TIMEOUT}s" ;;
    esac
}

cmd_start() {
    local dir=${1:-} nodes=1 tick=200
    [ -n "$dir" ] || usage
    shift
    while [ $# -gt 0 ]; do
        case $1 in
            --nodes) nodes=$2; shift 2 ;;
            --tick) tick=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ $nodes =~ ^[1-9]$ ]] || die "--nodes must be 1..9"
    [[ $tick =~ ^[0-9]+$ ]] || die "--tick must be milliseconds"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/nodes" ]; then
        for i in $(seq 1 "$(cat "$dir/nodes")"); do
            alive "$dir" "$i" && die "$dir already has a running node $i"
        done
    fi

    local ports i cport servers="" connect=""
    # shellcheck disable=SC2207
    ports=($(free_ports $((nodes * 3))))
    for i in $(seq 1 "$nodes"); do
        servers+="server.$i=127.0.0.1:${ports[$((nodes + 2 * (i - 1)))]}:${ports[$((nodes + 2 * (i - 1) + 1))]}"$'\n'
    done
    for i in $(seq 1 "$nodes"); do
        cport=${ports[$((i - 1))]}
        mkdir -p "$dir/node$i/data"
        echo "$cport" > "$dir/node$i/port"
        {
            echo "tickTime=$tick"
            echo "initLimit=10"
            echo "syncLimit=5"
            echo "dataDir=$dir/node$i/data"
            echo "clientPort=$cport"
            echo "clientPortAddress=127.0.0.1"
            echo "admin.enableServer=false"
            echo "4lw.commands.whitelist=ruok,srvr,mntr,cons,stat,wchs"
            echo "minSessionTimeout=$((2 * tick))"
            echo "maxSessionTimeout=60000"
            echo "maxClientCnxns=0"
            echo "preAllocSize=1024"
            echo "autopurge.purgeInterval=0"
            if [ "$nodes" -gt 1 ]; then
                echo "$i" > "$dir/node$i/data/myid"
                printf %s "$servers"
            fi
        } > "$dir/node$i/zoo.cfg"
        connect+="${connect:+,}127.0.0.1:$cport"
    done
    echo "$nodes" > "$dir/nodes"
    echo "$connect" > "$dir/connect"
    for i in $(seq 1 "$nodes"); do launch "$dir" "$i"; done
    if ! ( wait_quorum "$dir" ); then
        cmd_stop "$dir" >/dev/null 2>&1 || true
        exit 1
    fi
    echo "$connect"
}

stop_one() { # DIR N SIGNAL
    local pid d=$1/node$2 killed=0
    pid=; read -r pid 2>/dev/null < "$d/pid" || true
    [ -n "$pid" ] || return 0
    if running "$pid"; then
        if [ "$3" = KILL ]; then
            kill -KILL "$pid" 2>/dev/null || true
            killed=1
        else
            kill -TERM "$pid" 2>/dev/null || true
            if ! waitpy gone 5 "$pid"; then kill -KILL "$pid" 2>/dev/null || true; killed=1; fi
        fi
        if running "$pid"; then waitpy gone 5 "$pid" || true; fi
    fi
    : > "$d/pid"
    cds_done "$1" "$2" "$killed"
}

cmd_stop() {
    local dir=${1:-} i
    [ -n "$dir" ] || usage
    [ -f "$dir/nodes" ] || return 0          # never started, or already removed
    for i in $(seq 1 "$(cat "$dir/nodes")"); do
        # TERM everything first, then wait: stops N nodes in ~one grace period
        pid=; read -r pid 2>/dev/null < "$dir/node$i/pid" || true
        if [ -n "${pid:-}" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for i in $(seq 1 "$(cat "$dir/nodes")"); do stop_one "$dir" "$i" TERM; done
}

cmd_start_node() {
    local dir=$1 n=$2
    node_port "$dir" "$n" >/dev/null
    alive "$dir" "$n" && die "node $n is already running"
    launch "$dir" "$n"
    wait_serving "$dir" "$n"
}

cmd_leader() {
    local dir=$1 i m
    for i in $(seq 1 "$(nnodes "$dir")"); do
        m=$(mode "$dir" "$i")
        if [ "$m" = leader ] || [ "$m" = standalone ]; then echo "$i"; return 0; fi
    done
    die "no leader"
}

main() {
    local c=${1:-}
    [ $# -gt 0 ] && shift
    case $c in
        start) cmd_start "$@" ;;
        stop) cmd_stop "${1:-}" ;;
        stop-node) [ $# = 2 ] || usage; node_port "$1" "$2" >/dev/null; stop_one "$1" "$2" TERM ;;
        kill-node) [ $# = 2 ] || usage; node_port "$1" "$2" >/dev/null; stop_one "$1" "$2" KILL ;;
        start-node) [ $# = 2 ] || usage; cmd_start_node "$1" "$2" ;;
        leader) [ $# = 1 ] || usage; cmd_leader "$1" ;;
        4lw) [ $# = 3 ] || usage; fourlw "$(node_port "$1" "$2")" "$3" ;;
        connect) [ $# = 1 ] || usage; cat "$1/connect" ;;
        *) usage ;;
    esac
}

main "$@"
