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
    runguard.install("scout-it-run-")
    t0 = time.monotonic()
    result, interrupted = runguard.run(suite)
    runguard.finish()
    if durations:
        print_durations(result.times, durations, time.monotonic() - t0)
    return runguard.report(result, interrupted)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
