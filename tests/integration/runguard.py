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
leave nothing. A second signal while finishing is ignored: the clean-up is what was asked for. run() and report()
are the runners' shared part: the interrupted test counts as failed and the count line is still printed.
"""

import os
import shutil
import signal
import sys
import tempfile
import time
import unittest

MARK = "SCOUT_TEST_RUN"


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_run_dir = None
_finishing = False


def _on_signal(signum, frame):
    global _finishing
    if _finishing:
        return
    _finishing = True               # the same signal sent to a whole tree (tests/run.sh) arrives more than once
    raise Interrupted(signum)


def install(prefix):
    """One temp dir for the run (returned), and SIGTERM/SIGINT raise Interrupted. Call before any test starts."""
    global _run_dir
    _run_dir = tempfile.mkdtemp(prefix=prefix)
    os.chmod(_run_dir, 0o755)       # nginx workers (nobody, when the tests run as root) read and start under it
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
    # what is left (the count line, the interpreter's exit) can be killed again: a test thread that never ends
    # would otherwise hold the exit with the signals ignored
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- the runners' shared part: run a suite, count it, print the count line ------------------------------------

class Result(unittest.TextTestResult):
    """Each test's wall time, from its start to its end (its setUp and tearDown included)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.times = []
        self.current = None             # a test started with no outcome yet: the one an interrupted run names
        self.passes = 0

    def outcomes(self):
        return self.passes + len(self.failures) + len(self.errors) + len(self.skipped) + \
            len(self.expectedFailures) + len(self.unexpectedSuccesses)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passes += 1

    def startTest(self, test):
        self._t0 = time.monotonic()
        self._before = self.outcomes()
        self.current = test
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)          # also on the way out of an interrupted test
        if self.outcomes() > self._before:
            self.current = None
        self.times.append((time.monotonic() - self._t0, test.id()))


class Runner(unittest.TextTestRunner):
    """Keeps its result, so that an interrupted run can still count what ran."""

    resultclass = Result
    result = None

    def _makeResult(self):
        self.result = super()._makeResult()
        return self.result


def run(suite):
    """Runs suite verbosely on stdout; returns (result, Interrupted or None). The signal's traceback is not
    printed: the line names the test it stopped."""
    runner = Runner(verbosity=2, stream=sys.stdout)
    try:
        return runner.run(suite), None
    except Interrupted as e:
        result = runner.result or Result(sys.stdout, True, 2)   # None: the signal came before the first test
        print("\ninterrupted by %s%s: stopping what the run started" % (
            e, " in " + result.current.id() if result.current else ""))
        return result, e


def report(result, interrupted):
    """Prints `N passed, N failed[, N skipped]`; returns the exit status (an interrupted run exits here, 128+signal,
    not waiting for a test's client threads)."""
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    # an error in setUpClass counts as a failure without a test having run
    passed = max(0, result.testsRun - failed - skipped - (1 if result.current else 0))
    if interrupted:
        failed += 1                 # the test (or set-up) the signal stopped
    elif result.testsRun == 0:
        print("no test ran")
        failed += 1
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    if interrupted:
        sys.stdout.flush()
        os._exit(128 + interrupted.signum)
    return 1 if failed else 0
