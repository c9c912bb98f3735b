/*
 * session_close.c -- closing many ZooKeeper sessions at once, at exit or at
 * a pool's shutdown: every close request on the wire first, then one bounded
 * wait for all the servers' answers, instead of zookeeper_close()'s round
 * trip per session.  It writes only a whole close frame to an idle
 * connection's socket and never runs the client's completions itself.
 */
#include "zk/session_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "loop.h"
#include "scout.h"

/* ---- closing many sessions at once (exit) --------------------------------
 *
 * zookeeper_close() (3.8, single-threaded) sends the close request, then
 * blocks in poll() for up to 1.5 s until the server answers by ending the
 * connection: n sessions closed one after the other cost n round trips
 * through the server's request pipeline (6.8 s for 50 sessions at a million
 * endpoints, where each close also drops that session's watches).  The
 * client has no call that only sends the close, so this sends it: on an idle
 * connected handle (nothing queued, so no frame is half written) the close
 * request is 12 bytes, the frame length 8 and RequestHeader(xid, type -11),
 * written straight to the client's socket.  Then every socket is read (and
 * what comes is thrown away: the handle is going) until the server ends it,
 * all of them in one poll(), bounded.  zookeeper_close() then finds the
 * connection ended and returns at once; a session this could not send for
 * (not connected, something queued) is closed by zookeeper_close() alone. */

#define CLOSE_OP (-11)      /* ZOO_CLOSE_OP */

static void
put32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

/* The socket the close request was written to, or -1. */
static int
send_close(scout_session_t *s, double deadline)
{
    struct timeval tv;
    unsigned char pkt[12];
    int fd = -1, interest = 0, zero = 0;
    size_t off = 0;

    if (s->zh == NULL || s->state == SCOUT_SESSION_CLOSED
        || zoo_state(s->zh) != ZOO_CONNECTED_STATE
        || zookeeper_interest(s->zh, &fd, &interest, &tv) != ZOK || fd < 0
        || (interest & ZOOKEEPER_WRITE) != 0)
        return -1;
    if (s->corked_fd >= 0) {
        (void)setsockopt(s->corked_fd, IPPROTO_TCP, TCP_CORK, &zero,
                         sizeof(zero));
        s->corked_fd = -1;
    }
    put32(pkt, 8);
    put32(pkt + 4, 0x7ffffff0u);    /* an xid the client never waits for */
    put32(pkt + 8, (uint32_t)CLOSE_OP);
    while (off < sizeof(pkt)) {
        ssize_t w = send(fd, pkt + off, sizeof(pkt) - off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)
                   && scout_now_ms() < deadline) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            (void)poll(&p, 1, 10);
        } else if (off == 0) {
            return -1;              /* nothing written: the client's own */
        } else {
            /* half a frame: whatever follows it is garbage to the server,
             * which drops the connection; the session then times out */
            (void)shutdown(fd, SHUT_RDWR);
            return -1;
        }
    }
    return fd;
}

/* At exit, once the close request is on the wire: the handle is left to the
 * process exit.  zookeeper_close() would free its watch tables entry by
 * entry (a million at a million endpoints: 52 sessions took 4.6 s of the
 * exit on a busy host) and run every pending completion, for a process
 * that is about to end.  A close the server has not answered within the
 * wait still reaches it: the request is in the socket before the kernel
 * closes it at the process exit. */
static void
leave_handle(scout_session_t *s)
{
    s->state = SCOUT_SESSION_CLOSED;
    ev_timer_stop(s->loop, &s->lost);
    ev_io_stop(s->loop, &s->io);
    ev_timer_stop(s->loop, &s->timer);
    ev_timer_stop(s->loop, &s->stable);
    s->io_fd = -1;
    s->zh = NULL;
    s->on_state(s->ud, SCOUT_SESSION_CLOSED, 0);
}

int
scout_session_close_all(scout_session_t **v, int n, int wait_ms, int at_exit)
{
    double deadline = scout_now_ms() + wait_ms;
    struct pollfd *p = calloc(n > 0 ? (size_t)n : 1, sizeof(*p));
    int waiting = 0, ended = 0;

    for (int i = 0; p != NULL && i < n; i++) {
        p[i].fd = v[i] != NULL ? send_close(v[i], deadline) : -1;
        p[i].events = POLLIN;
        waiting += p[i].fd >= 0;
    }
    while (waiting > 0) {
        static char sink[65536];
        int left = (int)(deadline - scout_now_ms()), rc;

        if (left <= 0)
            break;
        if ((rc = poll(p, (nfds_t)n, left)) < 0 && errno != EINTR)
            break;
        if (rc <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            ssize_t r;

            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            while ((r = recv(p[i].fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
                ;
            if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                p[i].fd = -2;       /* the server ended it: closed */
                waiting--;
                ended++;
            }
        }
    }
    for (int i = 0; p != NULL && i < n; i++)
        if (p[i].fd >= 0)           /* no answer in time: do not wait again */
            (void)shutdown(p[i].fd, SHUT_RD);
    for (int i = 0; i < n; i++) {
        if (v[i] == NULL)
            continue;
        if (at_exit && p != NULL && p[i].fd != -1)
            leave_handle(v[i]);     /* its close is on the wire */
        else
            scout_session_close(v[i]);
    }
    free(p);
    return ended;
}
