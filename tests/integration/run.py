"""Run every integration test module (test_*.py) and print `N passed, N failed[, N skipped]`; no test run is a failure.

Usage: /usr/bin/python3 tests/integration/run.py [-k substring] [--durations N] [module ...]
Needs /usr/bin/python3 (kazoo is packaged only for it). --durations N lists the N slowest tests and each module's
tests summed (a class's or module's set-up is not in them), to find where the suite waits.
SIGTERM or SIGINT stops the run at once (runguard.py): what its tests started is stopped, its temp dir removed, the
interrupted test counts as failed, the count line is printed and the exit status is 128+signal.
"""

import os
import sys
import time
import unittest

import runguard

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# most classes start a ZooKeeper per test: zkharness starts the next one while a test runs (ZKH_PREFETCH=0: off)
os.environ.setdefault("ZKH_PREFETCH", "1")


class TimedResult(unittest.TextTestResult):
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

    resultclass = TimedResult
    result = None

    def _makeResult(self):
        self.result = super()._makeResult()
        return self.result


def print_durations(times, n, wall):
    print("\nslowest %d tests:" % n)
    for t, name in sorted(times, reverse=True)[:n]:
        print("%7.1fs  %s" % (t, name))
    modules = {}
    for t, name in times:
        modules[name.split(".")[0]] = modules.get(name.split(".")[0], 0) + t
    print("per module, tests only (whole run %.0fs; the rest is class and module set-up):" % wall)
    for name, t in sorted(modules.items(), key=lambda kv: -kv[1]):
        print("%7.1fs  %s" % (t, name))


def main(argv):
    pattern = None
    durations = 0
    names = []
    args = iter(argv)
    for a in args:
        if a == "-k":
            pattern = next(args)
        elif a == "--durations":
            durations = int(next(args))
        else:
            names.append(a)
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = ["*%s*" % pattern]
    if names:
        suite = unittest.TestSuite(loader.loadTestsFromName(os.path.splitext(os.path.basename(n))[0])
                                   for n in names)
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    runner = Runner(verbosity=2, stream=sys.stdout)
    runguard.install("scout-it-run-")
    t0 = time.monotonic()
    interrupted = None
    try:
        result = runner.run(suite)
    except runguard.Interrupted as e:
        interrupted, result = e, runner.result
        print("\ninterrupted by %s%s: stopping what the run started" % (
            e, " in " + result.current.id() if result and result.current else ""))
    finally:
        runguard.finish()
    if result is None:              # the signal came before the first test
        result = TimedResult(sys.stdout, True, 2)
    if durations:
        print_durations(result.times, durations, time.monotonic() - t0)
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
        os._exit(128 + interrupted.signum)    # a test's client threads are not waited for
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
