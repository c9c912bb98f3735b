/*
 * watch.h -- keep the cache of one ZooKeeper path exact, with no window.
 *
 * Children are always read with the watch set in the same request
 * (zoo_awget_children2) and data likewise (zoo_awget); a watch event only
 * schedules a re-read, after the delay the owner returns for the event, and
 * events inside that delay coalesce into one read.  A path that does not
 * exist is watched with an exists-watch so it is picked up when created.
 * Data is read only for children that are new or whose data watch fired,
 * and only when the owner says the child needs data.
 *
 * When every read in flight has completed and the cache holds changes (or
 * the path has just been read completely for the first time), on_update is
 * called; the owner hands the pending changes to the policy and calls
 * scout_cache_commit() when it accepted them.
 */
#ifndef SCOUT_WATCH_H
#define SCOUT_WATCH_H

#include <ev.h>
#include <stdint.h>

#include "zk/cache.h"
#include "zk/session.h"
#include "stats.h"

typedef struct scout_watch_s scout_watch_t;

/* ---- spreading one path's data watches over sessions --------------------
 * The C client re-sends every watch of a session in one SetWatches packet on
 * reconnect, and the server refuses a packet over 1 MB (ZOOKEEPER-706): one
 * big service, or many mid-sized ones sharing a session, would never
 * reconnect.  So a child's data watch goes to a session slot whose total of
 * watched bytes (every path on it) has room under the budget (the child
 * keeps that slot; its reads always set their watch in the same request, on
 * that session), and when no session has room the pool provides a new
 * one.  The child-list
 * watch, syncs and anti-entropy stay on the service's own session. */
#define SCOUT_WATCH_MAX_SLOTS 64
typedef scout_session_t *(*scout_watch_pool_fn)(void *ud);
/* budget: watched bytes per session, all paths on it together; 0 = never
 * spread. */
void scout_watch_set_pool(size_t budget, scout_watch_pool_fn fn, void *ud);
/* A pool session changed state: the watches with data slots on it re-read
 * what it lost (everything of theirs on it, for a new session). */
void scout_watch_on_pool_session(scout_session_t *session,
                                 scout_session_state_t state, int new_session,
                                 int jitter_ms);
/* Every watched byte on that session, all paths together: what its
 * SetWatches re-sends on reconnect (kept as watches come and go, O(1)). */
size_t scout_watch_session_total(const scout_session_t *session);

/* Reads in flight (child lists and data), all sessions together, are
 * bounded (window.c): a million queued at once made ZooKeeper expire
 * sessions mid-sync.  The gauges: in flight now, the most ever, watches
 * waiting for room. */
#define SCOUT_WATCH_READ_WINDOW 1000
size_t scout_watch_reads_in_flight(void);
size_t scout_watch_reads_in_flight_max(void);
size_t scout_watch_reads_waiting(void);

/* What woke a watch; the delay hook sees the name (event_kind_name). */
typedef enum {
    SCOUT_EVENT_CHILDREN = 0,  /* the child list changed                   */
    SCOUT_EVENT_DATA,          /* a child's data changed                   */
    SCOUT_EVENT_REMOVED,       /* a child was deleted                      */
    SCOUT_EVENT_CREATED,       /* the watched path itself was created      */
    SCOUT_EVENT_DELETED        /* the watched path itself was deleted      */
} scout_event_kind_t;

typedef struct {
    scout_event_kind_t kind;
    const char        *child;    /* NULL unless kind is DATA or REMOVED */
    unsigned           pending;  /* events already waiting for this read */
    double             since_read_ms;
} scout_event_t;

typedef struct {
    /* need[k] for each of n new children of one list (scout_cache_needs_data_fn) */
    void (*needs_data)(void *ud, const char *const *names, unsigned n,
                       unsigned char *need);
    /* Milliseconds to wait before reading; 0 = now. */
    int  (*delay)(void *ud, const scout_event_t *ev);
    void (*on_update)(void *ud);
} scout_watch_cb_t;

const char *scout_event_kind_name(scout_event_kind_t kind);

/* Room in the path index for this many watched paths in all, made at once
 * (before a start or a reload adds its services in slices). */
void scout_watch_index_reserve(size_t paths);

scout_watch_t *scout_watch_new(struct ev_loop *loop, scout_session_t *session,
                               const char *path, const scout_watch_cb_t *cb,
                               void *ud, scout_service_stats_t *stats,
                               char *err);
/* The watched path (the watch's own string: valid until it is freed). */
const char    *scout_watch_path(const scout_watch_t *w);
/* Must be called after the session is closed (pending completions hold
 * pointers to the watch until then). */
void scout_watch_free(scout_watch_t *w);

/* Stop watching (a policy reload dropped the service): events and
 * completions still in flight are ignored; the memory goes at
 * scout_watch_reap() once the handle those were issued on is closed (a new
 * session of the same scout_session_t, or exit; NULL = every session). */
void scout_watch_retire(scout_watch_t *w);
void scout_watch_reap(scout_session_t *session);

/* The session changed state; on a new session every watch is re-armed by a
 * full re-read, spread over jitter_ms. */
void scout_watch_on_session(scout_watch_t *w, scout_session_state_t state,
                            int new_session, int jitter_ms);

/* Read the child list again after delay_ms (no delay hook): protection
 * confirms a drop this way, anti-entropy checks for drift. */
void scout_watch_reread(scout_watch_t *w, int delay_ms);

/* Re-list the path every period_ms (+-20%) to catch drift; 0 turns it off.
 * Default 60000. */
void scout_watch_set_anti_entropy(scout_watch_t *w, int period_ms);
/* Requests per second all anti-entropy checks together may send (a check
 * costs one list plus one exists per child with data); when a full pass
 * of every path at that rate takes longer than the period, the period
 * stretches.  Default 500. */
void scout_watch_set_anti_entropy_rate(int per_second);
/* Seconds one full pass over every path takes: the period, or longer
 * when the rate stretches it (0: anti-entropy is off everywhere). */
double scout_watch_anti_entropy_period(void);
/* How many times due checks were held back because reads waited for the
 * window or filled it (they go out once the reads are answered). */
uint64_t scout_watch_anti_entropy_held(void);

/* What the disk snapshot held: child lists older than pzxid are refused
 * (a lagging server must not roll back what we serve), a few times. */
void scout_watch_set_floor(scout_watch_t *w, int64_t pzxid,
                           int64_t max_mzxid);

scout_cache_t *scout_watch_cache(scout_watch_t *w);
/* 1 when no read is in flight: the cache is a consistent view. */
int            scout_watch_settled(const scout_watch_t *w);
/* Call on_update when the reads in flight settle, even if they change
 * nothing (an owner whose other paths changed waits for this one). */
void           scout_watch_notify(scout_watch_t *w);

#endif
