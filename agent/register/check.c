/*
 * check.c -- health checks on the agent's loop (see check.h).
 *
 * One round at a time per check: the round timer starts a probe, the probe
 * ends in finish() (success, failure or the deadline timer), and finish()
 * arms the round timer again.  The probe's socket, io watcher, deadline and
 * child watcher are all embedded here, so _free can always stop everything.
 *
 * finish() calls on_change as its very last step and every caller returns
 * right after it: the callback may free the check, so nothing may touch it
 * once the callback has been entered.
 *
 * A round the agent itself could not run (no fd left, no process to fork)
 * says nothing about the service: it ends in unknown(), which is logged and
 * counted but is no verdict -- it neither flips the state nor breaks a
 * streak, so a healthy service is never withdrawn for the agent's own
 * shortage.
 *
 * This module must never block the loop: no DNS (names other than localhost
 * are refused at setup), non-blocking sockets only, and waitpid only on a
 * child that has already been sent SIGKILL (in _free; the normal path reaps
 * through ev_child).
 */
#define _GNU_SOURCE

#include "register/check.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <http_parser.h>

#include "log.h"
#include "spawn.h"
#include "stats.h"

enum { IDLE, CONNECTING, SENDING, READING, RUNNING };

struct scout_check_s {
    struct ev_loop     *loop;
    int                 kind;
    char               *target;       /* as configured */
    char               *label;        /* host:port for tcp/http reasons */
    double              interval;     /* seconds */
    double              timeout;
    int                 timeout_ms;
    int                 rise, fall;
    scout_check_lua_fn  lua_fn;
    void               *lua_ud;
    scout_check_fn      on_change;
    void               *ud;

    struct sockaddr_storage addr;     /* tcp/http */
    socklen_t           addrlen;
    char               *request;      /* http */
    size_t              request_len;

    ev_timer            round;        /* next round */
    ev_timer            deadline;     /* current round's timeout */
    ev_io               io;
    ev_child            child;

    int                 state;        /* of the current round */
    int                 fd;
    pid_t               pid;          /* exec child not yet reaped, or 0 */
    int                 killed;       /* its round already ended (timeout) */
    size_t              sent, received;
    http_parser         parser;
    int                 http_status;

    int                 up;
    int                 streak;       /* results disagreeing with up */
    int                 unknown;      /* the last round could not run */
    char                reason[SCOUT_ERR_LEN];
};

static const char *kind_names[] = { NULL, "tcp", "http", "exec", "lua" };

int
scout_check_kind_parse(const char *name)
{
    for (int k = SCOUT_CHECK_TCP; k <= SCOUT_CHECK_LUA; k++)
        if (name != NULL && strcmp(name, kind_names[k]) == 0)
            return k;
    return SCOUT_ERROR;
}

/* strerror, lowercased the way reasons are written */
static const char *
errstr(int e, char *buf, size_t len)
{
    snprintf(buf, len, "%s", strerror(e));
    if (buf[0] != '\0' && buf[1] != '\0' && islower((unsigned char)buf[1]))
        buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

/* ---- one round ----------------------------------------------------------- */

static void
stop_probe(scout_check_t *c)
{
    ev_timer_stop(c->loop, &c->deadline);
    ev_io_stop(c->loop, &c->io);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->state = IDLE;
}

static void
arm_round(scout_check_t *c, double after)
{
    ev_timer_stop(c->loop, &c->round);
    ev_timer_set(&c->round, after, 0.);
    ev_timer_start(c->loop, &c->round);
}

/* Ends the round with a verdict.  The caller must return right after: the
 * callback may have freed c. */
static void
finish(scout_check_t *c, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
finish(scout_check_t *c, int ok, const char *fmt, ...)
{
    va_list ap;

    stop_probe(c);
    if (c->pid == 0)            /* else: armed when the child is reaped */
        arm_round(c, c->interval);

    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
    va_end(ap);
    c->unknown = 0;

    if (ok == c->up) {
        c->streak = 0;
        return;
    }
    if (++c->streak < (c->up ? c->fall : c->rise))
        return;
    c->streak = 0;
    c->up = ok;
    scout_log(ok ? SCOUT_LOG_INFO : SCOUT_LOG_WARN, "check", "%s %s: %s (%s)",
              kind_names[c->kind], c->kind == SCOUT_CHECK_LUA ? "function"
              : c->target, ok ? "up" : "down", c->reason);
    if (c->on_change != NULL)
        c->on_change(c->ud, ok, c->reason);     /* last: may free c */
}

/* A local failure to run the probe at all: EMFILE, ENFILE, no memory, no
 * ephemeral port, fork refused. */
static int
local_errno(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM
           || e == EAGAIN || e == EADDRNOTAVAIL;
}

/* Ends the round without a verdict: the state and the streak stand.  The
 * first of a run is a warning, the rest are debug lines (the counter
 * tells how many). */
static void
unknown(scout_check_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
unknown(scout_check_t *c, const char *fmt, ...)
{
    va_list ap;
    int n;

    stop_probe(c);
    arm_round(c, c->interval);
    n = snprintf(c->reason, sizeof(c->reason), "unknown: ");
    va_start(ap, fmt);
    vsnprintf(c->reason + n, sizeof(c->reason) - (size_t)n, fmt, ap);
    va_end(ap);
    scout_stats.check_unknown++;
    scout_log(c->unknown ? SCOUT_LOG_DEBUG : SCOUT_LOG_WARN, "check",
              "%s %s: %s; the check could not run, it stays %s",
              kind_names[c->kind], c->target, c->reason,
              c->up ? "up" : "down");
    c->unknown = 1;
}

static void
on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    scout_check_t *c = w->data;

    if (c->pid > 0 && !c->killed) {
        /* the whole group: sh may have forked the real work */
        kill(-c->pid, SIGKILL);
        c->killed = 1;
    }
    finish(c, 0, "timeout after %d ms", c->timeout_ms);
}

/* ---- http ---------------------------------------------------------------- */

static int
on_headers_complete(http_parser *p)
{
    scout_check_t *c = p->data;

    c->http_status = (int)p->status_code;
    http_parser_pause(p, 1);            /* the verdict is in; body ignored */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_headers_complete = on_headers_complete,
};

/* Feeds n bytes (0 = EOF) and finishes the round if they decide it.
 * Returns 1 if finish() was called (c may be gone). */
static int
http_feed(scout_check_t *c, const char *buf, size_t n)
{
    enum http_errno e;

    http_parser_execute(&c->parser, &parser_settings, buf, n);
    if (c->http_status != 0) {
        int st = c->http_status;
        finish(c, st >= 200 && st < 300, "http %d", st);
        return 1;
    }
    e = HTTP_PARSER_ERRNO(&c->parser);
    if (e != HPE_OK) {
        finish(c, 0, "http %s: bad response: %s", c->label,
               http_errno_description(e));
        return 1;
    }
    if (n == 0) {
        finish(c, 0, "http %s: connection closed before the headers ended",
               c->label);
        return 1;
    }
    if (c->received >= SCOUT_CHECK_HTTP_MAX) {
        finish(c, 0, "http %s: no end of headers in %d bytes", c->label,
               SCOUT_CHECK_HTTP_MAX);
        return 1;
    }
    return 0;
}

static void
http_send(scout_check_t *c)
{
    char eb[128];

    while (c->sent < c->request_len) {
        ssize_t n = send(c->fd, c->request + c->sent,
                         c->request_len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;                     /* the io watcher is on EV_WRITE */
        if (n < 0) {
            finish(c, 0, "http %s: send: %s", c->label,
                   errstr(errno, eb, sizeof(eb)));
            return;
        }
        c->sent += (size_t)n;
    }
    c->state = READING;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    ev_io_stop(c->loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_READ);
    ev_io_start(c->loop, &c->io);
}

static void
http_read(scout_check_t *c)
{
    char buf[4096], eb[128];

    for (;;) {
        size_t want = SCOUT_CHECK_HTTP_MAX - c->received;
        ssize_t n;

        if (want > sizeof(buf))
            want = sizeof(buf);
        n = recv(c->fd, buf, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            finish(c, 0, "http %s: %s", c->label,
                   errstr(errno, eb, sizeof(eb)));
            return;
        }
        c->received += (size_t)n;
        if (http_feed(c, buf, (size_t)n))
            return;
    }
}

/* ---- tcp and http: connect ----------------------------------------------- */

static void
connected(scout_check_t *c)
{
    if (c->kind == SCOUT_CHECK_TCP) {
        finish(c, 1, "tcp %s: connected", c->label);
        return;
    }
    c->state = SENDING;
    c->sent = 0;
    c->received = 0;
    c->http_status = 0;
    ev_io_stop(c->loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(c->loop, &c->io);
    http_send(c);
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    scout_check_t *c = w->data;
    char eb[128];
    int e = 0;
    socklen_t elen = sizeof(e);

    switch (c->state) {
    case CONNECTING:
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0)
            e = errno;
        if (e == EINPROGRESS || e == EALREADY)
            return;
        if (e != 0) {
            finish(c, 0, "%s %s: %s", kind_names[c->kind], c->label,
                   errstr(e, eb, sizeof(eb)));
            return;
        }
        connected(c);
        return;
    case SENDING:
        http_send(c);
        return;
    case READING:
        http_read(c);
        return;
    }
}

static void
start_connect(scout_check_t *c)
{
    char eb[128];

    c->fd = socket(c->addr.ss_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        if (local_errno(errno))
            unknown(c, "%s %s: socket: %s", kind_names[c->kind], c->label,
                    errstr(errno, eb, sizeof(eb)));
        else
            finish(c, 0, "%s %s: socket: %s", kind_names[c->kind], c->label,
                   errstr(errno, eb, sizeof(eb)));
        return;
    }
    c->state = CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&c->addr, c->addrlen) == 0) {
        connected(c);
        return;
    }
    if (errno == EADDRNOTAVAIL) {           /* no local port left */
        unknown(c, "%s %s: %s", kind_names[c->kind], c->label,
                errstr(errno, eb, sizeof(eb)));
        return;
    }
    if (errno != EINPROGRESS && errno != EINTR) {
        finish(c, 0, "%s %s: %s", kind_names[c->kind], c->label,
               errstr(errno, eb, sizeof(eb)));
        return;
    }
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(c->loop, &c->io);
}

/* ---- exec ---------------------------------------------------------------- */

static void
on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    scout_check_t *c = w->data;
    int st = w->rstatus;

    ev_child_stop(loop, w);
    c->pid = 0;
    if (c->killed) {            /* the deadline already ended the round */
        c->killed = 0;
        arm_round(c, c->interval);
        return;
    }
    if (WIFEXITED(st))
        finish(c, WEXITSTATUS(st) == 0, "exec exited %d", WEXITSTATUS(st));
    else
        finish(c, 0, "exec killed by signal %d", WTERMSIG(st));
}

static void
start_exec(scout_check_t *c)
{
    char eb[128];
    pid_t pid;
    int rc;

    if ((rc = scout_spawn_sh(c->target, 1, &pid)) != 0)
        goto spawn_failed;

    c->pid = pid;
    c->killed = 0;
    c->state = RUNNING;
    ev_child_set(&c->child, pid, 0);
    ev_child_start(c->loop, &c->child);
    return;

spawn_failed:
    if (local_errno(rc))
        unknown(c, "exec: cannot run /bin/sh: %s",
                errstr(rc, eb, sizeof(eb)));
    else
        finish(c, 0, "exec: cannot run /bin/sh: %s",
               errstr(rc, eb, sizeof(eb)));
}

/* ---- rounds -------------------------------------------------------------- */

static void
on_round(struct ev_loop *loop, ev_timer *w, int revents)
{
    scout_check_t *c = w->data;
    char buf[SCOUT_ERR_LEN];
    int ok;

    if (c->kind == SCOUT_CHECK_LUA) {
        buf[0] = '\0';
        ok = c->lua_fn(c->lua_ud, buf, sizeof(buf)) == 1;
        buf[sizeof(buf) - 1] = '\0';
        if (buf[0] != '\0')
            finish(c, ok, "%s", buf);
        else
            finish(c, ok, "lua %s", ok ? "up" : "down");
        return;
    }
    /* the loop's clock may be stale after a slow callback: the timeout is
     * measured from now */
    ev_now_update(loop);
    ev_timer_set(&c->deadline, c->timeout, 0.);
    ev_timer_start(loop, &c->deadline);
    if (c->kind == SCOUT_CHECK_EXEC)
        start_exec(c);
    else
        start_connect(c);
}

/* ---- setup --------------------------------------------------------------- */

/* host (not NUL-terminated, brackets already stripped) -> address */
static int
set_addr(scout_check_t *c, const char *host, size_t hlen, unsigned port,
         char *err)
{
    char h[64];
    struct sockaddr_in *sin = (struct sockaddr_in *)&c->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->addr;

    if (port == 0 || port > 65535) {
        snprintf(err, SCOUT_ERR_LEN, "%s check \"%s\": bad port",
                 kind_names[c->kind], c->target);
        return SCOUT_ERROR;
    }
    if (hlen >= sizeof(h))
        goto name;
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    memset(&c->addr, 0, sizeof(c->addr));
    if (strcasecmp(h, "localhost") == 0)
        snprintf(h, sizeof(h), "127.0.0.1");
    if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        c->addrlen = sizeof(*sin);
        return SCOUT_OK;
    }
    if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        c->addrlen = sizeof(*sin6);
        return SCOUT_OK;
    }
name:
    snprintf(err, SCOUT_ERR_LEN, "%s check \"%s\": host must be an IP "
             "address or localhost (no DNS lookups in the agent's loop)",
             kind_names[c->kind], c->target);
    return SCOUT_ERROR;
}

/* host:port or [v6]:port, parsed by http-parser as a CONNECT authority */
static int
setup_tcp(scout_check_t *c, char *err)
{
    struct http_parser_url u;

    http_parser_url_init(&u);
    if (http_parser_parse_url(c->target, strlen(c->target), 1, &u) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "tcp check \"%s\": want host:port",
                 c->target);
        return SCOUT_ERROR;
    }
    if ((c->label = strdup(c->target)) == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return SCOUT_ERROR;
    }
    return set_addr(c, c->target + u.field_data[UF_HOST].off,
                    u.field_data[UF_HOST].len, u.port, err);
}

static int
setup_http(scout_check_t *c, char *err)
{
    struct http_parser_url u;
    const char *t = c->target, *path = "/", *query = "";
    size_t a0, a1, plen = 1, qlen = 0, len;
    int n;

    http_parser_url_init(&u);
    if (http_parser_parse_url(t, strlen(t), 0, &u) != 0
        || !(u.field_set & (1 << UF_SCHEMA))
        || !(u.field_set & (1 << UF_HOST))) {
        snprintf(err, SCOUT_ERR_LEN, "http check \"%s\": want "
                 "http://host[:port]/path", t);
        return SCOUT_ERROR;
    }
    if (u.field_data[UF_SCHEMA].len != 4
        || strncasecmp(t + u.field_data[UF_SCHEMA].off, "http", 4) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "http check \"%s\": only http:// is "
                 "supported (no TLS in the agent)", t);
        return SCOUT_ERROR;
    }
    if (u.field_set & (1 << UF_USERINFO)) {
        snprintf(err, SCOUT_ERR_LEN, "http check \"%s\": user info is not "
                 "supported", t);
        return SCOUT_ERROR;
    }

    /* host[:port] as written, brackets included: the label and Host */
    a0 = u.field_data[UF_HOST].off;
    a1 = a0 + u.field_data[UF_HOST].len;
    if (a0 > 0 && t[a0 - 1] == '[') {
        a0--;
        a1++;
    }
    if (u.field_set & (1 << UF_PORT))
        a1 = (size_t)u.field_data[UF_PORT].off + u.field_data[UF_PORT].len;
    if ((c->label = strndup(t + a0, a1 - a0)) == NULL)
        goto oom;

    if (u.field_set & (1 << UF_PATH)) {
        path = t + u.field_data[UF_PATH].off;
        plen = u.field_data[UF_PATH].len;
    }
    if (u.field_set & (1 << UF_QUERY)) {
        query = t + u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
    }
    len = plen + qlen + strlen(c->label) + 128;
    if ((c->request = malloc(len)) == NULL)
        goto oom;
    n = snprintf(c->request, len, "GET %.*s%s%.*s HTTP/1.0\r\n"
                 "Host: %s\r\nUser-Agent: scout/%s\r\nAccept: */*\r\n"
                 "Connection: close\r\n\r\n", (int)plen, path,
                 qlen ? "?" : "", (int)qlen, query, c->label, SCOUT_VERSION);
    if (n < 0 || (size_t)n >= len)
        goto oom;
    c->request_len = (size_t)n;

    return set_addr(c, t + u.field_data[UF_HOST].off,
                    u.field_data[UF_HOST].len,
                    (u.field_set & (1 << UF_PORT)) ? u.port : 80, err);
oom:
    snprintf(err, SCOUT_ERR_LEN, "out of memory");
    return SCOUT_ERROR;
}

scout_check_t *
scout_check_new(struct ev_loop *loop, const scout_check_conf_t *conf,
                scout_check_fn on_change, void *ud, char *err)
{
    scout_check_t *c;
    int k = conf->kind;

    if (k < SCOUT_CHECK_TCP || k > SCOUT_CHECK_LUA) {
        snprintf(err, SCOUT_ERR_LEN, "unknown check kind %d", k);
        return NULL;
    }
    if (conf->interval_ms < 0 || conf->timeout_ms < 0 || conf->rise < 0
        || conf->fall < 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s check: interval, timeout, rise and "
                 "fall must not be negative", kind_names[k]);
        return NULL;
    }
    if (k == SCOUT_CHECK_LUA ? conf->lua_fn == NULL
        : conf->target == NULL || conf->target[0] == '\0') {
        snprintf(err, SCOUT_ERR_LEN, "%s check: no %s", kind_names[k],
                 k == SCOUT_CHECK_LUA ? "function" : "target");
        return NULL;
    }
    if (k == SCOUT_CHECK_EXEC && !ev_is_default_loop(loop)) {
        snprintf(err, SCOUT_ERR_LEN, "exec check: needs libev's default "
                 "loop (ev_child)");
        return NULL;
    }

    if ((c = calloc(1, sizeof(*c))) == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->kind = k;
    c->fd = -1;
    c->timeout_ms = conf->timeout_ms ? conf->timeout_ms
                                     : SCOUT_CHECK_DEFAULT_TIMEOUT_MS;
    c->interval = (conf->interval_ms ? conf->interval_ms
                   : SCOUT_CHECK_DEFAULT_INTERVAL_MS) / 1000.0;
    c->timeout = c->timeout_ms / 1000.0;
    c->rise = conf->rise ? conf->rise : SCOUT_CHECK_DEFAULT_RISE;
    c->fall = conf->fall ? conf->fall : SCOUT_CHECK_DEFAULT_FALL;
    c->lua_fn = conf->lua_fn;
    c->lua_ud = conf->lua_ud;
    c->on_change = on_change;
    c->ud = ud;
    snprintf(c->reason, sizeof(c->reason), "not checked yet");
    if (k != SCOUT_CHECK_LUA && (c->target = strdup(conf->target)) == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        goto fail;
    }
    if (k == SCOUT_CHECK_TCP && setup_tcp(c, err) != SCOUT_OK)
        goto fail;
    if (k == SCOUT_CHECK_HTTP && setup_http(c, err) != SCOUT_OK)
        goto fail;

    ev_init(&c->round, on_round);
    c->round.data = c;
    ev_init(&c->deadline, on_deadline);
    c->deadline.data = c;
    ev_init(&c->io, on_io);
    c->io.data = c;
    ev_child_init(&c->child, on_child, 0, 0);
    c->child.data = c;
    arm_round(c, 0.);           /* first round on the next iteration */
    return c;

fail:
    free(c->request);
    free(c->label);
    free(c->target);
    free(c);
    return NULL;
}

void
scout_check_free(scout_check_t *c)
{
    if (c == NULL)
        return;
    ev_timer_stop(c->loop, &c->round);
    stop_probe(c);
    ev_child_stop(c->loop, &c->child);
    if (c->pid > 0) {
        int st;
        /* libev may have reaped it already (its SIGCHLD handler waits for
         * any child), in which case waitpid says ECHILD: fine */
        kill(-c->pid, SIGKILL);
        while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    free(c->request);
    free(c->label);
    free(c->target);
    free(c);
}

int
scout_check_up(const scout_check_t *c)
{
    return c->up;
}

const char *
scout_check_reason(const scout_check_t *c)
{
    return c->reason;
}
