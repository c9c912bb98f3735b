/*
 * test_check.c - agent/register/check.c against real local servers on one libev loop.
 *
 * Why: a health check is only as good as its behaviour against real peers:
 * refused connects, servers that answer 503 or never answer, commands that
 * hang and must be killed without leaving zombies, and the rise/fall
 * counting that decides when a registration comes and goes.  So the TCP and
 * HTTP servers here are real loopback sockets driven by the same default
 * loop as the checks (never blocking), exec checks spawn real /bin/sh, and
 * /proc is read to prove children are gone.  Meant to run under ASan/UBSan
 * and valgrind as well.
 *
 * Build: make tests-c (links the agent's objects).
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "testing.h"
#include "register/check.h"
#include "log.h"
#include "scout.h"



static struct ev_loop *loop;

static double
now_s(void)
{
    return scout_now_ms() / 1000.0;
}

/* Runs the loop until cond holds or secs pass; a 5 ms ticker keeps
 * EVRUN_ONCE from sleeping longer than that.  Yields cond. */
#define RUN_UNTIL(cond, secs) ({                                          \
    double end_ = now_s() + (secs);                                       \
    while (!(cond) && now_s() < end_)                                     \
        ev_run(loop, EVRUN_ONCE);                                        \
    (cond); })


static void on_tick(struct ev_loop *l, ev_timer *w, int revents) { }

/* Every connect() in this process, the TCP and HTTP probes' included: a
 * count of probes started, which "nothing changed" assertions wait on
 * instead of a sleep (a refused probe leaves no trace at any server). */
static int nconnects;

int
connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    nconnects++;
    return (int)syscall(SYS_connect, fd, sa, len);
}

/* Runs the loop until n more probes have started (so n - 1 have finished). */
#define RUN_PROBES(n) ({ int k_ = nconnects + (n);                         \
                         RUN_UNTIL(nconnects >= k_, 5); })

/* Lines in a file (0 if it does not exist): exec checks append to one. */
static int
lines_in(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, ch;

    if (f == NULL)
        return 0;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

static int
exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- on_change recorder -------------------------------------------------- */

typedef struct {
    int            n;           /* flips */
    int            up;
    char           reason[SCOUT_ERR_LEN];
    int            at[8];       /* lua call count at each flip */
    int           *calls;
    int            free_self;
    scout_check_t *c;
} rec_t;

static void
on_change(void *ud, int up, const char *reason)
{
    rec_t *r = ud;

    if (r->n < 8 && r->calls != NULL)
        r->at[r->n] = *r->calls;
    r->n++;
    r->up = up;
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    if (r->free_self) {
        scout_check_free(r->c);
        r->c = NULL;
    }
}

static scout_check_t *
mk(rec_t *r, int kind, const char *target, int interval, int timeout,
   int rise, int fall)
{
    char err[SCOUT_ERR_LEN] = "";
    scout_check_conf_t conf = {
        .kind = kind, .target = target, .interval_ms = interval,
        .timeout_ms = timeout, .rise = rise, .fall = fall,
    };
    scout_check_t *c;

    memset(r, 0, sizeof(*r));
    c = scout_check_new(loop, &conf, on_change, r, err);
    CHECK(c != NULL, "new %s: %s", target, err);
    r->c = c;
    return c;
}

/* ---- /proc helpers ------------------------------------------------------- */

static int
proc_stat(pid_t pid, char *state, pid_t *ppid, pid_t *pgrp)
{
    char path[64], buf[512], *p;
    FILE *f;
    int ok;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    ok = fgets(buf, sizeof(buf), f) != NULL;
    fclose(f);
    if (!ok || (p = strrchr(buf, ')')) == NULL)
        return -1;
    return sscanf(p + 1, " %c %d %d", state, ppid, pgrp) == 3 ? 0 : -1;
}

/* the first child of this process, or 0 */
static pid_t
find_child(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t me = getpid(), found = 0;

    while (d != NULL && (e = readdir(d)) != NULL) {
        pid_t pid = atoi(e->d_name), ppid, pgrp;
        char st;
        if (pid > 0 && proc_stat(pid, &st, &ppid, &pgrp) == 0 && ppid == me) {
            found = pid;
            break;
        }
    }
    if (d != NULL)
        closedir(d);
    return found;
}

/* processes of a group that are not zombies (an orphaned grandchild may sit
 * as a zombie of pid 1 for a while: that is pid 1's to reap, not ours) */
static int
group_alive(pid_t pgid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    while (d != NULL && (e = readdir(d)) != NULL) {
        pid_t pid = atoi(e->d_name), ppid, pgrp;
        char st;
        if (pid > 0 && proc_stat(pid, &st, &ppid, &pgrp) == 0
            && pgrp == pgid && st != 'Z')
            n++;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static int
gone(pid_t pid)
{
    return kill(pid, 0) == -1 && errno == ESRCH;
}

static int
count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    while (d != NULL && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    if (d != NULL)
        closedir(d);
    return n - 1;               /* the DIR's own fd */
}

/* ---- a TCP listener that accepts and closes ------------------------------ */

typedef struct {
    int   fd;
    int   port;
    ev_io w;
    void (*on_conn)(int fd);
} listener_t;

static void
on_accept(struct ev_loop *l, ev_io *w, int revents)
{
    listener_t *ls = w->data;
    int fd;

    while ((fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC))
           >= 0) {
        if (ls->on_conn != NULL)
            ls->on_conn(fd);
        else
            close(fd);
    }
}

static int
listener_open(listener_t *ls, int family, int port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    int one = 1;

    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sin->sin_port = htons((uint16_t)port);
        len = sizeof(*sin);
    } else {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        sin6->sin6_port = htons((uint16_t)port);
        len = sizeof(*sin6);
    }
    ls->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls->fd < 0)
        return -1;
    setsockopt(ls->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(ls->fd, (struct sockaddr *)&ss, len) != 0
        || listen(ls->fd, 64) != 0
        || getsockname(ls->fd, (struct sockaddr *)&ss, &len) != 0) {
        close(ls->fd);
        ls->fd = -1;
        return -1;
    }
    ls->port = ntohs(family == AF_INET ? sin->sin_port : sin6->sin6_port);
    ev_io_init(&ls->w, on_accept, ls->fd, EV_READ);
    ls->w.data = ls;
    ev_io_start(loop, &ls->w);
    return 0;
}

static void
listener_close(listener_t *ls)
{
    if (ls->fd < 0)
        return;
    ev_io_stop(loop, &ls->w);
    close(ls->fd);
    ls->fd = -1;
}

/* ---- a tiny HTTP server -------------------------------------------------- */

enum { H_STATUS, H_HANG, H_GARBAGE, H_CLOSE, H_HUGE };

static int  http_mode = H_STATUS;
static int  http_status = 200;
static char last_request[2048];
static int  nrequests;

typedef struct conn_s {
    int            fd;
    ev_io          w;
    char           in[2048];
    size_t         in_len;
    char          *out;
    size_t         out_len, out_off;
    struct conn_s *next;
} conn_t;

static conn_t *conns;

static void
conn_close(conn_t *k)
{
    conn_t **pp;

    for (pp = &conns; *pp != NULL; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    ev_io_stop(loop, &k->w);
    close(k->fd);
    free(k->out);
    free(k);
}

static void
conns_close_all(void)
{
    while (conns != NULL)
        conn_close(conns);
}

static void
conn_write(conn_t *k)
{
    while (k->out_off < k->out_len) {
        ssize_t n = send(k->fd, k->out + k->out_off, k->out_len - k->out_off,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            conn_close(k);
            return;
        }
        k->out_off += (size_t)n;
    }
    conn_close(k);
}

static void
respond(conn_t *k)
{
    size_t cap = 100 * 1024;

    k->out = malloc(cap);
    switch (http_mode) {
    case H_HANG:
        ev_io_stop(loop, &k->w);        /* keep the socket, say nothing */
        return;
    case H_CLOSE:
        conn_close(k);
        return;
    case H_GARBAGE:
        k->out_len = (size_t)snprintf(k->out, cap, "HELLO THERE\r\n\r\n");
        break;
    case H_HUGE:                        /* headers that never end */
        k->out_len = (size_t)snprintf(k->out, cap, "HTTP/1.1 200 OK\r\nX: ");
        memset(k->out + k->out_len, 'a', 80 * 1024);
        k->out_len += 80 * 1024;
        break;
    default:
        k->out_len = (size_t)snprintf(k->out, cap, "HTTP/1.1 %d Whatever\r\n"
                                      "Content-Length: 2\r\nConnection: close"
                                      "\r\n\r\nok", http_status);
    }
    ev_io_stop(loop, &k->w);
    ev_io_set(&k->w, k->fd, EV_WRITE);
    ev_io_start(loop, &k->w);
    conn_write(k);
}

static void
on_conn_io(struct ev_loop *l, ev_io *w, int revents)
{
    conn_t *k = w->data;
    ssize_t n;

    if (k->out != NULL) {
        conn_write(k);
        return;
    }
    n = recv(k->fd, k->in + k->in_len, sizeof(k->in) - 1 - k->in_len, 0);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        conn_close(k);
        return;
    }
    k->in_len += (size_t)n;
    k->in[k->in_len] = '\0';
    if (strstr(k->in, "\r\n\r\n") != NULL) {
        snprintf(last_request, sizeof(last_request), "%s", k->in);
        nrequests++;
        respond(k);
    }
}

static void
http_on_conn(int fd)
{
    conn_t *k = calloc(1, sizeof(*k));

    k->fd = fd;
    k->next = conns;
    conns = k;
    ev_io_init(&k->w, on_conn_io, fd, EV_READ);
    k->w.data = k;
    ev_io_start(loop, &k->w);
}

/* ---- tests --------------------------------------------------------------- */

static void
test_tcp(void)
{
    listener_t ls = { .fd = -1 };
    char target[64], want[128];
    scout_check_t *c;
    rec_t r;
    int port;

    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen: %s", strerror(errno));
    port = ls.port;
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    c = mk(&r, SCOUT_CHECK_TCP, target, 50, 500, 2, 2);
    CHECK(!scout_check_up(c), "starts down");
    CHECK(strcmp(scout_check_reason(c), "not checked yet") == 0, "%s",
          scout_check_reason(c));

    /* one success is not enough with rise 2 */
    CHECK(RUN_UNTIL(strcmp(scout_check_reason(c), "not checked yet") != 0, 2),
          "first round");
    CHECK(!scout_check_up(c) && r.n == 0, "up after 1 of rise 2");
    snprintf(want, sizeof(want), "tcp %s: connected", target);
    CHECK(strcmp(scout_check_reason(c), want) == 0, "%s",
          scout_check_reason(c));

    CHECK(RUN_UNTIL(r.n == 1, 2), "rise");
    CHECK(r.up == 1 && scout_check_up(c), "up");
    CHECK(strcmp(r.reason, want) == 0, "%s", r.reason);
    CHECK(RUN_PROBES(3), "more probes while up");
    CHECK(r.n == 1, "steady up fires nothing: %d", r.n);

    listener_close(&ls);
    CHECK(RUN_UNTIL(r.n == 2, 2), "fall");
    snprintf(want, sizeof(want), "tcp %s: connection refused", target);
    CHECK(r.up == 0 && !scout_check_up(c), "down");
    CHECK(strcmp(r.reason, want) == 0, "%s", r.reason);
    CHECK(RUN_PROBES(3), "more probes while down");
    CHECK(r.n == 2, "steady down fires nothing: %d", r.n);

    CHECK(listener_open(&ls, AF_INET, port) == 0, "reopen: %s",
          strerror(errno));
    CHECK(RUN_UNTIL(r.n == 3, 2), "rise again");
    CHECK(r.up == 1 && scout_check_up(c), "up again");
    scout_check_free(c);
    listener_close(&ls);
}

static void
test_tcp_refused_and_names(void)
{
    listener_t ls = { .fd = -1 };
    char target[64], want[128];
    scout_check_t *c;
    rec_t r;
    int port;

    /* a port nobody listens on: bind one, close it */
    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    port = ls.port;
    listener_close(&ls);
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    c = mk(&r, SCOUT_CHECK_TCP, target, 30, 500, 1, 1);
    CHECK(RUN_PROBES(3), "probes refused");
    snprintf(want, sizeof(want), "tcp %s: connection refused", target);
    CHECK(r.n == 0 && !scout_check_up(c), "refused stays down");
    CHECK(strcmp(scout_check_reason(c), want) == 0, "%s",
          scout_check_reason(c));
    scout_check_free(c);

    /* localhost means 127.0.0.1 */
    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    snprintf(target, sizeof(target), "localhost:%d", ls.port);
    c = mk(&r, SCOUT_CHECK_TCP, target, 30, 500, 1, 1);
    CHECK(RUN_UNTIL(r.n == 1, 2) && r.up, "localhost up: %s", r.reason);
    scout_check_free(c);
    listener_close(&ls);
}

/* An IPv6 literal target, where this host has ::1 (not every container). */
static void
test_tcp_ipv6(void)
{
    listener_t ls = { .fd = -1 };
    char target[64];
    scout_check_t *c;
    rec_t r;

    if (listener_open(&ls, AF_INET6, 0) != 0) {
        SKIP("no [::1]: %s", strerror(errno));
        return;
    }
    snprintf(target, sizeof(target), "[::1]:%d", ls.port);
    c = mk(&r, SCOUT_CHECK_TCP, target, 30, 500, 1, 1);
    CHECK(RUN_UNTIL(r.n == 1, 2) && r.up, "[::1] up: %s", r.reason);
    scout_check_free(c);
    listener_close(&ls);
}

static void
test_http(void)
{
    listener_t ls = { .fd = -1, .on_conn = http_on_conn };
    char target[128], host[64];
    scout_check_t *c;
    rec_t r;
    int fds;

    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    fds = count_fds();
    snprintf(target, sizeof(target), "http://127.0.0.1:%d/health?x=1",
             ls.port);
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", ls.port);
    http_mode = H_STATUS;
    http_status = 200;
    c = mk(&r, SCOUT_CHECK_HTTP, target, 50, 300, 2, 2);

    CHECK(RUN_UNTIL(r.n == 1, 2) && r.up, "200 up: %s", r.reason);
    CHECK(strcmp(r.reason, "http 200") == 0, "%s", r.reason);
    CHECK(strncmp(last_request, "GET /health?x=1 HTTP/1.0\r\n", 26) == 0,
          "request line: %s", last_request);
    CHECK(strstr(last_request, host) != NULL, "Host: %s", last_request);
    CHECK(strstr(last_request, "\r\nConnection: close\r\n") != NULL, "%s",
          last_request);

    http_status = 503;
    CHECK(RUN_UNTIL(r.n == 2, 2) && !r.up, "503 down");
    CHECK(strcmp(r.reason, "http 503") == 0, "%s", r.reason);

    http_status = 204;                  /* any 2xx */
    CHECK(RUN_UNTIL(r.n == 3, 2) && r.up, "204 up: %s", r.reason);
    CHECK(strcmp(r.reason, "http 204") == 0, "%s", r.reason);

    /* fall 2: down only after the second request that never got an
     * answer (r.at counts the requests the server had read at each flip) */
    nrequests = 0;
    r.calls = &nrequests;
    http_mode = H_HANG;
    CHECK(RUN_UNTIL(r.n == 4, 3) && !r.up, "hang down");
    CHECK(strcmp(r.reason, "timeout after 300 ms") == 0, "%s", r.reason);
    CHECK(r.at[3] >= 2, "down after %d hung requests, fall is 2", r.at[3]);
    r.calls = NULL;
    conns_close_all();

    http_mode = H_GARBAGE;
    CHECK(RUN_UNTIL(strstr(scout_check_reason(c), "bad response") != NULL,
                    2), "garbage: %s", scout_check_reason(c));
    http_mode = H_CLOSE;
    CHECK(RUN_UNTIL(strstr(scout_check_reason(c), "connection closed before "
                           "the headers ended") != NULL, 2), "close: %s",
          scout_check_reason(c));
    http_mode = H_HUGE;
    CHECK(RUN_UNTIL(strstr(scout_check_reason(c), "no end of headers in "
                           "65536 bytes") != NULL, 2), "huge: %s",
          scout_check_reason(c));
    CHECK(r.n == 4, "no flips while down: %d", r.n);

    /* free in the middle of a request: the socket goes too */
    http_mode = H_HANG;
    nrequests = 0;
    RUN_UNTIL(nrequests > 0, 2);
    scout_check_free(c);
    conns_close_all();
    CHECK(count_fds() == fds, "fds %d -> %d", fds, count_fds());
    listener_close(&ls);
}

static int lua_calls;
static const int lua_script[] = { 1, 1, 0, 1, 1, 1, 0, 1, 0, 0, 1, 1 };

static int
lua_fn(void *ud, char *reason, size_t len)
{
    int i = lua_calls++, ok;

    CHECK(ud == &lua_calls, "lua_ud passed through");
    ok = i < (int)(sizeof(lua_script) / sizeof(lua_script[0]))
         ? lua_script[i] : 0;
    if (i == 5)
        snprintf(reason, len, "fine at %d", i + 1);
    return ok;
}

static int
lua_long(void *ud, char *reason, size_t len)
{
    memset(reason, 'x', len);           /* no NUL: the check must cope */
    (*(int *)ud)++;
    return 1;
}

static void
test_lua(void)
{
    char err[SCOUT_ERR_LEN];
    scout_check_conf_t conf = {
        .kind = SCOUT_CHECK_LUA, .interval_ms = 10, .rise = 3, .fall = 2,
        .lua_fn = lua_fn, .lua_ud = &lua_calls,
    };
    scout_check_t *c;
    rec_t r;
    int n = 0;

    memset(&r, 0, sizeof(r));
    r.calls = &lua_calls;
    c = scout_check_new(loop, &conf, on_change, &r, err);
    CHECK(c != NULL, "%s", err);
    CHECK(RUN_UNTIL(lua_calls >= 16, 2), "calls %d", lua_calls);
    /* 1 1 0 1 1 1 -> up at call 6; 0 1 0 0 -> down at call 10; 1 1: no */
    CHECK(r.n == 2, "flips %d", r.n);
    CHECK(r.at[0] == 6 && r.at[1] == 10, "flipped at calls %d, %d",
          r.at[0], r.at[1]);
    CHECK(!scout_check_up(c), "ends down");
    CHECK(strcmp(r.reason, "lua down") == 0, "%s", r.reason);
    scout_check_free(c);

    /* the reason given at the up flip */
    lua_calls = 0;
    memset(&r, 0, sizeof(r));
    r.calls = &lua_calls;
    r.free_self = 0;
    c = scout_check_new(loop, &conf, on_change, &r, err);
    CHECK(RUN_UNTIL(r.n == 1, 2), "up");
    CHECK(strcmp(r.reason, "fine at 6") == 0, "%s", r.reason);
    scout_check_free(c);

    /* a reason with no NUL is cut, not overrun */
    conf.lua_fn = lua_long;
    conf.lua_ud = &n;
    conf.interval_ms = 60000;
    memset(&r, 0, sizeof(r));
    c = scout_check_new(loop, &conf, on_change, &r, err);
    CHECK(RUN_UNTIL(n == 1, 2), "called");
    CHECK(strlen(scout_check_reason(c)) == SCOUT_ERR_LEN - 1, "len %zu",
          strlen(scout_check_reason(c)));
    scout_check_free(c);
}

/* A temp path that does not exist (yet). */
static void
temp_path(char *buf, size_t len)
{
    int fd;

    snprintf(buf, len, "/tmp/scout-check-XXXXXX");
    fd = mkstemp(buf);
    close(fd);
    unlink(buf);
}

/* The exit status is the verdict; a steady state fires nothing. */
static void
test_exec_status(void)
{
    char flag[64], runs[80], cmd[256];
    scout_check_t *c;
    rec_t r;
    int fd;

    c = mk(&r, SCOUT_CHECK_EXEC, "true", 30, 2000, 2, 1);
    CHECK(RUN_UNTIL(r.n == 1, 3) && r.up, "true up");
    CHECK(strcmp(r.reason, "exec exited 0") == 0, "%s", r.reason);
    scout_check_free(c);

    /* every run appends a line: three runs later, still no flip */
    temp_path(flag, sizeof(flag));
    snprintf(runs, sizeof(runs), "%s.runs", flag);
    snprintf(cmd, sizeof(cmd), "echo run >> %s; false", runs);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 30, 2000, 1, 1);
    CHECK(RUN_UNTIL(strcmp(scout_check_reason(c), "exec exited 1") == 0, 3),
          "false: %s", scout_check_reason(c));
    CHECK(RUN_UNTIL(lines_in(runs) >= 3, 3), "runs: %d", lines_in(runs));
    CHECK(r.n == 0 && !scout_check_up(c), "false stays down");
    scout_check_free(c);
    unlink(runs);

    /* up, then down when the flag file appears */
    snprintf(cmd, sizeof(cmd), "test ! -e %s", flag);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 30, 2000, 1, 1);
    CHECK(RUN_UNTIL(r.n == 1, 3) && r.up, "flag absent: up");
    fd = open(flag, O_CREAT | O_WRONLY, 0600);
    close(fd);
    CHECK(RUN_UNTIL(r.n == 2, 3) && !r.up, "flag present: down");
    CHECK(strcmp(r.reason, "exec exited 1") == 0, "%s", r.reason);
    scout_check_free(c);
    unlink(flag);
    (void)fd;
}

/* A command past its timeout is killed and reaped, no zombie, before it
 * could finish on its own (it would leave a mark when done). */
static void
test_exec_timeout_kills(void)
{
    char mark[64], pidf[80], cmd[256];
    scout_check_t *c;
    pid_t pid;
    rec_t r;

    temp_path(mark, sizeof(mark));
    snprintf(cmd, sizeof(cmd), "sleep 5; touch %s", mark);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 60000, 200, 1, 1);
    CHECK(RUN_UNTIL((pid = find_child()) > 0, 2), "child started");
    CHECK(RUN_UNTIL(strcmp(scout_check_reason(c), "timeout after 200 ms")
                    == 0, 3), "timeout: %s", scout_check_reason(c));
    CHECK(RUN_UNTIL(gone(pid), 2), "child %d reaped", (int)pid);
    CHECK(!exists(mark), "killed before it finished");
    CHECK(find_child() == 0, "no children left");
    scout_check_free(c);

    /* the whole process group dies, not just sh */
    snprintf(pidf, sizeof(pidf), "%s.pid", mark);
    snprintf(cmd, sizeof(cmd), "echo $$ > %s; sleep 5; true", pidf);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 60000, 300, 1, 1);
    CHECK(RUN_UNTIL(strcmp(scout_check_reason(c), "timeout after 300 ms")
                    == 0, 3), "timeout: %s", scout_check_reason(c));
    {
        FILE *f = fopen(pidf, "r");
        int pg = 0;
        CHECK(f != NULL && fscanf(f, "%d", &pg) == 1 && pg > 0, "pid file");
        if (f != NULL)
            fclose(f);
        CHECK(RUN_UNTIL(pg > 0 && gone(pg) && group_alive(pg) == 0, 2),
              "group %d gone (%d alive)", pg, group_alive(pg));
    }
    CHECK(find_child() == 0, "no children left");
    scout_check_free(c);
    unlink(pidf);
}

/* Free while the child runs: killed and reaped right there, not waited
 * for (it would leave a mark when done). */
static void
test_exec_free_kills(void)
{
    char mark[64], cmd[256];
    scout_check_t *c;
    pid_t pid;
    rec_t r;

    temp_path(mark, sizeof(mark));
    snprintf(cmd, sizeof(cmd), "sleep 5; touch %s", mark);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 60000, 10000, 1, 1);
    CHECK(RUN_UNTIL((pid = find_child()) > 0, 2), "child started");
    scout_check_free(c);
    CHECK(pid > 0 && gone(pid), "freed: child %d gone", (int)pid);
    CHECK(!exists(mark), "killed, not waited for");
    CHECK(find_child() == 0, "no children left");
    unlink(mark);
}

static int
lua_up(void *ud, char *reason, size_t len)
{
    return 1;
}

/* on_change may free its own check, from every completion path */
static void
test_free_in_callback(void)
{
    listener_t ls = { .fd = -1 };
    char err[SCOUT_ERR_LEN], target[64], cmd[128];
    char flag[] = "/tmp/scout-check-XXXXXX";
    scout_check_conf_t conf = {
        .kind = SCOUT_CHECK_LUA, .interval_ms = 10, .rise = 1, .fall = 1,
        .lua_fn = lua_up,
    };
    rec_t r;
    int fd;

    memset(&r, 0, sizeof(r));
    r.free_self = 1;
    r.c = scout_check_new(loop, &conf, on_change, &r, err);
    CHECK(RUN_UNTIL(r.n == 1 && r.c == NULL, 2), "lua freed itself");

    mk(&r, SCOUT_CHECK_EXEC, "true", 10, 1000, 1, 1);
    r.free_self = 1;
    CHECK(RUN_UNTIL(r.n == 1 && r.c == NULL, 2), "exec freed itself");

    /* from the deadline, with the child still unreaped */
    fd = mkstemp(flag);
    close(fd);
    unlink(flag);
    snprintf(cmd, sizeof(cmd), "test ! -e %s || sleep 5", flag);
    mk(&r, SCOUT_CHECK_EXEC, cmd, 10, 150, 1, 1);
    CHECK(RUN_UNTIL(r.n == 1, 2) && r.up, "exec up");
    r.free_self = 1;
    fd = open(flag, O_CREAT | O_WRONLY, 0600);
    close(fd);
    CHECK(RUN_UNTIL(r.n == 2 && r.c == NULL, 2), "exec freed itself on "
          "timeout");
    CHECK(strcmp(r.reason, "timeout after 150 ms") == 0, "%s", r.reason);
    CHECK(find_child() == 0, "no children left");
    unlink(flag);

    /* from the http parser's verdict */
    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    ls.on_conn = http_on_conn;
    http_mode = H_STATUS;
    http_status = 200;
    snprintf(target, sizeof(target), "http://127.0.0.1:%d/", ls.port);
    mk(&r, SCOUT_CHECK_HTTP, target, 10, 1000, 1, 1);
    r.free_self = 1;
    CHECK(RUN_UNTIL(r.n == 1 && r.c == NULL, 2), "http freed itself");
    listener_close(&ls);
    conns_close_all();

    ls.on_conn = NULL;
    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    snprintf(target, sizeof(target), "127.0.0.1:%d", ls.port);
    mk(&r, SCOUT_CHECK_TCP, target, 10, 1000, 1, 1);
    r.free_self = 1;
    CHECK(RUN_UNTIL(r.n == 1 && r.c == NULL, 2), "tcp freed itself");
    listener_close(&ls);
}

static void
expect_refused(int kind, const char *target, const char *msg)
{
    char err[SCOUT_ERR_LEN] = "";
    scout_check_conf_t conf = { .kind = kind, .target = target };
    scout_check_t *c = scout_check_new(loop, &conf, NULL, NULL, err);

    CHECK(c == NULL && strstr(err, msg) != NULL, "%s: got \"%s\"", target,
          err);
    scout_check_free(c);
}

static void
test_conf(void)
{
    char err[SCOUT_ERR_LEN];
    scout_check_conf_t conf = { .kind = SCOUT_CHECK_LUA, .lua_fn = lua_up };
    struct ev_loop *other;
    scout_check_t *c;

    CHECK(scout_check_kind_parse("tcp") == SCOUT_CHECK_TCP, "tcp");
    CHECK(scout_check_kind_parse("http") == SCOUT_CHECK_HTTP, "http");
    CHECK(scout_check_kind_parse("exec") == SCOUT_CHECK_EXEC, "exec");
    CHECK(scout_check_kind_parse("lua") == SCOUT_CHECK_LUA, "lua");
    CHECK(scout_check_kind_parse("https") == SCOUT_ERROR, "https");

    expect_refused(SCOUT_CHECK_TCP, "example.com:80", "no DNS");
    expect_refused(SCOUT_CHECK_TCP, "127.0.0.1", "want host:port");
    expect_refused(SCOUT_CHECK_TCP, "127.0.0.1:0", "bad port");
    expect_refused(SCOUT_CHECK_TCP, "127.0.0.1:99999", "want host:port");
    expect_refused(SCOUT_CHECK_TCP, "", "no target");
    expect_refused(SCOUT_CHECK_HTTP, "https://127.0.0.1/", "only http://");
    expect_refused(SCOUT_CHECK_HTTP, "http://example.com/", "no DNS");
    expect_refused(SCOUT_CHECK_HTTP, "http://u:p@127.0.0.1/", "user info");
    expect_refused(SCOUT_CHECK_HTTP, "127.0.0.1:80", "want http://");
    expect_refused(SCOUT_CHECK_HTTP, "http://127.0.0.1/a b", "want http://");
    expect_refused(SCOUT_CHECK_EXEC, NULL, "no target");
    expect_refused(42, "x", "unknown check kind");

    /* accepted: default port, [v6], zero fields take the defaults */
    c = scout_check_new(loop, &(scout_check_conf_t){ .kind = SCOUT_CHECK_HTTP,
                        .target = "http://[::1]" }, NULL, NULL, err);
    CHECK(c != NULL, "%s", err);
    scout_check_free(c);
    c = scout_check_new(loop, &conf, NULL, NULL, err);
    CHECK(c != NULL && !scout_check_up(c), "lua defaults: %s", err);
    scout_check_free(c);

    conf.lua_fn = NULL;
    CHECK(scout_check_new(loop, &conf, NULL, NULL, err) == NULL
          && strstr(err, "no function") != NULL, "%s", err);
    conf.lua_fn = lua_up;
    conf.fall = -1;
    CHECK(scout_check_new(loop, &conf, NULL, NULL, err) == NULL
          && strstr(err, "negative") != NULL, "%s", err);

    other = ev_loop_new(0);
    c = scout_check_new(other, &(scout_check_conf_t){ .kind =
                        SCOUT_CHECK_EXEC, .target = "true" }, NULL, NULL, err);
    CHECK(c == NULL && strstr(err, "default loop") != NULL, "%s", err);
    ev_loop_destroy(other);
}

/* A test that leaves no descriptor open and no child behind. */
static int fds;
#define RUN_CLEAN(call)                                                     \
    do {                                                                    \
        test_begin_(#call);                                                 \
        call;                                                               \
        CHECK(count_fds() == fds, "fds %d -> %d", fds, count_fds());        \
        CHECK(find_child() == 0, "no children left");                       \
        test_end_();                                                        \
    } while (0)

int
main(void)
{
    ev_timer tick;

    signal(SIGPIPE, SIG_IGN);
    if (getenv("SCOUT_TEST_VERBOSE") == NULL)
        scout_log_set_level(SCOUT_LOG_ERROR);
    loop = ev_default_loop(0);
    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    fds = count_fds();

    RUN_CLEAN(test_conf());
    RUN_CLEAN(test_tcp());
    RUN_CLEAN(test_tcp_refused_and_names());
    RUN_CLEAN(test_tcp_ipv6());
    RUN_CLEAN(test_http());
    RUN_CLEAN(test_lua());
    RUN_CLEAN(test_exec_status());
    RUN_CLEAN(test_exec_timeout_kills());
    RUN_CLEAN(test_exec_free_kills());
    RUN_CLEAN(test_free_in_callback());

    CHECK(count_fds() == fds, "fds %d -> %d", fds, count_fds());
    CHECK(find_child() == 0, "no children left");
    ev_timer_stop(loop, &tick);
    ev_loop_destroy(loop);
    return test_summary();
}
