/*
 * http_harness.h - what the HTTP server's test binaries share: one libev
 * loop spun until a condition holds, a non-blocking test client that parses
 * responses with http-parser, and the handler under test (its routes /hello,
 * /defer, /big, /slow, /shared, /q...).
 *
 * Why a header: test_http.c (the wire: parsing, pipelining, listeners) and
 * test_http_conn.c (parked answers, aborts, budgets, limits, deadlines) drive
 * the same server through the same client; one copy keeps them alike. Every
 * function is static, as in testing.h: each binary is one translation unit.
 */
#ifndef SCOUT_TESTS_HTTP_HARNESS_H
#define SCOUT_TESTS_HTTP_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <ev.h>
#include <http_parser.h>

#include "testing.h"
#include "api/http.h"

/* ---- loop helpers ------------------------------------------------------- */

static struct ev_loop *loop;
static int             timed_out;

static void timeout_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void) l; (void) w; (void) revents;
    timed_out = 1;
}

/* Spin the shared loop until cond holds or t seconds pass. */
#define RUN_(cond, t, quiet) do {                                         \
    ev_timer to_;                                                         \
    timed_out = 0;                                                        \
    ev_timer_init(&to_, timeout_cb, (t), 0.);                             \
    ev_timer_start(loop, &to_);                                           \
    while (!(cond) && !timed_out)                                         \
        ev_run(loop, EVRUN_ONCE);                                         \
    ev_timer_stop(loop, &to_);                                            \
    if (!(quiet) && !(cond))                                              \
        fprintf(stderr, "line %d: timed out waiting\n", __LINE__);        \
} while (0)

#define RUN_UNTIL(cond, t) RUN_(cond, t, 0)

/* ---- client: non-blocking socket + http-parser in response mode -------- */

#define MAXR 8

typedef struct {
    int    status, done, hstate;
    char   hdrs[4096];
    size_t hlen;
    char  *body;
    size_t blen;
} resp_t;

typedef struct {
    int         fd, eof, perr, n, head_mask;
    ev_io       io;
    http_parser p;
    resp_t      r[MAXR];
    char       *out;
    size_t      out_len, out_off;
} client_t;

static void hdr_add(resp_t *r, const char *s, size_t n)
{
    if (r->hlen + n < sizeof(r->hdrs)) {
        memcpy(r->hdrs + r->hlen, s, n);
        r->hlen += n;
        r->hdrs[r->hlen] = '\0';
    }
}

static int c_begin(http_parser *p)
{
    client_t *c = p->data;

    if (c->n == MAXR)
        return -1;
    memset(&c->r[c->n++], 0, sizeof(resp_t));
    return 0;
}

#define CUR(p) (&((client_t *) (p)->data)->r[((client_t *) (p)->data)->n - 1])

/* Headers are kept as "Name: value\n" lines for resp_hdr(). */
static int c_hdr(http_parser *p, const char *at, size_t n, int state)
{
    resp_t *r = CUR(p);

    if (r->hstate != 0 && r->hstate != state)
        hdr_add(r, state == 1 ? "\n" : ": ", state == 1 ? 1 : 2);
    r->hstate = state;
    hdr_add(r, at, n);
    return 0;
}

static int c_field(http_parser *p, const char *at, size_t n)
{ return c_hdr(p, at, n, 1); }

static int c_value(http_parser *p, const char *at, size_t n)
{ return c_hdr(p, at, n, 2); }

static int c_headers_done(http_parser *p)
{
    client_t *c = p->data;

    hdr_add(&c->r[c->n - 1], "\n", 1);
    return (c->head_mask >> (c->n - 1)) & 1;   /* HEAD: no body follows */
}

static int c_body(http_parser *p, const char *at, size_t n)
{
    resp_t *r = CUR(p);

    r->body = realloc(r->body, r->blen + n + 1);
    memcpy(r->body + r->blen, at, n);
    r->blen += n;
    r->body[r->blen] = '\0';
    return 0;
}

static int c_done(http_parser *p)
{
    client_t *c = p->data;

    c->r[c->n - 1].status = p->status_code;
    c->r[c->n - 1].done = 1;
    return 0;
}

static const http_parser_settings csettings = {
    .on_message_begin = c_begin, .on_header_field = c_field,
    .on_header_value = c_value, .on_headers_complete = c_headers_done,
    .on_body = c_body, .on_message_complete = c_done,
};

static void client_events(client_t *c)
{
    int ev = c->eof ? 0 : EV_READ;

    if (c->out_off < c->out_len)
        ev |= EV_WRITE;
    ev_io_stop(loop, &c->io);
    if (ev) {
        ev_io_set(&c->io, c->fd, ev);
        ev_io_start(loop, &c->io);
    }
}

static void client_cb(struct ev_loop *l, ev_io *w, int revents)
{
    client_t *c = w->data;
    char      buf[65536];
    ssize_t   n;

    (void) l;
    if (revents & EV_WRITE) {
        n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                 MSG_NOSIGNAL);
        if (n > 0)
            c->out_off += (size_t) n;
        else if (errno != EAGAIN)
            c->out_off = c->out_len;      /* server gone; reading tells */
    }
    if (revents & EV_READ) {
        n = recv(c->fd, buf, sizeof(buf), 0);
        if (n > 0) {
            if (http_parser_execute(&c->p, &csettings, buf, (size_t) n)
                != (size_t) n)
                c->perr = 1;
        } else if (n == 0 || errno != EAGAIN) {
            c->eof = 1;
        }
    }
    client_events(c);
}

static void client_init(client_t *c, int fd)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
    ev_io_init(&c->io, client_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(loop, &c->io);
}

static int client_connect(client_t *c, void *sa, socklen_t len)
{
    int fd = socket(((struct sockaddr *) sa)->sa_family, SOCK_STREAM, 0);

    if (connect(fd, sa, len) != 0) {
        close(fd);
        return -1;
    }
    client_init(c, fd);
    return 0;
}

static int client_unix(client_t *c, const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    return client_connect(c, &sa, sizeof(sa));
}

static int client_tcp(client_t *c, int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };

    sa.sin_port = htons((uint16_t) port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return client_connect(c, &sa, sizeof(sa));
}

static void client_send(client_t *c, const char *s, size_t n)
{
    c->out = realloc(c->out, c->out_len + n);
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
    client_events(c);
}

#define SEND(c, s) client_send((c), (s), strlen(s))

/* Forget earlier responses so each test counts from r[0]. */
static void client_clear(client_t *c)
{
    int i;

    for (i = 0; i < MAXR; i++)
        free(c->r[i].body);
    memset(c->r, 0, sizeof(c->r));
    c->n = c->head_mask = 0;
}

static void client_close(client_t *c)
{
    ev_io_stop(loop, &c->io);
    close(c->fd);
    client_clear(c);
    free(c->out);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static int got(client_t *c, int k)
{
    return c->n >= k && c->r[k - 1].done;
}

static const char *resp_hdr(resp_t *r, const char *name)
{
    static char v[256];
    const char *p = r->hdrs;
    size_t      n = strlen(name);

    while (*p) {
        const char *e = strchr(p, '\n');

        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            snprintf(v, sizeof(v), "%.*s", (int) (e - p - n - 2), p + n + 2);
            return v;
        }
        p = e + 1;
    }
    return NULL;
}

static int hdr_is(resp_t *r, const char *name, const char *want)
{
    const char *v = resp_hdr(r, name);

    return v != NULL && strcmp(v, want) == 0;
}

/* ---- the handler under test --------------------------------------------- */

static scout_http_req_t *parked;      /* the deferred request, if any */
static int               nhandled, naborts;
static char              big[1 << 20];
static scout_rcbuf_t    *shared_big;    /* big, shared by every answer */
static unsigned          zk_ticks;      /* a ZooKeeper-like watcher ran */
static unsigned          slow_ticks[16];
static int               nslow;         /* /slow answers rendered */

static struct {
    int  index, name, flag, missing, bad, nul, small, w;
    char vindex[16], vname[16], vflag[4], vw[16], hdr[16];
    int  has_nohdr, crlf;
} q;

static void on_abort(scout_http_req_t *req, void *data)
{
    CHECK(req == parked, "abort for an unknown request");
    CHECK(data == &naborts, "abort data passed through");
    CHECK(strcmp(scout_http_req_path(req), "/defer") == 0,
          "req readable in on_abort");
    CHECK(scout_http_respond(req, 200, NULL, "", 0) == SCOUT_ERROR,
          "respond refused inside on_abort");
    naborts++;
    parked = NULL;
}

static int handler(void *ud, scout_http_req_t *req)
{
    const char *path = scout_http_req_path(req);
    const char *m = scout_http_req_method(req);
    char        body[256];
    char        small[4];

    (void) ud;
    nhandled++;
    if (strcmp(path, "/hello") == 0) {
        scout_http_add_header(req, "X-Test", "yes");
        return scout_http_respond(req, 200, "text/plain", "hello", 5);
    }
    if (strcmp(path, "/echo") == 0) {
        snprintf(body, sizeof(body), "%s %s?%s", m, path,
                 scout_http_req_query(req));
        return scout_http_respond(req, 200, "text/plain", body, strlen(body));
    }
    if (strcmp(path, "/defer") == 0) {
        parked = req;
        scout_http_req_on_abort(req, on_abort, &naborts);
        return SCOUT_AGAIN;
    }
    if (strcmp(path, "/big") == 0)
        return scout_http_respond(req, 200, "application/octet-stream", big,
                                  sizeof(big));
    if (strcmp(path, "/slow") == 0) {   /* 30 ms of work on the loop */
        double t0 = ev_time();

        while (ev_time() - t0 < 0.03)
            ;
        if (nslow < 16)
            slow_ticks[nslow] = zk_ticks;
        nslow++;
        return scout_http_respond(req, 200, "text/plain", "slow", 4);
    }
    if (strcmp(path, "/shared") == 0)
        return scout_http_respond_shared(req, 200, "application/octet-stream",
                                         shared_big);
    if (strcmp(path, "/noreply") == 0)
        return SCOUT_OK;
    if (strcmp(path, "/q") == 0) {
        q.index = scout_http_query_get(req, "index", q.vindex,
                                       sizeof(q.vindex));
        q.name = scout_http_query_get(req, "name", q.vname, sizeof(q.vname));
        q.flag = scout_http_query_get(req, "flag", q.vflag, sizeof(q.vflag));
        q.w = scout_http_query_get(req, "wait", q.vw, sizeof(q.vw));
        q.missing = scout_http_query_get(req, "nope", small, sizeof(small));
        q.bad = scout_http_query_get(req, "bad", small, sizeof(small));
        q.nul = scout_http_query_get(req, "nul", small, sizeof(small));
        q.small = scout_http_query_get(req, "long", small, sizeof(small));
        m = scout_http_req_header(req, "x-FOO");
        snprintf(q.hdr, sizeof(q.hdr), "%s", m ? m : "(null)");
        q.has_nohdr = scout_http_req_header(req, "X-None") != NULL;
        q.crlf = scout_http_add_header(req, "X-Bad", "a\r\nInjected: 1");
        return scout_http_respond(req, 204, NULL, NULL, 0);
    }
    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0)
        return scout_http_respond(req, 405, "text/plain", "no\n", 3);
    return scout_http_respond(req, 404, "text/plain", "not found\n", 10);
}

static char dir[64], sock[128];

/* One loop, the shared 1 MiB body and a temp dir holding sock; 0 or -1. */
static inline int
harness_start(const char *name)
{
    size_t i;

    loop = ev_loop_new(EVFLAG_AUTO);
    for (i = 0; i < sizeof(big); i++)
        big[i] = (char) ('a' + i % 26);
    shared_big = scout_rcbuf_copy(big, sizeof(big));
    snprintf(dir, sizeof(dir), "/tmp/%s.XXXXXX", name);
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(sock, sizeof(sock), "%s/api.sock", dir);
    return 0;
}

/* What harness_start made goes, the temp dir with it (it must be empty). */
static inline void
harness_stop(void)
{
    scout_rcbuf_unref(shared_big);
    rmdir(dir);
    ev_loop_destroy(loop);
}

#endif
