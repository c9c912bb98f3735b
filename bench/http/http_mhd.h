/*
 * http_mhd.h - the inside of the libmicrohttpd prototype of scout's HTTP
 * server, shared by http_mhd.c (MHD, the loop, connections) and
 * http_mhd_req.c (what a handler may ask of a request, and its answer).
 * Not an interface: agent/api/http.h is the contract both implement.
 */

#ifndef SCOUT_HTTP_MHD_H
#define SCOUT_HTTP_MHD_H

#include <ev.h>
#include <microhttpd.h>

#include "api/http.h"
#include "api/http_listen.h"
#include "log.h"

#define LOG(lvl, ...) scout_log(SCOUT_LOG_##lvl, "http", __VA_ARGS__)

#define SCOUT_HTTP_PRI (EV_MINPRI + 1)
#define RHDR_MAX       4096
#define CONN_SLACK     64    /* MHD's own cap above ours: room to evict */

typedef struct conn_s conn_t;

enum { PH_IDLE, PH_REQ, PH_BUSY };

struct scout_http_req_s {
    conn_t              *c;
    struct MHD_Connection *mc;
    const char          *method;
    char                *path, *query;     /* into raw */
    double               t0;
    scout_http_abort_fn  on_abort;
    void                *abort_data;
    size_t               body_len, rhdr_len;
    unsigned             seen:1, deferred:1, aborted:1, queued:1, go:1,
                         drop:1, failed:1, dispatched:1;
    struct MHD_Response *resp;             /* answered, not yet queued */
    int                  status;
    char                 rhdr[RHDR_MAX];   /* name\0value\0... */
    char                 raw[];            /* path\0query\0 */
};

struct conn_s {
    scout_http_t          *h;
    struct MHD_Connection *mc;
    conn_t                *prev, *next;
    int                    fd, phase, shut;
    double                 idle_since;
    ev_timer               deadline;
    ev_io                  hup;            /* a parked request's hang-up */
    scout_http_req_t      *req;
    conn_t                *rprev, *rnext;  /* the ready FIFO */
    unsigned               rqueued:1, suspended:1;
};

struct scout_http_s {
    struct ev_loop        *loop;
    struct MHD_Daemon     *d;
    scout_http_handler_fn  handler;
    void                  *ud;
    scout_http_listen_t    lis;
    conn_t                *conns;
    unsigned               nconns, max_conns;
    double                 idle;
    int                    dispatching, full_warned;
    int                    kick;   /* resumed: MHD_run at the next turn */
    conn_t                *ready, *ready_tail;
    double                 spent;
    ev_io                  eio;
    ev_timer               etimer;
    ev_prepare             prep;
    ev_check               drain;
    ev_idle                spin;
};

/* Resume a suspended connection and run MHD at the loop's next turn. */
void scout_http_mhd_resume(conn_t *c);

#endif /* SCOUT_HTTP_MHD_H */
