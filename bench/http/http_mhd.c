/*
 * http_mhd.c - a prototype of scout's HTTP server (the contract is
 * agent/api/http.h) on libmicrohttpd 0.9.75, for issue 10 item 7.
 *
 * Why it is here and not in agent/api/: it is the measured alternative to
 * the hand-written server (agent/api/http.c, http_parse.c, http_req.c), not
 * the one the agent ships; docs/http-server.md has what it holds, what it
 * cannot, and the numbers. bench/http/build.sh links it in place of those
 * three files (build/scout-mhd, build/http-mhd/test_http); run.sh runs the
 * same requests and wrk against both.
 *
 * Shape: MHD in external-loop mode (MHD_USE_EPOLL, no thread): its epoll fd
 * sits in an ev_io, MHD_run() is called from it, MHD_get_timeout() re-arms
 * an ev_timer before every poll. Where and how we listen stays in
 * http_listen.c (0600 unix socket, loopback only), and so does accepting:
 * each accepted fd is handed over with MHD_add_connection() (a first cut
 * gave MHD the listening fd with MHD_OPTION_LISTEN_SOCKET; see conn_accept
 * for why not). What MHD does not do is built from its hooks:
 *   - the request is dispatched on the access handler's last call only
 *     (MHD 0.9.75 closes a connection whose response is queued in the first
 *     call), except for 400/413/414/431, which are queued early on purpose
 *     so that the connection closes;
 *   - deferred answers and the per-iteration work budget suspend the
 *     connection (MHD_suspend_connection) and resume it later, when the
 *     handler is called again and queues what was stored;
 *   - a parked connection is not watched by MHD, so an ev_io of ours peeks
 *     at its fd for a hang-up;
 *   - the request deadline, the idle timeout below one second and the
 *     eviction of the longest-idle connection close a connection MHD owns
 *     by shutdown(2) on its fd, the only way 0.9.75 offers outside a
 *     handler: MHD reads EOF and closes it on its next run.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <microhttpd.h>

#include "api/http.h"
#include "api/http_listen.h"
#include "api/http_url.h"
#include "log.h"
#include "loop.h"
#include "scout.h"
#include "stats.h"
#include "http_mhd.h"

static double req_timeout(const scout_http_t *h)
{
    return h->idle < SCOUT_HTTP_REQUEST_TIMEOUT ? h->idle
                                                : SCOUT_HTTP_REQUEST_TIMEOUT;
}

/* ---- driving MHD from the loop ------------------------------------------ */

static void mhd_run(scout_http_t *h)
{
    h->kick = 0;
    MHD_run(h->d);
}

/* In external-loop mode MHD has no wake-up channel (0.9.75 drops the ITC):
 * after a resume, nothing in its epoll set fires, so we run it ourselves
 * from the loop, never from the caller's stack. */
static void mhd_kick(scout_http_t *h)
{
    h->kick = 1;
    ev_timer_stop(h->loop, &h->etimer);
    ev_timer_set(&h->etimer, 0., 0.);
    ev_timer_start(h->loop, &h->etimer);
}

static void eio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void) loop; (void) revents;
    mhd_run(w->data);
}

static void etimer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop; (void) revents;
    mhd_run(w->data);
}

/* Before every poll: the budget starts again, and MHD's next timeout (0
 * when it has buffered work, e.g. a resumed connection) arms the timer. */
static void prep_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    scout_http_t          *h = w->data;
    MHD_UNSIGNED_LONG_LONG ms;

    (void) revents;
    h->spent = 0;
    if (h->kick)
        return;
    ev_timer_stop(loop, &h->etimer);
    if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
        ev_timer_set(&h->etimer, (double) ms / 1000., 0.);
        ev_timer_start(loop, &h->etimer);
    }
}

/* ---- closing what MHD owns ---------------------------------------------- */

static void conn_shut(conn_t *c)
{
    if (!c->shut) {
        c->shut = 1;
        shutdown(c->fd, SHUT_RDWR);
    }
    ev_timer_stop(c->h->loop, &c->deadline);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    conn_t *c = w->data;

    (void) loop; (void) revents;
    if (c->phase == PH_REQ) {
        LOG(DEBUG, "fd %d: request not complete %.0fs after it began", c->fd,
            req_timeout(c->h));
        scout_stats.api_deadline_closes++;
    } else {
        LOG(DEBUG, "fd %d: idle timeout", c->fd);
    }
    conn_shut(c);
    mhd_run(c->h);
}

static void deadline_in(conn_t *c, double secs)
{
    ev_timer_stop(c->h->loop, &c->deadline);
    ev_timer_set(&c->deadline, secs, 0.);
    ev_timer_start(c->h->loop, &c->deadline);
}

/* ---- the ready FIFO (work past the budget) ------------------------------ */

static void ready_push(conn_t *c)
{
    scout_http_t *h = c->h;

    c->rqueued = 1;
    c->rnext = NULL;
    c->rprev = h->ready_tail;
    if (h->ready_tail != NULL)
        h->ready_tail->rnext = c;
    else
        h->ready = c;
    h->ready_tail = c;
    ev_idle_start(h->loop, &h->spin);
    scout_stats.api_requests_deferred++;
}

static void ready_unlink(conn_t *c)
{
    scout_http_t *h = c->h;

    if (!c->rqueued)
        return;
    c->rqueued = 0;
    if (c->rprev != NULL)
        c->rprev->rnext = c->rnext;
    else
        h->ready = c->rnext;
    if (c->rnext != NULL)
        c->rnext->rprev = c->rprev;
    else
        h->ready_tail = c->rprev;
    c->rprev = c->rnext = NULL;
    if (h->ready == NULL)
        ev_idle_stop(h->loop, &h->spin);
}

static int peer_gone(int fd)
{
    char    b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK
                      && errno != EINTR);
}

static void conn_suspend(conn_t *c)
{
    c->suspended = 1;
    MHD_suspend_connection(c->mc);
}

void scout_http_mhd_resume(conn_t *c)
{
    ev_io_stop(c->h->loop, &c->hup);
    if (c->suspended) {
        c->suspended = 0;
        MHD_resume_connection(c->mc);
        mhd_kick(c->h);
    }
}

static void drain_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    scout_http_t *h = w->data;
    conn_t       *c;

    (void) loop; (void) revents;
    while ((c = h->ready) != NULL && h->spent < SCOUT_HTTP_BUDGET) {
        ready_unlink(c);
        if (peer_gone(c->fd)) {
            LOG(DEBUG, "fd %d: client gone, %s %s not answered", c->fd,
                c->req->method, c->req->path);
            scout_stats.api_requests_dropped++;
            c->req->drop = 1;
        } else {
            c->req->go = 1;
        }
        scout_http_mhd_resume(c);
        mhd_run(h);   /* the handler runs now, inside this budget */
    }
}

static void spin_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void) loop; (void) w; (void) revents;
}

/* Deferred, not answered, not aborted: on_abort is still due. */
static int parked(const scout_http_req_t *r)
{
    return r->deferred && r->resp == NULL && !r->queued && !r->aborted;
}

/* A parked request's client hung up (or half-closed, as before). */
static void hup_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    conn_t           *c = w->data;
    scout_http_req_t *r = c->req;

    (void) revents;
    if (!peer_gone(c->fd)) {
        ev_io_stop(loop, w);   /* pipelined input: it waits, as before */
        return;
    }
    if (r != NULL && parked(r)) {
        r->aborted = 1;
        if (r->on_abort != NULL)
            r->on_abort(r, r->abort_data);
    }
    scout_http_mhd_resume(c);
    mhd_run(c->h);
}

/* ---- MHD callbacks ------------------------------------------------------- */

static conn_t *conn_of(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return i != NULL ? i->socket_context : NULL;
}

static conn_t *oldest_idle(scout_http_t *h, conn_t *except)
{
    conn_t *c, *found = NULL;

    for (c = h->conns; c != NULL; c = c->next)
        if (c != except && c->phase == PH_IDLE && !c->shut
            && (found == NULL || c->idle_since < found->idle_since))
            found = c;
    return found;
}

static void notify_conn(void *cls, struct MHD_Connection *mc, void **sc,
                        enum MHD_ConnectionNotificationCode toe)
{
    scout_http_t *h = cls;
    conn_t       *c = *sc, *idle;

    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (c == NULL)
            return;
        ready_unlink(c);
        ev_timer_stop(h->loop, &c->deadline);
        ev_io_stop(h->loop, &c->hup);
        if (c->prev)
            c->prev->next = c->next;
        else
            h->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        if (--h->nconns < h->max_conns)
            h->full_warned = 0;
        free(c);
        *sc = NULL;
        return;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return;   /* no context: MHD's own timeouts still apply */
    c->h = h;
    c->mc = mc;
    c->fd = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD)
            ->connect_fd;
    c->phase = PH_IDLE;
    c->idle_since = ev_now(h->loop);
    ev_init(&c->deadline, deadline_cb);
    ev_io_init(&c->hup, hup_cb, c->fd, EV_READ);
    ev_set_priority(&c->deadline, SCOUT_HTTP_PRI);
    ev_set_priority(&c->hup, SCOUT_HTTP_PRI);
    c->deadline.data = c->hup.data = c;
    if ((c->next = h->conns) != NULL)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    *sc = c;
    deadline_in(c, h->idle);
    if (h->nconns > h->max_conns) {
        if ((idle = oldest_idle(h, c)) != NULL) {
            LOG(DEBUG, "fd %d: closed, idle, to make room", idle->fd);
            scout_stats.api_idle_evictions++;
            conn_shut(idle);
        } else {
            if (!h->full_warned)
                LOG(WARN, "%u connections open, refusing more", h->nconns);
            h->full_warned = 1;
            conn_shut(c);
        }
    }
}

/* The request line is in: the request's clock starts, and the raw (still
 * %-encoded) target is kept, split into path and query. */
static void *uri_log(void *cls, const char *uri, struct MHD_Connection *mc)
{
    scout_http_t     *h = cls;
    conn_t           *c = conn_of(mc);
    size_t            n = strlen(uri);
    scout_http_req_t *r = calloc(1, sizeof(*r) + n + 2);
    char             *q;

    if (c != NULL) {
        c->phase = PH_REQ;
        deadline_in(c, req_timeout(h));
    }
    if (r == NULL)
        return NULL;
    r->c = c;
    r->mc = mc;
    r->t0 = ev_time();
    memcpy(r->raw, uri, n);
    if ((q = strchr(r->raw, '?')) != NULL) {
        *q = '\0';
        r->query = q + 1;
    } else {
        r->query = r->raw + n + 1;   /* "" */
    }
    r->path = r->raw;
    if (c != NULL)
        c->req = r;
    return r;
}

static void completed(void *cls, struct MHD_Connection *mc, void **cc,
                      enum MHD_RequestTerminationCode toe)
{
    scout_http_t     *h = cls;
    scout_http_req_t *r = *cc;
    conn_t           *c = conn_of(mc);

    if (r != NULL) {
        if (parked(r)) {
            r->aborted = 1;
            if (r->on_abort != NULL)
                r->on_abort(r, r->abort_data);
        }
        /* MHD closes a connection whose client hung up before the
         * handler saw the request (even a complete one): not rendered */
        if (!r->dispatched && !r->drop && !r->failed
            && (toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT
                || toe == MHD_REQUEST_TERMINATED_READ_ERROR))
            scout_stats.api_requests_dropped++;
        if (r->resp != NULL)
            MHD_destroy_response(r->resp);
        free(r);
        *cc = NULL;
    }
    if (c != NULL) {
        c->req = NULL;
        c->phase = PH_IDLE;
        c->idle_since = ev_now(h->loop);
        if (!c->shut)
            deadline_in(c, h->idle);
    }
}

static enum MHD_Result queue(scout_http_req_t *r)
{
    enum MHD_Result rc = MHD_queue_response(r->mc, (unsigned) r->status,
                                            r->resp);

    MHD_destroy_response(r->resp);
    r->resp = NULL;
    r->queued = 1;
    return rc;
}

/* An error answered in the handler's first call: MHD then closes. */
static enum MHD_Result early(scout_http_req_t *r, int status, const char *t)
{
    r->failed = 1;
    scout_http_respond(r, status, "text/plain", t, strlen(t));
    return r->resp != NULL ? queue(r) : MHD_NO;
}

static int bad_target(const char *s)
{
    if (*s != '/' && strcmp(s, "*") != 0)
        return 1;
    for (; *s; s++)
        if ((unsigned char) *s <= ' ' || *s == 127)
            return 1;
    return 0;
}

static void dispatch(scout_http_t *h, scout_http_req_t *r)
{
    conn_t *c = r->c;
    double  t0 = ev_time(), dt;
    char    what[96];
    int     rc;

    snprintf(what, sizeof(what), "%s %s", r->method, r->path);
    scout_stats.api_requests++;
    r->dispatched = 1;
    h->dispatching++;
    rc = h->handler(h->ud, r);
    h->dispatching--;
    dt = ev_time() - t0;
    h->spent += dt;
    scout_loop_note(what, dt);
    if (r->resp != NULL)
        return;
    if (rc == SCOUT_AGAIN) {
        r->deferred = 1;
        if (c != NULL) {
            conn_suspend(c);
            ev_io_start(h->loop, &c->hup);
        }
        return;
    }
    LOG(WARN, "%s %s: handler returned %d without responding", r->method,
        r->path, rc);
    scout_http_respond(r, 500, "text/plain", "internal error\n", 15);
}

static enum MHD_Result
access_cb(void *cls, struct MHD_Connection *mc, const char *url,
          const char *method, const char *version, const char *upload,
          size_t *upload_size, void **cc)
{
    scout_http_t             *h = cls;
    scout_http_req_t         *r = *cc;
    const char               *cl;
    const union MHD_ConnectionInfo *hi;

    (void) url; (void) upload;
    if (r == NULL)
        return MHD_NO;   /* out of memory in uri_log */
    if (!r->seen) {
        r->seen = 1;
        r->method = method;
        /* MHD answers 1.2 as 1.1 (RFC 9112 allows it); we speak 1.0 and
         * 1.1 and say so, as the hand-written server does */
        if (strcmp(version, "HTTP/1.1") != 0
            && strcmp(version, "HTTP/1.0") != 0)
            return early(r, 505, "HTTP Version Not Supported");
        if (strlen(r->path) + strlen(r->query) + 1 > SCOUT_HTTP_MAX_URL)
            return early(r, 414, "URI Too Long");
        hi = MHD_get_connection_info(mc,
                                     MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
        if (hi != NULL && hi->header_size > SCOUT_HTTP_MAX_HEADER)
            return early(r, 431, "Request Header Fields Too Large");
        if (bad_target(r->path))
            return early(r, 400, "Bad Request");
        cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > SCOUT_HTTP_MAX_BODY)
            return early(r, 413, "Payload Too Large");
        return MHD_YES;
    }
    if (*upload_size > 0) {   /* discarded; chunked past the cap: close */
        r->body_len += *upload_size;
        *upload_size = 0;
        return r->body_len > SCOUT_HTTP_MAX_BODY ? MHD_NO : MHD_YES;
    }
    /* The whole request is in. */
    if (r->c != NULL) {
        r->c->phase = PH_BUSY;
        ev_timer_stop(h->loop, &r->c->deadline);
    }
    if (r->resp != NULL)
        return queue(r);   /* a deferred answer, or after the budget */
    if (r->drop || r->aborted)
        return MHD_NO;
    if (r->deferred)
        return MHD_YES;    /* spurious: still parked */
    /* FIFO: nobody overtakes a request already waiting */
    if (!r->go && r->c != NULL
        && (h->ready != NULL || h->spent >= SCOUT_HTTP_BUDGET)) {
        conn_suspend(r->c);
        ready_push(r->c);
        return MHD_YES;
    }
    r->go = 0;
    dispatch(h, r);
    return r->resp != NULL ? queue(r) : MHD_YES;
}

/* We accept, not MHD: its epoll mode takes at most 10 connections per
 * MHD_run (daemon.c, series_length), which under a connection flood keeps
 * a new client waiting in the backlog behind the flood; http_listen.c
 * takes 64 per loop iteration and pauses on EMFILE. */
static void conn_accept(void *ud, int fd)
{
    scout_http_t           *h = ud;
    struct sockaddr_storage ss;
    socklen_t               len = sizeof(ss);

    if (getpeername(fd, (struct sockaddr *) &ss, &len) != 0) {
        close(fd);
        return;
    }
    if (len == 0 || ss.ss_family == AF_UNIX) {   /* unnamed peer */
        ss.ss_family = AF_UNIX;
        len = sizeof(sa_family_t);
    }
    if (MHD_add_connection(h->d, fd, (struct sockaddr *) &ss, len)
        != MHD_YES)
        return;   /* MHD closed it (over its limit, out of memory) */
    mhd_kick(h);
}

/* ---- public API ---------------------------------------------------------- */

static unsigned conns_cap(unsigned long long *lim)
{
    struct rlimit      rl;
    unsigned long long reserve, cap = SCOUT_HTTP_MAX_CONNS;

    *lim = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        *lim = (unsigned long long) rl.rlim_cur;
        reserve = *lim / 4 > 64 ? *lim / 4 : 64;
        cap = *lim > reserve + 16 ? *lim - reserve : 16;
        if (cap > SCOUT_HTTP_MAX_CONNS)
            cap = SCOUT_HTTP_MAX_CONNS;
    }
    return (unsigned) cap;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[256];

    (void) cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    buf[strcspn(buf, "\n")] = '\0';
    LOG(DEBUG, "mhd: %s", buf);
}

scout_http_t *
scout_http_new(struct ev_loop *loop, const char *listen_,
               scout_http_handler_fn handler, void *ud, char *err)
{
    scout_http_t      *h;
    unsigned long long lim;
    const union MHD_DaemonInfo *di;

    if (loop == NULL || listen_ == NULL || handler == NULL) {
        scout_seterr(err, "http: loop, listen address and handler "
                          "are required");
        return NULL;
    }
    if ((h = calloc(1, sizeof(*h))) == NULL) {
        scout_seterr(err, "http: out of memory");
        return NULL;
    }
    *h = (scout_http_t) { .loop = loop, .handler = handler, .ud = ud,
        .max_conns = conns_cap(&lim), .idle = SCOUT_HTTP_IDLE_TIMEOUT };
    if (scout_http_listen_open(&h->lis, loop, listen_, conn_accept, h, err)
        != SCOUT_OK) {
        free(h);
        return NULL;
    }
    h->d = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG
        | MHD_USE_NO_LISTEN_SOCKET,
        0, NULL, NULL, access_cb, h,
        MHD_OPTION_CONNECTION_LIMIT, h->max_conns + CONN_SLACK,
        MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned) SCOUT_HTTP_IDLE_TIMEOUT,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t) (2 * SCOUT_HTTP_MAX_HEADER + 16384),
        MHD_OPTION_URI_LOG_CALLBACK, uri_log, h,
        MHD_OPTION_NOTIFY_COMPLETED, completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, notify_conn, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_END);
    if (h->d == NULL) {
        scout_seterr(err, "%s: libmicrohttpd did not start", listen_);
        scout_http_listen_close(&h->lis);
        free(h);
        return NULL;
    }
    di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    ev_io_init(&h->eio, eio_cb, di->epoll_fd, EV_READ);
    ev_init(&h->etimer, etimer_cb);
    ev_prepare_init(&h->prep, prep_cb);
    ev_check_init(&h->drain, drain_cb);
    ev_idle_init(&h->spin, spin_cb);
    ev_set_priority(&h->eio, SCOUT_HTTP_PRI);
    ev_set_priority(&h->etimer, SCOUT_HTTP_PRI);
    ev_set_priority(&h->drain, EV_MINPRI);
    ev_set_priority(&h->spin, EV_MINPRI);
    h->eio.data = h->etimer.data = h->prep.data = h->drain.data =
        h->spin.data = h;
    ev_io_start(loop, &h->eio);
    ev_prepare_start(loop, &h->prep);
    ev_check_start(loop, &h->drain);
    if (lim > 0)
        LOG(INFO, "fd limit %llu, %llu kept for sessions, checks, renders "
            "and files: up to %u API connections", lim, lim - h->max_conns,
            h->max_conns);
    return h;
}

void
scout_http_free(scout_http_t *h)
{
    conn_t *c;

    if (h == NULL)
        return;
    /* MHD panics on a suspended connection at stop: abort what is parked,
     * resume everything, then stop (which closes every connection). */
    for (c = h->conns; c != NULL; c = c->next) {
        scout_http_req_t *r = c->req;

        ready_unlink(c);
        if (r != NULL && parked(r)) {
            r->aborted = 1;
            if (r->on_abort != NULL)
                r->on_abort(r, r->abort_data);
        }
        if (r != NULL)
            r->drop = 1;
        scout_http_mhd_resume(c);
    }
    ev_io_stop(h->loop, &h->eio);
    ev_timer_stop(h->loop, &h->etimer);
    ev_prepare_stop(h->loop, &h->prep);
    ev_check_stop(h->loop, &h->drain);
    ev_idle_stop(h->loop, &h->spin);
    MHD_stop_daemon(h->d);   /* listen fd is ours: closed below */
    scout_http_listen_close(&h->lis);
    free(h);
}

int scout_http_port(const scout_http_t *h) { return h->lis.port; }

unsigned scout_http_nconns(const scout_http_t *h) { return h->nconns; }

void
scout_http_set_limits(scout_http_t *h, unsigned max_conns, double idle)
{
    if (max_conns > 0)
        h->max_conns = max_conns;
    if (idle > 0)
        h->idle = idle;
}
