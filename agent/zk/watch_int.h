/*
 * watch_int.h -- the watch's insides, shared by the files that make it up:
 * watch.c (reads, events, lifecycle), watch_index.c (events find their
 * watches by path), spread.c (data watches over sessions) and antientropy.c
 * (the periodic check for drift).  Nothing outside agent/zk/watch*.c,
 * spread.c and antientropy.c includes this; the module's interface is
 * watch.h.
 */
#ifndef SCOUT_WATCH_INT_H
#define SCOUT_WATCH_INT_H

#include "zk/watch.h"

/* The delayed read: its timer and when it fires.  Allocated while a read
 * waits (a delay hook, a reload, a new session's jitter), freed when it
 * fires or is stopped: at rest no watch waits, and inline it cost 56
 * bytes each (kept after the first wait, every watch would hold one: the
 * first session's jitter delays them all). */
typedef struct {
    ev_timer                timer;
    double                  deadline;       /* ev_now() when it fires    */
} scout_watch_delay_t;

/* Fields are ordered by size, the small counters and the flags in one word:
 * there is one of these per watched path (10,000 at scale), and 8 bytes
 * more would take it from a 384-byte malloc chunk to a 400-byte one
 * (test_footprint). */
struct scout_watch_s {
    struct ev_loop         *loop;
    scout_session_t        *session;
    char                   *path;
    scout_cache_t           cache;
    const scout_watch_cb_t *cb;
    void                   *ud;
    scout_service_stats_t  *stats;
    scout_watch_delay_t    *delay;          /* NULL unless a read waits  */
    ev_timer                resync;         /* anti-entropy re-list      */
    double                  last_read;      /* ev_now() of last read     */
    uint64_t                next_req;
    int64_t                 floor_pzxid;    /* from the disk snapshot    */
    uint64_t                sync_epoch;     /* session epoch of the last
                                               completed sync(), 0 = none */
    scout_watch_t          *next_same_path;
    /* Data watches spread over sessions (ZOOKEEPER-706): slot 0 is
     * `session`, the others come from the pool; a child keeps its slot.
     * The arrays point at slot0_* until the path spreads (spread.c): most
     * never do, and two arrays of SCOUT_WATCH_MAX_SLOTS inline cost 1 KB
     * per service, 100 MB at 100,000 services.  Each slot's session total
     * is cache.slot_total (one copy: the cache subtracts removals). */
    scout_session_t       **slot_session;
    size_t                 *slot_bytes;
    scout_session_t        *slot0_session;
    size_t                  slot0_bytes;
    size_t                 *slot0_total;
    scout_watch_t          *next_spread;    /* spread.c's list */
    /* antientropy.c: the queue of watches due for a check, paced by the
     * global rate; the requests one pass of this path costs (counted in
     * the global total while the period is on, ae_cost below).  A retired
     * watch has left the queue for good (scout_watch_retire): its graveyard
     * link shares ae_prev's word (dequeue looks at ae_queued, never at a
     * stale link). */
    union {
        scout_watch_t      *ae_prev;
        scout_watch_t      *next_dead;      /* dead: the graveyard list */
    };
    scout_watch_t          *ae_next;
    char                   *ae_at;          /* the next child to ask   */
    /* window.c: waiting for room in the data reads' window */
    scout_watch_t          *win_prev, *win_next;
    int                     resync_ms;      /* period; 0 = off           */
    unsigned                pending_events; /* coalesced into next read  */
    unsigned                data_inflight;
    unsigned                ae_cost;        /* antientropy.c           */
    unsigned                path_len;
    uint8_t                 nslots;         /* <= SCOUT_WATCH_MAX_SLOTS */
    uint8_t                 floor_rejects;  /* stops counting at 255   */
    unsigned                children_inflight:1;
    unsigned                exists_inflight:1;
    unsigned                sync_inflight:1;
    unsigned                children_dirty:1;
    unsigned                synced:1;
    unsigned                notify:1;       /* first complete read       */
    unsigned                dead:1;         /* retired by a reload       */
    unsigned                indexed:1;      /* in the path index         */
    unsigned                verifying:1;    /* the list read is a check  */
    unsigned                conclusive:1;   /* no event was pending      */
    unsigned                ae_queued:1;
    unsigned                ae_inpass:1;    /* a check is part-way     */
    unsigned                win_queued:1;
};

typedef struct {
    scout_watch_t *w;
    uint64_t       id;
    char           name[];
} read_req_t;

/* watch.c: the delayed read.  Is it armed; (re-)arm it to fire in ms
 * (out of memory for it: read at once instead); stop it. */
int         scout_watch_delay_armed(const scout_watch_t *w);
void        scout_watch_delay_arm(scout_watch_t *w, int ms);
void        scout_watch_delay_stop(scout_watch_t *w);
/* watch.c: a request context (freed by its completion), the handle when the
 * session is connected (else NULL), and "read what is dirty now". */
read_req_t *scout_watch_req_new(scout_watch_t *w, const char *name);
zhandle_t  *scout_watch_live_zh(scout_watch_t *w);
void        scout_watch_read_dirty(scout_watch_t *w);
/* watch.c: an event the path index routed to this watch (watch_index.c):
 * on the path itself, or on the data of its child at `path`. */
void        scout_watch_parent_event(scout_watch_t *w, int type);
void        scout_watch_child_event(scout_watch_t *w, int type,
                                    const char *path);

/* spread.c: the slot of a session (-1: none), a slot's handle when its
 * session is connected, kick every slot's session, the slot of a child's
 * data watch (assigned on first use), leave the spread list. */
int         scout_watch_slot_of(const scout_watch_t *w, const void *session);
zhandle_t  *scout_watch_slot_zh(scout_watch_t *w, int slot);
void        scout_watch_kick_slots(scout_watch_t *w);
int         scout_watch_assign_slot(scout_watch_t *w, scout_child_t *child);
void        scout_watch_spread_del(scout_watch_t *w);
/* spread.c: the slot arrays start inline (one slot) and the path's watch
 * counts on its session's total; free what spreading allocated (before the
 * watch itself is freed).  acct_drop takes every watch of the path off its
 * sessions' totals (retired or freed: once). */
void        scout_watch_slots_init(scout_watch_t *w, scout_session_t *s);
void        scout_watch_slots_free(scout_watch_t *w);
void        scout_watch_acct_drop(scout_watch_t *w);
/* spread.c: at exit (scout_watch_reap(NULL)), when every watch is gone. */
void        scout_watch_accts_free(void);

/* window.c: a credit for one read, list or data (0: none; the watch
 * waits and is read again when credits come back), given back by its
 * completion (or a failed send); leave the waiting line (retire, free). */
int         scout_watch_window_take(scout_watch_t *w);
void        scout_watch_window_give(scout_watch_t *w);
void        scout_watch_window_del(scout_watch_t *w);

/* antientropy.c: set up, (re-)arm after a session event, a jittered period */
void   scout_watch_resync_init(scout_watch_t *w);
void   scout_watch_resync_arm(scout_watch_t *w, double seconds);
double scout_watch_resync_period(const scout_watch_t *w);
/* antientropy.c: leave the queue and the cost total (retire, free). */
void   scout_watch_resync_del(scout_watch_t *w);

#endif
