/*
 * http_listen.h - the listening socket of the HTTP server. Private to
 * http.c and http_listen.c; http.h is the module's interface and the only
 * header anyone else includes.
 *
 * Why a separate pair: where the API may listen is a security decision (no
 * authentication, so a 0600 unix socket or loopback only) and it deserves
 * a file that can be read on its own, away from the connection state
 * machine. The listener accepts and hands each fd over; deciding whether to
 * serve it stays with http.c, which is the side that counts connections.
 */

#ifndef SCOUT_HTTP_LISTEN_H
#define SCOUT_HTTP_LISTEN_H

#include <sys/types.h>

#include <ev.h>

/* Called for every accepted fd (non-blocking, close-on-exec); the callee
 * owns it from then on and must keep it or close it. */
typedef void (*scout_http_accept_fn)(void *ud, int fd);

/* Embedded in scout_http_t. http.c only reads port and unix_path. */
typedef struct {
    struct ev_loop       *loop;
    scout_http_accept_fn  on_accept;
    void                 *ud;
    int                   fd;
    int                   port;       /* TCP: the bound port; unix: 0 */
    ev_io                 aio;
    ev_timer              retry;      /* back-off after EMFILE and friends */
    char                 *unix_path;  /* set only once we have bound it */
    dev_t                 dev;        /* of the socket we bound, so that */
    ino_t                 ino;        /* close never unlinks a newer one */
} scout_http_listen_t;

/*
 * Validate addr (the syntax and rules are in http.h, scout_http_new), bind,
 * listen and start accepting on loop (with on_accept NULL, only bind and
 * listen: someone else accepts on l->fd, which stays ours to close). On failure writes err and leaves
 * nothing behind: no fd, no socket file, no watcher.
 */
int scout_http_listen_open(scout_http_listen_t *l, struct ev_loop *loop,
                           const char *addr, scout_http_accept_fn on_accept,
                           void *ud, char *err);

/* Stops both watchers, closes the fd and unlinks the unix socket if it is
 * still the one we bound. Accepted fds are the callee's and stay open. */
void scout_http_listen_close(scout_http_listen_t *l);

#endif /* SCOUT_HTTP_LISTEN_H */
