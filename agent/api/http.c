/*
 * http.c - scout's local HTTP/1.1 server (the contract is in http.h).
 *
 * Why this shape: the agent is one thread on one libev loop, so a slow or
 * hostile local client must never block it or grow its memory without bound.
 * Sockets are non-blocking; http-parser parses incrementally straight from a
 * fixed per-connection input buffer; URL, header block and (discarded) body
 * are capped; output is buffered and drained by an ev_io write watcher. A
 * connection serves one request at a time: the parser pauses at each message
 * end, so a deferred (blocking-query) request parks its connection until it
 * is answered while pipelined requests wait in the input buffer. Where and
 * how we listen lives in http_listen.c, what a URL means in http_url.c,
 * parsing in http_parse.c and a request's accessors in http_req.c; this
 * file starts at an accepted fd.
 * Never call ev_run here, and never re-enter the handler from
 * scout_http_respond(): the caller may be walking its own list of waiters.
 *
 * The loop also carries the ZooKeeper session, so the API's work is
 * bounded per loop iteration: every watcher here runs below ZooKeeper's
 * priority, and once the handlers have used SCOUT_HTTP_BUDGET in one
 * iteration, complete requests wait in a FIFO (one per connection) that is
 * drained in later iterations, after ZooKeeper has had its turn. A queued
 * request whose client has gone (EOF, reset) is dropped unrendered. A
 * request must arrive whole within SCOUT_HTTP_REQUEST_TIMEOUT of its first
 * byte (slowloris), and when every slot is taken the longest-idle
 * keep-alive connection makes room for a new client.
 */

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>

#include "api/http.h"
#include "api/http_conn.h"
#include "api/http_head.h"
#include "api/http_listen.h"
#include "log.h"
#include "loop.h"
#include "scout.h"
#include "stats.h"

#define LOG(lvl, ...) scout_log(SCOUT_LOG_##lvl, "http", __VA_ARGS__)

#define LINGER_TIMEOUT 2.0          /* draining a client after we close */
#define OUT_KEEP       (64 * 1024)  /* bigger buffers are freed once sent */

static void conn_step(conn_t *c);
static void conn_close(conn_t *c);

/* ---- helpers ------------------------------------------------------------- */

/* By hand: strftime's %a and %b follow the locale, and Lua can set one. */
static const char *http_date(scout_http_t *h)
{
    static const char day[] = "SunMonTueWedThuFriSat";
    static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    time_t            now = (time_t) ev_now(h->loop);
    struct tm         tm;

    if (now != h->date_sec && gmtime_r(&now, &tm) != NULL) {
        h->date_sec = now;
        snprintf(h->date, sizeof(h->date),
                 "%.3s, %02d %.3s %04d %02d:%02d:%02d GMT",
                 day + 3 * (tm.tm_wday % 7), tm.tm_mday,
                 mon + 3 * (tm.tm_mon % 12), tm.tm_year + 1900, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
    }
    return h->date;
}

/* ---- output -------------------------------------------------------------- */

/* One buffer, so a response usually leaves in a single send(): two small
 * writes would meet Nagle and delayed ACKs. */
static int out_response(conn_t *c, int status, const char *ctype,
                        const char *extra, size_t extra_len, const char *body,
                        size_t len, scout_rcbuf_t *shared, int keepalive,
                        int http10, int head)
{
    int    nobody = status == 204 || status == 304;
    size_t room = 200 + (ctype ? strlen(ctype) : 0) + extra_len, cap, n;
    scout_http_head_t hd;
    size_t clen = nobody ? 0 : len; /* a HEAD's too; none at all: below */
    char  *p;

    if (nobody || head)
        len = 0;
    /* A shared body is sent from where it is (one request at a time: no
     * other body can be waiting); only the head is written here. */
    if (shared == NULL || len == 0 || c->body != NULL)
        shared = NULL;
    else
        len = 0;
    for (cap = c->out_cap ? c->out_cap : 4096; cap < c->out_len + room + len;)
        cap *= 2;
    if (cap > c->out_cap) {
        if ((p = realloc(c->out, cap)) == NULL)
            return SCOUT_ERROR;
        c->out = p;
        c->out_cap = cap;
    }
    /* 1.0 assumes close unless told keep-alive; 204 and 304 have no
     * Content-Length at all (http_head.c). */
    hd = (scout_http_head_t) { .status = status, .date = http_date(c->h),
                               .ctype = ctype, .clen = clen,
                               .nobody = nobody, .extra = extra,
                               .extra_len = extra_len,
                               .keepalive = keepalive, .http10 = http10 };
    if ((n = scout_http_head_write(c->out + c->out_len, room, &hd)) == 0)
        return SCOUT_ERROR;
    c->out_len += n;
    if (len > 0)   /* body may be NULL when empty */
        memcpy(c->out + c->out_len, body, len);
    c->out_len += len;
    if (shared != NULL) {
        c->body = scout_rcbuf_ref(shared);
        c->body_off = 0;
    }
    return SCOUT_OK;
}

/* ---- connection state machine -------------------------------------------- */

/* Re-arming cancels a pending resume; every caller is on its way through
 * conn_step() anyway. */
void scout_http_conn_timer_again(conn_t *c, double repeat)
{
    c->resume = 0;
    c->timer.repeat = repeat;
    ev_timer_again(c->h->loop, &c->timer);
}

static void conn_touch(conn_t *c)
{
    /* A parked request waits as long as its owner says, not our idle; a
     * partial one only as long as its deadline, however it trickles in. */
    if (c->req_start > 0) {
        double left = c->req_start + scout_http_request_timeout(c->h)
                      - ev_now(c->h->loop);
        scout_http_conn_timer_again(c, left > 1e-3 ? left : 1e-3);
    } else if (c->req == NULL || !c->req->deferred) {
        scout_http_conn_timer_again(c, c->h->idle);
    }
}

/* SCOUT_OK: flushed. SCOUT_AGAIN: waiting for EV_WRITE. SCOUT_ERROR: the
 * connection is gone and c freed. */
static int conn_flush(conn_t *c)
{
    while (c->out_off < c->out_len || c->body != NULL) {
        struct iovec  iov[2];
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = 0 };
        size_t        head = c->out_len - c->out_off;
        ssize_t       n;

        if (head > 0)
            iov[m.msg_iovlen++] = (struct iovec) { c->out + c->out_off, head };
        if (c->body != NULL)
            iov[m.msg_iovlen++] = (struct iovec) {
                c->body->data + c->body_off, c->body->len - c->body_off };
        n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (n > 0) {
            size_t k = (size_t) n < head ? (size_t) n : head;

            c->out_off += k;
            if (c->body != NULL) {
                c->body_off += (size_t) n - k;
                if (c->body_off == c->body->len) {
                    scout_rcbuf_unref(c->body);
                    c->body = NULL;
                }
            }
            conn_touch(c);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->h->loop, &c->wio);
            if (!ev_is_active(&c->timer))   /* a client that never reads */
                scout_http_conn_timer_again(c, c->h->idle);
            return SCOUT_AGAIN;
        } else {
            LOG(DEBUG, "fd %d: send: %s", c->fd, strerror(errno));
            conn_close(c);
            return SCOUT_ERROR;
        }
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > OUT_KEEP) {   /* one /metrics must not pin a MiB */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    ev_io_stop(c->h->loop, &c->wio);
    return SCOUT_OK;
}

/* Closing with unread input makes TCP send RST, which can destroy the error
 * response before the client reads it: half-close and drain for a while
 * first (nginx's lingering close). */
static void conn_linger(conn_t *c)
{
    if (c->eof) {
        conn_close(c);
    } else if (!c->lingering) {
        c->lingering = 1;
        shutdown(c->fd, SHUT_WR);
        c->in_off = c->in_len = 0;
        scout_http_conn_timer_again(c, LINGER_TIMEOUT);
        ev_io_start(c->h->loop, &c->rio);
    }
}

static void conn_read_interest(conn_t *c)
{
    if (!c->eof && c->in_len - c->in_off < IN_BUF)
        ev_io_start(c->h->loop, &c->rio);
    else
        ev_io_stop(c->h->loop, &c->rio);
}

static void conn_fail(conn_t *c)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    int             status = c->err_status;
    const char     *text;

    if (status == 0)
        status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
    text = scout_http_reason(status);
    LOG(DEBUG, "fd %d: bad request (%d): %s", c->fd, status,
        c->err_status ? "limit exceeded" : http_errno_description(e));
    free(c->req);   /* the handler never saw it: no abort due */
    c->req = NULL;
    c->req_start = 0;   /* from here on only the answer's send is timed */
    c->in_off = c->in_len = 0;
    c->closing = 1;
    out_response(c, status, "text/plain", "", 0, text, strlen(text), NULL,
                 0, 0, 0);
}

static void conn_dispatch(conn_t *c)
{
    scout_http_t     *h = c->h;
    scout_http_req_t *r = c->req;
    int               rc;
    double            t0 = ev_time(), dt;
    char              what[96];

    scout_http_req_what(r, what, sizeof(what));
    scout_stats.api_requests++;
    c->dispatching = 1;
    if (r->bad_url) {
        r->keepalive = 0;
        rc = scout_http_respond(r, 400, "text/plain", "bad url\n", 8);
    } else {
        rc = h->handler(h->ud, r);
    }
    c->dispatching = 0;
    dt = ev_time() - t0;
    h->spent += dt;
    /* r may be answered and gone: named from a copy made before */
    scout_loop_note(what, dt);
    if (c->req == NULL)
        return;   /* answered */
    if (rc == SCOUT_AGAIN) {
        r->deferred = 1;
        c->resume = 0;
        ev_timer_stop(h->loop, &c->timer);
        return;
    }
    LOG(WARN, "%s %s: handler returned %d without responding", r->method,
        r->path, rc);
    scout_http_respond(r, 500, "text/plain", "internal error\n", 15);
}

/* ---- the work budget: complete requests past it wait their turn ---------- */

static void ready_push(conn_t *c)
{
    scout_http_t *h = c->h;

    c->queued = 1;
    c->rnext = NULL;
    c->rprev = h->ready_tail;
    if (h->ready_tail != NULL)
        h->ready_tail->rnext = c;
    else
        h->ready = c;
    h->ready_tail = c;
    /* it waits on us now, not on the client */
    ev_timer_stop(h->loop, &c->timer);
    c->resume = 0;
    ev_idle_start(h->loop, &h->spin);
    scout_stats.api_requests_deferred++;
}

static void ready_unlink(conn_t *c)
{
    scout_http_t *h = c->h;

    if (!c->queued)
        return;
    c->queued = 0;
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

/* A client that closed (or reset) while its request waited is not worth
 * rendering for. A half-close looks the same as a close here, as it does
 * to a parked blocking query (see conn_read_cb). */
static int conn_peer_gone(conn_t *c)
{
    char    b;
    ssize_t n;

    if (c->eof)
        return 1;
    n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK
                      && errno != EINTR);
}

static void budget_reset_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    scout_http_t *h = w->data;

    (void) loop; (void) revents;
    h->spent = 0;
}

/* Runs every iteration after everything of higher priority (ZooKeeper
 * first): serves the FIFO until the iteration's budget is used. */
static void drain_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    scout_http_t *h = w->data;
    conn_t       *c;

    (void) loop; (void) revents;
    while ((c = h->ready) != NULL && h->spent < SCOUT_HTTP_BUDGET) {
        ready_unlink(c);
        if (conn_peer_gone(c)) {
            LOG(DEBUG, "fd %d: client gone, %s %s not answered", c->fd,
                c->req->method, c->req->path);
            scout_stats.api_requests_dropped++;
            conn_close(c);
            continue;
        }
        conn_step(c);
    }
}

static void spin_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void) loop; (void) w; (void) revents;
}

/* 1: a message is complete. 0: input ran out. -1: bad request. */
static int conn_parse(conn_t *c)
{
    while (c->in_off < c->in_len) {
        size_t          n;
        enum http_errno e;

        n = http_parser_execute(&c->parser, &scout_http_parser_settings,
                                c->in + c->in_off, c->in_len - c->in_off);
        c->in_off += n;
        e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            return 1;
        }
        if (e != HPE_OK || n == 0)
            return -1;
    }
    c->in_off = c->in_len = 0;
    return 0;
}

/* Every event ends here to decide what the connection waits for next. May
 * free c: callers must not touch it afterwards. */
static void conn_step(conn_t *c)
{
    for (;;) {
        int rc;

        /* Never parse ahead of unsent output: that is the backpressure. */
        if ((c->out_off < c->out_len || c->body != NULL)
            && conn_flush(c) != SCOUT_OK)
            return;
        if (c->closing) {
            conn_linger(c);
            return;
        }
        if ((c->req != NULL && c->req->deferred) || c->queued) {
            conn_read_interest(c);   /* to notice a hang-up */
            return;
        }
        if (c->ready) {
            c->ready = 0;
            conn_dispatch(c);
            continue;
        }
        rc = conn_parse(c);
        if (rc > 0) {
            /* FIFO: nobody overtakes a request already waiting */
            if (c->h->ready != NULL || c->h->spent >= SCOUT_HTTP_BUDGET) {
                c->ready = 1;
                ready_push(c);
                return;
            }
            conn_dispatch(c);
        } else if (rc < 0) {
            conn_fail(c);
        } else if (c->eof) {
            conn_close(c);
            return;
        } else {
            conn_read_interest(c);
            if (!ev_is_active(&c->timer))
                scout_http_conn_timer_again(c, c->h->idle);
            return;
        }
    }
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    conn_t *c = w->data;
    ssize_t n;

    (void) loop; (void) revents;
    if (c->lingering) {
        while ((n = recv(c->fd, c->in, IN_BUF, 0)) > 0
               || (n < 0 && errno == EINTR))
            ;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            conn_close(c);
        return;
    }
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_len < IN_BUF) {
        do
            n = recv(c->fd, c->in + c->in_len, IN_BUF - c->in_len, 0);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            c->in_len += (size_t) n;
            conn_touch(c);
        } else if (n == 0) {
            c->eof = 1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            LOG(DEBUG, "fd %d: recv: %s", c->fd, strerror(errno));
            conn_close(c);
            return;
        }
    }
    /* A hang-up cancels a parked request, as in Go's net/http; a client
     * that half-closes after sending cannot use deferred endpoints. */
    if (c->eof && c->req != NULL && c->req->deferred)
        conn_close(c);
    else    /* a queued one is dropped at its turn (drain_cb): no work */
        conn_step(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void) loop; (void) revents;
    conn_step(w->data);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    conn_t *c = w->data;

    (void) loop; (void) revents;
    if (c->resume) {   /* after a deferred answer; repeat is the idle */
        c->resume = 0;
        conn_step(c);
        return;
    }
    if (c->req_start > 0 && !c->lingering) {
        LOG(DEBUG, "fd %d: request not complete %.0fs after its first byte",
            c->fd, scout_http_request_timeout(c->h));
        scout_stats.api_deadline_closes++;
    } else {
        LOG(DEBUG, "fd %d: %s timeout", c->fd,
            c->lingering ? "linger" : "idle");
    }
    conn_close(c);
}

static void conn_close(conn_t *c)
{
    scout_http_t     *h = c->h;
    scout_http_req_t *r = c->req;

    ev_io_stop(h->loop, &c->rio);   /* stopping also drops pending events */
    ev_io_stop(h->loop, &c->wio);
    ev_timer_stop(h->loop, &c->timer);
    ready_unlink(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (--h->nconns < h->max_conns)
        h->full_warned = 0;
    close(c->fd);
    if (r != NULL) {
        /* c is unlinked already: nothing the callback does can reach it. */
        if (r->deferred && r->on_abort != NULL) {
            r->aborted = 1;
            r->on_abort(r, r->abort_data);
        }
        free(r);
    }
    scout_rcbuf_unref(c->body);
    free(c->spare);
    free(c->out);
    free(c);
}

static void conn_new(scout_http_t *h, int fd)
{
    conn_t *c = calloc(1, sizeof(*c));
    int     one = 1;

    if (c == NULL) {
        LOG(ERROR, "out of memory accepting a connection");
        close(fd);
        return;
    }
    if (h->lis.unix_path == NULL)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->h = h;
    c->fd = fd;
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    ev_init(&c->timer, conn_timer_cb);
    ev_set_priority(&c->rio, SCOUT_HTTP_PRI);
    ev_set_priority(&c->wio, SCOUT_HTTP_PRI);
    ev_set_priority(&c->timer, SCOUT_HTTP_PRI);
    c->rio.data = c->wio.data = c->timer.data = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if ((c->next = h->conns) != NULL)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    ev_io_start(h->loop, &c->rio);
    scout_http_conn_timer_again(c, h->idle);
}

/* The listener hands over every accepted fd; whether to serve it is ours,
 * since only we count connections. */
/* The oldest keep-alive connection that holds nothing: no request begun
 * or waiting, no output, not closing. O(connections), paid only when
 * every slot is taken. */
static conn_t *conn_oldest_idle(scout_http_t *h)
{
    conn_t *c, *found = NULL;

    for (c = h->conns; c != NULL; c = c->next)   /* newest first */
        if (c->req == NULL && !c->ready && c->req_start == 0
            && c->in_off == c->in_len && c->out_off == c->out_len
            && c->body == NULL
            && !c->closing && !c->lingering && !c->eof)
            found = c;
    return found;
}

static void conn_accept(void *ud, int fd)
{
    scout_http_t *h = ud;
    conn_t       *idle;

    if (h->nconns == h->max_conns && (idle = conn_oldest_idle(h)) != NULL) {
        /* Idle connections must not lock new clients out (nginx's
         * reusable connections): the one idle longest goes. */
        LOG(DEBUG, "fd %d: closed, idle, to make room", idle->fd);
        scout_stats.api_idle_evictions++;
        conn_close(idle);
    }
    if (h->nconns < h->max_conns) {
        conn_new(h, fd);
        return;
    }
    if (!h->full_warned)
        LOG(WARN, "%u connections open, refusing more", h->nconns);
    h->full_warned = 1;
    close(fd);
}

/* ---- public API ---------------------------------------------------------- */

/* Connections may take what the fd limit leaves after a reserve for the
 * ZooKeeper sessions, health checks, rendered files, snapshots and spawned
 * children: a quarter of the limit, at least 64 (main.c raised the soft
 * limit to the hard one before we get here). */
static unsigned conns_cap(unsigned long long *lim)
{
    struct rlimit rl;
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

scout_http_t *
scout_http_new(struct ev_loop *loop, const char *listen_,
               scout_http_handler_fn handler, void *ud, char *err)
{
    scout_http_t      *h;
    unsigned long long lim;

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
    if (lim > 0)
        LOG(INFO, "fd limit %llu, %llu kept for sessions, checks, renders "
            "and files: up to %u API connections", lim, lim - h->max_conns,
            h->max_conns);
    ev_prepare_init(&h->budget_reset, budget_reset_cb);
    ev_check_init(&h->drain, drain_cb);
    ev_idle_init(&h->spin, spin_cb);
    ev_set_priority(&h->drain, EV_MINPRI);
    ev_set_priority(&h->spin, EV_MINPRI);
    h->budget_reset.data = h->drain.data = h->spin.data = h;
    ev_prepare_start(loop, &h->budget_reset);
    ev_check_start(loop, &h->drain);
    return h;
}

void
scout_http_free(scout_http_t *h)
{
    if (h == NULL)
        return;
    scout_http_listen_close(&h->lis);
    while (h->conns != NULL)
        conn_close(h->conns);
    ev_prepare_stop(h->loop, &h->budget_reset);
    ev_check_stop(h->loop, &h->drain);
    ev_idle_stop(h->loop, &h->spin);
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

/* A request's buffers (20 KB) are kept for the connection's next one:
 * a parked client asks again at every change, and a fresh calloc of that
 * size each time zeroed it all and made malloc consolidate its bins. */
static void req_release(conn_t *c, scout_http_req_t *r)
{
    if (c->spare == NULL)
        c->spare = r;
    else
        free(r);
}

/* A deferred answer, given from outside the handler (a publish waking its
 * parked queries, a wait that ended): written at once, from the caller's
 * stack, so the client has it in this iteration rather than after one more
 * poll.  Only the write happens here, never the handler: the caller may be
 * walking its own list of waiters.  What may call it (a pipelined request
 * already read, a close, a write that must wait) carries on from the loop
 * through a zero-delay timer: ev_feed_event() made outside a callback would
 * wait for the next poll to return, which may be as late as the idle
 * timeout. */
static void conn_answered(conn_t *c)
{
    if (!c->closing && conn_flush(c) != SCOUT_OK)
        return;                 /* EV_WRITE carries on, or c is gone */
    if (!c->closing && !c->eof && c->in_off == c->in_len) {
        conn_read_interest(c);  /* conn_flush re-armed the idle timer */
        return;
    }
    ev_timer_stop(c->h->loop, &c->timer);
    ev_timer_set(&c->timer, 0., c->h->idle);
    ev_timer_start(c->h->loop, &c->timer);
    c->resume = 1;
}

static int
respond(scout_http_req_t *req, int status, const char *content_type,
        const char *body, size_t len, scout_rcbuf_t *shared)
{
    conn_t *c = req->conn;

    if (req->aborted || status < 200 || status > 599)
        return SCOUT_ERROR;
    if (scout_log_enabled(SCOUT_LOG_DEBUG))
        LOG(DEBUG, "%s %s%s%s %d %ldus", req->method, req->path,
            *req->query ? "?" : "", req->query, status,
            (long) ((ev_time() - req->t0) * 1e6));
    if (out_response(c, status, content_type, req->rhdr, req->rhdr_len, body,
                     len, shared, req->keepalive, req->http10, req->head)
        != SCOUT_OK) {
        LOG(ERROR, "out of memory for a %zu byte response", len);
        c->closing = 1;
    }
    if (!req->keepalive)
        c->closing = 1;
    c->req = NULL;
    req_release(c, req);
    if (!c->dispatching)
        conn_answered(c);
    return SCOUT_OK;
}

int
scout_http_respond(scout_http_req_t *req, int status,
                   const char *content_type, const char *body, size_t len)
{
    return respond(req, status, content_type, body, len, NULL);
}

int
scout_http_respond_shared(scout_http_req_t *req, int status,
                          const char *content_type, scout_rcbuf_t *body)
{
    return respond(req, status, content_type, body->data, body->len, body);
}
