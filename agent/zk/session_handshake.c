/*
 * session_handshake.c -- a bound of our own on a session handshake that was
 * lost, for session.c (its prepare watcher asks, its CONNECTED tells).
 *
 * Why apart: the rest of session.c drives the client on the loop; this is
 * one rule about one moment of a connection, with its own small table of
 * servers.  It must never cut a handshake that is only slow (see below),
 * and never close the handle: it shuts the client's socket down and lets
 * the client connect again, into the same session.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "stats.h"
#include "zk/session_int.h"

/* The session handshake (the ConnectRequest sent, its answer awaited) has
 * the client's own bound only: 2/3 of the session timeout without a byte
 * received.  A ZooKeeper 3.8 server that is still loading its database
 * accepts connections, and for those that come before its database object
 * exists its close fails ("ZooKeeperServer not running", then a
 * NullPointerException in removeCnxn): the socket stays open and the
 * ConnectRequest is never answered.  Each session that connected in that
 * moment waited the whole bound, well after the server was serving (6.7 s
 * at a 10 s session timeout, 20 s at 30 s).
 *
 * A handshake that is merely slow must not be cut: the server still
 * processes a cut ConnectRequest, and reopening the session there closes
 * the connection the client made since (a restart at 100,000 services,
 * where handshakes took 4-8 s behind 52 sessions' SetWatches, had 32
 * connections lost that way with a bound of its own).  So a handshake is
 * ended only when it is lost for sure: unanswered for HANDSHAKE_SECONDS
 * while the same server has answered one that began after it (the server
 * answers in order; this one was overtaken).  Ending it is shutdown() on the
 * client's socket: the library reads the EOF, closes it itself and
 * connects again, into the same session. */
#define HANDSHAKE_SECONDS 1.0

/* Per server address: when the latest-begun handshake it answered began. */
#define HANDSHAKE_SERVERS 16
static struct {
    char   server[64];
    double began;
} answered[HANDSHAKE_SERVERS];

static double *
answered_slot(const char *server, int add)
{
    int free_at = -1;

    for (int i = 0; i < HANDSHAKE_SERVERS; i++) {
        if (answered[i].server[0] == '\0') {
            if (free_at < 0)
                free_at = i;
        } else if (strcmp(answered[i].server, server) == 0) {
            return &answered[i].began;
        }
    }
    if (!add)
        return NULL;
    if (free_at < 0)
        free_at = 0;            /* more servers than slots: reuse */
    snprintf(answered[free_at].server, sizeof(answered[free_at].server),
             "%s", server);
    answered[free_at].began = 0;
    return &answered[free_at].began;
}

/* CONNECTED: this session's handshake was answered. */
void
scout_session_handshake_answered(scout_session_t *s)
{
    double *began;

    if (s->handshake_at > 0
        && (began = answered_slot(zoo_get_current_server(s->zh), 1)) != NULL
        && *began < s->handshake_at)
        *began = s->handshake_at;
    s->handshake_at = 0;
}

/* Seconds until the pending handshake is looked at again (0: end it now),
 * or -1 when none of ours is pending or the client's bound comes first. */
double
scout_session_handshake_left(scout_session_t *s, int fd)
{
    double now = ev_now(s->loop);
    const double *began;

    if (fd == -1 || zoo_state(s->zh) != ZOO_ASSOCIATING_STATE) {
        s->handshake_at = 0;
        return -1;
    }
    if (s->handshake_at == 0)
        s->handshake_at = now;
    if (HANDSHAKE_SECONDS >= zoo_recv_timeout(s->zh) * 2.0 / 3.0 / 1000.0)
        return -1;
    if (now - s->handshake_at < HANDSHAKE_SECONDS)
        return s->handshake_at + HANDSHAKE_SECONDS - now;
    began = answered_slot(zoo_get_current_server(s->zh), 0);
    if (began == NULL || *began <= s->handshake_at)
        return HANDSHAKE_SECONDS;   /* not overtaken (yet): look again */
    return 0;
}

void
scout_session_handshake_cut(scout_session_t *s, int fd)
{
    double waited = ev_now(s->loop) - s->handshake_at;

    scout_stats.zk_handshakes_cut++;
    scout_log(SCOUT_LOG_WARN, "session", "no answer to the session handshake "
              "from %s within %.1f s, and one begun after it was answered; "
              "connecting again", zoo_get_current_server(s->zh), waited);
    s->handshake_at = 0;
    s->io_force = 1;
    (void)shutdown(fd, SHUT_RDWR);
}
