/*
 * early.c -- the disk snapshot served while the policy loads (early.h).
 *
 * Why here and so: the policy load takes ~130 ms of CPU at 10,000
 * services, and reading the whole snapshot 50-80 ms; mapping it, checking
 * its checksum and indexing its services takes a few.  So the loop thread
 * does only that and listens, the policy loads on another thread, and a
 * service's endpoints are decoded when someone asks for it.  The answers
 * are built with what the API uses (svclist.h for the table,
 * scout_epset_json_take for a list, the same headers), so the loaded
 * agent's answers for the same snapshot are these bytes; the integration
 * test compares them.  What must never happen here: an answer the loaded
 * agent would not give (anything but the snapshot the side file vouches
 * for, for the policy it names), a request lost at the hand-over, or the
 * loop held for the whole table (it is rendered in slices, sliced.h).
 */
#define _GNU_SOURCE /* qsort_r */
#include "api/early.h"

#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_agent.h"
#include "api/sliced.h"
#include "api/svclist.h"
#include "endpoint.h"
#include "log.h"
#include "loop.h"
#include "publish/snapshot.h"
#include "publish/snapshot_lazy.h"
#include "rcbuf.h"
#include "scout.h"

typedef struct {
    const char    *name, *path;     /* the side file's */
    int            k;               /* in the snapshot, or -1: syncing */
    uint64_t       index;
    unsigned       count;
    scout_rcbuf_t *json;            /* decoded when first asked */
} entry_t;

struct scout_early_s {
    struct ev_loop    *loop;
    scout_snapside_t  *side;
    scout_snaplazy_t  *snap;
    char              *listen;
    uint64_t           fp;
    entry_t           *ent;         /* [side->n], the policy's order */
    int               *by_name;     /* indexes of ent, sorted by name */
    scout_http_t      *http;        /* NULL once handed over */
    scout_sliced_t    *list;
    scout_http_req_t **parked;
    int                nparked, capparked;
    unsigned           answered;
    int                released;    /* scout_early_release's pieces freed */
    ev_check           retire;      /* frees it once its render ended */
};

static const char *const JSON_TYPE = "application/json";

/* ---- GET /v1/services, as api.c renders it ------------------------------ */

typedef struct {
    scout_early_t  *e;
    int             next;
    scout_svclist_t out;            /* svclist.h: api.c's bytes */
} list_job_t;

static void
list_drop(void *job)
{
    list_job_t *j = job;

    scout_svclist_free(&j->out);
    free(j);
}

static void *
list_begin(void *ud)
{
    list_job_t *j = calloc(1, sizeof(*j));

    if (j != NULL && scout_svclist_init(&j->out, 4096) != SCOUT_OK) {
        free(j);
        return NULL;
    }
    if (j != NULL)
        j->e = ud;
    return j;
}

static int
list_step(void *job, int64_t deadline_ns)
{
    list_job_t *j = job;
    int n = j->e->side->n;
    unsigned done = 0;

    while (j->next < n) {
        const entry_t *t = &j->e->ent[j->next++];

        if (scout_svclist_add(&j->out, t->name, t->path, t->count, t->index,
                              t->k >= 0 ? "stale" : "syncing") != SCOUT_OK)
            return SCOUT_ERROR;
        if ((++done & 63) == 0 && j->next < n
            && scout_now_ns() >= deadline_ns)
            return SCOUT_AGAIN;
    }
    return SCOUT_OK;
}

static char *
list_finish(void *ud, void *job, size_t *len)
{
    list_job_t *j = job;
    char *buf = scout_svclist_finish(&j->out, len);
    (void)ud;

    list_drop(j);
    return buf;
}

static const scout_sliced_ops_t LIST_OPS = {
    "GET /v1/services before the policy, a slice", "application/json",
    list_begin, list_step, list_finish, list_drop,
};

/* ---- the routes --------------------------------------------------------- */

static int
respond_error(scout_http_req_t *req, int status, const char *msg)
{
    json_t *o = json_pack("{ss}", "error", msg);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    int rc;

    json_decref(o);
    if (text == NULL)
        return scout_http_respond(req, 500, "text/plain", "out of memory\n",
                                  14);
    rc = scout_http_respond(req, status, JSON_TYPE, text, strlen(text));
    free(text);
    return rc;
}

static int
cmp_name(const void *a, const void *b, void *ud)
{
    const entry_t *ent = ud;

    return strcmp(ent[*(const int *)a].name, ent[*(const int *)b].name);
}

static entry_t *
find(scout_early_t *e, const char *name)
{
    int lo = 0, hi = e->side->n - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        entry_t *t = &e->ent[e->by_name[mid]];
        int c = strcmp(name, t->name);

        if (c == 0)
            return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* api.c's respond_service for a service seeded from this snapshot (or
 * never published: index 0, syncing, []). */
static int
get_service(scout_early_t *e, scout_http_req_t *req, const char *raw)
{
    char name[1024], index[32], err[SCOUT_ERR_LEN];
    entry_t *t;

    if (scout_http_unescape(raw, strlen(raw), name, sizeof(name)) < 0)
        return respond_error(req, 400, "bad service name");
    if ((t = find(e, name)) == NULL)
        return respond_error(req, 404, "no such service");
    if (t->json == NULL) {
        scout_epset_t eps;
        char *json;
        size_t len;

        scout_epset_init(&eps);
        if (t->k >= 0 && scout_snaplazy_decode(e->snap, t->k, &eps, err)
                         != SCOUT_OK) {
            scout_log(SCOUT_LOG_WARN, "early", "service %s: %s", name, err);
            return respond_error(req, 500, "the snapshot's list is broken");
        }
        json = scout_epset_json_take(&eps, &len);
        scout_epset_free(&eps);
        if (json == NULL || (t->json = scout_rcbuf_adopt(json, len)) == NULL)
            return respond_error(req, 500, "out of memory");
    }
    snprintf(index, sizeof(index), "%llu", (unsigned long long)t->index);
    scout_http_add_header(req, "X-Scout-Index", index);
    scout_http_add_header(req, "X-Scout-State", t->k >= 0 ? "stale"
                                                           : "syncing");
    return scout_http_respond_shared(req, 200, JSON_TYPE, t->json);
}

static void
on_parked_abort(scout_http_req_t *req, void *data)
{
    scout_early_t *e = data;

    for (int i = 0; i < e->nparked; i++)
        if (e->parked[i] == req) {
            memmove(&e->parked[i], &e->parked[i + 1],
                    (size_t)(e->nparked - i - 1) * sizeof(*e->parked));
            e->nparked--;
            return;
        }
}

/* For the loaded agent: in the order they came. */
static int
park(scout_early_t *e, scout_http_req_t *req)
{
    if (e->nparked == e->capparked) {
        int cap = e->capparked ? e->capparked * 2 : 16;
        scout_http_req_t **p = realloc(e->parked, (size_t)cap * sizeof(*p));

        if (p == NULL)
            return respond_error(req, 503, "out of memory");
        e->parked = p;
        e->capparked = cap;
    }
    e->parked[e->nparked++] = req;
    scout_http_req_on_abort(req, on_parked_abort, e);
    scout_log(SCOUT_LOG_DEBUG, "early", "%s %s parked until the policy is "
              "loaded", scout_http_req_method(req), scout_http_req_path(req));
    return SCOUT_AGAIN;
}

static int
handle(void *ud, scout_http_req_t *req)
{
    scout_early_t *e = ud;
    const char *path = scout_http_req_path(req);
    char v[32];

    e->answered++;
    if (strcmp(scout_http_req_method(req), "GET") != 0)
        return park(e, req);
    if (strcmp(path, "/v1/services") == 0)
        return scout_sliced_answer(e->list, req);
    /* a blocking query waits for the agent, whose index it is about */
    if (strncmp(path, "/v1/services/", 13) == 0 && path[13] != '\0'
        && strchr(path + 13, '/') == NULL
        && scout_http_query_get(req, "index", v, sizeof(v)) == SCOUT_ERROR
        && scout_http_query_get(req, "wait", v, sizeof(v)) == SCOUT_ERROR)
        return get_service(e, req, path + 13);
    if (strcmp(path, "/v1/health") == 0
        || strcmp(path, "/v1/health/ready") == 0) {
        json_t *o = json_pack("{ss ss}", "status", "unavailable", "reason",
                              "loading the policy; serving the disk "
                              "snapshot meanwhile");
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)
                       : NULL;
        int rc;

        json_decref(o);
        if (text == NULL)
            return respond_error(req, 500, "out of memory");
        rc = scout_http_respond(req, 503, JSON_TYPE, text, strlen(text));
        free(text);
        return rc;
    }
    if (strcmp(path, "/v1/health/live") == 0)
        return scout_api_live(req);
    return park(e, req);
}

/* ---- life ---------------------------------------------------------------- */

scout_early_t *
scout_early_new(struct ev_loop *loop, const char *cache_dir,
                const scout_snapside_inputs_t *in, char *why)
{
    scout_snapside_inputs_t mine = *in;
    char err[SCOUT_ERR_LEN], path[4096];
    scout_early_t *e = calloc(1, sizeof(*e));
    uint64_t fp;

    if (e == NULL) {
        scout_seterr(why, "out of memory");
        return NULL;
    }
    e->loop = loop;
    if ((e->side = scout_snapside_read(cache_dir, err)) == NULL) {
        scout_seterr(why, "no usable side file: %s", err);
        goto fail;
    }
    mine.listen = in->api != NULL ? in->api : e->side->listen;
    if (mine.listen[0] == '\0') {
        scout_seterr(why, "the policy that wrote the snapshot had no API");
        goto fail;
    }
    if (scout_snapside_fingerprint(&mine, e->side->files, e->side->nfiles,
                                   &fp, err) != SCOUT_OK) {
        scout_seterr(why, "a file the policy loaded: %s", err);
        goto fail;
    }
    if (fp != e->side->fp) {
        scout_seterr(why, "the policy, a module it loads, an override or "
                     "the API address changed since the snapshot was "
                     "written");
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/%s", cache_dir, SCOUT_SNAPSHOT_FILE);
    if ((e->snap = scout_snaplazy_read(path, err)) == NULL) {
        scout_seterr(why, "%s", err);
        goto fail;
    }
    if (scout_snaplazy_note(e->snap)[0] != '\0')
        scout_log(SCOUT_LOG_INFO, "early", "%s", scout_snaplazy_note(e->snap));
    if (scout_snaplazy_checksum(e->snap) != e->side->sum) {
        scout_seterr(why, "the side file vouches for another snapshot");
        goto fail;
    }
    e->fp = fp;
    if ((e->listen = strdup(mine.listen)) == NULL
        || (e->ent = calloc((size_t)e->side->n + 1, sizeof(*e->ent))) == NULL
        || (e->by_name = malloc(((size_t)e->side->n + 1) * sizeof(int)))
           == NULL
        || (e->list = scout_sliced_new(loop, &LIST_OPS, e)) == NULL) {
        scout_seterr(why, "out of memory");
        goto fail;
    }
    for (int i = 0; i < e->side->n; i++) {
        entry_t *t = &e->ent[i];
        int k = scout_snaplazy_find(e->snap, e->side->names[i]);

        t->name = e->side->names[i];
        t->path = e->side->paths[i];
        t->k = -1;
        e->by_name[i] = i;
        if (k >= 0) {
            scout_snaplazy_service_t sv;

            scout_snaplazy_get(e->snap, k, &sv);
            /* persist.c seeds a service only where its path is the same */
            if (strcmp(sv.path, t->path) == 0) {
                t->k = k;
                t->index = sv.index;
                t->count = sv.nendpoints;
            }
        }
    }
    qsort_r(e->by_name, (size_t)e->side->n, sizeof(int), cmp_name, e->ent);
    for (int i = 1; i < e->side->n; i++)
        if (strcmp(e->ent[e->by_name[i - 1]].name,
                   e->ent[e->by_name[i]].name) == 0) {
            scout_seterr(why, "the side file names service %s twice",
                         e->ent[e->by_name[i]].name);
            goto fail;
        }
    if ((e->http = scout_http_new(loop, e->listen, handle, e, err)) == NULL) {
        scout_seterr(why, "%s", err);
        goto fail;
    }
    return e;

fail:
    scout_early_free(e);
    return NULL;
}

const char *
scout_early_listen(const scout_early_t *e)
{
    return e->listen;
}

uint64_t
scout_early_fingerprint(const scout_early_t *e)
{
    return e->fp;
}

const scout_snaplazy_t *
scout_early_snapshot(const scout_early_t *e)
{
    return e->snap;
}

unsigned
scout_early_answered(const scout_early_t *e)
{
    return e->answered;
}

scout_http_t *
scout_early_handover(scout_early_t *e, scout_http_req_t ***parked, int *n)
{
    scout_http_t *h = e->http;

    for (int i = 0; i < e->nparked; i++)
        scout_http_req_on_abort(e->parked[i], NULL, NULL);
    *parked = e->parked;
    *n = e->nparked;
    e->parked = NULL;
    e->nparked = e->capparked = 0;
    e->http = NULL;
    return h;
}

static void
really_free(scout_early_t *e)
{
    scout_sliced_free(e->list);
    for (int i = 0; e->ent != NULL && i < e->side->n; i++)
        scout_rcbuf_unref(e->ent[i].json);
    free(e->ent);
    free(e->by_name);
    free(e->parked);
    free(e->listen);
    scout_snaplazy_free(e->snap);
    scout_snapside_free(e->side);
    free(e);
}

static void
on_retire(struct ev_loop *loop, ev_check *w, int revents)
{
    scout_early_t *e = w->data;
    (void)revents;

    if (scout_sliced_busy(e->list))
        return;
    ev_check_stop(loop, w);
    really_free(e);
}

int
scout_early_release(scout_early_t *e, size_t max)
{
    if (e == NULL || e->http != NULL
        || (e->list != NULL && scout_sliced_busy(e->list)))
        return SCOUT_OK;
    if (e->snap != NULL && scout_snaplazy_release(e->snap, max) > 0)
        return SCOUT_AGAIN;
    /* then its index and the snapshot's, each MBs at 100,000 services, one
     * per call; really_free the rest */
    switch (e->released++) {
    case 0:
        for (int i = 0; e->ent != NULL && i < e->side->n; i++)
            scout_rcbuf_unref(e->ent[i].json);
        free(e->ent);
        free(e->by_name);
        e->ent = NULL;
        e->by_name = NULL;
        return SCOUT_AGAIN;
    case 1:
        scout_snaplazy_free(e->snap);
        e->snap = NULL;
        return SCOUT_AGAIN;
    default:
        return SCOUT_OK;
    }
}

void
scout_early_free(scout_early_t *e)
{
    if (e == NULL)
        return;
    if (e->http != NULL) {
        scout_http_free(e->http);   /* aborts what waits: unparks it */
        e->http = NULL;
    }
    /* handed over with a table render under way: its waiters (now the
     * API's connections) get the table when it ends; then we go */
    if (e->list != NULL && scout_sliced_busy(e->list)) {
        ev_check_init(&e->retire, on_retire);
        e->retire.data = e;
        ev_check_start(e->loop, &e->retire);
        return;
    }
    really_free(e);
}
