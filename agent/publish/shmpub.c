/*
 * shmpub.c -- feed the shared-memory snapshot (see shmpub.h).
 *
 * A timer runs after the current loop iteration's callbacks, so every
 * publish of that iteration lands in one generation, and generations are at
 * least SHM_MIN_INTERVAL apart.  Services that
 * have never been synced are written too (state "syncing", no endpoints),
 * so a reader can tell "not yet known" from "no such service".
 *
 * What the loop pays per generation does not grow with the registry: each
 * service is encoded into a slice once per (index, state, settings) and
 * kept in an array in name order (svcmap.h, sorted once per list, the
 * order the file needs, so no generation sorts).  A publish names its
 * service (svcmap.h finds its slot), and a generation re-encodes only the
 * services named since the last one -- all of them only when every state
 * may have moved (a session change, a new list).  The writer thread is
 * lent the array itself: the loop leaves it alone while a generation is
 * out (changes meanwhile are only marked, and coalesced into one more
 * generation, from the newest state, when it is done), so handing it over
 * costs nothing per service.  The thread (writer.h) copies the pointers
 * (already in name order), copies the slices into the slot, checksums and
 * moves the generation; it owns the scout_shm_t once it runs.
 *
 * Unless the snapshot is small: then the generation is written on the loop
 * (SHM_INLINE_BODY).  Writing a 12 KB body costs the loop ~1 us (a 120 KB
 * one ~10 us, 12 MB at 10,000 services 1-3 ms), while handing it to the
 * thread cost every change of a quiet registry three futex calls and a
 * wakeup of the thread (bench/propagation), more than the write itself.
 * And the generation starts in a prepare watcher, which stops the zero
 * timer armed beside it: the same place (after the iteration's callbacks),
 * without the extra zero-timeout poll a due timer makes the loop do.
 *
 * An agent that adopts a file holding a snapshot (a restart, or the new
 * agent of an `nginx -s reload`) writes no generation until every service
 * has been published once (from ZooKeeper or the disk snapshot).  Until
 * then the file keeps the last agent's snapshot, which is what it knows
 * best: a "syncing", empty generation would leave a reader that maps the
 * file only now (a worker the reload started) with no endpoint at all.
 * Readers that held the old snapshot keep it either way.  What must never
 * happen: a generation written over an adopted snapshot while a service
 * still has nothing to say.  A service whose policy fails on its first
 * listing (the whole update, stopped by its budget) ends its part of the
 * hold too: it would hold every other service's changes from the readers
 * until it recovers, and waiting brings nothing better for it.
 */
#include "publish/shmpub.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"
#include "publish/idlog.h"
#include "publish/shm.h"
#include "publish/svcmap.h"
#include "publish/writer.h"

/* A service's slice as last encoded, valid while the service (the same
 * object) has the same index, state and settings. */
struct cached {
    const scout_service_t *svc;
    uint64_t               index;
    const char            *state;
    const char            *settings;
    size_t                 settings_len;
    scout_shm_slice_t     *slice;
    scout_idlog_t         *log;     /* ids changed since slice (idlog.h);
                                       NULL: none noted */
};

struct job {
    scout_shm_slice_t **slices;     /* lent: p->set, [n] */
    int                 n;
    int                 rc;
    size_t              body;       /* bytes of the body written */
    char                err[SCOUT_ERR_LEN];
};

struct scout_shmpub_s {
    struct ev_loop   *loop;
    scout_shm_t      *shm;          /* the thread's once it runs */
    scout_service_t **services;
    int               n;
    struct cached    *cache;        /* [n], slot i: marks.keys[i] */
    scout_shm_slice_t **set;        /* [n]: cache[i].slice, lent to jobs */
    scout_svcmap_marks_t marks;     /* slots named since the last one */
    /* the arrays of a list replaced while a job had them: freed when the
     * job is collected */
    struct cached    *old_cache;
    scout_shm_slice_t **old_set;
    int               old_n;
    ev_timer          timer;
    ev_prepare        soon;         /* the next write, this iteration */
    size_t            body;         /* the last generation's bytes; 0:
                                       none yet */
    double            last;         /* ev_now() of the last write */
    int               hold;         /* adopted a snapshot: no generation
                                       until every service was published */
    int               hold_next;    /* services[0..hold_next) published */
    int               dirty;        /* changed while busy */
    scout_writer_t    writer;
    /* the writer's copy of a job's slices, sorted by name (its own) */
    scout_shm_slice_t **sorted;
    int               sorted_cap;
};

/* Every generation makes each nginx worker rebuild its tables (~100 ms at
 * 10,000 services), so generations are at least this far apart; a single
 * change still goes out at once. */
#define SHM_MIN_INTERVAL 0.1
/* A generation is written on the loop when the last one's body was no
 * bigger than this (~10 us, see the top), and the service list has not
 * changed since (a new list may be a first sync's whole registry). */
#define SHM_INLINE_BODY (128 * 1024)
/* A failed write (a full /dev/shm) is tried again this often. */
#define SHM_RETRY 1.0

static void
job_free(struct job *j)
{
    free(j);                    /* the slices are lent, not its own */
}

static void
cache_free(struct cached *cache, scout_shm_slice_t **set, int n)
{
    for (int i = 0; cache != NULL && i < n; i++) {
        scout_shm_slice_unref(cache[i].slice);
        scout_idlog_free(&cache[i].log);
    }
    free(cache);
    free(set);
}

static void
cache_clear(scout_shmpub_t *p)
{
    cache_free(p->cache, p->set, p->n);
    p->cache = NULL;
    p->set = NULL;
    scout_svcmap_marks_free(&p->marks);
}

/* The per-service arrays for p->services; SCOUT_ERROR when out of memory
 * (tried again at the next generation). */
static int
cache_make(scout_shmpub_t *p)
{
    size_t n = (size_t)(p->n ? p->n : 1);

    p->cache = calloc(n, sizeof(*p->cache));
    p->set = calloc(n, sizeof(*p->set));
    if (p->cache == NULL || p->set == NULL
        || scout_svcmap_marks_build(&p->marks, (void *const *)p->services,
                                    p->n, scout_service_by_name)
           != SCOUT_OK) {
        cache_clear(p);
        return SCOUT_ERROR;
    }
    return SCOUT_OK;
}

/* In the writer thread (or on the loop without one): publish the lent
 * slices from a sorted copy of their pointers, leaving the loop's array as
 * it is. */
static void
publish_job(void *owner, void *job)
{
    scout_shmpub_t *p = owner;
    struct job *j = job;

    if (j->n > p->sorted_cap) {
        scout_shm_slice_t **s = realloc(p->sorted,
                                        (size_t)j->n * sizeof(*s));

        if (s == NULL) {
            j->rc = SCOUT_ERROR;
            snprintf(j->err, sizeof(j->err), "out of memory");
            return;
        }
        p->sorted = s;
        p->sorted_cap = j->n;
    }
    if (j->n > 0)
        memcpy(p->sorted, j->slices, (size_t)j->n * sizeof(*p->sorted));
    j->rc = scout_shm_publish_slices(p->shm, p->sorted, j->n, j->err);
    j->body = scout_shm_snapshot_size(p->shm);
}

/* Service i's slice as it is now: kept, or encoded again.  NULL + err. */
static scout_shm_slice_t *
slice_of(scout_shmpub_t *p, int i, char *err)
{
    scout_service_t *s = p->marks.keys[i];
    struct cached *c = &p->cache[i];
    scout_shm_slice_t *was;
    scout_shm_service_t sv;
    scout_idlog_t *log;
    const char *ids = NULL;
    uint32_t nids = 0;
    int known;

    sv.index = scout_service_index(s);
    sv.state = scout_service_state(s);
    sv.settings = scout_service_settings(s, &sv.settings_len);
    if (c->slice != NULL && c->svc == s && c->index == sv.index
        && c->settings == sv.settings && c->settings_len == sv.settings_len
        && strcmp(c->state, sv.state) == 0)
        return c->slice;
    sv.name = scout_service_name(s);
    sv.path = scout_service_path(s);
    sv.eps = scout_service_epset(s);
    /* made from the last one: an endpoint that did not change is copied,
     * not encoded again (shm_reslice.c).  Which did, the service's
     * publishes since said (idlog.h), when every move of its index was
     * one of them; otherwise every endpoint is compared. */
    was = c->slice;
    log = c->log;
    known = was != NULL && c->svc == s
            && scout_idlog_since(log, c->index, sv.index, &ids, &nids);
    memset(c, 0, sizeof(*c));
    p->set[i] = NULL;
    c->slice = known ? scout_shm_slice_known(was, &sv, ids, nids, err)
                     : scout_shm_slice_next(was, &sv, err);
    scout_shm_slice_unref(was);
    /* what changes from here on is news to the slice just made (or, if it
     * failed, to none: the next one is encoded whole, was being gone) */
    scout_idlog_free(&log);
    if (c->slice == NULL)
        return NULL;
    p->set[i] = c->slice;
    c->svc = s;
    c->index = sv.index;
    c->state = sv.state;        /* a constant of service.c */
    c->settings = sv.settings;
    c->settings_len = sv.settings_len;
    return c->slice;
}

static void
retry_later(scout_shmpub_t *p, const char *err)
{
    scout_log(SCOUT_LOG_WARN, "shm", "publishing the snapshot: %s; "
              "retrying in %.0f s", err, SHM_RETRY);
    ev_timer_stop(p->loop, &p->timer);
    ev_timer_set(&p->timer, SHM_RETRY, 0.);
    ev_timer_start(p->loop, &p->timer);
}

static void schedule(scout_shmpub_t *p);

static void
collect(void *owner, void *job)
{
    scout_shmpub_t *p = owner;
    struct job *j = job;

    cache_free(p->old_cache, p->old_set, p->old_n);
    p->old_cache = NULL;
    p->old_set = NULL;
    if (j->rc == SCOUT_OK)
        p->body = j->body;
    if (j->rc != SCOUT_OK)
        retry_later(p, j->err);
    else if (p->dirty)
        schedule(p);
    p->dirty = 0;
    job_free(j);
}

/* In the thread: a generation written is news to nobody on the loop (its
 * collect only frees); a failure is, to be retried. */
static int
job_quiet(void *owner, void *job)
{
    (void)owner;
    return ((struct job *)job)->rc == SCOUT_OK;
}

/* Re-encode slot i if it moved; SCOUT_ERROR (err) leaves it marked. */
static int
refresh(scout_shmpub_t *p, int i, char *err)
{
    return slice_of(p, i, err) == NULL ? SCOUT_ERROR : SCOUT_OK;
}

/* Still holding the adopted snapshot: some service was never published
 * and its policy has not failed on it either (ZooKeeper not read yet).
 * A service once published stays so, hence the cursor: the whole hold
 * costs one pass over the list, not one per change. */
static int
holding(scout_shmpub_t *p)
{
    if (!p->hold)
        return 0;
    while (p->hold_next < p->n
           && scout_service_settled(p->services[p->hold_next]))
        p->hold_next++;
    if (p->hold_next < p->n)
        return 1;
    p->hold = 0;
    scout_log(SCOUT_LOG_INFO, "shm", "every service published: writing "
              "over the adopted snapshot from now on");
    return 0;
}

static void
write_now(scout_shmpub_t *p)
{
    char err[SCOUT_ERR_LEN];
    struct job *j;
    int small;

    if (holding(p))
        return;                 /* the marks stay: written when it ends */
    if (scout_writer_busy(&p->writer)) {
        p->dirty = 1;           /* collect() schedules the next one */
        return;
    }
    if ((p->cache == NULL && cache_make(p) != SCOUT_OK)
        || (j = calloc(1, sizeof(*j))) == NULL) {
        retry_later(p, "out of memory");
        return;
    }
    small = p->body > 0 && p->body <= SHM_INLINE_BODY && !p->marks.all;
    /* only what was named since the last generation: the loop's cost is
     * the services that changed, not the registry */
    if (p->marks.all) {
        for (int i = 0; i < p->n; i++)
            if (refresh(p, i, err) != SCOUT_OK)
                goto fail;
        p->marks.all = 0;
    }
    for (int i; (i = scout_svcmap_next(&p->marks)) >= 0;) {
        if (refresh(p, i, err) != SCOUT_OK)
            goto fail;
        scout_svcmap_taken(&p->marks);
    }
    j->slices = p->set;
    j->n = p->n;
    p->last = ev_now(p->loop);
    if (small) {
        scout_stats.shm_inline_writes++;
        scout_writer_run_here(&p->writer, j);
    } else {
        scout_writer_submit(&p->writer, j);
    }
    return;

fail:
    job_free(j);
    retry_later(p, err);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_shmpub_t *p = t->data;
    (void)revents;

    ev_prepare_stop(loop, &p->soon);
    write_now(p);
}

static void
on_soon(struct ev_loop *loop, ev_prepare *w, int revents)
{
    scout_shmpub_t *p = w->data;
    (void)revents;

    ev_prepare_stop(loop, w);
    ev_timer_stop(loop, &p->timer);     /* before the poll looks at it */
    write_now(p);
}

scout_shmpub_t *
scout_shmpub_new(struct ev_loop *loop, const char *path, int format,
                 scout_service_t **services, int n, char *err)
{
    scout_shmpub_t *p = calloc(1, sizeof(*p));
    int rc;

    if (p == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    p->shm = scout_shm_open_version(path, format, err);
    if (p->shm == NULL) {
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->services = services;
    p->n = n;
    p->hold = scout_shm_generation(p->shm) > 0;     /* adopted, not empty */
    ev_timer_init(&p->timer, on_timer, 0., 0.);
    p->timer.data = p;
    /* before the loop's own prepares (its iteration timing, EV_MINPRI), so
     * an inline write counts in the iteration that caused it */
    ev_prepare_init(&p->soon, on_soon);
    p->soon.data = p;
    if ((rc = scout_writer_start(&p->writer, loop, publish_job, collect,
                                 p)) != 0)
        scout_log(SCOUT_LOG_WARN, "shm", "no writer thread (%s): the "
                  "snapshot is published on the loop", strerror(rc));
    scout_writer_set_quiet(&p->writer, job_quiet);
    scout_shmpub_changed(p, NULL); /* readers learn the service list at once */
    return p;
}

/* The next generation once this iteration's callbacks are done,
 * SHM_MIN_INTERVAL after the last one at the earliest. */
static void
schedule(scout_shmpub_t *p)
{
    double wait = p->last + SHM_MIN_INTERVAL - ev_now(p->loop);

    if (ev_is_active(&p->timer) || ev_is_active(&p->soon))
        return;                 /* already due: it will see this change */
    ev_timer_set(&p->timer, wait > 0 ? wait : 0., 0.);
    ev_timer_start(p->loop, &p->timer);
    /* Due now: the prepare writes before the poll and stops the timer,
     * so the loop does not poll once more with a zero timeout.  Started
     * from another prepare callback (a session recreated in one) it would
     * wait for the next wakeup; then the timer, due at once, writes. */
    if (wait <= 0)
        ev_prepare_start(p->loop, &p->soon);
}

void
scout_shmpub_changed(scout_shmpub_t *p, scout_service_t *svc)
{
    scout_svcmap_mark(&p->marks, svc);
    /* (a service not in the map: the arrays are made, every slot
     * refreshed, at the next generation) */
    schedule(p);
}

static void
note(void *ud, const char *id)
{
    scout_idlog_add(ud, id);
}

void
scout_shmpub_published(scout_shmpub_t *p, scout_service_t *svc)
{
    int i;

    /* (no entry yet, or no slice to copy from: nothing to note for) */
    if (p->cache != NULL && (i = scout_svcmap_find(&p->marks.map, svc)) >= 0
        && p->cache[i].slice != NULL && p->cache[i].svc == svc) {
        scout_idlog_t **log = &p->cache[i].log;

        if (scout_service_changed_ids(svc, note, log))
            scout_idlog_moved(log, scout_service_index(svc));
        else
            scout_idlog_lose(log);
    }
    scout_shmpub_changed(p, svc);
}

void
scout_shmpub_set_services(scout_shmpub_t *p, scout_service_t **services, int n)
{
    if (scout_writer_busy(&p->writer) && p->old_cache == NULL
        && p->cache != NULL) {
        /* the job in flight reads them: freed when it is collected */
        p->old_cache = p->cache;
        p->old_set = p->set;
        p->old_n = p->n;
        p->cache = NULL;
        p->set = NULL;
    }
    cache_clear(p);             /* encoded again once, for the new list */
    p->services = services;
    p->n = n;
    p->hold_next = 0;           /* (still holding: the new list's turn) */
}

void
scout_shmpub_free(scout_shmpub_t *p)
{
    if (p == NULL)
        return;
    /* a generation in flight is finished */
    job_free(scout_writer_stop(&p->writer));
    ev_timer_stop(p->loop, &p->timer);
    ev_prepare_stop(p->loop, &p->soon);
    cache_clear(p);
    cache_free(p->old_cache, p->old_set, p->old_n);
    free(p->sorted);
    scout_shm_close(p->shm, 0);
    scout_shm_slice_spares_free();  /* every slice is let go by now */
    free(p);
}
