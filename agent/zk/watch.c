/*
 * watch.c -- reads of one path with their watches, delays and coalescing.
 *
 * Invariant: after every completed read there is either a watch armed on the
 * server for that node, or a read queued to arm one.  Reads that fail with a
 * connection loss set no watch, so they stay "dirty" and are issued again on
 * the next CONNECTED; reads that complete with an older zxid than the cache
 * holds are dropped (the watch they armed fires again when the lagging server
 * catches up).  "No node" carries no Stat to compare: a new session may sit
 * on a server that lags behind what the cache learned before it, so such an
 * answer is believed only after a sync() on this session has made the server
 * catch up with the leader.  Nothing here blocks, and nothing here closes the
 * handle.
 *
 * Every request carries a small context that names the watch, the child and
 * a request id; it is freed by its completion, which ZooKeeper calls exactly
 * once, with ZCLOSING when the handle is closed.
 */
#include "zk/watch_int.h"
#include "zk/watch_index.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"

static const char *const kind_names[] = {
    "children", "data", "removed", "created", "deleted"
};

const char *
scout_event_kind_name(scout_event_kind_t kind)
{
    return kind_names[kind];
}

static void issue_data_reads(scout_watch_t *w);
static void dead_answered(scout_watch_t *w);

read_req_t *
scout_watch_req_new(scout_watch_t *w, const char *name)
{
    size_t len = name ? strlen(name) : 0;
    read_req_t *r = malloc(sizeof(*r) + len + 1);

    if (r == NULL)
        return NULL;
    r->w = w;
    /* a child keeps the low 32 bits of its read's id, 0 meaning none */
    do
        r->id = ++w->next_req;
    while ((uint32_t)r->id == 0);
    memcpy(r->name, name ? name : "", len + 1);
    return r;
}

/* The session is gone or going: the new session's CONNECTED re-reads. */
static int
session_rc(int rc)
{
    return rc == ZCLOSING || rc == ZSESSIONEXPIRED || rc == ZINVALIDSTATE
           || rc == ZSESSIONMOVED || rc == ZAUTHFAILED;
}

/* The outcome is unknown and no watch was set: read again on reconnect. */
static int
retry_rc(int rc)
{
    return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT;
}

zhandle_t *
scout_watch_live_zh(scout_watch_t *w)
{
    if (scout_session_state(w->session) != SCOUT_SESSION_CONNECTED)
        return NULL;
    return scout_session_zh(w->session);
}

/* Called after every completion: when nothing is in flight the cache is a
 * consistent view and the owner may publish it. */
static void
settle(scout_watch_t *w)
{
    if (w->children_inflight || w->exists_inflight || w->data_inflight
        || w->sync_inflight)
        return;
    /* The first publish is complete: with data slots, children whose
     * session is still connecting (a pool session just started) are waited
     * for; their reads settle here again.  Any publish waits for reads
     * that wait for the window (window.c): with none of its own in flight
     * such a path looked settled, and was published ("synced", the first
     * time) with part of its children, then again with each batch.  A path
     * whose waiting reads were all sent meanwhile (a timer, a session's
     * connect) leaves the line here: kept in it, its publish waited for
     * the line's turn, and at 100,000 services the line then published
     * 50,000 of them in one callback (a 20 s hold). */
    if (w->win_queued && w->cache.dirty == NULL && !w->children_dirty)
        scout_watch_window_del(w);  /* read meanwhile by another path */
    if ((w->notify || scout_cache_has_pending(&w->cache)) && !w->win_queued
        && (w->synced || w->nslots == 1 || w->cache.dirty == NULL)) {
        w->notify = 0;
        w->synced = 1;
        w->cb->on_update(w->ud);
    }
    /* Events that arrived while reads were in flight and asked for an
     * immediate read found them busy: read now. */
    if ((w->children_dirty || w->cache.dirty) && !scout_watch_delay_armed(w))
        scout_watch_read_dirty(w);
}

static void
schedule(scout_watch_t *w, scout_event_kind_t kind, const char *child)
{
    scout_event_t ev;
    double now = ev_now(w->loop), due;
    int ms;

    ev.kind = kind;
    ev.child = child;
    ev.pending = w->pending_events;
    ev.since_read_ms = (now - w->last_read) * 1000.0;
    ms = w->cb->delay(w->ud, &ev);
    w->pending_events++;
    if (ms <= 0) {
        scout_watch_delay_stop(w);
        scout_watch_read_dirty(w);
        return;
    }
    due = now + ms / 1000.0;
    if (scout_watch_delay_armed(w) && w->delay->deadline <= due)
        return;                 /* an earlier read already covers it */
    scout_watch_delay_arm(w, ms);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_watch_t *w = t->data;
    (void)loop;
    (void)revents;

    free(w->delay);             /* fired, so inactive: nothing waits now */
    w->delay = NULL;
    scout_watch_read_dirty(w);
}

int
scout_watch_delay_armed(const scout_watch_t *w)
{
    return w->delay != NULL && ev_is_active(&w->delay->timer);
}

void
scout_watch_delay_stop(scout_watch_t *w)
{
    if (w->delay != NULL) {
        ev_timer_stop(w->loop, &w->delay->timer);
        free(w->delay);
        w->delay = NULL;
    }
}

void
scout_watch_delay_arm(scout_watch_t *w, int ms)
{
    if (w->delay == NULL) {
        if ((w->delay = calloc(1, sizeof(*w->delay))) == NULL) {
            scout_log(SCOUT_LOG_ERROR, "watch", "%s: out of memory for a "
                      "delayed read: reading now", w->path);
            scout_watch_read_dirty(w);
            return;
        }
        ev_init(&w->delay->timer, on_timer);
        w->delay->timer.data = w;
    }
    ev_timer_stop(w->loop, &w->delay->timer);
    w->delay->deadline = ev_now(w->loop) + ms / 1000.0;
    ev_timer_set(&w->delay->timer, ms / 1000.0, 0.);
    ev_timer_start(w->loop, &w->delay->timer);
}

/* ---- the parent: children and existence ------------------------------ */

static void exists_done(int rc, const struct Stat *stat, const void *data);

void
scout_watch_parent_event(scout_watch_t *w, int type)
{
    scout_stats.zk_watch_events++;
    w->children_dirty = 1;
    if (type == ZOO_CHILD_EVENT)
        schedule(w, SCOUT_EVENT_CHILDREN, NULL);
    else if (type == ZOO_CREATED_EVENT)
        schedule(w, SCOUT_EVENT_CREATED, NULL);
    else if (type == ZOO_DELETED_EVENT)
        schedule(w, SCOUT_EVENT_DELETED, NULL);
    /* CHANGED on the parent (armed by awexists) carries nothing we use,
     * but the re-read it causes is harmless and re-arms the watch. */
    else
        schedule(w, SCOUT_EVENT_CHILDREN, NULL);
}

static void
issue_exists(scout_watch_t *w, zhandle_t *zh)
{
    read_req_t *r = scout_watch_req_new(w, NULL);

    if (r == NULL)
        return;
    if (zoo_awexists(zh, w->path, scout_watch_on_parent_event, w->session,
                     exists_done, r) != ZOK) {
        free(r);
        w->children_dirty = 1;
        return;
    }
    scout_stats.zk_requests_exists++;
    w->exists_inflight = 1;
}

/* ---- "no node": believed only from a server that has caught up ---------
 * Every answer of this session is at least as new as the ones before it
 * (ZooKeeper refuses a reconnect to a server behind the client's last zxid),
 * but what the cache holds may come from an earlier session or the disk
 * snapshot, and a new session can land on a lagging follower.  An answer
 * with a Stat is gated by its zxids; "no node" has none.  So when it would
 * take something away, the server is first made to catch up with the leader
 * (sync), and the read is repeated: the answer after that is the truth.  A
 * sync costs one round trip per watch and session, and only on a "no node"
 * that would remove something.  On a server cut off from the leader the
 * sync does not return: the cache stands until the session moves on. */

static void
sync_done(int rc, const char *value, const void *data)
{
    read_req_t *r = (read_req_t *)data;
    scout_watch_t *w = r->w;
    uint64_t epoch = r->id;
    (void)value;

    free(r);
    if (w->dead)
        return;
    w->sync_inflight = 0;
    if (rc == ZOK)
        w->sync_epoch = epoch;
    else if (!session_rc(rc) && !retry_rc(rc))
        scout_log(SCOUT_LOG_ERROR, "watch", "%s: sync: %s", w->path,
                  zerror(rc));
    w->children_dirty = 1;      /* the read that said "no node", again */
    if (!session_rc(rc))
        settle(w);
}

/* 1 when a "no node" from this session can be believed; otherwise a sync is
 * on its way (or cannot be sent: the read is retried on reconnect). */
static int
nonode_believed(scout_watch_t *w, const char *child)
{
    zhandle_t *zh = scout_watch_live_zh(w);
    uint64_t epoch = scout_session_epoch(w->session);
    read_req_t *r;

    if (w->sync_epoch == epoch)
        return 1;
    if (w->sync_inflight)
        return 0;
    if (zh == NULL || (r = scout_watch_req_new(w, NULL)) == NULL)
        return 0;
    r->id = epoch;
    if (zoo_async(zh, w->path, sync_done, r) != ZOK) {
        free(r);
        return 0;
    }
    w->sync_inflight = 1;
    scout_log(SCOUT_LOG_INFO, "watch", "%s%s%s: the server says it does not "
              "exist; syncing that server with the leader before "
              "believing it", w->path, child ? "/" : "", child ? child : "");
    return 0;
}

static void
children_done(int rc, const struct String_vector *names,
              const struct Stat *stat, const void *data)
{
    read_req_t *r = (read_req_t *)data;
    scout_watch_t *w = r->w;
    zhandle_t *zh;

    unsigned changed = 0;
    int verifying = w->verifying;

    scout_watch_window_give(w);
    free(r);
    w->children_inflight = 0;
    if (w->dead) {
        dead_answered(w);
        return;
    }
    w->verifying = 0;
    if (rc == ZOK && w->floor_pzxid != 0 && stat->pzxid < w->floor_pzxid) {
        /* Older than the snapshot we serve: a lagging server.  Ask again a
         * few times; an ensemble restored from a backup stays older
         * forever, so after three refusals ZooKeeper's view wins. */
        w->stats->stale_results_dropped++;
        if (w->floor_rejects < UINT8_MAX)
            w->floor_rejects++;
        if (w->floor_rejects < 3) {
            scout_watch_reread(w, 1000);
            return;
        }
        scout_log(SCOUT_LOG_WARN, "watch", "%s: ZooKeeper stays older than "
                  "the disk snapshot (pzxid 0x%llx < 0x%llx); taking "
                  "ZooKeeper's view", w->path, (unsigned long long)stat->pzxid,
                  (unsigned long long)w->floor_pzxid);
        w->floor_pzxid = 0;
    } else if (rc == ZOK) {
        w->floor_pzxid = 0;     /* caught up: the cache gates from here */
    }
    if (rc == ZOK) {
        w->stats->reads_children++;
        if (scout_cache_apply_children(&w->cache, names, stat,
                                       w->cb->needs_data, w->ud, &changed)
            == SCOUT_AGAIN) {
            w->stats->stale_results_dropped++;
            scout_log(SCOUT_LOG_DEBUG, "watch",
                      "%s: dropped a child list older than the cache",
                      w->path);
        } else if (!w->synced) {
            w->notify = 1;
        } else if (verifying && changed && w->conclusive
                   && !w->children_dirty) {
            /* the list moved and no watch event told us, before the read
             * or while it was in flight (ZooKeeper delivers an event ahead
             * of a response that reflects it): drift, repaired by this very
             * read (expected to stay 0) */
            w->stats->anti_entropy_repairs++;
            scout_log(SCOUT_LOG_WARN, "watch", "%s: anti-entropy found %u "
                      "children the watch missed; repaired", w->path,
                      changed);
        }
        issue_data_reads(w);            /* new children: same pull */
        scout_watch_kick_slots(w);
    } else if (rc == ZNONODE && (w->cache.count > 0 || w->floor_pzxid != 0)
               && !nonode_believed(w, NULL)) {
        w->children_dirty = 1;  /* read again once the server caught up */
    } else if (rc == ZNONODE) {
        /* A children read of a missing node sets no watch: arm an exists
         * watch so the creation wakes us. */
        scout_cache_apply_missing(&w->cache);
        w->floor_pzxid = 0;
        if ((zh = scout_watch_live_zh(w)) != NULL)
            issue_exists(w, zh);
        else
            w->children_dirty = 1;
    } else if (session_rc(rc) || retry_rc(rc)) {
        w->children_dirty = 1;
    } else {
        scout_log(SCOUT_LOG_ERROR, "watch", "%s: reading children: %s",
                  w->path, zerror(rc));
        w->children_dirty = 1;
    }
    if (!session_rc(rc))
        settle(w);
}

static void
exists_done(int rc, const struct Stat *stat, const void *data)
{
    read_req_t *r = (read_req_t *)data;
    scout_watch_t *w = r->w;
    (void)stat;

    free(r);
    w->exists_inflight = 0;
    if (w->dead) {
        dead_answered(w);
        return;
    }
    if (rc == ZOK) {
        /* Created between our reads: list it now. */
        w->children_dirty = 1;
    } else if (rc == ZNONODE) {
        if (!w->synced)
            w->notify = 1;
        scout_log(SCOUT_LOG_DEBUG, "watch", "%s: does not exist; watching",
                  w->path);
    } else {
        w->children_dirty = 1;
    }
    if (!session_rc(rc))
        settle(w);
}

static void
issue_children(scout_watch_t *w, zhandle_t *zh)
{
    read_req_t *r;

    if (!scout_watch_window_take(w))
        return;                 /* still dirty: read on from window.c */
    if ((r = scout_watch_req_new(w, NULL)) == NULL) {
        scout_watch_window_give(w);
        return;
    }
    w->children_dirty = 0;
    if (zoo_awget_children2(zh, w->path, scout_watch_on_parent_event,
                            w->session, children_done, r) != ZOK) {
        scout_watch_window_give(w);
        free(r);
        w->children_dirty = 1;
        return;
    }
    scout_stats.zk_requests_children++;
    w->children_inflight = 1;
}

/* ---- children's data --------------------------------------------------- */

void
scout_watch_child_event(scout_watch_t *w, int type, const char *path)
{
    scout_child_t *child;
    const char *name;

    scout_stats.zk_watch_events++;
    name = strrchr(path, '/');
    name = name ? name + 1 : path;
    child = scout_cache_find(&w->cache, name);
    if (type == ZOO_DELETED_EVENT) {
        /* The node is gone: drop it now (reported as removed at the next
         * publish).  A node re-created under the same name then shows up as
         * new in the next list and is read and watched again -- keeping the
         * old entry would serve its old data forever.  The parent's child
         * watch fires for the same deletion and brings the list read, so
         * this event asks for none of its own. */
        if (child != NULL)
            scout_cache_remove(&w->cache, child);
        schedule(w, SCOUT_EVENT_REMOVED, name);
        return;
    }
    if (child == NULL)
        return;                 /* already gone from our list */
    scout_cache_mark_dirty(&w->cache, child);
    schedule(w, SCOUT_EVENT_DATA, name);
}

static void
data_done(int rc, const char *value, int len, const struct Stat *stat,
          const void *data)
{
    read_req_t *r = (read_req_t *)data;
    scout_watch_t *w = r->w;
    scout_child_t *child;

    scout_watch_window_give(w);
    if (w->dead) {
        free(r);
        w->data_inflight--;
        dead_answered(w);
        return;
    }
    child = scout_cache_find(&w->cache, r->name);
    w->data_inflight--;
    if (child == NULL || child->data_req != (uint32_t)r->id) {
        free(r);                /* removed or superseded meanwhile */
        if (!session_rc(rc))
            settle(w);
        return;
    }
    free(r);
    child->data_req = 0;
    if (rc == ZOK) {
        w->stats->reads_data++;
        int applied = scout_cache_apply_data(&w->cache, child, value, len,
                                             stat);
        if (applied == SCOUT_AGAIN)
            w->stats->stale_results_dropped++;
        else if (applied == SCOUT_ERROR)    /* out of memory: read again */
            scout_cache_mark_dirty(&w->cache, child);
    } else if (rc == ZNONODE && child->slot != 0) {
        /* from another session's server, which may lag: the child list (on
         * the service's session, synced before "no node" is believed there)
         * decides; the data is read again with it */
        scout_cache_mark_dirty(&w->cache, child);
        scout_watch_reread(w, 100);
    } else if (rc == ZNONODE && !nonode_believed(w, child->name)) {
        scout_cache_mark_dirty(&w->cache, child);   /* after the sync */
    } else if (rc == ZNONODE) {
        /* Deleted after the list was read; the parent watch fires too. */
        scout_cache_remove(&w->cache, child);
    } else {
        scout_cache_mark_dirty(&w->cache, child);
        if (!session_rc(rc) && !retry_rc(rc))
            scout_log(SCOUT_LOG_ERROR, "watch", "%s/%s: reading data: %s",
                      w->path, child->name, zerror(rc));
    }
    if (!session_rc(rc))
        settle(w);
}

/* Each dirty child is read (and its watch set) on its slot's session; a
 * child whose session is not connected stays dirty until it is. */
static void
issue_data_reads(scout_watch_t *w)
{
    scout_child_t **pp = &w->cache.dirty;
    char buf[1024];
    char *path = buf;

    while (*pp != NULL) {
        scout_child_t *child = *pp;
        size_t need = w->path_len + strlen(child->name) + 2;
        read_req_t *r;
        int slot;
        zhandle_t *zh;

        if (child->data_req != 0) {     /* one read per child at a time */
            pp = &child->next_dirty;
            continue;
        }
        slot = scout_watch_assign_slot(w, child);
        if ((zh = scout_watch_slot_zh(w, slot)) == NULL) {
            pp = &child->next_dirty;
            continue;
        }
        if (!scout_watch_window_take(w))
            return;             /* window full: read on from window.c */
        if (need > sizeof(buf) && (path = malloc(need)) == NULL) {
            scout_watch_window_give(w);
            return;
        }
        /* parent "/" + name, without a format per read (a sync's 100,000
         * data reads paid snprintf's parsing each: 1.6% of its work) */
        {
            size_t pl = strcmp(w->path, "/") == 0 ? 0 : w->path_len;
            size_t nl = need - w->path_len - 2;

            memcpy(path, w->path, pl);
            path[pl] = '/';
            memcpy(path + pl + 1, child->name, nl + 1);
        }
        r = scout_watch_req_new(w, child->name);
        if (r == NULL
            || zoo_awget(zh, path, scout_watch_on_child_event,
                         w->slot_session[slot], data_done, r) != ZOK) {
            scout_watch_window_give(w);
            free(r);
            if (path != buf)
                free(path);
            return;             /* stays dirty; retried later */
        }
        if (path != buf)
            free(path);
        path = buf;
        scout_stats.zk_requests_data++;
        w->data_inflight++;
        child->data_req = (uint32_t)r->id;
        child->data_dirty = 0;
        *pp = child->next_dirty;
        child->next_dirty = NULL;
    }
}

void
scout_watch_read_dirty(scout_watch_t *w)
{
    zhandle_t *zh = scout_watch_live_zh(w);

    /* CONNECTED (or the sync) calls us again; data on other sessions'
     * slots is read meanwhile */
    if ((zh == NULL && w->nslots == 1) || w->sync_inflight)
        return;
    w->pending_events = 0;
    w->last_read = ev_now(w->loop);
    if (zh != NULL && w->children_dirty && !w->children_inflight
        && !w->exists_inflight)
        issue_children(w, zh);
    issue_data_reads(w);
    scout_watch_kick_slots(w);
    /* Nothing to read but something to tell (a deletion seen through a
     * child's own watch): publish it now, at the end of its delay. */
    if (zh != NULL && !w->children_inflight && !w->exists_inflight
        && !w->data_inflight && !w->children_dirty && w->cache.dirty == NULL)
        settle(w);
}

void
scout_watch_set_floor(scout_watch_t *w, int64_t pzxid, int64_t max_mzxid)
{
    w->floor_pzxid = pzxid;
    w->floor_rejects = 0;
    if (max_mzxid > w->cache.max_mzxid)
        w->cache.max_mzxid = max_mzxid;
}

/* ---- lifecycle ------------------------------------------------------------ */

scout_watch_t *
scout_watch_new(struct ev_loop *loop, scout_session_t *session,
                const char *path, const scout_watch_cb_t *cb, void *ud,
                scout_service_stats_t *stats, char *err)
{
    scout_watch_t *w = calloc(1, sizeof(*w));

    if (w == NULL || (w->path = strdup(path)) == NULL) {
        free(w);
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    w->path_len = (unsigned)strlen(path);
    w->loop = loop;
    w->session = session;
    w->cb = cb;
    w->ud = ud;
    w->stats = stats;
    w->children_dirty = 1;
    w->last_read = ev_now(loop);
    scout_cache_init(&w->cache);
    scout_watch_slots_init(w, session);
    w->cache.slot_base = 4 + (strcmp(path, "/") == 0 ? 1 : w->path_len + 1);
    scout_watch_resync_init(w);
    scout_watch_index_add(w);
    if (!w->indexed) {
        scout_watch_free(w);
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    return w;
}

const char *
scout_watch_path(const scout_watch_t *w)
{
    return w->path;
}

/* Retired watches: ZooKeeper keeps their (fn, ctx) until they fire or the
 * session ends, and 3.8's C client cannot remove them; but that context is
 * the session, and events find watches through the path index, which a
 * retired one has left.  Only the answers still due point at the shell:
 * it is freed with the last of them (dead_answered), so reloads on a
 * stable session do not pile shells up.  scout_watch_reap() is the net
 * for a handle closed under them. */
static scout_watch_t *graveyard;

static void
release_dead(scout_watch_t *w)
{
    scout_watch_t **pp;

    for (pp = &graveyard; *pp != NULL; pp = &(*pp)->next_dead) {
        if (*pp == w) {
            *pp = w->next_dead;
            break;
        }
    }
    scout_stats.zk_watches_released++;
    scout_watch_slots_free(w);
    free(w->delay);
    free(w->path);
    free(w);
}

static void
dead_answered(scout_watch_t *w)
{
    if (!w->children_inflight && !w->exists_inflight && !w->data_inflight)
        release_dead(w);
}

void
scout_watch_retire(scout_watch_t *w)
{
    scout_watch_resync_del(w);  /* out of the anti-entropy queue and total */
    scout_watch_window_del(w);
    scout_watch_index_del(w);
    scout_watch_spread_del(w);               /* no event reaches it any more */
    scout_watch_delay_stop(w);
    ev_timer_stop(w->loop, &w->resync);
    scout_watch_acct_drop(w);   /* its watches leave the sessions' totals */
    scout_cache_free(&w->cache);
    w->dead = 1;
    w->next_dead = graveyard;
    graveyard = w;
    scout_stats.zk_watches_retired++;
    dead_answered(w);           /* nothing in flight: freed now */
}

void
scout_watch_reap(scout_session_t *session)
{
    scout_watch_t **pp = &graveyard;

    while (*pp != NULL) {
        scout_watch_t *w = *pp;
        /* one with data slots may still hear from the other sessions'
         * handles: it waits for the exit */
        if (session != NULL && (w->session != session || w->nslots > 1)) {
            pp = &w->next_dead;
            continue;
        }
        *pp = w->next_dead;
        scout_stats.zk_watches_released++;
        scout_watch_slots_free(w);
        free(w->delay);
        free(w->path);
        free(w);
    }
    if (session == NULL)
        scout_watch_accts_free();
}

void
scout_watch_free(scout_watch_t *w)
{
    if (w == NULL)
        return;
    scout_watch_index_del(w);
    scout_watch_spread_del(w);
    scout_watch_delay_stop(w);
    ev_timer_stop(w->loop, &w->resync);
    scout_watch_resync_del(w);
    scout_watch_window_del(w);
    /* before the cache goes: the slots' totals are found through it */
    scout_watch_slots_free(w);
    scout_cache_free(&w->cache);
    free(w->delay);
    free(w->path);
    free(w);
}

void
scout_watch_on_session(scout_watch_t *w, scout_session_state_t state,
                       int new_session, int jitter_ms)
{
    if (state != SCOUT_SESSION_CONNECTED)
        return;
    /* a fresh session re-reads everything anyway: check again a period
     * later; a reconnect within the session is checked within a second */
    scout_watch_resync_arm(w, new_session ? scout_watch_resync_period(w)
                                          : rand() % 1000 / 1000.0);
    if (new_session) {
        /* Every watch of the old handle is gone: read everything again.
         * Unchanged children compare equal and publish nothing. */
        w->children_dirty = 1;
        scout_cache_mark_all_dirty(&w->cache);
        if (jitter_ms > 0) {
            scout_watch_delay_arm(w, rand() % (jitter_ms + 1));
            return;
        }
    }
    /* Same session: the client re-set our watches itself; only reads that
     * failed with the connection need issuing again. */
    if ((w->children_dirty || w->cache.dirty) && !scout_watch_delay_armed(w))
        scout_watch_read_dirty(w);
}

void
scout_watch_reread(scout_watch_t *w, int delay_ms)
{
    double due = ev_now(w->loop) + delay_ms / 1000.0;

    w->children_dirty = 1;
    if (scout_watch_delay_armed(w) && w->delay->deadline <= due)
        return;
    scout_watch_delay_arm(w, delay_ms);
}

scout_cache_t *
scout_watch_cache(scout_watch_t *w)
{
    return &w->cache;
}


int
scout_watch_settled(const scout_watch_t *w)
{
    return !w->children_inflight && !w->exists_inflight && !w->data_inflight
           && !w->sync_inflight;
}



