/*
 * stats.h -- every counter the agent keeps, defined once (twemproxy's
 * nc_stats.h X-macro idiom).  The struct, the Prometheus output in api.c and
 * the tests all come from this list, so a counter cannot exist in one place
 * and be missing from another.
 *
 * Global counters are process-wide; per-service counters live in each
 * service and are exported with a service="..." label.
 */
#ifndef SCOUT_STATS_H
#define SCOUT_STATS_H

#include <stdint.h>

/*      name                      help */
#define SCOUT_GLOBAL_STATS(X)                                                  \
    X(zk_requests_children,   "getChildren2 requests sent to ZooKeeper")        \
    X(zk_requests_data,       "getData requests sent to ZooKeeper")             \
    X(zk_requests_exists,     "exists requests sent to ZooKeeper")              \
    X(zk_watch_events,        "watch events received from ZooKeeper")          \
    X(zk_reconnects,          "connections (re-)established within a session") \
    X(zk_session_expirations, "sessions expired and replaced by a new one")    \
    X(zk_sessions_created,    "ZooKeeper handles created")                     \
    X(zk_name_resolutions,    "connect-string host name resolutions, run off the loop") \
    X(zk_reconnect_loops,     "reconnect loops (short connections, none stable) ended with a new session") \
    X(hook_calls,             "calls into Lua policy hooks")                   \
    X(hook_errors,            "Lua hook calls that raised an error")           \
    X(hook_timeouts,          "Lua hook calls stopped for exceeding the budget") \
    X(hook_microseconds,      "time spent in Lua hook calls, microseconds")

#define SCOUT_SERVICE_STATS(X)                                                 \
    X(reads_children,        "children reads completed for this service")      \
    X(reads_data,            "data reads completed for this service")          \
    X(stale_results_dropped, "read results older than the cache, dropped")     \
    X(decode_errors,         "children whose znode could not be decoded")      \
    X(hook_errors,           "policy hook failures; the last good list stood") \
    X(publishes,             "endpoint lists published")                      \
    X(protections,           "drops held back by protection")                 \
    X(anti_entropy_checks,   "periodic checks (list, data mzxids) for drift") \
    X(anti_entropy_repairs,  "drift the watches missed, repaired")

typedef struct {
#define X(name, help) uint64_t name;
    SCOUT_GLOBAL_STATS(X)
#undef X
} scout_stats_t;

typedef struct {
#define X(name, help) uint64_t name;
    SCOUT_SERVICE_STATS(X)
#undef X
} scout_service_stats_t;

extern scout_stats_t scout_stats;

#endif
