/*
 * api.c -- routes of the HTTP API.
 *
 *   GET /v1/services        every watched service, its count, index, state
 *   GET /v1/services/NAME   the published list; X-Scout-Index header;
 *                           ?index=I&wait=10s blocks until the index moves
 *                           past I or the wait ends (Consul's convention)
 *   GET /v1/pick/NAME       one endpoint, chosen by the service's routes and
 *                           selector with the query parameters as context
 *   GET /v1/explain/NAME    every child and why it is in or out
 *   GET /v1/health          readiness: 200 when connected and every service
 *                           synced (also /v1/health/ready)
 *   GET /v1/health/live     liveness: 200 while the agent answers at all
 *   GET /v1/agent           version, uptime, sessions, the last reload
 *   GET /v1/registrations   each registration, its node, its check
 *   GET /metrics            Prometheus text, generated from stats.h
 *
 * A service's endpoint list is already JSON (rendered once per publish),
 * and its explain answer is kept by the service until the policy's view
 * moves, so a flood of either costs one copy per request, not one render.
 * The service table and /metrics, which grow with the registry, are
 * rendered in slices of a few ms (sliced.h), and every request that
 * arrives meanwhile (or in the iteration it ends) shares that answer.  Parked
 * blocking queries hang off their service (a table by service), so a
 * publish wakes its own waiters and costs nothing per waiter of another
 * service.  Nothing
 * here may hold the loop: http.c bounds how much of this runs per
 * iteration, ZooKeeper's socket goes first.
 */
#include "api/api.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_agent.h"
#include "api/http.h"
#include "api/http_head.h"
#include "api/http_url.h"
#include "api/metrics.h"
#include "api/sliced.h"
#include "api/svclist.h"
#include "hash.h"
#include "log.h"
#include "loop.h"
#include "scout.h"
#include "service.h"
#include "zk/session.h"

/* The queries parked on one service.  In the API's table while it has
 * any; a notify takes it out first and answers them from it. */
typedef struct parked_s {
    scout_service_t   *svc;         /* the key */
    struct waiter_s   *head;
    int                in_table;
    UT_hash_handle     hh;
    struct parked_s   *spare_next;  /* in the API's spares */
} parked_t;

/* A parked blocking query: answered on the service's next publish or when
 * its wait ends, whichever comes first; dropped if the client goes. */
typedef struct waiter_s {
    struct waiter_s  *prev, *next;
    parked_t         *owner;
    scout_api_t      *api;
    scout_http_req_t *req;
    scout_service_t  *svc;
    ev_timer          timer;
} waiter_t;

/* A blocking consumer comes back after every change: its waiter, its
 * service's entry and the table's own allocations were made and freed
 * each time (three callocs a request, ~0.8k instructions of glibc's
 * consolidating, bench/propagation).  Now the table holds an anchor that
 * matches no service (its key is NULL), so it is made once, and the
 * entries and waiters let go are kept (up to SPARES of each) for the next
 * request.  The anchor is never parked on and never answered. */
#define SPARES 64

struct scout_api_s {
    struct ev_loop *loop;
    scout_http_t   *http;
    scout_api_view_t view;
    parked_t       *parked;         /* by service; holds anchor */
    parked_t        anchor;         /* svc NULL: keeps the table made */
    unsigned        nwaiters;
    parked_t       *spare_pk;       /* let go, up to SPARES */
    struct waiter_s *spare_w;       /* likewise, by next */
    unsigned        nspare_pk, nspare_w;
    /* the answers that grow with the registry, rendered in slices */
    scout_sliced_t *list;           /* GET /v1/services */
    scout_sliced_t *metrics;        /* GET /metrics */
};

#define WAIT_DEFAULT 300.0      /* Consul's default: 5 minutes */
#define WAIT_MAX     600.0

static const char *const JSON_TYPE = "application/json";

static int
respond_json(scout_http_req_t *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc;

    json_decref(body);
    if (text == NULL)
        return scout_http_respond(req, 500, "text/plain", "out of memory\n",
                                  14);
    rc = scout_http_respond(req, status, JSON_TYPE, text, strlen(text));
    free(text);
    return rc;
}

static int
respond_error(scout_http_req_t *req, int status, const char *msg)
{
    return respond_json(req, status, json_pack("{ss}", "error", msg));
}

/* The service table, in slices (sliced.h): a service at a time, each one
 * json_dumpf'd into the answer (a jansson tree of all 10,000 services at
 * once left 9 MB of heap behind for good), a clock read every 64.  It
 * re-reads the view at every step and starts again when the list was
 * replaced meanwhile (a reload), so it never lists a service twice or
 * misses one; counts and states may come from different iterations, as
 * they would from two requests. */
typedef struct {
    const scout_api_view_t *v;
    int       n, next;              /* services at the start, the next */
    unsigned  reloads;
    scout_svclist_t out;            /* svclist.h: early.c's bytes too */
} list_job_t;

/* The last table's size: the next one's buffer is allocated once (grown
 * by doubling, a render of 10,000 services spent most of a slice copying
 * and faulting in the buffer it outgrew). */
static size_t list_last_len;

static void
list_job_drop(void *job)
{
    list_job_t *j = job;

    scout_svclist_free(&j->out);
    free(j);
}

static void
list_job_open(list_job_t *j)
{
    scout_svclist_reset(&j->out);
    j->n = j->v->nservices(j->v->ctx);
    j->reloads = scout_api_metrics_reloads(j->v);
    j->next = 0;
}

static void *
list_job_begin(void *ud)
{
    scout_api_t *api = ud;
    list_job_t *j = calloc(1, sizeof(*j));
    size_t want = list_last_len + list_last_len / 8 + 2;

    if (j == NULL || scout_svclist_init(&j->out, want) != SCOUT_OK) {
        free(j);
        return NULL;
    }
    j->v = &api->view;
    list_job_open(j);
    return j;
}

static int
list_job_step(void *job, int64_t deadline_ns)
{
    list_job_t *j = job;
    const scout_api_view_t *v = j->v;
    unsigned done = 0;

    if (v->nservices(v->ctx) != j->n
        || scout_api_metrics_reloads(v) != j->reloads)
        list_job_open(j);
    while (j->next < j->n) {
        scout_service_t *s = v->service(v->ctx, j->next++);

        if (scout_svclist_add(&j->out, scout_service_name(s),
                              scout_service_path(s), scout_service_count(s),
                              scout_service_index(s),
                              scout_service_state(s)) != SCOUT_OK)
            return SCOUT_ERROR;
        if ((++done & 63) == 0 && j->next < j->n
            && scout_now_ns() >= deadline_ns)
            return SCOUT_AGAIN;
    }
    return SCOUT_OK;
}

static char *
list_job_finish(void *ud, void *job, size_t *len)
{
    list_job_t *j = job;
    char *buf = NULL;
    (void)ud;

    if ((buf = scout_svclist_finish(&j->out, len)) != NULL)
        list_last_len = *len;
    list_job_drop(j);
    return buf;
}

static const scout_sliced_ops_t LIST_OPS = {
    "GET /v1/services, a slice", "application/json",
    list_job_begin, list_job_step, list_job_finish, list_job_drop,
};

static int
list_services(scout_api_t *api, scout_http_req_t *req)
{
    return scout_sliced_answer(api->list, req);
}

/* blocking: a query with ?index= and a wait, which comes back after the
 * next change (service.h: the list's parts are kept for it). */
static int
respond_service(scout_http_req_t *req, scout_service_t *s, int blocking)
{
    char index[32];
    scout_rcbuf_t *body;

    /* every answer to a blocking query: digits, not a formatter (0.7k) */
    *scout_http_put_u64(index, scout_service_index(s)) = '\0';
    scout_http_add_header(req, "X-Scout-Index", index);
    scout_http_add_header(req, "X-Scout-State", scout_service_state(s));
    if ((body = scout_service_json(s, blocking)) == NULL)
        return respond_error(req, 500, "out of memory");
    return scout_http_respond_shared(req, 200, JSON_TYPE, body);
}

static void
parked_let_go(scout_api_t *api, parked_t *pk)
{
    if (api->nspare_pk >= SPARES) {
        free(pk);
        return;
    }
    pk->spare_next = api->spare_pk;
    api->spare_pk = pk;
    api->nspare_pk++;
}

static void
waiter_let_go(scout_api_t *api, waiter_t *w)
{
    if (api->nspare_w >= SPARES) {
        free(w);
        return;
    }
    w->next = api->spare_w;
    api->spare_w = w;
    api->nspare_w++;
}

/* A zeroed entry or waiter, a spare if there is one. */
static parked_t *
parked_new(scout_api_t *api)
{
    parked_t *pk = api->spare_pk;

    if (pk == NULL)
        return calloc(1, sizeof(*pk));
    api->spare_pk = pk->spare_next;
    api->nspare_pk--;
    memset(pk, 0, sizeof(*pk));
    return pk;
}

static waiter_t *
waiter_new(scout_api_t *api)
{
    waiter_t *w = api->spare_w;

    if (w == NULL)
        return calloc(1, sizeof(*w));
    api->spare_w = w->next;
    api->nspare_w--;
    memset(w, 0, sizeof(*w));
    return w;
}

static void
waiter_unlink(waiter_t *w)
{
    parked_t *pk = w->owner;

    ev_timer_stop(w->api->loop, &w->timer);
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        pk->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->api->nwaiters--;
    if (pk->head == NULL && pk->in_table) {
        HASH_DEL(w->api->parked, pk);
        parked_let_go(w->api, pk);
    }
    waiter_let_go(w->api, w);
}

static void
waiter_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    waiter_t *w = t->data;
    scout_http_req_t *req = w->req;
    scout_service_t *svc = w->svc;
    (void)loop;
    (void)revents;

    waiter_unlink(w);
    respond_service(req, svc, 1);       /* same index: nothing moved */
}

static void
waiter_abort(scout_http_req_t *req, void *data)
{
    (void)req;
    waiter_unlink(data);
}

/* ?index=I&wait=D, read strictly (Consul answers 400 "Invalid wait time"
 * and "Invalid index" the same way): a value that is present but bad is the
 * client's mistake to hear about, never a reason to block for a default
 * wait.  Unknown parameters are ignored, as Consul does.  *index stays 0
 * when absent; *given says whether it was there (a consumer's first query,
 * ?index=0, is a blocking query's too).  Returns NULL or the reason for a
 * 400. */
static const char *
read_blocking_query(scout_http_req_t *req, uint64_t *index, int *given,
                    double *wait)
{
    /* as long as any URL: SCOUT_HTTP_BAD then means a bad escape only */
    char buf[SCOUT_HTTP_MAX_URL + 1];
    int n;

    *index = 0;
    *wait = WAIT_DEFAULT;
    n = scout_http_query_get(req, "index", buf, sizeof(buf));
    *given = n != SCOUT_ERROR;
    if (n == SCOUT_HTTP_BAD)
        return "index has a bad percent-encoding";
    if (n != SCOUT_ERROR && scout_http_parse_u64(buf, index) != SCOUT_OK)
        return "index must be a whole number from 0 to 18446744073709551615";
    n = scout_http_query_get(req, "wait", buf, sizeof(buf));
    if (n == SCOUT_HTTP_BAD)
        return "wait has a bad percent-encoding";
    if (n != SCOUT_ERROR && scout_http_parse_duration(buf, wait) != SCOUT_OK)
        return "wait must be a duration like 10s, 500ms or 1m, or seconds";
    if (*wait > WAIT_MAX)
        *wait = WAIT_MAX;
    return NULL;
}

static int
get_service(scout_api_t *api, scout_http_req_t *req, const char *raw_name)
{
    char name[1024];
    const char *bad;
    scout_service_t *s;
    uint64_t after;
    int given;
    double wait;
    parked_t *pk;
    waiter_t *w;

    if (scout_http_unescape(raw_name, strlen(raw_name), name, sizeof(name))
        < 0)
        return respond_error(req, 400, "bad service name");
    s = api->view.find(api->view.ctx, name);
    if (s == NULL)
        return respond_error(req, 404, "no such service");
    if ((bad = read_blocking_query(req, &after, &given, &wait)) != NULL)
        return respond_error(req, 400, bad);
    /* Past the index already (or a client that never saw one, or no
     * ?index= at all): at once. */
    if (scout_service_index(s) > after || after == 0 || wait == 0)
        return respond_service(req, s, given && wait != 0);
    HASH_FIND_PTR(api->parked, &s, pk);
    if (pk == NULL) {
        if ((pk = parked_new(api)) == NULL)
            return respond_error(req, 500, "out of memory");
        pk->svc = s;
        pk->in_table = 1;
        HASH_ADD_PTR(api->parked, svc, pk);
    }
    if ((w = waiter_new(api)) == NULL) {
        if (pk->head == NULL) {
            HASH_DEL(api->parked, pk);
            parked_let_go(api, pk);
        }
        return respond_error(req, 500, "out of memory");
    }
    w->owner = pk;
    w->api = api;
    w->req = req;
    w->svc = s;
    /* Consul adds up to 1/16 jitter so parked clients do not return in a
     * herd; do the same. */
    wait += wait / 16.0 * rand() / (double)RAND_MAX;
    ev_timer_init(&w->timer, waiter_timeout, wait, 0.);
    w->timer.data = w;
    ev_timer_start(api->loop, &w->timer);
    w->next = pk->head;
    if (w->next != NULL)
        w->next->prev = w;
    pk->head = w;
    api->nwaiters++;
    scout_http_req_on_abort(req, waiter_abort, w);
    return SCOUT_AGAIN;
}

void
scout_api_notify(scout_api_t *api, scout_service_t *svc)
{
    parked_t *pk;
    waiter_t *w;

    HASH_FIND_PTR(api->parked, &svc, pk);
    if (pk == NULL || pk == &api->anchor)
        return;                 /* nobody waits on it: nothing to do */
    /* out of the table first: only the queries parked before this publish
     * are answered by it (one parked while answering finds the new index
     * and is answered at once, or parks in a new entry) */
    HASH_DEL(api->parked, pk);
    pk->in_table = 0;
    while ((w = pk->head) != NULL) {
        scout_http_req_t *req = w->req;

        waiter_unlink(w);
        respond_service(req, svc, 1);
    }
    parked_let_go(api, pk);
}

/* /v1/pick/NAME and /v1/explain/NAME: the policy answers in JSON. */
static int
ask_policy(scout_api_t *api, scout_http_req_t *req, const char *raw_name,
           int pick)
{
    char name[1024], err[SCOUT_ERR_LEN];
    scout_service_t *s;
    char *body = NULL;
    scout_rcbuf_t *shared = NULL;
    int rc;

    if (scout_http_unescape(raw_name, strlen(raw_name), name, sizeof(name))
        < 0)
        return respond_error(req, 400, "bad service name");
    if ((s = api->view.find(api->view.ctx, name)) == NULL)
        return respond_error(req, 404, "no such service");
    if (pick)
        body = scout_service_pick(s, scout_http_req_query(req), err);
    else
        shared = scout_service_explain(s, err);     /* borrowed */
    if (body == NULL && shared == NULL) {
        /* the runtime words its refusals: "bad query..." is the
         * caller's, "no endpoint..." (whatever the selector said) is 503 */
        int status = strncmp(err, "bad query", 9) == 0 ? 400
                     : strncmp(err, "no endpoint", 11) == 0 ? 503 : 500;
        return respond_error(req, status, err);
    }
    if (shared != NULL)
        return scout_http_respond_shared(req, 200, JSON_TYPE, shared);
    rc = scout_http_respond(req, 200, JSON_TYPE, body, strlen(body));
    free(body);
    return rc;
}

static int
health(scout_api_t *api, scout_http_req_t *req)
{
    char reason[512] = "";

    /* the most specific first: serving a snapshot past its max_age */
    api->view.snapshot_too_old(api->view.ctx, reason, sizeof(reason));
    for (int i = 0; reason[0] == '\0'
                    && i < api->view.nsessions(api->view.ctx); i++) {
        scout_session_t *ss = api->view.session(api->view.ctx, i);
        scout_session_state_t st = scout_session_state(ss);

        if (scout_session_looping(ss)) {
            snprintf(reason, sizeof(reason), "ZooKeeper session %d was in a "
                     "reconnect loop; a new session replaced it and is %s, "
                     "not yet stable", i, scout_session_state_name(st));
            break;
        }
        if (st != SCOUT_SESSION_CONNECTED) {
            snprintf(reason, sizeof(reason), "ZooKeeper session %d %s", i,
                     scout_session_state_name(st));
            break;
        }
    }
    if (reason[0] == '\0') {
        for (int i = 0; i < api->view.nservices(api->view.ctx); i++) {
            scout_service_t *s = api->view.service(api->view.ctx, i);
            const char *e = scout_service_last_error(s);

            if (!scout_service_synced(s)) {
                snprintf(reason, sizeof(reason), "service %s is %s%s%s",
                         scout_service_name(s), scout_service_state(s),
                         *e ? ": " : "", e);
                break;
            }
        }
    }
    if (reason[0] != '\0')
        return respond_json(req, 503, json_pack("{ss ss}", "status",
                                                "unavailable", "reason",
                                                reason));
    return respond_json(req, 200, json_pack("{ss si}", "status", "ok",
                                            "services",
                                            api->view.nservices(api->view.ctx)));
}

/* Prometheus text: rendered by metrics.c in slices (sliced.h). */
static void *
metrics_begin(void *ud)
{
    scout_api_t *api = ud;

    return scout_api_metrics_begin(&api->view);
}

static int
metrics_step(void *job, int64_t deadline_ns)
{
    return scout_api_metrics_step(job, deadline_ns);
}

static char *
metrics_finish(void *ud, void *job, size_t *len)
{
    scout_api_t *api = ud;

    return scout_api_metrics_finish(job, scout_http_nconns(api->http),
                                    api->nwaiters, len);
}

static void
metrics_drop(void *job)
{
    scout_api_metrics_free(job);
}

static const scout_sliced_ops_t METRICS_OPS = {
    "GET /metrics, a slice", "text/plain; version=0.0.4",
    metrics_begin, metrics_step, metrics_finish, metrics_drop,
};

static int
handle(void *ud, scout_http_req_t *req)
{
    scout_api_t *api = ud;
    const char *path = scout_http_req_path(req);

    if (strcmp(scout_http_req_method(req), "GET") != 0) {
        scout_http_add_header(req, "Allow", "GET");
        return respond_error(req, 405, "only GET is supported");
    }
    if (strcmp(path, "/v1/services") == 0)
        return list_services(api, req);
    if (strncmp(path, "/v1/services/", 13) == 0 && path[13] != '\0'
        && strchr(path + 13, '/') == NULL)
        return get_service(api, req, path + 13);
    if (strncmp(path, "/v1/pick/", 9) == 0 && path[9] != '\0'
        && strchr(path + 9, '/') == NULL)
        return ask_policy(api, req, path + 9, 1);
    if (strncmp(path, "/v1/explain/", 12) == 0 && path[12] != '\0'
        && strchr(path + 12, '/') == NULL)
        return ask_policy(api, req, path + 12, 0);
    if (strcmp(path, "/v1/health") == 0
        || strcmp(path, "/v1/health/ready") == 0)
        return health(api, req);
    if (strcmp(path, "/v1/health/live") == 0)
        return scout_api_live(req);
    if (strcmp(path, "/v1/agent") == 0)
        return scout_api_agent(&api->view, req);
    if (strcmp(path, "/v1/registrations") == 0)
        return scout_api_registrations(&api->view, req);
    if (strcmp(path, "/metrics") == 0)
        return scout_sliced_answer(api->metrics, req);
    return respond_error(req, 404, "not found");
}

static scout_api_t *
api_make(struct ev_loop *loop, const scout_api_view_t *view,
         const char *listen, scout_http_t *http, char *err)
{
    scout_api_t *api = calloc(1, sizeof(*api));

    if (api == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    api->view = *view;
    api->loop = loop;
    HASH_ADD_PTR(api->parked, svc, &api->anchor);
    if ((api->list = scout_sliced_new(loop, &LIST_OPS, api)) == NULL
        || (api->metrics = scout_sliced_new(loop, &METRICS_OPS, api))
           == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        goto fail;
    }
    if (http != NULL) {
        api->http = http;
        scout_http_set_handler(http, handle, api);
        return api;
    }
    api->http = scout_http_new(loop, listen, handle, api, err);
    if (api->http == NULL)
        goto fail;
    return api;

fail:
    scout_sliced_free(api->list);
    scout_sliced_free(api->metrics);
    HASH_CLEAR(hh, api->parked);
    free(api);
    return NULL;
}

scout_api_t *
scout_api_new(struct ev_loop *loop, const scout_api_view_t *view,
              const char *listen, char *err)
{
    return api_make(loop, view, listen, NULL, err);
}

scout_api_t *
scout_api_adopt(struct ev_loop *loop, const scout_api_view_t *view,
                scout_http_t *http, char *err)
{
    return api_make(loop, view, NULL, http, err);
}

void
scout_api_dispatch(scout_api_t *api, scout_http_req_t *req)
{
    int rc = handle(api, req);

    /* as http.c does for a handler that neither answered nor deferred */
    if (rc != SCOUT_OK && rc != SCOUT_AGAIN)
        scout_http_respond(req, 500, "text/plain", "internal error\n", 15);
}

void
scout_api_free(scout_api_t *api)
{
    if (api == NULL)
        return;
    scout_http_free(api->http);     /* aborts parked queries: unlinks all,
                                       and waiting renders: ends them */
    scout_sliced_free(api->list);
    scout_sliced_free(api->metrics);
    while (api->parked != &api->anchor || api->parked->hh.next != NULL) {
        parked_t *pk = api->parked != &api->anchor
                     ? api->parked : api->parked->hh.next;

        waiter_unlink(pk->head);            /* lets the entry go last */
    }
    HASH_CLEAR(hh, api->parked);
    while (api->spare_pk != NULL) {
        parked_t *pk = api->spare_pk;

        api->spare_pk = pk->spare_next;
        free(pk);
    }
    while (api->spare_w != NULL) {
        waiter_t *w = api->spare_w;

        api->spare_w = w->next;
        free(w);
    }
    free(api);
}
