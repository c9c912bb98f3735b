/*
 * test_http.c - agent/api/http.c against real sockets on one libev loop.
 *
 * Why: the server's risky parts are the ones a unit test with fake buffers
 * would miss: partial reads and writes, pipelining, peers that vanish while
 * a request is parked, and the socket file's permissions. So every check
 * here goes through a real unix or loopback socket, driven by the same loop
 * as the server (client watchers, never blocking reads), and the binary is
 * meant to run under ASan/UBSan and valgrind as well. This binary checks one
 * request on the wire (parsing, pipelining, malformed input, queries,
 * listeners, the log line); what the server does while requests wait
 * (parked answers, aborts, budgets, limits, deadlines) is test_http_conn.c.
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

/* Builds prefix + n copies of ch + suffix into buf; returns the length. */
static size_t padded(char *buf, const char *prefix, int ch, size_t n,
                     const char *suffix)
{
    size_t len = strlen(prefix);

    memcpy(buf, prefix, len);
    memset(buf + len, ch, n);
    return len + n + (size_t) sprintf(buf + len + n, "%s", suffix);
}

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

    if (harness_start("test_http") != 0)
        return 2;

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

    RUN(test_log_line());
    scout_http_free(ht);
    RUN(test_free_unlinks(hu));
out:
    harness_stop();
    return test_summary();
}
