/*
 * zkpoll.h — the smallest correct poll(2) driver for libzookeeper_st, shared by
 * the benchmark's raw watcher and writer.
 *
 * Why a separate copy and not agent/'s libev glue: the raw client is the
 * baseline scout is measured against, so it must not share scout's code. It
 * still avoids the pitfalls in docs/notes (stale fd after an error return,
 * dead socket after a failed ping, per-call name resolution).
 */
#ifndef ZKPOLL_H
#define ZKPOLL_H

#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <zookeeper/zookeeper.h>

static inline int64_t
zkpoll_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * One loop turn: ask interest, poll the ZooKeeper fd plus extra_fd (or -1),
 * process. Returns -1 if the session is gone (expired / auth failed), else 1
 * if extra_fd is readable, else 0.
 */
static inline int
zkpoll_once(zhandle_t *zh, int extra_fd)
{
    int fd = -1, interest = 0, rc, to, n = 0, zi = -1, ei = -1, events = 0;
    struct timeval tv = {0, 0};
    struct pollfd p[2];

    rc = zookeeper_interest(zh, &fd, &interest, &tv);
    if (rc == ZINVALIDSTATE)
        return -1;
    if (fd != -1 && fcntl(fd, F_GETFD) == -1)
        fd = -1;                                   /* closed behind our back */
    if (fd != -1 && rc != ZOK)
        interest |= ZOOKEEPER_READ;                /* let EOF reach process */
    if (fd != -1 && interest) {
        zi = n;
        p[n].fd = fd;
        p[n].events = (interest & ZOOKEEPER_READ ? POLLIN : 0)
                    | (interest & ZOOKEEPER_WRITE ? POLLOUT : 0);
        p[n++].revents = 0;
    }
    if (extra_fd >= 0) {
        ei = n;
        p[n].fd = extra_fd;
        p[n].events = POLLIN;
        p[n++].revents = 0;
    }
    to = (int) (tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
    if (rc != ZOK && to < 10)
        to = 10;                                   /* back-off on errors */
    if (poll(p, n, to) > 0 && zi >= 0) {
        if (p[zi].revents & (POLLIN | POLLHUP | POLLERR))
            events |= ZOOKEEPER_READ;
        if (p[zi].revents & POLLOUT)
            events |= ZOOKEEPER_WRITE;
    }
    zookeeper_process(zh, events);
    return ei >= 0 && (p[ei].revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

static inline zhandle_t *
zkpoll_connect(const char *hosts, int timeout_ms, watcher_fn w, void *ctx)
{
    zhandle_t *zh;

    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    zh = zookeeper_init(hosts, w, timeout_ms, NULL, ctx, 0);
    if (zh)
        zoo_set_servers_resolution_delay(zh, -1);
    return zh;
}

#endif
