/*
 * sliced.c -- an answer rendered in slices from an idle watcher and shared
 * by every request waiting for it (see sliced.h).  It must never run more
 * than one slice per callback, nor render twice what one iteration already
 * answered, nor keep an answer past that iteration: at 10,000 services the
 * /metrics text is 7 MB (8 MB of buffer), and holding the last one between
 * scrapes was a tenth of the agent's memory.
 */
#include "api/sliced.h"

#include <ev.h>
#include <stdlib.h>

#include "loop.h"
#include "rcbuf.h"
#include "scout.h"

struct scout_sliced_s {
    struct ev_loop            *loop;
    const scout_sliced_ops_t  *ops;
    void                      *ud;
    scout_rcbuf_t             *cache;   /* the last answer, shared */
    unsigned                   cache_iter;  /* the iteration it ended in */
    ev_prepare                 release; /* lets it go when that ends */
    void                      *job;     /* the render under way, or NULL */
    ev_idle                    idle;    /* runs its next slice */
    scout_http_req_t         **wait;    /* the requests waiting for it */
    size_t                     nwait, capwait;
};

static const char OOM[] = "{\"error\":\"out of memory\"}";

static int64_t
deadline(void)
{
    return scout_now_ns() + (int64_t)(SCOUT_API_SLICE * 1e9);
}

/* Takes buf (NULL: out of memory). */
static void
finished(scout_sliced_t *s, char *buf, size_t len)
{
    scout_rcbuf_unref(s->cache);
    s->cache = buf != NULL ? scout_rcbuf_adopt(buf, len) : NULL;
    s->cache_iter = ev_iteration(s->loop);
    if (s->cache != NULL)
        ev_prepare_start(s->loop, &s->release);
}

/* Prepare watchers run before the loop polls again, ev_iteration() not yet
 * moved: every request of the iteration the answer ended in was served.
 * The requests still sending it hold their own reference. */
static void
on_release(struct ev_loop *loop, ev_prepare *w, int revents)
{
    scout_sliced_t *s = w->data;
    (void)revents;

    ev_prepare_stop(loop, w);
    scout_rcbuf_unref(s->cache);
    s->cache = NULL;
}

static int
respond(scout_sliced_t *s, scout_http_req_t *req)
{
    return s->cache != NULL
        ? scout_http_respond_shared(req, 200, s->ops->type, s->cache)
        : scout_http_respond(req, 500, "application/json", OOM,
                             sizeof(OOM) - 1);
}

/* The render ended with rc: keep its answer (or its failure). */
static void
end_job(scout_sliced_t *s, int rc)
{
    char *buf = NULL;
    size_t len = 0;

    ev_idle_stop(s->loop, &s->idle);
    if (rc == SCOUT_OK)
        buf = s->ops->finish(s->ud, s->job, &len);
    else
        s->ops->drop(s->job);
    s->job = NULL;
    finished(s, buf, len);
}

static void
drop_job(scout_sliced_t *s)
{
    ev_idle_stop(s->loop, &s->idle);
    if (s->job != NULL)
        s->ops->drop(s->job);
    s->job = NULL;
}

static void
on_abort(scout_http_req_t *req, void *data)
{
    scout_sliced_t *s = data;

    for (size_t i = 0; i < s->nwait; i++)
        if (s->wait[i] == req) {
            s->wait[i] = s->wait[--s->nwait];
            break;
        }
    if (s->nwait == 0)
        drop_job(s);            /* nobody left to answer */
}

/* One slice; at the end, the answer to every waiting request. */
static void
on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    scout_sliced_t *s = w->data;
    int64_t t0 = scout_now_ns();
    int rc;
    (void)loop;
    (void)revents;

    rc = s->ops->step(s->job, t0 + (int64_t)(SCOUT_API_SLICE * 1e9));
    scout_loop_note(s->ops->what, (double)(scout_now_ns() - t0) / 1e9);
    if (rc == SCOUT_AGAIN)
        return;
    end_job(s, rc);
    /* respond() never calls back into s: answered, a request is gone */
    for (size_t i = 0; i < s->nwait; i++)
        respond(s, s->wait[i]);
    s->nwait = 0;
}

int
scout_sliced_answer(scout_sliced_t *s, scout_http_req_t *req)
{
    int rc;

    if (s->cache != NULL && s->cache_iter == ev_iteration(s->loop))
        return respond(s, req);
    if (s->nwait == s->capwait) {
        size_t cap = s->capwait ? s->capwait * 2 : 8;
        scout_http_req_t **p = realloc(s->wait, cap * sizeof(*p));

        if (p == NULL)
            return scout_http_respond(req, 500, "application/json", OOM,
                                      sizeof(OOM) - 1);
        s->wait = p;
        s->capwait = cap;
    }
    if (s->job == NULL) {
        if ((s->job = s->ops->begin(s->ud)) == NULL)
            return scout_http_respond(req, 500, "application/json", OOM,
                                      sizeof(OOM) - 1);
        rc = s->ops->step(s->job, deadline());
        if (rc != SCOUT_AGAIN) {    /* small registries: done at once */
            end_job(s, rc);
            return respond(s, req);
        }
        ev_idle_start(s->loop, &s->idle);
    }
    s->wait[s->nwait++] = req;
    scout_http_req_on_abort(req, on_abort, s);
    return SCOUT_AGAIN;
}

size_t
scout_sliced_held(const scout_sliced_t *s)
{
    return s->cache != NULL ? s->cache->len : 0;
}

int
scout_sliced_busy(const scout_sliced_t *s)
{
    return s->job != NULL;
}

scout_sliced_t *
scout_sliced_new(struct ev_loop *loop, const scout_sliced_ops_t *ops,
                 void *ud)
{
    scout_sliced_t *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->ops = ops;
    s->ud = ud;
    ev_idle_init(&s->idle, on_idle);
    s->idle.data = s;
    ev_prepare_init(&s->release, on_release);
    s->release.data = s;
    return s;
}

void
scout_sliced_free(scout_sliced_t *s)
{
    if (s == NULL)
        return;
    drop_job(s);
    ev_prepare_stop(s->loop, &s->release);
    free(s->wait);
    scout_rcbuf_unref(s->cache);
    free(s);
}
