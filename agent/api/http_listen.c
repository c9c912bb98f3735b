/*
 * http_listen.c - where and how scout's HTTP API listens (see
 * http_listen.h).
 *
 * Why this shape: the API has no authentication, so the address itself is
 * the access control. Only a unix socket born 0600 or a literal loopback
 * address is accepted; names are not resolved, and a path that holds
 * anything but a stale socket is never deleted. Accepting is non-blocking
 * and batched so a burst cannot starve the loop, and running out of fds
 * pauses the watcher rather than spinning on it. Never listen off loopback,
 * never call ev_run, and never decide here whether a connection is served:
 * that is http.c's, which counts them.
 */

#define _GNU_SOURCE /* accept4 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "api/http_listen.h"
#include "log.h"
#include "scout.h"

#define LOG(lvl, ...) scout_log(SCOUT_LOG_##lvl, "http", __VA_ARGS__)

#define ACCEPT_RETRY   1.0          /* back-off after EMFILE and friends */
#define ACCEPT_BATCH   64           /* fairness to the rest of the loop */

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    scout_http_listen_t *l = w->data;
    int                  i, fd;

    (void) revents;
    for (i = 0; i < ACCEPT_BATCH; i++) {
        fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (fd < 0) {
            /* The connection stays in the backlog, so a level-triggered
             * watcher would spin on EMFILE: pause accepting instead. */
            LOG(WARN, "accept: %s; pausing %.0fs", strerror(errno),
                ACCEPT_RETRY);
            ev_io_stop(loop, &l->aio);
            ev_timer_set(&l->retry, ACCEPT_RETRY, 0.);
            ev_timer_start(loop, &l->retry);
            return;
        }
        l->on_accept(l->ud, fd);
    }
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) revents;
    ev_io_start(loop, &((scout_http_listen_t *) w->data)->aio);
}

static int listen_unix(scout_http_listen_t *l, const char *addr,
                       const char *path, char *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat        st;
    mode_t             old;
    int                rc, fd;

    if (*path == '\0' || strlen(path) >= sizeof(sa.sun_path))
        return scout_seterr(err, "%s: socket path is empty or too long",
                                 addr);
    strcpy(sa.sun_path, path);

    /* Replace only a socket nobody answers on: anything else there is a
     * live agent or something that is not ours to delete. */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return scout_seterr(err, "%s: exists and is not a socket; "
                                     "refusing to replace it", addr);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        rc = fd < 0 ? -1 : connect(fd, (struct sockaddr *) &sa, sizeof(sa));
        if (rc == 0 || errno != ECONNREFUSED) {
            scout_seterr(err, "%s: %s", addr, rc == 0 || errno == EAGAIN
                              ? "another process is listening on it"
                              : strerror(errno));
            if (fd >= 0)
                close(fd);
            return SCOUT_ERROR;
        }
        close(fd);
        if (unlink(path) != 0 && errno != ENOENT)
            return scout_seterr(err, "%s: unlink: %s", addr,
                                     strerror(errno));
        LOG(INFO, "replaced stale socket %s", path);
    } else if (errno != ENOENT) {
        return scout_seterr(err, "%s: %s", addr, strerror(errno));
    }

    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        return scout_seterr(err, "%s: socket: %s", addr, strerror(errno));
    /* The file mode is the API's only access control, so the socket is
     * born 0600 rather than chmod'ed after a window. umask is process-wide:
     * safe only because the agent is single-threaded. */
    old = umask(0177);
    rc = bind(l->fd, (struct sockaddr *) &sa, sizeof(sa));
    umask(old);
    if (rc != 0)
        return scout_seterr(err, "%s: bind: %s", addr, strerror(errno));
    if (lstat(path, &st) != 0 || (l->unix_path = strdup(path)) == NULL) {
        scout_seterr(err, "%s: %s", addr, strerror(errno));
        unlink(path);
        return SCOUT_ERROR;
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    return SCOUT_OK;
}

static int listen_tcp(scout_http_listen_t *l, const char *addr, char *err)
{
    struct sockaddr_storage ss;
    struct sockaddr_in     *sin = (struct sockaddr_in *) &ss;
    struct sockaddr_in6    *sin6 = (struct sockaddr_in6 *) &ss;
    socklen_t               slen;
    const char             *host = addr + (addr[0] == '['), *colon, *p;
    char                    buf[64];
    int                     v6 = addr[0] == '[', port = 0, one = 1;

    colon = v6 ? strchr(addr, ']') : strrchr(addr, ':');
    if (colon == NULL || (v6 && *++colon != ':'))
        return scout_seterr(err, "%s: expected unix:/path, HOST:PORT "
                                 "or [::1]:PORT", addr);
    if (!v6 && memchr(host, ':', (size_t) (colon - host)) != NULL)
        return scout_seterr(err, "%s: write IPv6 addresses as "
                                 "[::1]:PORT", addr);
    for (p = colon + 1; *p >= '0' && *p <= '9' && port <= 65535; p++)
        port = port * 10 + (*p - '0');
    if (p == colon + 1 || *p != '\0' || port > 65535)
        return scout_seterr(err, "%s: bad port", addr);
    if ((size_t) (colon - host - v6) >= sizeof(buf))
        goto loopback;
    memcpy(buf, host, (size_t) (colon - host - v6));
    buf[colon - host - v6] = '\0';

    /* No resolver: /etc/hosts could point "localhost" anywhere. */
    memset(&ss, 0, sizeof(ss));
    if (!v6 && strcmp(buf, "localhost") == 0)
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (v6 ? inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1
                : inet_pton(AF_INET, buf, &sin->sin_addr) != 1)
        goto loopback;
    /* ::ffff:127.0.0.1 is refused too: one spelling per address. */
    if (v6 ? !IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)
           : (ntohl(sin->sin_addr.s_addr) >> 24) != 127)
        goto loopback;
    ss.ss_family = v6 ? AF_INET6 : AF_INET;
    if (v6)
        sin6->sin6_port = htons((uint16_t) port);
    else
        sin->sin_port = htons((uint16_t) port);
    slen = v6 ? sizeof(*sin6) : sizeof(*sin);

    l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   0);
    if (l->fd < 0)
        return scout_seterr(err, "%s: socket: %s", addr, strerror(errno));
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l->fd, (struct sockaddr *) &ss, slen) != 0
        || getsockname(l->fd, (struct sockaddr *) &ss, &slen) != 0)
        return scout_seterr(err, "%s: bind: %s", addr, strerror(errno));
    l->port = ntohs(v6 ? sin6->sin6_port : sin->sin_port);
    return SCOUT_OK;

loopback:
    return scout_seterr(err, "%s: api must listen on loopback or a "
                             "unix socket", addr);
}

int
scout_http_listen_open(scout_http_listen_t *l, struct ev_loop *loop,
                       const char *addr, scout_http_accept_fn on_accept,
                       void *ud, char *err)
{
    *l = (scout_http_listen_t) { .loop = loop, .on_accept = on_accept,
        .ud = ud, .fd = -1 };

    if (strncmp(addr, "unix:", 5) == 0) {
        if (listen_unix(l, addr, addr + 5, err) != SCOUT_OK)
            goto fail;
    } else if (listen_tcp(l, addr, err) != SCOUT_OK) {
        goto fail;
    }
    if (listen(l->fd, SOMAXCONN) != 0) {
        scout_seterr(err, "%s: listen: %s", addr, strerror(errno));
        goto fail;
    }
    ev_io_init(&l->aio, accept_cb, l->fd, EV_READ);
    ev_init(&l->retry, retry_cb);
    l->aio.data = l->retry.data = l;
    if (on_accept != NULL)   /* NULL: another server accepts on l->fd */
        ev_io_start(loop, &l->aio);
    LOG(INFO, "listening on %s", addr);
    return SCOUT_OK;

fail:
    if (l->fd >= 0)
        close(l->fd);
    if (l->unix_path != NULL)
        unlink(l->unix_path);   /* just bound: it is ours */
    free(l->unix_path);
    *l = (scout_http_listen_t) { .fd = -1 };
    return SCOUT_ERROR;
}

void
scout_http_listen_close(scout_http_listen_t *l)
{
    struct stat st;

    ev_io_stop(l->loop, &l->aio);
    ev_timer_stop(l->loop, &l->retry);
    close(l->fd);
    /* A newer agent may have replaced our socket; leave that one alone. */
    if (l->unix_path != NULL && lstat(l->unix_path, &st) == 0
        && st.st_dev == l->dev && st.st_ino == l->ino)
        unlink(l->unix_path);
    free(l->unix_path);
    l->unix_path = NULL;
}
