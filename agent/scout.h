/*
 * scout.h -- what every module of the agent shares: return codes, the size of
 * caller-owned error buffers, the version, and a monotonic clock.  Nothing
 * here may pull in ZooKeeper, libev or Lua: modules include those themselves.
 */
#ifndef SCOUT_H
#define SCOUT_H

#include <stdint.h>
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

#endif
