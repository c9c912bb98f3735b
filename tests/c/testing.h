/*
 * testing.h -- named tests, their checks and the summary line every C test
 * shares.  The count means tests, not checks: a test is one named behaviour
 * (a function), it fails when any of its checks fails, however many it makes,
 * so a loop of 10,000 checks is still one test.  Each test prints "ok NAME"
 * or "FAIL NAME" (failed checks print file:line, the test, the condition and,
 * when given, a printf-style note); the binary ends with one line,
 * "N passed, N failed[, N skipped]", which tests/run.sh sums over the suites.
 *
 *     static void test_rise_needs_two(void) { CHECK(x == 1, "x was %d", x); }
 *     ...
 *     RUN(test_rise_needs_two());        // the call is the test's name
 *     RUN(test_basic(unix_server, &c));  // a test run on several subjects
 *     return test_summary();
 *
 * A check outside any test (setup in main) that fails counts as a failed
 * test named "(setup)".  SKIP("why") inside a test marks it skipped; it is
 * only for what the machine cannot do (no IPv6 in a container), never for a
 * missing tool: scripts/setup.sh installs every tool, so a missing one fails.
 */
#ifndef SCOUT_TESTING_H
#define SCOUT_TESTING_H

#include <stdio.h>
#include <string.h>

static int         passed, failed, skipped;   /* tests */
static int         test_failures_;            /* failed checks, this test */
static int         test_skip_;
static int         setup_failures_;           /* failed checks outside one */
static const char *test_name_;                /* NULL outside a test */

/* The note, if any, must start with a string literal. */
#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            if (test_name_ != NULL)                                         \
                test_failures_++;                                           \
            else                                                            \
                setup_failures_++;                                          \
            fprintf(stderr, "%s:%d: [%s] check failed: %s", __FILE__,       \
                    __LINE__, test_name_ ? test_name_ : "(setup)", #cond);  \
            fprintf(stderr, ": " __VA_ARGS__);                              \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

/* err must mention what; prints both when it does not. */
#define CHECK_ERR(err, what)                                                \
    do {                                                                    \
        int ok_ = strstr((err), (what)) != NULL;                            \
        CHECK(ok_, "err was: %s (wanted %s)", (err), (what));               \
    } while (0)

/* Marks the running test skipped (unless a check of it failed). */
#define SKIP(...)                                                           \
    do {                                                                    \
        test_skip_ = 1;                                                     \
        fprintf(stderr, "skip %s: ", test_name_ ? test_name_ : "(setup)");  \
        fprintf(stderr, __VA_ARGS__);                                       \
        fputc('\n', stderr);                                                \
    } while (0)

static inline void
test_begin_(const char *name)
{
    test_name_ = name;
    test_failures_ = 0;
    test_skip_ = 0;
}

static inline void
test_end_(void)
{
    if (test_failures_) {
        failed++;
        printf("FAIL %s (%d checks failed)\n", test_name_, test_failures_);
    } else if (test_skip_) {
        skipped++;
        printf("skip %s\n", test_name_);
    } else {
        passed++;
        printf("ok   %s\n", test_name_);
    }
    fflush(stdout);
    test_name_ = NULL;
}

/* Runs one test: call is a function call expression, and names the test. */
#define RUN(call)                                                           \
    do {                                                                    \
        test_begin_(#call);                                                 \
        call;                                                               \
        test_end_();                                                        \
    } while (0)

/* Prints the summary line; the process's exit status. */
static inline int
test_summary(void)
{
    if (setup_failures_) {
        failed++;
        printf("FAIL (setup) (%d checks failed)\n", setup_failures_);
    }
    if (passed + failed + skipped == 0) {
        failed++;
        printf("FAIL no test ran\n");
    }
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
