"""runguard — a test run that stops cleanly on SIGTERM or SIGINT, for tests/integration/run.py and tests/nginx/run.py.

Why: a run starts ZooKeepers (java, setsid: not our process group), agents, nginx masters and temp dirs. unittest
records any exception a test raises, SystemExit included, and goes on with the next test: a `kill` of a run used
to leave the run going, and whatever the killed test had started behind. Here the first SIGTERM/SIGINT raises
Interrupted (a KeyboardInterrupt, which unittest lets through) in the main thread; the runner then calls
finish(): every harness stops what it started, any process still carrying the run's mark is killed, the run's
one temp dir is removed, and the runner prints its count line and exits 128+signal.

The mark: install() makes one temp dir for the whole run and points tempfile and $TMPDIR at it, and sets
$SCOUT_TEST_RUN to it; every temp dir a harness or test makes lies under it, and every process the run starts
inherits the variable (java and nginx too, whoever their parent is by then), so one rmtree and one /proc walk
leave nothing. A second signal while finishing is ignored: the clean-up is what was asked for.
"""

import os
import shutil
import signal
import sys
import tempfile
import time

MARK = "SCOUT_TEST_RUN"


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_run_dir = None
_finishing = False


def _on_signal(signum, frame):
    if _finishing:
        return
    raise Interrupted(signum)


def install(prefix):
    """One temp dir for the run (returned), and SIGTERM/SIGINT raise Interrupted. Call before any test starts."""
    global _run_dir
    _run_dir = tempfile.mkdtemp(prefix=prefix)
    os.environ["TMPDIR"] = _run_dir
    os.environ[MARK] = _run_dir
    tempfile.tempdir = _run_dir
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return _run_dir


def _marked_pids():
    """Pids (not ours) whose environment carries this run's mark."""
    want = ("%s=%s" % (MARK, _run_dir)).encode()
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                if want in f.read().split(b"\0"):
                    out.append(int(name))
        except OSError:
            pass                    # gone, or not ours to read
    return out


def _stop_harnesses():
    for mod in ("scoutharness", "nginxharness", "zkharness"):
        m = sys.modules.get(mod)
        if m is None:
            continue
        try:
            m._stop_all()
        except Exception as e:      # the rest of the clean-up still runs
            sys.stderr.write("runguard: %s stop failed: %r\n" % (mod, e))


def finish(remove=True):
    """Stops everything the run started and removes its temp dir (remove=False: a failed run keeps what its tests
    kept, e.g. a failed nginx test's prefix); idempotent. The runner calls it on every exit."""
    global _finishing
    _finishing = True
    if _run_dir is None:
        return
    _stop_harnesses()
    # what no harness knew of (a test's own Popen, a hook's child): TERM, then KILL what is left
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _marked_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            if pids:
                time.sleep(0.02)
        if not pids:
            break
    if not remove or os.environ.get("SCOUT_TEST_KEEP") or os.environ.get("NGINX_TEST_KEEP"):
        try:
            os.rmdir(_run_dir)      # nothing was kept after all
        except OSError:
            sys.stderr.write("runguard: kept %s\n" % _run_dir)
    else:
        shutil.rmtree(_run_dir, ignore_errors=True)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
