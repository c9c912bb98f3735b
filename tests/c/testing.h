/*
 * testing.h -- the counters, checks and summary line every C test shares.
 * A test prints one line, "N passed, N failed[, N skipped]", which
 * tests/run.sh sums over the suites; a failed check says file:line, the
 * condition and, when given, a printf-style note.
 *
 *     CHECK(x == 1);
 *     CHECK(x == 1, "x was %d", x);
 *     CHECK_ERR(err, "checksum mismatch");   // err mentions it
 *     return test_summary();
 */
#ifndef SCOUT_TESTING_H
#define SCOUT_TESTING_H

#include <stdio.h>
#include <string.h>

static int passed, failed, skipped;

/* The note, if any, must start with a string literal. */
#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (cond) {                                                         \
            passed++;                                                       \
        } else {                                                            \
            failed++;                                                       \
            fprintf(stderr, "%s:%d: check failed: %s", __FILE__, __LINE__,  \
                    #cond);                                                 \
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

/* Prints the summary line; the process's exit status. */
static inline int
test_summary(void)
{
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
