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
    X(zk_handshakes_cut,      "connections whose session handshake went unanswered past the agent's bound, ended so the client tries again") \
    X(zk_io_deferred,         "ZooKeeper sockets left ready to the next loop iteration: the iteration's budget was spent") \
    X(zk_interest_asks,       "times the ZooKeeper client was asked for its socket, interest and deadline (zookeeper_interest)") \
    X(zk_answers_read_on,     "ZooKeeper answers read in the same loop turn as the answer before them (the socket held several): each spares a loop iteration") \
    X(zk_interest_skips,      "ZooKeeper answers read after which the client was not asked again: nothing it would answer could have changed") \
    X(hook_calls,             "calls into Lua policy hooks")                   \
    X(hook_errors,            "Lua hook calls that raised an error")           \
    X(hook_timeouts,          "Lua hook calls stopped for exceeding the budget") \
    X(hook_memory_errors,     "Lua hook calls stopped at the Lua heap cap")    \
    X(hook_refused,           "policy uses of what a policy may not call (os.execute...)") \
    X(hook_microseconds,      "time spent in Lua hook calls, microseconds")  \
    X(writer_wakeups,         "loop wakeups for a writer thread's finished job (shm, disk snapshot, rendered files)") \
    X(writer_handoffs,        "jobs handed to a writer thread (shm, disk snapshot, rendered files): each wakes it") \
    X(shm_inline_writes,      "shared-memory generations small enough to be written on the loop, without the writer thread") \
    X(shm_endpoints_encoded,  "endpoints encoded into services' shared-memory slices (one unchanged since its service's last slice is copied from it, not encoded)") \
    X(shm_slices_known,       "services' shared-memory slices made from the last one told which endpoints changed (the others copied without a comparison)") \
    X(shm_slices_compared,    "services' shared-memory slices made from the last one by comparing every endpoint with its old record (which changed was not known)") \
    X(shm_chunks_hashed,      "64 KB chunks of shared-memory snapshot bodies checksummed by the writer (a generation: the chunks it rewrote)") \
    X(hook_alarms,            "signals of the hook budget's timer: each interrupts the loop, and wakes it when idle") \
    X(hook_idle_alarms,       "signals of the hook budget's timer that came while the loop waited: each woke it for nothing") \
    X(cpu_clock_reads,        "reads of the loop thread's CPU clock (a syscall each: stall detection, hook budgets)") \
    X(registrations_recreated, "registration nodes deleted by another client " \
                              "and created again")                            \
    X(zk_watches_retired,     "watches of services a reload dropped")         \
    X(zk_watches_released,    "dropped watches freed once their last answer " \
                              "came back") \
    X(snapshot_writes,        "disk snapshots written (full or to the journal)") \
    X(snapshot_journal_appends, "disk snapshot writes appended to the journal " \
                              "(the services changed since the last write)") \
    X(snapshot_compactions,   "full disk snapshots written (the journal " \
                              "started again)")                             \
    X(snapshot_write_failures, "disk snapshot writes that failed (retried)")   \
    X(snapshot_services_left_out, "services left out of a disk snapshot "       \
                              "because their list breaks the format's limits") \
    X(snapshot_read_back_failures, "disk snapshot writes that found the last " \
                              "file not as written: every service encoded again") \
    X(render_writes,          "rendered files written (bytes changed)")        \
    X(render_write_failures,  "rendered file writes that failed; the old file stayed") \
    X(loop_stalls,            "loop iterations whose callbacks ran past 100 ms of CPU")     \
    X(loop_cpu_waits,         "loop iterations past 100 ms that ran under 100 ms of it: the rest was waiting for a CPU") \
    X(api_requests,           "API requests handed to a route")                \
    X(api_requests_dropped,   "API requests dropped: the client had gone")     \
    X(api_requests_deferred,  "API requests left to a later loop iteration")   \
    X(api_deadline_closes,    "API connections closed: request not in time")   \
    X(api_idle_evictions,     "idle API connections closed for a new one")     \
    X(api_list_encodings,     "endpoint lists encoded as JSON for the API: once " \
                              "per index, shared by every client that asks") \
    X(check_unknown,          "check rounds that could not run (no fd, fork)") \
    X(lua_gc_sync_ends,       "policy VMs whose initial sync ended for the Lua collector (every service judged once, or the bound): it turns eager") \
    X(lua_gc_sync_bounds,     "of those, syncs ended by the time bound, not by every service judged") \
    X(lua_gc_settles,         "full Lua collections after a sync's end, done in slices")

#define SCOUT_SERVICE_STATS(X)                                                 \
    X(reads_children,        "children reads completed for this service")      \
    X(reads_data,            "data reads completed for this service")          \
    X(stale_results_dropped, "read results older than the cache, dropped")     \
    X(decode_errors,         "children whose znode could not be decoded")      \
    X(hook_errors,           "policy hook failures; the last good list stood") \
    X(hook_backoffs,         "failed hooks not run again at a change: backing " \
                             "off (a failed child's filter, or the whole "   \
                             "update after its budget), the last good list " \
                             "standing")                                      \
    X(publishes,             "endpoint lists published")                      \
    X(protections,           "drops held back by protection")                 \
    X(anti_entropy_checks,   "periodic checks (list, data mzxids) for drift") \
    X(anti_entropy_repairs,  "drift the watches missed, repaired")           \
    X(rejected,              "endpoints refused at the C boundary (NUL, bad " \
                             "UTF-8, over a limit, invalid value; also when " \
                             "read back from the disk snapshot)")

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

/* scout_loop_stall_seconds, a Prometheus histogram of how long each loop
 * iteration's callbacks held the loop (loop.c fills it): the bucket bounds,
 * in seconds, and the largest seen. */
#define SCOUT_LOOP_STALL_BUCKETS(X)                                            \
    X(0.001) X(0.005) X(0.01) X(0.025) X(0.05) X(0.1) X(0.25) X(0.5) X(1)     \
    X(2.5) X(5) X(10)

typedef struct {
#define X(b) + 1
    uint64_t bucket[0 SCOUT_LOOP_STALL_BUCKETS(X)];     /* cumulative */
#undef X
    uint64_t count;
    double   sum, max;
} scout_loop_stats_t;

extern scout_loop_stats_t scout_loop_stats;

#endif
