/*
 * check_harness.h - what the health checks' test binaries share: the one
 * libev loop spun until a condition holds, a count of every connect() (the
 * probes started, which "nothing changed" assertions wait on instead of a
 * sleep), the on_change recorder, /proc helpers that prove children are
 * gone, a TCP listener and a tiny HTTP server on loopback.
 *
 * Why a header: test_check.c (the TCP, HTTP and Lua probes, the settings)
 * and test_check_exec.c (commands: exit status, timeouts that kill the whole
 * group, freeing from every completion path) drive agent/register/check.c
 * against the same real peers; one copy keeps them alike.  Every function is
 * static, as in testing.h: each binary is one translation unit.
 */
#ifndef SCOUT_TESTS_CHECK_HARNESS_H
#define SCOUT_TESTS_CHECK_HARNESS_H

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

static int
lua_up(void *ud, char *reason, size_t len)
{
    return 1;
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

#endif
