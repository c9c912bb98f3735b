/*
 * session_int.h -- the session struct, shared by session.c (the client on
 * the loop, the state machine) and session_close.c (closing many sessions at
 * once at exit), and by nothing else: every other module goes through
 * session.h.
 */
#ifndef SCOUT_SESSION_INT_H
#define SCOUT_SESSION_INT_H

#include <stdint.h>

#include "zk/resolve.h"
#include "zk/session.h"

struct scout_session_s {
    struct ev_loop        *loop;
    zhandle_t             *zh;
    ev_prepare             prepare;     /* re-asks interest when dirty      */
    ev_io                  io;          /* the client's socket              */
    ev_timer               timer;       /* the client's own deadline        */
    ev_timer               lost;        /* disconnected for too long        */
    ev_timer               stable;      /* connected long enough to trust   */
    int64_t                connected_ns; /* when the current connection came */
    int64_t                streak_ns;   /* first short connection of a run  */
    int                    short_conns; /* short connections in that run    */
    int                    looping;     /* a reconnect loop was ended; the
                                         * new session is not stable yet    */
    int                    dirty;
    int                    io_fd;       /* what the io watcher watches   */
    int                    io_events;
    int                    io_zstate;   /* zoo_state() when it was set    */
    int                    io_force;    /* the socket may have changed    */
    int                    corked_fd;   /* TCP_CORK set this iteration    */
    int                    asked;       /* handles asked for this iteration */
    int                    handed;      /* a handle was given out since the
                                         * last zookeeper_interest(): a
                                         * request may wait in its queue   */
    int                    recreate;    /* close + init at next prepare     */
    int                    had_connection;
    double                 handshake_at; /* ev_now() the ConnectRequest was
                                          * first seen unanswered; 0: none */
    scout_session_state_t  state;
    uint64_t               epoch;
    char                  *servers;
    scout_resolve_t       *resolve;     /* names -> IP literals, off-loop  */
    char                  *auth_scheme;
    char                  *auth_cred;
    int                    timeout_ms;
    scout_session_state_fn on_state;
    void                  *ud;
};

/* session_handshake.c: the bound on a lost handshake.  CONNECTED: this
 * session's handshake was answered. */
void   scout_session_handshake_answered(scout_session_t *s);
/* Seconds until the pending handshake is looked at again (0: end it now),
 * or -1 when none of ours is pending or the client's bound comes first. */
double scout_session_handshake_left(scout_session_t *s, int fd);
/* Ends it: the client reads the EOF and connects again. */
void   scout_session_handshake_cut(scout_session_t *s, int fd);

#endif
