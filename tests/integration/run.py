"""Run every integration test module (test_*.py) and print `N passed, N failed[, N skipped]`; no test run is a failure.

Usage: /usr/bin/python3 tests/integration/run.py [-k substring] [module ...]
Needs /usr/bin/python3 (kazoo is packaged only for it).
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv):
    pattern = None
    names = []
    args = iter(argv)
    for a in args:
        if a == "-k":
            pattern = next(args)
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
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    # an error in setUpClass counts as a failure without a test having run
    passed = max(0, result.testsRun - failed - skipped)
    if result.testsRun == 0:
        print("no test ran")
        failed += 1
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
