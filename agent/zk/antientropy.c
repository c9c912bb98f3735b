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
 * Cost: one exists per data child per period (60 s by default); the answers
 * are small and served by whichever server the session is on.  Nothing here
 * blocks or publishes; the reads it triggers settle like any other.
 */
#include "zk/watch_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"

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
    return w->resync_ms / 1000.0 * (0.8 + 0.4 * rand() / (double)RAND_MAX);
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

static void
check_data(scout_watch_t *w, zhandle_t *zh)
{
    scout_child_t *child, *tmp;
    char buf[1024];
    char *path;

    HASH_ITER(hh, w->cache.children, child, tmp) {
        size_t need = w->path_len + strlen(child->name) + 2;
        read_req_t *r;

        if (!child->has_data || child->data_dirty || child->data_req != 0)
            continue;
        path = need > sizeof(buf) ? malloc(need) : buf;
        if (path == NULL)
            return;
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
            return;             /* the next period asks again */
        scout_stats.zk_requests_exists++;
    }
}

static void
on_resync(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_watch_t *w = t->data;
    zhandle_t *zh = scout_watch_live_zh(w);
    (void)loop;
    (void)revents;

    scout_watch_resync_arm(w, scout_watch_resync_period(w));
    if (zh == NULL || w->children_inflight || w->exists_inflight
        || w->sync_inflight)
        return;
    w->verifying = 1;
    w->conclusive = !(w->children_dirty || w->cache.dirty
                      || ev_is_active(&w->timer));
    w->stats->anti_entropy_checks++;
    /* before the list read: a child the list finds gone is not asked */
    check_data(w, zh);
    w->children_dirty = 1;
    scout_watch_read_dirty(w);
    if (!w->children_inflight)
        w->verifying = 0;       /* nothing went out: the next list is no check */
}

void
scout_watch_resync_init(scout_watch_t *w)
{
    ev_init(&w->resync, on_resync);
    w->resync.data = w;
    w->resync_ms = 60000;
}

void
scout_watch_set_anti_entropy(scout_watch_t *w, int period_ms)
{
    int changed = period_ms != w->resync_ms;

    w->resync_ms = period_ms;
    if (changed && (ev_is_active(&w->resync) || period_ms > 0)
        && scout_watch_live_zh(w) != NULL)
        scout_watch_resync_arm(w, scout_watch_resync_period(w));
}
