/*
 * session.c -- the ZooKeeper single-threaded client on a libev loop, and the
 * session state machine.
 *
 * The glue follows the rules learned from the 3.8 client (see
 * shared/notes/zookeeper-c-client.md): zookeeper_interest() is asked only
 * when ZooKeeper's own io or timer fired or a request was queued (asking on
 * every loop iteration defeats the client's reconnect back-off), and not
 * after a turn that only read, which cannot change its answer (quiet_turn:
 * during a sync that is most answers); answers already waiting for reads
 * sent earlier are read in the same turn, not one loop turn each (read_on);
 * the io watcher is always stopped, set and started again because the
 * library closes and reopens sockets behind our back and often reuses the fd
 * number; an fd that is already closed is never handed to libev; and a
 * handle is closed or re-created only from the prepare watcher, never inside
 * a ZooKeeper callback.  This module must never call ev_run or create a
 * loop.
 */
#include "zk/session.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"
#include "scout.h"
#include "stats.h"
#include "zk/resolve.h"
#include "zk/session_int.h"

/* Host names of the connect string are resolved again this often. */
#define RESOLVE_EVERY_SECONDS 60.0

static const char *const state_names[] = {
    "connecting", "connected", "disconnected", "expired", "auth_failed",
    "closed"
};

const char *
scout_session_state_name(scout_session_state_t state)
{
    return state_names[state];
}

/* ZooKeeper's log lines look like
 *   "2026-11-21 20:50:06,123:4242:ZOO_ERROR@check_events@2985: text"
 * (the multi-threaded client adds "(0x7f..)" after the pid).  We keep the
 * level and the text.  The client logs every failed reconnect at ERROR
 * (several a second during an outage), so identical consecutive texts are
 * folded into one "repeated N times" line. */
static void
zk_log_callback(const char *message)
{
    /* the last two distinct texts: a reconnect loop alternates two lines */
    static char last[2][512];
    static unsigned repeats;
    static int64_t last_ns;
    const char *p = strstr(message, ":ZOO_");
    const char *text = message;
    int level = SCOUT_LOG_INFO;
    int64_t now = scout_now_ns();

    if (p != NULL) {
        p += 5;
        if (strncmp(p, "ERROR", 5) == 0)
            level = SCOUT_LOG_WARN;     /* the client calls retries errors */
        else if (strncmp(p, "WARN", 4) == 0)
            level = SCOUT_LOG_INFO;
        else
            level = SCOUT_LOG_DEBUG;
        text = strchr(p, ':');
        text = text ? text + 1 : p;
        while (*text == ' ')
            text++;
    }
    if (!scout_log_enabled(level))
        return;
    if (now - last_ns < 10LL * 1000000000
        && (strncmp(last[0], text, sizeof(last[0]) - 1) == 0
            || strncmp(last[1], text, sizeof(last[1]) - 1) == 0)) {
        repeats++;
        return;
    }
    if (repeats > 0)
        scout_log(level, "zookeeper", "(%u repeated messages folded)",
                  repeats);
    repeats = 0;
    last_ns = now;
    memcpy(last[1], last[0], sizeof(last[1]));
    snprintf(last[0], sizeof(last[0]), "%s", text);
    scout_log(level, "zookeeper", "%s", text);
}

static void
set_state(scout_session_t *s, scout_session_state_t state, int new_session)
{
    scout_session_state_t old = s->state;

    s->state = state;
    if (old == state && !new_session && state != SCOUT_SESSION_CONNECTED)
        return;
    if (state == SCOUT_SESSION_DISCONNECTED || state == SCOUT_SESSION_CONNECTING)
        ev_timer_again(s->loop, &s->lost);
    else
        ev_timer_stop(s->loop, &s->lost);
    s->on_state(s->ud, state, new_session);
}

/* A connection that ends sooner than this after CONNECTED is "short". */
#define STABLE_SECONDS 3.0
/* This many short connections in a row within the window, none stable, is a
 * reconnect loop: the server takes the session back and then closes the
 * socket each time, typically because the SetWatches the client re-sends on
 * reconnect is over jute.maxbuffer (ZOOKEEPER-706).  Each short connection
 * also re-arms the "no connection for 4x timeout" timer, so nothing else
 * would ever end it. */
#define LOOP_SHORT_CONNECTIONS 5
#define LOOP_WINDOW_SECONDS    30.0

static void
on_stable(struct ev_loop *loop, ev_timer *w, int revents)
{
    scout_session_t *s = w->data;
    (void)loop;
    (void)revents;
    if (s->state != SCOUT_SESSION_CONNECTED)
        return;
    s->short_conns = 0;
    if (s->looping)
        scout_log(SCOUT_LOG_INFO, "session", "session 0x%llx stable for "
                  "%.0f s; reconnect loop over",
                  (unsigned long long)scout_session_id(s), STABLE_SECONDS);
    s->looping = 0;
}

/* The connection that came at connected_ns is gone: count it if it was
 * short, and end the run of short connections with a new session (it has no
 * watches to re-send; its owners re-read everything as after an expiry). */
static void
connection_lost(scout_session_t *s)
{
    int64_t now = scout_now_ns();

    ev_timer_stop(s->loop, &s->stable);
    if (s->connected_ns == 0
        || now - s->connected_ns >= (int64_t)(STABLE_SECONDS * 1e9))
        return;
    if (s->short_conns == 0
        || now - s->streak_ns > (int64_t)(LOOP_WINDOW_SECONDS * 1e9)) {
        s->short_conns = 0;
        s->streak_ns = now;
    }
    if (++s->short_conns < LOOP_SHORT_CONNECTIONS)
        return;
    scout_stats.zk_reconnect_loops++;
    scout_log(SCOUT_LOG_WARN, "session", "reconnect loop: session 0x%llx "
              "had %d connections in %.1f s, none lasting %.0f s (watches "
              "re-sent on reconnect over the server's packet limit?); "
              "starting a new session", (unsigned long long)
              scout_session_id(s), s->short_conns,
              (double)(now - s->streak_ns) / 1e9, STABLE_SECONDS);
    s->short_conns = 0;
    s->looping = 1;
    s->recreate = 1;
    s->dirty = 1;
}

static void
global_watcher(zhandle_t *zh, int type, int state, const char *path,
               void *ctx)
{
    scout_session_t *s = ctx;
    (void)path;

    if (type != ZOO_SESSION_EVENT || zh != s->zh)
        return;
    if (state == ZOO_CONNECTED_STATE) {
        const clientid_t *id = zoo_client_id(zh);
        int fresh = !s->had_connection;

        s->had_connection = 1;
        s->connected_ns = scout_now_ns();
        scout_session_handshake_answered(s);
        ev_timer_set(&s->stable, STABLE_SECONDS, 0.);
        ev_timer_start(s->loop, &s->stable);
        scout_stats.zk_reconnects++;
        scout_log(SCOUT_LOG_INFO, "session",
                  "%s session 0x%llx (timeout %d ms)",
                  fresh ? "established" : "reconnected to",
                  (unsigned long long)id->client_id, zoo_recv_timeout(zh));
        set_state(s, SCOUT_SESSION_CONNECTED, fresh);
    } else if (state == ZOO_CONNECTING_STATE
               || state == ZOO_ASSOCIATING_STATE) {
        if (s->state == SCOUT_SESSION_CONNECTED) {
            scout_log(SCOUT_LOG_WARN, "session",
                      "connection lost; serving cached data as stale");
            set_state(s, SCOUT_SESSION_DISCONNECTED, 0);
            scout_resolve_refresh(s->resolve);
            connection_lost(s);
        }
    } else if (state == ZOO_EXPIRED_SESSION_STATE) {
        scout_log(SCOUT_LOG_WARN, "session",
                  "session expired; creating a new one");
        scout_stats.zk_session_expirations++;
        s->recreate = 1;
        s->dirty = 1;
        set_state(s, SCOUT_SESSION_EXPIRED, 0);
    } else if (state == ZOO_AUTH_FAILED_STATE) {
        scout_log(SCOUT_LOG_ERROR, "session",
                  "authentication failed (scheme %s); retrying",
                  s->auth_scheme ? s->auth_scheme : "none");
        s->recreate = 1;
        s->dirty = 1;
        set_state(s, SCOUT_SESSION_AUTH_FAILED, 0);
    }
}

static void
auth_done(int rc, const void *data)
{
    (void)data;
    if (rc != ZOK)
        scout_log(SCOUT_LOG_ERROR, "session", "add_auth failed: %s",
                  zerror(rc));
}

/* The client only ever sees IP literals: before the first resolution of a
 * host name finished there is no handle yet (the session stays
 * "connecting"); on_resolved opens it. */
static int
open_handle(scout_session_t *s, char *err)
{
    const char *hosts = scout_resolve_hosts(s->resolve);
    const char *chroot = scout_resolve_chroot(s->resolve);
    char *connect;

    s->had_connection = 0;
    s->epoch++;
    if (hosts == NULL) {
        set_state(s, SCOUT_SESSION_CONNECTING, 0);
        return SCOUT_OK;
    }
    connect = malloc(strlen(hosts) + strlen(chroot) + 1);
    if (connect == NULL) {
        if (err)
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return SCOUT_ERROR;
    }
    stpcpy(stpcpy(connect, hosts), chroot);
    s->zh = zookeeper_init2(connect, global_watcher, s->timeout_ms, NULL,
                            s, ZOO_NO_LOG_CLIENTENV, zk_log_callback);
    if (s->zh == NULL) {
        if (err)
            snprintf(err, SCOUT_ERR_LEN, "zookeeper_init(\"%s\" = \"%s\"): %s",
                     s->servers, connect, strerror(errno));
        free(connect);
        return SCOUT_ERROR;
    }
    free(connect);
    scout_stats.zk_sessions_created++;
    /* Resolve host names only after a connection loss, not on every
     * zookeeper_interest() call (ZOOKEEPER-1998: blocking DNS in our loop). */
    zoo_set_servers_resolution_delay(s->zh, -1);
    if (s->auth_scheme != NULL)
        zoo_add_auth(s->zh, s->auth_scheme, s->auth_cred,
                     (int)strlen(s->auth_cred), auth_done, NULL);
    set_state(s, SCOUT_SESSION_CONNECTING, 0);
    s->dirty = 1;
    return SCOUT_OK;
}

/* A resolution changed the addresses: a live handle gets them through
 * zoo_set_servers (it may move to another server); without a handle (the
 * first resolution) one is opened at the next prepare. */
static void
on_resolved(void *ud, const char *hosts)
{
    scout_session_t *s = ud;

    if (s->state == SCOUT_SESSION_CLOSED)
        return;
    if (s->zh == NULL) {
        s->recreate = 1;
    } else {
        int rc = zoo_set_servers(s->zh, hosts);

        if (rc != ZOK)
            scout_log(SCOUT_LOG_WARN, "session", "zoo_set_servers(\"%s\"): "
                      "%s", hosts, zerror(rc));
    }
    s->dirty = 1;
}

static void
close_handle(scout_session_t *s)
{
    zhandle_t *zh = s->zh;

    if (zh == NULL)
        return;
    ev_io_stop(s->loop, &s->io);
    ev_timer_stop(s->loop, &s->timer);
    ev_timer_stop(s->loop, &s->stable);
    s->connected_ns = 0;
    s->io_fd = -1;
    s->zh = NULL;           /* completions run inside close see no handle */
    zookeeper_close(zh);
}

/* How long one loop iteration may spend in zookeeper_process before the
 * other sessions' ready sockets wait for the next iteration.  A session
 * event costs the 3.8 client a walk over every watch of the session, and a
 * reconnect a copy of every path for SetWatches: at ~20,000 watches a
 * session, 10-15 ms of CPU each.  When every session's socket is ready at
 * once (ZooKeeper restarted) that was one iteration of 0.5-1.75 s of CPU,
 * 21.8 s of wall clock on a loaded host, with no session's
 * zookeeper_interest() -- its pings -- run until it ended.  Past the budget
 * a ready socket is left for the next iteration (epoll is level-triggered:
 * it is reported again at once); the first session of an iteration
 * always runs, so each iteration makes progress. */
#define IO_ITERATION_BUDGET 0.010

/* Whether what the last zookeeper_interest() said still holds after this
 * turn of zookeeper_process(): the turn only read, on a connection that
 * was and is connected, that watched for reading only, with no error and
 * no handle given out since (so no request was queued: a send can leave
 * the queue non-empty, which wants WRITE, or close the socket).  The
 * client's answer then cannot have changed: the fd and the interest (READ
 * while connected, WRITE only for a non-empty send queue) are the same,
 * and its deadline (2/3 of the timeout after the last receive, a ping
 * 1/3 after the last send) can only have moved later, so the timer armed
 * from that answer fires no later than the client needs it and asks again
 * then.  During a sync this is most answers that do not send a read
 * (zookeeper_interest and the re-armed timer were ~770 instructions of
 * every loop iteration). */
static int
quiet_turn(const scout_session_t *s, int revents)
{
    return s->zh != NULL && !s->io_force && !s->handed && !s->recreate
           && !(revents & EV_WRITE) && s->io_events == EV_READ
           && s->io_zstate == ZOO_CONNECTED_STATE
           && zoo_state(s->zh) == ZOO_CONNECTED_STATE
           && ev_is_active(&s->timer);
}

/* Several answers per turn.  The client reads one answer per
 * zookeeper_process() (recv_buffer: its length, then its body), so with
 * the socket polled after each the loop turned once per answer: during a
 * sync 11,000 turns at 1,000 x 10, each paying libev's iteration, the
 * prepare and check watchers (the stall watch, the session's ask, the
 * API's and the hook budget's), ~1.5k instructions, more than the client
 * spends on a small answer.  A turn now reads on while answers may already
 * be waiting: the reads in flight when it began (reads_expected, told by
 * the read window) bound what can be waiting, so a change, whose one watch
 * event or one answer is all there is, costs no second try (a recv that
 * finds nothing, a syscall); and a turn that finds the socket empty, or a
 * partial answer, stops (the rest comes with the next poll).  Only on a
 * connection that was and is connected (a handshake runs as before), only
 * while the iteration's budget lasts (IO_ITERATION_BUDGET: answers run the
 * policy inside their completions), and at most IO_TURN_ANSWERS: a sync
 * still polls, and runs its timers and the API between batches. */
#define IO_TURN_ANSWERS 64
static size_t reads_expected;

void
scout_session_reads_expected(size_t n)
{
    reads_expected = n;
}

static int
read_on(const scout_session_t *s, zhandle_t *zh, int answers,
        size_t expected, double now, struct ev_loop *loop)
{
    return (size_t)answers < expected && answers < IO_TURN_ANSWERS
           && s->zh == zh && !s->recreate && !s->io_force
           && s->io_zstate == ZOO_CONNECTED_STATE
           && zoo_state(zh) == ZOO_CONNECTED_STATE
           && now - ev_now(loop) <= IO_ITERATION_BUDGET;
}

static unsigned io_iteration;       /* ev_iteration() the budget is for */
static int      io_served;          /* sessions processed in it */

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    scout_session_t *s = w->data;
    int events = 0;

    if (io_iteration != ev_iteration(loop)) {
        io_iteration = ev_iteration(loop);
        io_served = 0;
    }
    if (io_served > 0 && ev_time() - ev_now(loop) > IO_ITERATION_BUDGET) {
        scout_stats.zk_io_deferred++;
        s->dirty = 1;           /* its deadlines are still asked this turn */
        return;
    }
    io_served++;
    if (revents & EV_READ)
        events |= ZOOKEEPER_READ;
    if (revents & EV_WRITE)
        events |= ZOOKEEPER_WRITE;
    /* Any return code is fine: on connection loss the library has already
     * closed the socket and failed the pending completions. */
    if (s->zh != NULL) {
        zhandle_t *zh = s->zh;
        size_t expected = reads_expected;
        double t0 = ev_time(), t1;
        int rc, answers = 0;

        for (;;) {
            rc = zookeeper_process(zh, events);
            /* completions run inside: watch results, policy updates,
             * publish */
            t1 = ev_time();
            scout_loop_note("zookeeper completions", t1 - t0);
            if (rc != ZOK)
                break;
            if (!read_on(s, zh, ++answers, expected, t1, loop))
                break;
            scout_stats.zk_answers_read_on++;
            events = ZOOKEEPER_READ;
            t0 = t1;
        }
        /* on an error the library may have closed the socket and will
         * open another, often with the same fd number */
        if (rc != ZOK && rc != ZNOTHING)
            s->io_force = 1;
    }
    if (!quiet_turn(s, revents))
        s->dirty = 1;
    else
        scout_stats.zk_interest_skips++;
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    scout_session_t *s = w->data;
    (void)loop;
    (void)revents;
    s->dirty = 1;
}

/* A server that lost its data (or a network that keeps failing) can leave the
 * client retrying a session nobody will ever accept.  After four session
 * timeouts without a connection, the server has expired us anyway: start a
 * fresh session. */
static void
on_lost(struct ev_loop *loop, ev_timer *w, int revents)
{
    scout_session_t *s = w->data;
    (void)loop;
    (void)revents;
    if (s->state == SCOUT_SESSION_CONNECTED || s->zh == NULL)
        return;
    scout_log(SCOUT_LOG_WARN, "session",
              "no connection for %d ms; starting a new session",
              4 * s->timeout_ms);
    s->recreate = 1;
    s->dirty = 1;
}

static void
on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    scout_session_t *s = w->data;
    struct timeval tv = { 0, 0 };
    int fd = -1, interest = 0, rc, events;
    double after;
    (void)revents;

    s->asked = 0;
    if (s->corked_fd >= 0) {       /* what this iteration asked, sent now */
        int zero = 0;
        (void)setsockopt(s->corked_fd, IPPROTO_TCP, TCP_CORK, &zero,
                         sizeof(zero));
        s->corked_fd = -1;
    }
    if (!s->dirty)
        return;
    s->dirty = 0;
    if (s->recreate) {
        s->recreate = 0;
        close_handle(s);
        if (s->state == SCOUT_SESSION_CLOSED)
            return;
        if (open_handle(s, NULL) != SCOUT_OK) {
            scout_log(SCOUT_LOG_ERROR, "session",
                      "cannot create a ZooKeeper handle: %s; retrying",
                      strerror(errno));
            s->recreate = 1;
            ev_timer_set(&s->timer, 1.0, 0.);
            ev_timer_start(loop, &s->timer);
            return;
        }
    }
    if (s->zh == NULL)
        return;

    s->handed = 0;
    scout_stats.zk_interest_asks++;
    rc = zookeeper_interest(s->zh, &fd, &interest, &tv);
    if (rc == ZINVALIDSTATE) {
        ev_io_stop(loop, &s->io);
        s->io_fd = -1;
        /* expired or auth failed: the watcher has been (or will be) told */
        s->recreate = 1;
        s->dirty = 1;
        ev_timer_stop(loop, &s->timer);
        ev_timer_set(&s->timer, 0.1, 0.);
        ev_timer_start(loop, &s->timer);
        return;
    }
    /* The library may have closed the socket while returning an error and
     * still hand us the old number; libev aborts on a closed fd.  A socket
     * only closes behind our back on an error, so a quiet turn skips the
     * check (it would be a syscall per loop iteration). */
    if (fd != -1 && (rc != ZOK || s->io_force || fd != s->io_fd)
        && fcntl(fd, F_GETFD) == -1)
        fd = -1;
    /* A failed ping send leaves interest 0 on a dead socket: keep reading so
     * the EOF reaches zookeeper_process and the reconnect starts. */
    if (fd != -1 && rc != ZOK)
        interest |= ZOOKEEPER_READ;
    events = (fd == -1) ? 0 : (interest & ZOOKEEPER_READ ? EV_READ : 0)
                                 | (interest & ZOOKEEPER_WRITE ? EV_WRITE : 0);
    /* libev needs ev_io_set whenever the descriptor may have been replaced
     * (a reconnect often reuses the number, and epoll forgets a closed one).
     * While connecting, the library may close a failed socket and open the
     * next within one zookeeper_interest() call, same number, same interest,
     * rc ZOK: always re-set then.  Only a quiet connected turn -- same fd,
     * same interest, no error -- keeps the watcher and costs no epoll_ctl. */
    if (fd != s->io_fd || events != s->io_events || rc != ZOK
        || s->io_force || zoo_state(s->zh) != ZOO_CONNECTED_STATE
        || zoo_state(s->zh) != s->io_zstate) {
        ev_io_stop(loop, &s->io);
        if (events != 0) {
            ev_io_set(&s->io, fd, events);
            ev_io_start(loop, &s->io);
        }
        s->io_fd = events ? fd : -1;
        s->io_events = events;
        s->io_zstate = zoo_state(s->zh);
        s->io_force = 0;
    }
    after = tv.tv_sec + tv.tv_usec / 1e6;
    if (rc != ZOK && after < 0.01)
        after = 0.01;
    if (fd != -1) {
        double left = scout_session_handshake_left(s, fd);

        if (left == 0) {
            scout_session_handshake_cut(s, fd); /* the EOF wakes the io watcher */
        } else if (left > 0 && left < after) {
            after = left;
        }
    } else {
        s->handshake_at = 0;
    }
    /* A timer already due no later than this deadline stands: it fires
     * early at worst, and the client is asked again then.  While answers
     * stream in, each ask pushes the deadline on by the time since the
     * last (the client's timeouts count from the last send and receive),
     * and re-arming it at every iteration cost two heap updates. */
    if (ev_is_active(&s->timer)
        && ev_timer_remaining(loop, &s->timer) <= after)
        return;
    ev_timer_stop(loop, &s->timer);
    ev_timer_set(&s->timer, after, 0.);
    ev_timer_start(loop, &s->timer);
}

scout_session_t *
scout_session_new(struct ev_loop *loop, const scout_session_opts_t *opts,
                  scout_session_state_fn on_state, void *ud, char *err)
{
    scout_session_t *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->on_state = on_state;
    s->ud = ud;
    s->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
    s->servers = strdup(opts->servers);
    if (s->servers == NULL)
        goto oom;
    s->resolve = scout_resolve_new(loop, opts->servers, RESOLVE_EVERY_SECONDS,
                                   on_resolved, s, err);
    if (s->resolve == NULL)
        goto fail;
    if (opts->auth_scheme != NULL) {
        s->auth_scheme = strdup(opts->auth_scheme);
        s->auth_cred = strdup(opts->auth_cred ? opts->auth_cred : "");
        if (s->auth_scheme == NULL || s->auth_cred == NULL)
            goto oom;
    }
    ev_prepare_init(&s->prepare, on_prepare);
    s->prepare.data = s;
    ev_io_init(&s->io, on_io, -1, EV_READ);
    s->io_fd = -1;
    s->corked_fd = -1;
    s->io.data = s;
    ev_timer_init(&s->timer, on_timer, 0., 0.);
    s->timer.data = s;
    ev_init(&s->lost, on_lost);
    s->lost.repeat = 4.0 * s->timeout_ms / 1000.0;
    s->lost.data = s;
    /* ZooKeeper first: when its socket or deadline is ready in the same
     * iteration as API or policy work, libev runs it before them, so pings
     * and watch events never wait behind a burst of requests. */
    ev_set_priority(&s->prepare, EV_MAXPRI);
    ev_set_priority(&s->io, EV_MAXPRI);
    ev_set_priority(&s->timer, EV_MAXPRI);
    ev_set_priority(&s->lost, EV_MAXPRI);
    ev_init(&s->stable, on_stable);
    s->stable.data = s;
    ev_prepare_start(loop, &s->prepare);

    zoo_set_debug_level(scout_log_enabled(SCOUT_LOG_DEBUG)
                            ? ZOO_LOG_LEVEL_DEBUG : ZOO_LOG_LEVEL_WARN);
    if (open_handle(s, err) != SCOUT_OK)
        goto fail;
    return s;

oom:
    snprintf(err, SCOUT_ERR_LEN, "out of memory");
fail:
    scout_session_free(s);
    return NULL;
}

void
scout_session_close(scout_session_t *s)
{
    if (s->state == SCOUT_SESSION_CLOSED)
        return;
    s->state = SCOUT_SESSION_CLOSED;
    ev_timer_stop(s->loop, &s->lost);
    close_handle(s);
    s->on_state(s->ud, SCOUT_SESSION_CLOSED, 0);
}

void
scout_session_free(scout_session_t *s)
{
    if (s == NULL)
        return;
    s->state = SCOUT_SESSION_CLOSED;
    close_handle(s);
    ev_prepare_stop(s->loop, &s->prepare);
    ev_timer_stop(s->loop, &s->lost);
    scout_resolve_free(s->resolve);
    free(s->servers);
    if (s->auth_cred != NULL)
        memset(s->auth_cred, 0, strlen(s->auth_cred));
    free(s->auth_scheme);
    free(s->auth_cred);
    free(s);
}

/* The handle is asked for to send a request: the client sends each one at
 * once (two send()s, and with TCP_NODELAY a segment, an ACK and a wakeup
 * of the server each), so the socket is corked for the rest of this loop
 * iteration and uncorked by the prepare watcher before the loop blocks: the
 * requests of one iteration go out together (a sync sends thousands per
 * second).  io_fd is the socket the io watcher was set to while connected;
 * if the library replaced it within this iteration, the number is either
 * the new socket or something else, uncorked just as soon.  The first
 * request of an iteration goes out uncorked: a change in steady state asks
 * one read, and corking it would add two setsockopt calls to every change
 * for nothing to join (asked is reset by the prepare watcher). */
zhandle_t *
scout_session_zh(scout_session_t *s)
{
    s->handed = 1;
    if (s->zh != NULL && s->corked_fd < 0 && s->io_fd >= 0
        && s->state == SCOUT_SESSION_CONNECTED
        && s->io_zstate == ZOO_CONNECTED_STATE && s->asked++ > 0) {
        int one = 1;
        if (setsockopt(s->io_fd, IPPROTO_TCP, TCP_CORK, &one,
                       sizeof(one)) == 0) {
            s->corked_fd = s->io_fd;
            s->dirty = 1;
        }
    }
    return s->zh;
}

void
scout_session_kick(scout_session_t *s)
{
    s->dirty = 1;
}

scout_session_state_t
scout_session_state(const scout_session_t *s)
{
    return s->state;
}

uint64_t
scout_session_epoch(const scout_session_t *s)
{
    return s->epoch;
}

int
scout_session_looping(const scout_session_t *s)
{
    return s->looping;
}

int64_t
scout_session_id(const scout_session_t *s)
{
    return s->zh ? zoo_client_id(s->zh)->client_id : 0;
}

