/*
 * test_http.c - agent/api/http.c against real sockets on one libev loop.
 *
 * Why: the server's risky parts are the ones a unit test with fake buffers
 * would miss: partial reads and writes, pipelining, peers that vanish while
 * a request is parked, and the socket file's permissions. So every check
 * here goes through a real unix or loopback socket, driven by the same loop
 * as the server (client watchers, never blocking reads), and the binary is
 * meant to run under ASan/UBSan and valgrind as well.
 *
 * Build: cc -Wall -Wextra -Werror -Iagent -Ilib tests/c/test_http.c agent/api/http.c \
 *           [agent/log.c] -lev -lhttp_parser   (or: make tests-c)
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <ev.h>
#include <http_parser.h>

#include "testing.h"
#include "api/http.h"
#include "stats.h"



/* ---- log stub: weak, so agent/log.c wins when it is linked -------------- */

#if defined(__has_include)
# if __has_include("log.h")
#  include "log.h"
#  define HAVE_LOG_H 1
__attribute__((weak)) void scout_log_set_level(int level) { (void) level; }
__attribute__((weak)) int  scout_log_get_level(void) { return 3; }
# endif
#endif

static char last_debug[512];
static int  log_stub_used;

__attribute__((weak)) void
scout_log(int level, const char *module, const char *fmt, ...)
{
    va_list ap;
    char    buf[512];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_stub_used = 1;
    if (level == 3 && strstr(buf, "GET /hello?log=1 ") != NULL)
        snprintf(last_debug, sizeof(last_debug), "%s", buf);
    if (level <= 1 || getenv("TEST_VERBOSE"))
        fprintf(stderr, "%.3f [%d] %s: %s\n", ev_time(), level, module, buf);
}

#include "http_harness.h"

/* ---- tests -------------------------------------------------------------- */

static void test_listen_errors(void)
{
    static const char *bad[] = { "0.0.0.0:8500", "10.1.2.3:80",
        "example.com:80", ":80", "[::]:0", "[2001:db8::1]:80",
        "[::ffff:127.0.0.1]:0", "128.0.0.1:1" };
    char          err[SCOUT_ERR_LEN], path[160];
    scout_http_t *h;
    size_t        i;
    int           fd;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        h = scout_http_new(loop, bad[i], handler, NULL, err);
        CHECK(h == NULL, "%s accepted", bad[i]);
        CHECK(strstr(err, "api must listen on loopback or a unix socket")
              != NULL, "%s: err=%s", bad[i], err);
        scout_http_free(h);
    }
    CHECK(scout_http_new(loop, "127.0.0.1:99999", handler, NULL, err) == NULL
          && strstr(err, "bad port"), "port range: %s", err);
    CHECK(scout_http_new(loop, "127.0.0.1", handler, NULL, err) == NULL,
          "no port");
    CHECK(scout_http_new(loop, "::1:80", handler, NULL, err) == NULL
          && strstr(err, "[::1]"), "bare v6: %s", err);
    CHECK(scout_http_new(loop, "unix:", handler, NULL, err) == NULL,
          "empty unix path");

    snprintf(path, sizeof(path), "%s/regular", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    close(fd);
    snprintf(err, sizeof(err), "unix:%s", path);
    h = scout_http_new(loop, err, handler, NULL, err);
    CHECK(h == NULL && strstr(err, "not a socket"), "regular file: %s", err);
    CHECK(access(path, F_OK) == 0, "regular file left alone");
    unlink(path);
}

static void test_basic(scout_http_t *h, client_t *c)
{
    resp_t *r;

    SEND(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    RUN_UNTIL(got(c, 1), 5);
    r = &c->r[0];
    CHECK(got(c, 1), "no response");
    CHECK(r->status == 200, "status %d", r->status);
    CHECK(r->blen == 5 && strcmp(r->body, "hello") == 0, "body");
    CHECK(hdr_is(r, "X-Test", "yes"), "added header: %s", r->hdrs);
    CHECK(hdr_is(r, "Content-Type", "text/plain"), "ctype");
    CHECK(hdr_is(r, "Content-Length", "5"), "clen");
    CHECK(resp_hdr(r, "Date") != NULL, "date");
    CHECK(resp_hdr(r, "Connection") == NULL, "keep-alive is implicit");
    /* kept open: a second request on the same connection is answered */
    SEND(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    RUN_UNTIL(got(c, 2), 5);
    CHECK(got(c, 2) && c->r[1].status == 200, "second request answered");
    CHECK(!c->eof && scout_http_nconns(h) == 1, "keep-alive kept open");
}

/* Two requests in one write, then one dribbled a byte at a time. */
static void test_pipelining(client_t *c)
{
    const char *third = "GET /echo?n=3 HTTP/1.1\r\n\r\n";
    size_t      i;

    client_clear(c);
    SEND(c, "GET /echo?n=1 HTTP/1.1\r\n\r\nGET /echo?n=2 HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(c, 2), 5);
    CHECK(got(c, 2), "two pipelined responses");
    CHECK(c->r[0].body && !strcmp(c->r[0].body, "GET /echo?n=1"), "first");
    CHECK(c->r[1].body && !strcmp(c->r[1].body, "GET /echo?n=2"), "second");
    for (i = 0; i < strlen(third); i++) {
        client_send(c, third + i, 1);
        ev_run(loop, EVRUN_NOWAIT);     /* the server reads what is there */
    }
    RUN_UNTIL(got(c, 3), 5);
    CHECK(got(c, 3) && !strcmp(c->r[2].body, "GET /echo?n=3"), "dribbled");
    CHECK(!c->eof && !c->perr, "still open");
}

static void test_closing(scout_http_t *h, int port)
{
    client_t c;
    char    *req = malloc(120000);
    int      st;
    size_t   n;

    /* One request on a fresh connection; it must be answered and closed. */
#define SHOT(p, s, len, what, want) do {                                  \
        client_t *cp_ = &c;                                               \
        memset(cp_, 0, sizeof(*cp_));                                     \
        if (port ? client_tcp(cp_, p) : client_unix(cp_, sock)) break;    \
        client_send(cp_, s, len);                                         \
        RUN_UNTIL(got(cp_, 1) && cp_->eof, 5);                            \
        st = got(cp_, 1) ? cp_->r[0].status : -1;                         \
        CHECK(st == (want), "%s: status %d", what, st);                   \
        CHECK(cp_->eof, "%s: not closed", what);                          \
        CHECK(got(cp_, 1) && hdr_is(&cp_->r[0], "Connection", "close"),   \
              "%s: Connection: close", what);                             \
        client_close(cp_);                                                \
        RUN_UNTIL(scout_http_nconns(h) == 0, 5);                          \
        CHECK(scout_http_nconns(h) == 0, "%s: conn leaked", what);        \
    } while (0)

    SHOT(port, "GET /hello HTTP/1.0\r\n\r\n", 23, "http/1.0", 200);
    SHOT(port, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n", 42,
         "connection: close", 200);
    SHOT(port, "GARBAGE\r\n\r\n", 11, "malformed", 400);
    SHOT(port, "GET /he llo HTTP/1.1\r\n\r\n", 24, "space in url", 400);

    n = padded(req, "GET /hello HTTP/1.1\r\nX-Big: ", 'a', 10000, "\r\n\r\n");
    SHOT(port, req, n, "oversize header", 431);
    n = padded(req, "GET /", 'a', 5000, " HTTP/1.1\r\n\r\n");
    SHOT(port, req, n, "long url", 414);
    /* The server stops reading at 64 KiB; the rest is drained, not RST. */
    n = padded(req, "POST /x HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
               'b', 100000, "");
    SHOT(port, req, n, "big body", 413);
#undef SHOT
    free(req);
}

static void test_misc(client_t *c)
{
    char   req[9000];
    size_t n;

    client_clear(c);
    /* Just under the header cap is fine and keeps the connection. */
    n = padded(req, "GET /hello HTTP/1.1\r\nX-Big: ", 'a', 7000, "\r\n\r\n");
    client_send(c, req, n);
    /* A small body is skipped; the next pipelined request still parses. */
    SEND(c, "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
            "GET /noreply HTTP/1.1\r\n\r\n");
    c->head_mask = 1 << 3;
    SEND(c, "HEAD /hello HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(c, 5), 5);
    CHECK(got(c, 5), "5 responses, got %d", c->n);
    CHECK(c->r[0].status == 200, "7k header: %d", c->r[0].status);
    CHECK(c->r[1].status == 200 && !strcmp(c->r[1].body, "POST /echo?"),
          "post reaches handler");
    CHECK(c->r[2].status == 500, "no reply -> 500: %d", c->r[2].status);
    CHECK(c->r[3].status == 200 && c->r[3].blen == 0
          && hdr_is(&c->r[3], "Content-Length", "5"), "HEAD");
    CHECK(c->r[4].status == 200 && !strcmp(c->r[4].body, "hello"),
          "after HEAD");
    CHECK(!c->eof && !c->perr, "open after misc");
}

static void test_query(client_t *c)
{
    char buf[16];

    SEND(c, "GET /q?index=42&wait=10s&name=a%20b+c&flag&bad=%zz&nul=%00"
            "&long=abcdef HTTP/1.1\r\nX-Foo: bar\r\n\r\n");
    RUN_UNTIL(got(c, 1), 5);
    CHECK(got(c, 1) && c->r[0].status == 204, "204");
    CHECK(resp_hdr(&c->r[0], "Content-Length") == NULL, "204 has no length");
    CHECK(q.index == 2 && !strcmp(q.vindex, "42"), "index %d", q.index);
    CHECK(q.w == 3 && !strcmp(q.vw, "10s"), "wait");
    CHECK(q.name == 5 && !strcmp(q.vname, "a b c"), "name '%s'", q.vname);
    CHECK(q.flag == 0 && q.vflag[0] == '\0', "bare flag %d", q.flag);
    CHECK(q.missing == SCOUT_ERROR, "missing %d", q.missing);
    CHECK(q.bad == SCOUT_HTTP_BAD, "bad escape %d", q.bad);
    CHECK(q.nul == SCOUT_HTTP_BAD, "%%00 %d", q.nul);
    CHECK(q.small == SCOUT_HTTP_BAD, "too long %d", q.small);
    CHECK(!strcmp(q.hdr, "bar"), "header lookup '%s'", q.hdr);
    CHECK(!q.has_nohdr, "absent header");
    CHECK(q.crlf == SCOUT_ERROR, "CRLF header refused");
    CHECK(resp_hdr(&c->r[0], "Injected") == NULL, "no injection");
    CHECK(scout_http_unescape("a%2Fb+c", 7, buf, sizeof(buf)) == 5
          && !strcmp(buf, "a/b+c"), "unescape");
    CHECK(scout_http_unescape("a%2", 3, buf, sizeof(buf)) == SCOUT_HTTP_BAD,
          "truncated escape");
}

static void test_deferred(scout_http_t *h, client_t *c)
{
    ev_timer t;
    client_t d;

    nhandled = 0;
    SEND(c, "GET /defer HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
    RUN_UNTIL(parked != NULL, 5);
    /* a request on another connection is answered after both pipelined
     * ones were read: the second still waits behind the parked one */
    client_unix(&d, sock);
    SEND(&d, "GET /hello HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(&d, 1), 5);
    CHECK(got(&d, 1), "the other connection is answered");
    client_close(&d);
    CHECK(parked != NULL && nhandled == 2, "parked, pipelined one waits: "
          "%d handled", nhandled);
    CHECK(c->n == 0, "nothing sent yet");
    deferred_client = c;
    deferred_seen = -1;
    ev_timer_init(&t, respond_parked_cb, 0.01, 0.);
    ev_timer_start(loop, &t);
    RUN_UNTIL(got(c, 2), 5);
    deferred_client = NULL;
    CHECK(got(c, 2), "deferred + next");
    CHECK(deferred_seen == 0, "nothing before the answer: %d responses",
          deferred_seen);
    CHECK(c->r[0].status == 200 && !strcmp(c->r[0].body, "deferred"),
          "deferred body");
    CHECK(hdr_is(&c->r[0], "X-Scout-Index", "7"), "index hdr");
    CHECK(!strcmp(c->r[1].body, "hello"), "then the pipelined one");
    CHECK(nhandled == 3 && naborts == 0, "no abort");
    CHECK(!c->eof && scout_http_nconns(h) >= 1, "open");
}

/* A deferred answer given outside the loop (a publish waking its parked
 * queries from inside a ZooKeeper completion) is on the client's socket
 * when respond returns, not one loop iteration later; the connection then
 * carries on reading its next request. */
static void test_deferred_written_at_once(scout_http_t *h)
{
    client_t c;
    char     b;

    (void) h;
    nhandled = 0;
    client_unix(&c, sock);
    SEND(&c, "GET /defer HTTP/1.1\r\n\r\n");
    RUN_UNTIL(parked != NULL, 5);
    CHECK(parked != NULL, "parked");
    CHECK(recv(c.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0, "nothing yet");
    CHECK(scout_http_respond(parked, 200, "text/plain", "deferred", 8)
          == SCOUT_OK, "respond");
    parked = NULL;
    CHECK(recv(c.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1,
          "the answer is on the socket before the loop runs again");
    RUN_UNTIL(got(&c, 1), 5);
    CHECK(got(&c, 1) && !strcmp(c.r[0].body, "deferred"), "deferred body");
    SEND(&c, "GET /hello HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(&c, 2), 5);
    CHECK(got(&c, 2) && !strcmp(c.r[1].body, "hello"),
          "the connection reads its next request");
    CHECK(nhandled == 2 && !c.eof, "open, two handled");
    client_close(&c);
}

static void test_abort(scout_http_t *h)
{
    client_t c;

    naborts = 0;
    client_unix(&c, sock);
    SEND(&c, "GET /defer HTTP/1.1\r\n\r\n");
    RUN_UNTIL(parked != NULL, 5);
    CHECK(parked != NULL, "parked");
    client_close(&c);
    RUN_UNTIL(naborts > 0, 5);
    /* a later request on another connection is answered: by then a second
     * abort for the same hang-up would have been seen */
    client_unix(&c, sock);
    SEND(&c, "GET /hello HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(&c, 1), 5);
    CHECK(got(&c, 1), "a later request is answered");
    client_close(&c);
    RUN_UNTIL(scout_http_nconns(h) == 0, 5);
    CHECK(naborts == 1, "on_abort once, got %d", naborts);
    CHECK(parked == NULL, "abort cleared it");
    CHECK(scout_http_nconns(h) == 0, "conn closed");

    /* Answered before the hang-up is noticed: no abort, no crash. */
    naborts = 0;
    client_unix(&c, sock);
    SEND(&c, "GET /defer HTTP/1.1\r\n\r\n");
    RUN_UNTIL(parked != NULL, 5);
    client_close(&c);
    CHECK(scout_http_respond(parked, 200, "text/plain", big, sizeof(big))
          == SCOUT_OK, "late respond");
    parked = NULL;
    /* Answered from outside any loop callback: the connection carries on
     * at once, not at the 60 s idle timer (RUN_UNTIL gives up after 5 s). */
    RUN_UNTIL(scout_http_nconns(h) == 0, 5);
    CHECK(naborts == 0 && scout_http_nconns(h) == 0, "late respond is quiet");
}

static void test_big_and_sigpipe(scout_http_t *h, client_t *c)
{
    client_t d;

    SEND(c, "GET /big HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(c, 2), 10);
    CHECK(got(c, 2), "big + next");
    CHECK(c->r[0].blen == sizeof(big)
          && memcmp(c->r[0].body, big, sizeof(big)) == 0, "1 MiB intact");

    /* The peer is gone before we write: EPIPE, not SIGPIPE. */
    client_unix(&d, sock);
    RUN_UNTIL(scout_http_nconns(h) == 2, 5);
    CHECK(send(d.fd, "GET /big HTTP/1.1\r\n\r\n", 21, 0) == 21, "send");
    client_close(&d);
    RUN_UNTIL(scout_http_nconns(h) == 1, 5);
    CHECK(scout_http_nconns(h) == 1, "dead peer dropped");
}

/* One big answer shared by its clients: each gets all of it, nobody holds
 * a copy, and the references go once it is sent. */
static void test_shared(scout_http_t *h, client_t *c)
{
    client_t d;

    (void) h;
    client_unix(&d, sock);
    SEND(c, "GET /shared HTTP/1.1\r\n\r\nGET /shared HTTP/1.1\r\n\r\n"
            "GET /hello HTTP/1.1\r\n\r\n");
    SEND(&d, "GET /shared HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(c, 3) && got(&d, 1), 10);
    CHECK(got(c, 3) && got(&d, 1), "shared twice + next, and another client");
    CHECK(c->r[0].blen == sizeof(big) && c->r[1].blen == sizeof(big)
          && d.r[0].blen == sizeof(big)
          && memcmp(c->r[0].body, big, sizeof(big)) == 0
          && memcmp(c->r[1].body, big, sizeof(big)) == 0
          && memcmp(d.r[0].body, big, sizeof(big)) == 0, "1 MiB intact x3");
    CHECK(c->r[2].status == 200 && !strcmp(c->r[2].body, "hello"),
          "pipelined answer after a shared body");
    CHECK(shared_big->refs == 1, "sent: references dropped (%u)",
          shared_big->refs);
    client_close(&d);
}

static void zk_like_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void) l; (void) w; (void) revents;
    zk_ticks++;
}

/* Six slow requests that arrive together are not all served in one loop
 * iteration: past the budget they wait, and a watcher of higher priority
 * (as ZooKeeper's socket is) runs between them. */
static void test_budget(scout_http_t *h)
{
    client_t c[6];
    ev_io    zk;
    int      p[2], i, all;

    CHECK(pipe(p) == 0 && write(p[1], "x", 1) == 1, "pipe");
    ev_io_init(&zk, zk_like_cb, p[0], EV_READ);   /* always ready */
    ev_set_priority(&zk, EV_MAXPRI);
    ev_io_start(loop, &zk);
    nslow = 0;
    for (i = 0; i < 6; i++)
        client_unix(&c[i], sock);
    RUN_UNTIL(scout_http_nconns(h) == 6, 5);
    for (i = 0; i < 6; i++)
        CHECK(send(c[i].fd, "GET /slow HTTP/1.1\r\n\r\n", 22, 0) == 22,
              "send");
    RUN_UNTIL(got(&c[0], 1) && got(&c[1], 1) && got(&c[2], 1)
              && got(&c[3], 1) && got(&c[4], 1) && got(&c[5], 1), 10);
    for (i = 0, all = 1; i < 6; i++)
        all = all && got(&c[i], 1) && c[i].r[0].status == 200;
    CHECK(all && nslow == 6, "six slow answers (%d)", nslow);
    for (i = 1; i < 6 && i < nslow; i++)
        CHECK(slow_ticks[i] > slow_ticks[i - 1], "the higher-priority "
              "watcher ran between slow request %d and %d", i, i + 1);
    ev_io_stop(loop, &zk);
    close(p[0]);
    close(p[1]);
    for (i = 0; i < 6; i++)
        client_close(&c[i]);
    RUN_UNTIL(scout_http_nconns(h) == 0, 5);
}

/* Requests that had to wait, from clients that have closed meanwhile, are
 * dropped unrendered: only the first (dispatched before the budget ran
 * out) and the client still there cost any work. */
static void test_gone(scout_http_t *h)
{
    client_t c[6];
    uint64_t dropped = scout_stats.api_requests_dropped;
    int      i;

    nslow = 0;
    for (i = 0; i < 6; i++)
        client_unix(&c[i], sock);
    RUN_UNTIL(scout_http_nconns(h) == 6, 5);
    for (i = 0; i < 6; i++)
        CHECK(send(c[i].fd, "GET /slow HTTP/1.1\r\n\r\n", 22, 0) == 22,
              "send");
    for (i = 1; i < 6; i++)
        client_close(&c[i]);
    RUN_UNTIL(got(&c[0], 1) && scout_http_nconns(h) == 1, 10);
    CHECK(got(&c[0], 1) && c[0].r[0].status == 200, "the one still there");
    CHECK(nslow <= 2 && nslow + (int) (scout_stats.api_requests_dropped
                                       - dropped) == 6,
          "%d rendered, %d dropped", nslow,
          (int) (scout_stats.api_requests_dropped - dropped));
    client_close(&c[0]);
    RUN_UNTIL(scout_http_nconns(h) == 0, 5);
}

static void test_limits(void)
{
    char          err[SCOUT_ERR_LEN];
    scout_http_t *h;
    client_t      a, b, x;
    ev_timer      t;
    double        t0;
    int           port;

    h = scout_http_new(loop, "localhost:0", handler, NULL, err);
    CHECK(h != NULL, "localhost: %s", err);
    if (h == NULL)
        return;
    port = scout_http_port(h);
    scout_http_set_limits(h, 2, 0.2);

    /* A parked request outlives the idle timeout. */
    client_tcp(&a, port);
    SEND(&a, "GET /defer HTTP/1.1\r\n\r\n");
    ev_timer_init(&t, respond_parked_cb, 0.5, 0.);
    ev_timer_start(loop, &t);
    RUN_UNTIL(got(&a, 1), 5);
    CHECK(got(&a, 1) && !strcmp(a.r[0].body, "deferred"), "defer > idle");

    /* Then the idle timer closes it. */
    t0 = ev_time();
    RUN_UNTIL(a.eof, 5);
    CHECK(a.eof && ev_time() - t0 >= 0.15, "idle close after %.2fs",
          ev_time() - t0);
    client_close(&a);
    RUN_UNTIL(scout_http_nconns(h) == 0, 5);

    /* Every slot held by an idle connection: the oldest makes room, so
     * idle clients cannot lock new ones out (an idle timeout longer than
     * the test, so that only the eviction can close a). */
    scout_http_set_limits(h, 0, 30.0);
    client_tcp(&a, port);
    RUN_UNTIL(scout_http_nconns(h) == 1, 5);
    client_tcp(&b, port);
    RUN_UNTIL(scout_http_nconns(h) == 2, 5);
    client_tcp(&x, port);
    RUN_UNTIL(a.eof, 5);
    CHECK(a.eof && a.n == 0, "the oldest idle connection made room");
    SEND(&x, "GET /hello HTTP/1.1\r\n\r\n");
    SEND(&b, "GET /hello HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(&x, 1) && got(&b, 1), 5);
    CHECK(got(&x, 1) && got(&b, 1), "the new one and the other served");
    client_close(&a);
    client_close(&x);
    RUN_UNTIL(scout_http_nconns(h) == 1, 5);

    /* Every slot busy (a parked request): a new connection is refused. */
    client_clear(&b);
    SEND(&b, "GET /defer HTTP/1.1\r\n\r\n");
    RUN_UNTIL(parked != NULL, 5);
    scout_http_set_limits(h, 1, 0);
    client_tcp(&x, port);
    RUN_UNTIL(x.eof, 5);
    CHECK(x.eof && x.n == 0, "refused while every slot is busy");
    ev_timer_init(&t, respond_parked_cb, 0., 0.);
    ev_timer_start(loop, &t);
    RUN_UNTIL(got(&b, 1), 5);
    CHECK(got(&b, 1) && !strcmp(b.r[0].body, "deferred"), "parked answered");
    client_close(&b);
    client_close(&x);
    scout_http_free(h);
}

/* One byte of a request line every 20 ms: an idle timer (0.5 s here) would
 * never fire, so only the request's total deadline (the idle timeout, when
 * shorter than SCOUT_HTTP_REQUEST_TIMEOUT) can close it, and it is counted
 * as a deadline close. The deadline runs from the request's first byte,
 * not from the end of its request line. */
static client_t dribbler;
static size_t   dribbled;

static void dribble_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    static const char line[] = "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    (void) l; (void) revents;
    if (dribbler.eof || dribbled >= sizeof(line) - 1) {
        ev_timer_stop(loop, w);
        return;
    }
    client_send(&dribbler, line + dribbled++, 1);
}

static void test_request_line_deadline(void)
{
    char          err[SCOUT_ERR_LEN];
    scout_http_t *h;
    ev_timer      t;
    uint64_t      closes = scout_stats.api_deadline_closes;

    h = scout_http_new(loop, "127.0.0.1:0", handler, NULL, err);
    CHECK(h != NULL, "tcp: %s", err);
    if (h == NULL)
        return;
    scout_http_set_limits(h, 0, 0.5);
    client_tcp(&dribbler, scout_http_port(h));
    dribbled = 0;
    ev_timer_init(&t, dribble_cb, 0.02, 0.02);
    ev_timer_start(loop, &t);
    RUN_UNTIL(dribbler.eof, 5);
    ev_timer_stop(loop, &t);
    CHECK(dribbler.eof, "a dribbled request line was never closed "
          "(%zu bytes sent)", dribbled);
    CHECK(scout_stats.api_deadline_closes == closes + 1,
          "closed by the request deadline: %llu",
          (unsigned long long) (scout_stats.api_deadline_closes - closes));
    CHECK(dribbler.n == 0, "no answer to half a request line");
    client_close(&dribbler);
    scout_http_free(h);
}

static void test_unix_files(scout_http_t *h)
{
    char          err[SCOUT_ERR_LEN], addr[140], stale[100];
    scout_http_t *h2;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    client_t      c;
    int           fd;

    snprintf(addr, sizeof(addr), "unix:%s", sock);
    h2 = scout_http_new(loop, addr, handler, NULL, err);
    CHECK(h2 == NULL && strstr(err, "another process is listening"),
          "live socket: %s", err);
    scout_http_free(h2);
    CHECK(client_unix(&c, sock) == 0, "first server still reachable");
    client_close(&c);
    RUN_UNTIL(scout_http_nconns(h) == 0, 5);

    /* A socket file left behind by a dead process is replaced. */
    snprintf(stale, sizeof(stale), "%s/stale.sock", dir);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", stale);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0, "stale bind");
    close(fd);
    snprintf(addr, sizeof(addr), "unix:%s", stale);
    h2 = scout_http_new(loop, addr, handler, NULL, err);
    CHECK(h2 != NULL, "stale socket replaced: %s", err);
    CHECK(client_unix(&c, stale) == 0, "new socket works");
    SEND(&c, "GET /defer HTTP/1.1\r\n\r\n");
    RUN_UNTIL(parked != NULL, 5);

    /* free() aborts what is parked and removes the socket. */
    naborts = 0;
    scout_http_free(h2);
    CHECK(naborts == 1 && parked == NULL, "free aborts parked: %d", naborts);
    CHECK(access(stale, F_OK) != 0, "free unlinks");
    RUN_UNTIL(c.eof, 5);
    CHECK(c.eof, "client sees close");
    client_close(&c);
}

/* One debug line per request: through the stub, or through the real
 * logger with stderr sent to a file for the length of one request. */
static void test_log_line(void)
{
    client_t c;
#ifdef HAVE_LOG_H
    char     path[96], buf[8192], *line;
    int      fd = -1, saved = -1, level = scout_log_get_level();
    ssize_t  n;

    if (!log_stub_used) {
        snprintf(path, sizeof(path), "%s/log", dir);
        fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
        saved = dup(2);
        dup2(fd, 2);
        scout_log_set_level(SCOUT_LOG_DEBUG);
    }
#endif
    client_unix(&c, sock);
    SEND(&c, "GET /hello?log=1 HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(&c, 1), 5);
    client_close(&c);
#ifdef HAVE_LOG_H
    if (fd >= 0) {
        dup2(saved, 2);
        close(saved);
        scout_log_set_level(level);
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        if ((line = strstr(buf, "GET /hello?log=1 ")) != NULL)
            snprintf(last_debug, sizeof(last_debug), "%.*s",
                     (int) strcspn(line, "\n"), line);
        close(fd);
        unlink(path);
    }
#endif
    CHECK(strstr(last_debug, "GET /hello?log=1 200 ") != NULL
          && strstr(last_debug, "us") != NULL, "debug line: '%s'", last_debug);
}

/* The unix socket is private to its user; a TCP listener on port 0 gets an
 * ephemeral port. */
static void test_listeners(scout_http_t *hu, scout_http_t *ht)
{
    struct stat st;

    CHECK(lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode)
          && (st.st_mode & 0777) == 0600, "mode %o", st.st_mode & 0777);
    CHECK(scout_http_port(hu) == 0, "unix has no port");
    CHECK(scout_http_port(ht) > 0, "ephemeral port %d", scout_http_port(ht));
}

/* An IPv6 address listens too (skipped where the container has no ::1). */
static void test_ipv6(void)
{
    char          err[SCOUT_ERR_LEN];
    scout_http_t *h6 = scout_http_new(loop, "[::1]:0", handler, NULL, err);

    if (h6 == NULL) {
        SKIP("no [::1]: %s", err);
        return;
    }
    CHECK(scout_http_port(h6) > 0, "v6 port");
    scout_http_free(h6);
}

/* Freeing the server removes its unix socket. */
static void test_free_unlinks(scout_http_t *hu)
{
    scout_http_free(hu);
    CHECK(access(sock, F_OK) != 0, "free unlinks %s", sock);
}

int main(void)
{
    char          err[SCOUT_ERR_LEN], addr[160];
    scout_http_t *hu, *ht;
    client_t      cu, ct;
    size_t        i;

    loop = ev_loop_new(EVFLAG_AUTO);
    for (i = 0; i < sizeof(big); i++)
        big[i] = (char) ('a' + i % 26);
    shared_big = scout_rcbuf_copy(big, sizeof(big));
    snprintf(dir, sizeof(dir), "/tmp/test_http.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 2;
    snprintf(sock, sizeof(sock), "%s/api.sock", dir);

    RUN(test_listen_errors());

    snprintf(addr, sizeof(addr), "unix:%s", sock);
    hu = scout_http_new(loop, addr, handler, NULL, err);
    CHECK(hu != NULL, "unix: %s", err);
    ht = scout_http_new(loop, "127.0.0.1:0", handler, NULL, err);
    CHECK(ht != NULL, "tcp: %s", err);
    if (hu == NULL || ht == NULL)
        goto out;
    RUN(test_listeners(hu, ht));
    RUN(test_ipv6());

    client_unix(&cu, sock);
    CHECK(client_tcp(&ct, scout_http_port(ht)) == 0, "tcp connect");
    RUN(test_basic(hu, &cu));
    RUN(test_basic(ht, &ct));
    RUN(test_pipelining(&cu));
    RUN(test_pipelining(&ct));
    RUN(test_misc(&ct));
    client_close(&cu);
    client_close(&ct);

    RUN(test_closing(hu, 0));
    RUN(test_closing(ht, scout_http_port(ht)));

    client_unix(&cu, sock);
    RUN(test_query(&cu));
    client_close(&cu);
    client_unix(&cu, sock);
    RUN(test_deferred(hu, &cu));
    client_close(&cu);
    RUN(test_deferred_written_at_once(hu));
    RUN(test_abort(hu));
    client_unix(&cu, sock);
    RUN(test_big_and_sigpipe(hu, &cu));
    client_close(&cu);
    client_unix(&cu, sock);
    RUN(test_shared(hu, &cu));
    client_close(&cu);
    RUN_UNTIL(scout_http_nconns(hu) == 0, 5);
    RUN(test_budget(hu));
    RUN(test_gone(hu));
    RUN(test_limits());
    RUN(test_request_line_deadline());
    RUN(test_unix_files(hu));

    RUN(test_log_line());
    scout_http_free(ht);
    RUN(test_free_unlinks(hu));
    scout_rcbuf_unref(shared_big);
out:
    rmdir(dir);
    ev_loop_destroy(loop);
    return test_summary();
}
