/*
 * antientropy.c -- the periodic check that what a watch holds is what
 * ZooKeeper holds, for when a watch notification was lost anyway (a server
 * bug, a proxy, a path the client could not route).
 *
 * Watches are exact by construction; this is the belt to their braces.  Each
 * path is re-listed on a jittered period (so a fleet never re-lists in
 * lockstep) and shortly after every reconnect, and every child whose data
 * the watch holds is asked for its Stat (exists, no watch): the content
 * compared is (child, mzxid), as a hash of it would, but per child so the
 * repair reads only what drifted.  A difference no event explains is drift:
 * it is counted and logged, and the repair is an ordinary read, which also
 * re-arms the watch the lost event had used up.
 *
 * Cost: one list plus one exists per data child per pass; the answers are
 * small.  The belt must never cost more than the braces: at a million
 * endpoints one exists per endpoint per minute is a million requests a
 * minute, competing with the initial sync and with real changes.  So every
 * check goes through one global pacer (a token bucket at `rate` requests a
 * second, 500 by default): a path whose period came due waits in a FIFO,
 * and when a full pass over every path costs more than the period allows
 * at that rate, the period stretches (logged, and the pass time is the
 * gauge scout_anti_entropy_period_seconds) -- every path still gets its
 * turn, first due first checked.  A big path's check goes out in chunks
 * (at most AE_CHUNK exists per turn, then it waits behind the others), so
 * neither the loop nor the other paths wait for a path of a million
 * children.  Nothing is asked of a path before its
 * first complete read, nor while its session is not connected: there is
 * nothing to compare yet, and the sync needs the server more.  A path
 * whose own read is in flight when its check comes due is asked again
 * within a second, not a period later.  Nothing here blocks or publishes;
 * the reads it triggers settle like any other.
 */
#include "zk/watch_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"

#define AE_CHUNK 1024           /* exists per turn: ~1 ms of the loop */
#define AE_BUSY_SECONDS 0.5     /* a busy path's check asks again after 0.5-1 s
                                 * (or its period, if shorter) */

/* The pacer: watches due for a check, first due first served. */
static struct {
    struct ev_loop *loop;           /* NULL until the first watch */
    ev_timer        pace;
    double          rate;           /* requests per second */
    double          tokens;         /* may go below 0 by one turn */
    double          refilled;       /* ev_now() of the last refill */
    scout_watch_t  *head, *tail;
    size_t          total;          /* requests a pass over every path costs */
    unsigned        enrolled;       /* watches with a period */
    int             period_ms;      /* the configured period */
    double          logged;         /* stretched pass last logged; 0: none */
    uint64_t        held;           /* turns held back while reads waited */
} ae = { .rate = 500, .period_ms = 60000 };

/* Seconds a pass over every path takes at the rate. */
static double
pass_seconds(void)
{
    return (double)ae.total / ae.rate;
}

uint64_t
scout_watch_anti_entropy_held(void)
{
    return ae.held;
}

double
scout_watch_anti_entropy_period(void)
{
    double base = ae.period_ms / 1000.0;

    if (ae.enrolled == 0)
        return 0;
    return pass_seconds() > base ? pass_seconds() : base;
}

/* Say so when the registry outgrows the period at this rate (and again
 * when the pass time doubles or halves, or fits again). */
static void
stretch_log(void)
{
    double pass = pass_seconds(), base = ae.period_ms / 1000.0;

    if (ae.enrolled > 0 && pass > base) {
        if (ae.logged == 0 || pass >= 2 * ae.logged || pass <= ae.logged / 2) {
            scout_log(SCOUT_LOG_INFO, "watch", "anti-entropy: a full pass "
                      "is %zu requests, %.1f s at %g per second: the %.1f s "
                      "period stretches to %.1f s", ae.total, pass, ae.rate,
                      base, pass);
            ae.logged = pass;
        }
    } else if (ae.logged != 0) {
        scout_log(SCOUT_LOG_INFO, "watch", "anti-entropy: a full pass fits "
                  "the %.1f s period again", base);
        ae.logged = 0;
    }
}

/* What one pass of this path costs, in the total while it has a period. */
static void
cost_set(scout_watch_t *w, unsigned cost)
{
    if (w->ae_cost == 0 && cost > 0)
        ae.enrolled++;
    else if (w->ae_cost > 0 && cost == 0)
        ae.enrolled--;
    ae.total = ae.total - w->ae_cost + cost;
    w->ae_cost = cost;
    stretch_log();
}

static void
dequeue(scout_watch_t *w)
{
    if (!w->ae_queued)
        return;
    if (w->ae_prev != NULL)
        w->ae_prev->ae_next = w->ae_next;
    else
        ae.head = w->ae_next;
    if (w->ae_next != NULL)
        w->ae_next->ae_prev = w->ae_prev;
    else
        ae.tail = w->ae_prev;
    w->ae_prev = w->ae_next = NULL;
    w->ae_queued = 0;
}

static void
enqueue(scout_watch_t *w)
{
    if (w->ae_queued)
        return;
    w->ae_prev = ae.tail;
    w->ae_next = NULL;
    if (ae.tail != NULL)
        ae.tail->ae_next = w;
    else
        ae.head = w;
    ae.tail = w;
    w->ae_queued = 1;
}

void
scout_watch_resync_del(scout_watch_t *w)
{
    dequeue(w);
    cost_set(w, 0);
    free(w->ae_at);
    w->ae_at = NULL;
    w->ae_inpass = 0;
    if (ae.enrolled == 0 && ae.head == NULL && ae.loop != NULL) {
        /* the last path is gone: the next loop may be another one */
        ev_timer_stop(ae.loop, &ae.pace);
        ae.loop = NULL;
    }
}

void
scout_watch_resync_arm(scout_watch_t *w, double seconds)
{
    ev_timer_stop(w->loop, &w->resync);
    if (w->resync_ms <= 0)
        return;
    ev_timer_set(&w->resync, seconds, 0.);
    ev_timer_start(w->loop, &w->resync);
}

double
scout_watch_resync_period(const scout_watch_t *w)
{
    double base = w->resync_ms / 1000.0;

    if (pass_seconds() > base)
        base = pass_seconds();  /* stretched: the queue is the pace anyway */
    return base * (0.8 + 0.4 * rand() / (double)RAND_MAX);
}

/* The Stat of one child, asked without a watch. */
static void
stat_done(int rc, const struct Stat *stat, const void *data)
{
    read_req_t *r = (read_req_t *)data;
    scout_watch_t *w = r->w;
    scout_child_t *child;

    if (w->dead || rc != ZOK) {
        free(r);                /* gone, or unknown: the next period asks */
        return;
    }
    child = scout_cache_find(&w->cache, r->name);
    free(r);
    /* An event for it came first (ZooKeeper delivers a watch event before
     * any answer that reflects the change) or a read is on its way: the
     * watch did its job. */
    if (child == NULL || !child->has_data || child->data_dirty
        || child->data_req != 0)
        return;
    /* Older (a lagging server) or the same: nothing to repair. */
    if (stat->czxid < child->czxid
        || (stat->czxid == child->czxid && stat->mzxid <= child->mzxid))
        return;
    w->stats->anti_entropy_repairs++;
    scout_log(SCOUT_LOG_WARN, "watch", "%s%s%s: anti-entropy found data the "
              "watch missed (mzxid 0x%llx, held 0x%llx); repaired",
              strcmp(w->path, "/") == 0 ? "" : w->path, "/", child->name,
              (unsigned long long)stat->mzxid,
              (unsigned long long)child->mzxid);
    scout_cache_mark_dirty(&w->cache, child);
    scout_watch_read_dirty(w);
}

/* Ask up to budget children with data for their Stat, from where this
 * pass stopped (ae_at: the next child's name; the children are in name
 * order, so if that one went meanwhile the pass goes on at the one after
 * it); returns the requests sent, *done once every child was passed (or a
 * request could not be made: the next pass asks again). */
static size_t
check_data(scout_watch_t *w, zhandle_t *zh, size_t budget, int *done)
{
    scout_child_t *child;
    unsigned at = 0;
    char buf[1024];
    char *path;
    size_t sent = 0;

    *done = 1;
    if (w->ae_at != NULL) {
        at = scout_cache_seek(&w->cache, w->ae_at);
        free(w->ae_at);
        w->ae_at = NULL;
    }
    while ((child = scout_cache_next(&w->cache, &at)) != NULL) {
        size_t need = w->path_len + strlen(child->name) + 2;
        read_req_t *r;

        if (sent == budget) {
            /* the rest at the next turn (no copy: end the pass here) */
            if ((w->ae_at = strdup(child->name)) != NULL)
                *done = 0;
            return sent;
        }
        if (!child->has_data || child->data_dirty || child->data_req != 0)
            continue;
        path = need > sizeof(buf) ? malloc(need) : buf;
        if (path == NULL)
            return sent;
        snprintf(path, need, "%s/%s",
                 strcmp(w->path, "/") == 0 ? "" : w->path, child->name);
        r = scout_watch_req_new(w, child->name);
        if (r != NULL && zoo_aexists(zh, path, 0, stat_done, r) != ZOK) {
            free(r);
            r = NULL;
        }
        if (path != buf)
            free(path);
        if (r == NULL)
            return sent;        /* the next period asks again */
        scout_stats.zk_requests_exists++;
        sent++;
    }
    return sent;
}

static void
pass_end(scout_watch_t *w)
{
    free(w->ae_at);
    w->ae_at = NULL;
    w->ae_inpass = 0;
    scout_watch_resync_arm(w, scout_watch_resync_period(w));
}

/* One turn of a path's check, if it may be checked now: up to budget
 * exists, and the list read once every child was asked; returns the
 * requests sent (0: skipped, asked again a period later). */
static size_t
check(scout_watch_t *w, size_t budget)
{
    zhandle_t *zh = scout_watch_live_zh(w);
    size_t sent;
    int done;

    if (!w->ae_inpass) {
        cost_set(w, 1 + w->cache.count);
        /* Before the first complete read there is nothing to compare, and
         * the sync needs the server more; without a connection nothing can
         * go. */
        if (zh == NULL || !w->synced) {
            pass_end(w);
            return 0;
        }
        /* A read of the path is on its way -- after a reconnect, typically
         * the one the lost connection failed, asked again at CONNECTED, while
         * this check was due within a second of it: the check waits for the
         * answer, not for a whole period (an hour away, the reconnect would
         * have gone unchecked). */
        if (w->children_inflight || w->exists_inflight || w->sync_inflight) {
            double again = AE_BUSY_SECONDS * (1 + rand() / (double)RAND_MAX),
                   period = scout_watch_resync_period(w);

            scout_log(SCOUT_LOG_DEBUG, "watch", "%s: anti-entropy check "
                      "waits for the read in flight", w->path);
            /* never later than the period would have asked */
            scout_watch_resync_arm(w, period < again ? period : again);
            return 0;
        }
        w->ae_inpass = 1;
        w->stats->anti_entropy_checks++;
    } else if (zh == NULL) {
        pass_end(w);            /* disconnected: the reconnect re-arms */
        return 0;
    }
    /* before the list read: a child the list finds gone is not asked */
    sent = check_data(w, zh, budget, &done);
    if (!done) {
        enqueue(w);             /* the rest after the others' turn */
        return sent;
    }
    pass_end(w);
    if (!w->children_inflight && !w->exists_inflight && !w->sync_inflight) {
        w->verifying = 1;
        w->conclusive = !(w->children_dirty || w->cache.dirty
                          || scout_watch_delay_armed(w));
        w->children_dirty = 1;
        scout_watch_read_dirty(w);
        if (!w->children_inflight)
            w->verifying = 0;   /* nothing went out: the next list is no check */
        else
            sent++;
    }
    scout_log(SCOUT_LOG_DEBUG, "watch", "%s: anti-entropy check done, %zu "
              "requests in its last turn", w->path, sent);
    return sent;
}

/* Let due watches go while the bucket holds tokens; a check is sent
 * in turns of at most the tokens held plus one (and AE_CHUNK), so over any
 * span the requests stay within the rate plus one burst and one turn.
 * While reads wait for room in the window, or fill it (window.c: a sync
 * or a re-read bigger than the server takes at once; the line empties for
 * a moment while the last paths carry themselves on), no check goes out:
 * at a million endpoints the checks of the paths read first took a third
 * of the server's requests from the paths still to read; the queue waits. */
#define AE_YIELD_SECONDS 0.1

static void
pace_run(void)
{
    double now = ev_now(ae.loop), burst = ae.rate / 10 > 1 ? ae.rate / 10 : 1;

    ae.tokens += (now - ae.refilled) * ae.rate;
    if (ae.tokens > burst)
        ae.tokens = burst;
    ae.refilled = now;
    if (ae.head != NULL
        && (scout_watch_reads_waiting() > 0
            || scout_watch_reads_in_flight() >= SCOUT_WATCH_READ_WINDOW)) {
        ae.held++;
        ev_timer_stop(ae.loop, &ae.pace);
        ev_timer_set(&ae.pace, AE_YIELD_SECONDS, 0.);
        ev_timer_start(ae.loop, &ae.pace);
        return;
    }
    while (ae.head != NULL && ae.tokens > 0) {
        scout_watch_t *w = ae.head;

        size_t budget = ae.tokens >= AE_CHUNK ? AE_CHUNK
                                              : (size_t)ae.tokens + 1;

        dequeue(w);
        ae.tokens -= (double)check(w, budget);
    }
    ev_timer_stop(ae.loop, &ae.pace);
    if (ae.head != NULL) {
        ev_timer_set(&ae.pace, (0.001 - ae.tokens) / ae.rate, 0.);
        ev_timer_start(ae.loop, &ae.pace);
    }
}

static void
on_pace(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    pace_run();
}

/* The pacer runs on the loop of the watches (one loop in the agent; the
 * last watch to leave unbinds it, see scout_watch_resync_del). */
static void
pacer_bind(struct ev_loop *loop)
{
    if (ae.loop != NULL)
        return;
    ae.loop = loop;
    ae.refilled = ev_now(loop);
    ae.tokens = 0;
    ev_init(&ae.pace, on_pace);
}

/* A path's period came due: it joins the queue. */
static void
on_resync(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_watch_t *w = t->data;
    (void)revents;

    pacer_bind(loop);           /* unbound while every period was 0 */
    enqueue(w);
    pace_run();
}

void
scout_watch_resync_init(scout_watch_t *w)
{
    ev_init(&w->resync, on_resync);
    w->resync.data = w;
    w->resync_ms = ae.period_ms;
    pacer_bind(w->loop);
    cost_set(w, 1);
}

void
scout_watch_set_anti_entropy_rate(int per_second)
{
    ae.rate = per_second > 0 ? per_second : 500;
    stretch_log();
    if (ae.loop != NULL && ae.head != NULL)
        pace_run();
}

void
scout_watch_set_anti_entropy(scout_watch_t *w, int period_ms)
{
    int changed = period_ms != w->resync_ms;

    w->resync_ms = period_ms;
    if (period_ms > 0) {
        ae.period_ms = period_ms;
        if (w->ae_cost == 0)
            cost_set(w, 1 + w->cache.count);
    } else {
        scout_watch_resync_del(w);
    }
    if (changed && (ev_is_active(&w->resync) || period_ms > 0)
        && scout_watch_live_zh(w) != NULL)
        scout_watch_resync_arm(w, scout_watch_resync_period(w));
}
