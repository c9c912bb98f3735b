/*
 * test_http_conn.c - agent/api/http.c's connections over time, on real
 * sockets and one libev loop: a parked (deferred) answer and the requests
 * pipelined behind it, a hang-up while parked (on_abort once), big and
 * shared bodies and a peer gone before the write (EPIPE, not SIGPIPE), the
 * work budget per loop iteration, requests from clients that left, slot and
 * idle limits, the request deadline, and the unix socket file's life.
 *
 * Why apart from test_http.c: that binary checks what one request looks like
 * on the wire; this one checks what the server does while requests wait, so
 * each file stays readable. Both share tests/c/http_harness.h.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "testing.h"
#include "http_harness.h"
#include "stats.h"

static client_t *deferred_client;    /* its responses, counted below */
static int       deferred_seen = -1; /* responses it had when answered */

/* The loop's time when the parked request was answered: the idle timer
 * counts from then, not from when the client read the answer (later, on a
 * slow run: valgrind, a loaded host). */
static double responded_at;

static void respond_parked_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void) w; (void) revents;
    if (deferred_client != NULL)
        deferred_seen = deferred_client->n;
    if (parked != NULL) {
        responded_at = ev_now(l);
        scout_http_add_header(parked, "X-Scout-Index", "7");
        CHECK(scout_http_respond(parked, 200, "text/plain", "deferred", 8)
              == SCOUT_OK, "deferred respond");
        parked = NULL;
    }
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

    /* Then the idle timer closes it, 0.2 s after the answer. */
    t0 = responded_at;
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

int main(void)
{
    char          err[SCOUT_ERR_LEN], addr[160];
    scout_http_t *hu;
    client_t      cu;

    if (harness_start("test_http_conn") != 0)
        return 2;

    snprintf(addr, sizeof(addr), "unix:%s", sock);
    hu = scout_http_new(loop, addr, handler, NULL, err);
    CHECK(hu != NULL, "unix: %s", err);
    if (hu == NULL)
        goto out;

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

    scout_http_free(hu);
out:
    harness_stop();
    return test_summary();
}
