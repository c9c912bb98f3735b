/*
 * http_conn.h - the inside of scout's HTTP server, shared by its files
 * (http.c: connections and output; http_parse.c: http-parser callbacks;
 * http_req.c: what a handler may ask of a request). Not an interface:
 * nothing outside agent/api/http*.c may include it.
 */

#ifndef SCOUT_HTTP_CONN_H
#define SCOUT_HTTP_CONN_H

#include <time.h>

#include <ev.h>
#include <http_parser.h>

#include "api/http.h"
#include "api/http_listen.h"
#include "rcbuf.h"

#define IN_BUF         8192         /* parsing streams: bounds memory only */
#define RHDR_MAX       4096         /* added response headers */

typedef struct scout_http_conn_s conn_t;

struct scout_http_req_s {
    conn_t              *conn;
    const char          *method;
    char                *path, *query;  /* both into pq */
    double               t0;
    scout_http_abort_fn  on_abort;
    void                *abort_data;
    size_t               url_len, hdr_len, body_len, rhdr_len;
    int                  hstate;        /* 0 none, 1 in field, 2 in value */
    unsigned             keepalive:1, head:1, http10:1, bad_url:1,
                         deferred:1, aborted:1;
    char                 url[SCOUT_HTTP_MAX_URL + 1];
    char                 pq[SCOUT_HTTP_MAX_URL + 2];
    char                 hdr[SCOUT_HTTP_MAX_HEADER];  /* name\0value\0... */
    char                 rhdr[RHDR_MAX];              /* "N: v\r\n"... */
};

struct scout_http_conn_s {
    scout_http_t     *h;
    conn_t           *prev, *next;
    int               fd;
    ev_io             rio, wio;
    ev_timer          timer;       /* idle; linger; or a zero-delay resume */
    http_parser       parser;
    scout_http_req_t *req;         /* being parsed, dispatched or deferred */
    scout_http_req_t *spare;       /* a finished one, for the next request */
    int               err_status;  /* set by a parser callback that bailed */
    unsigned          eof:1, closing:1, lingering:1, dispatching:1, resume:1,
                      ready:1,     /* req complete, not yet dispatched */
                      queued:1;    /* ... and waiting in h's ready FIFO */
    conn_t           *rprev, *rnext;  /* the ready FIFO */
    double            req_start;   /* first byte of a partial request, or 0 */
    char             *out;         /* head (and a copied body) */
    scout_rcbuf_t    *body;        /* a shared body, sent after out */
    size_t            body_off;
    size_t            out_off, out_len, out_cap, in_off, in_len;
    char              in[IN_BUF];
};

struct scout_http_s {
    struct ev_loop        *loop;
    scout_http_handler_fn  handler;
    void                  *ud;
    scout_http_listen_t    lis;
    int                    full_warned;
    conn_t                *conns;
    unsigned               nconns, max_conns;
    double                 idle;
    conn_t                *ready, *ready_tail;  /* over-budget requests */
    double                 spent;      /* handler seconds this iteration */
    ev_prepare             budget_reset;
    ev_check               drain;
    ev_idle                spin;       /* no blocking poll while queued */
    time_t                 date_sec;
    char                   date[80];
};


/* Below ZooKeeper's EV_MAXPRI (zk/session.c): its socket goes first. */
#define SCOUT_HTTP_PRI (EV_MINPRI + 1)

/* The parser callbacks (http_parse.c); p->data is the conn_t. */
extern const http_parser_settings scout_http_parser_settings;

/* "METHOD path" of r into out[len] (len > 2), for the loop's stall report
 * (http_req.c). */
void scout_http_req_what(const scout_http_req_t *r, char *out, size_t len);

/* Re-arm c's one timer (cancels a pending zero-delay resume). */
void scout_http_conn_timer_again(conn_t *c, double repeat);

/* A request must be whole this long after its first byte. */
static inline double
scout_http_request_timeout(const scout_http_t *h)
{
    return h->idle < SCOUT_HTTP_REQUEST_TIMEOUT ? h->idle
                                                : SCOUT_HTTP_REQUEST_TIMEOUT;
}

#endif /* SCOUT_HTTP_CONN_H */
