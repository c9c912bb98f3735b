/*
 * session.h -- one ZooKeeper session driven by the caller's libev loop.
 *
 * The session owns the zhandle_t and re-creates it when the session expires
 * (or when the connection has been lost for so long that the server cannot
 * know us any more).  Owners learn about transitions through one callback and
 * must treat every transition as idempotent: CONNECTED is delivered again on
 * every reconnect.  A handle is never closed inside a ZooKeeper callback.
 */
#ifndef SCOUT_SESSION_H
#define SCOUT_SESSION_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <zookeeper/zookeeper.h>

typedef enum {
    SCOUT_SESSION_CONNECTING = 0,   /* first connection of a handle        */
    SCOUT_SESSION_CONNECTED,        /* serving; watches are live           */
    SCOUT_SESSION_DISCONNECTED,     /* lost the server; data is stale      */
    SCOUT_SESSION_EXPIRED,          /* the server forgot us; new handle    */
    SCOUT_SESSION_AUTH_FAILED,      /* credentials refused; retried        */
    SCOUT_SESSION_CLOSED
} scout_session_state_t;

typedef struct scout_session_s scout_session_t;

/* Called on every transition.  new_session is 1 on the first CONNECTED of a
 * fresh handle: every watch of the old handle is gone and must be re-armed. */
typedef void (*scout_session_state_fn)(void *ud, scout_session_state_t state,
                                       int new_session);

typedef struct {
    const char *servers;       /* "h:p[,h:p...][/chroot]" */
    int         timeout_ms;    /* requested session timeout */
    const char *auth_scheme;   /* NULL or "digest" */
    const char *auth_cred;     /* "user:pass"; never logged */
} scout_session_opts_t;

scout_session_t *scout_session_new(struct ev_loop *loop,
                                   const scout_session_opts_t *opts,
                                   scout_session_state_fn on_state, void *ud,
                                   char *err);
void scout_session_free(scout_session_t *s);

/* The live handle, or NULL while none exists.  Requests issued on it must be
 * followed by scout_session_kick() so the glue re-asks zookeeper_interest(). */
zhandle_t *scout_session_zh(scout_session_t *s);
void       scout_session_kick(scout_session_t *s);

/* How many answers the sessions' owners still await, all sessions together
 * (the read window's reads in flight): a turn of a session's socket reads
 * further answers only while some of those may be waiting in it. */
void scout_session_reads_expected(size_t n);

scout_session_state_t scout_session_state(const scout_session_t *s);
const char *scout_session_state_name(scout_session_state_t state);
/* Increments with every new handle; completions stamped with an older epoch
 * belong to a dead handle and must be ignored. */
uint64_t scout_session_epoch(const scout_session_t *s);
int64_t  scout_session_id(const scout_session_t *s);
/* 1 from the moment a reconnect loop (many short connections, none stable)
 * was detected and ended with a new session until that session has stayed
 * connected for a few seconds. */
int      scout_session_looping(const scout_session_t *s);

/* Close the session now (SIGTERM).  May block briefly while the server
 * acknowledges the close; must not be called from a ZooKeeper callback. */
void scout_session_close(scout_session_t *s);

/* Close n sessions (entries may be NULL) at once: every connected session's
 * close request is sent first, then the server's answers (it ends each
 * connection) are awaited together for at most wait_ms, so n sessions cost
 * one round trip, not n.  at_exit: a handle whose close was sent is not
 * freed (the process is ending; only scout_session_free may follow).  Returns how
 * many the server ended within wait_ms; each session is CLOSED on return. */
int  scout_session_close_all(scout_session_t **v, int n, int wait_ms,
                             int at_exit);

#endif
