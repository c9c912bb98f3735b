/*
 * scout.h -- what every module of the agent shares: return codes, the size
 * of caller-owned error buffers and how they are filled, the version, and
 * the clocks.  Nothing here may pull in ZooKeeper, libev or Lua: modules
 * include those themselves.
 */
#ifndef SCOUT_H
#define SCOUT_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define SCOUT_VERSION "0.1.0"

#define SCOUT_OK     0
#define SCOUT_ERROR -1
#define SCOUT_AGAIN -2

#define SCOUT_ERR_LEN 256

/* CLOCK_MONOTONIC in nanoseconds: the one clock for deadlines and latencies,
 * shared with the benchmarks (they read the same clock from other processes). */
static inline int64_t
scout_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline double
scout_now_ms(void)
{
    return (double)scout_now_ns() / 1e6;
}

/* Wall-clock milliseconds since the epoch: for what is stamped in wall
 * time (the disk snapshot, its age). */
static inline int64_t
scout_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One line of reason into a caller's SCOUT_ERR_LEN buffer (if any); always
 * SCOUT_ERROR, so that `return scout_seterr(err, ...)` reads as it does. */
static inline int scout_seterr(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline int
scout_seterr(char *err, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL) {
        va_start(ap, fmt);
        vsnprintf(err, SCOUT_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return SCOUT_ERROR;
}

#endif
