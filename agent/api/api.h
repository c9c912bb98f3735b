/*
 * api.h -- the HTTP API (DESIGN.md, "HTTP API"): what scout knows, as JSON,
 * for programs on the host.  Routing and rendering only; the transport is
 * http.c and the data belongs to the agent, seen through scout_api_view_t.
 */
#ifndef SCOUT_API_H
#define SCOUT_API_H

#include <ev.h>
#include <stddef.h>

#include "api/http.h"
#include "register/register.h"     /* scout_reg_info_t: a plain record */
#include "service.h"
#include "zk/session.h"

typedef struct scout_api_s scout_api_t;

/* The agent as /v1/agent shows it; strings are borrowed until the next
 * return to the loop.  Times are wall-clock seconds since the epoch. */
typedef struct {
    const char *policy_file;
    const char *zk_servers;
    double      started_at;
    unsigned    reloads;        /* SIGHUPs tried since start */
    unsigned    reloads_ok;     /* of which took             */
    double      reload_at;      /* the last one, 0 if none   */
    int         reload_ok;
    const char *reload_error;   /* "" when it took           */
    int         applying;       /* a reload's apply under way: */
    int         apply_placed;   /* services placed so far,     */
    int         apply_of;       /* of                          */
    unsigned    apply_slices;   /* in slices                   */
} scout_api_agent_t;

/* What the API may ask of the agent, and nothing more: the wiring (agent.c)
 * fills it in and hands it over, so the API never includes the agent and
 * the agent's internals can change without it.  Every call is a read of
 * the current state; ctx is passed back unchanged. */
typedef struct {
    void             *ctx;
    int              (*nservices)(void *ctx);
    scout_service_t *(*service)(void *ctx, int i);          /* 0..n-1 */
    scout_service_t *(*find)(void *ctx, const char *name);  /* or NULL */
    int              (*nsessions)(void *ctx);
    scout_session_t *(*session)(void *ctx, int i);
    /* 1 when health must fail because of the disk snapshot: a service is
     * served only from one older than cache.max_age, or writing it fails;
     * the reason goes to reason. */
    int              (*snapshot_too_old)(void *ctx, char *reason, size_t len);
    /* Wall-clock seconds of the last good snapshot write (0: none, or no
     * cache dir). */
    double           (*snapshot_written_at)(void *ctx);
    /* Bytes of watched paths a reconnect of session i re-sends. */
    size_t           (*watch_bytes)(void *ctx, int i);
    /* the policy VM's heap, and its collector's pause (policy_gc.c) */
    void             (*lua)(void *ctx, size_t *bytes, int *gc_pause);
    void             (*agent)(void *ctx, scout_api_agent_t *out);
    /* registrations, including those a reload or shutdown is withdrawing */
    int              (*nregs)(void *ctx);
    void             (*reg)(void *ctx, int i, scout_reg_info_t *out);
} scout_api_view_t;

/* view is copied. */
scout_api_t *scout_api_new(struct ev_loop *loop, const scout_api_view_t *view,
                           const char *listen, char *err);
void scout_api_free(scout_api_t *api);

/* The same on a server that already listens (the early server's, early.h):
 * its requests come here from now on. */
scout_api_t *scout_api_adopt(struct ev_loop *loop,
                             const scout_api_view_t *view,
                             scout_http_t *http, char *err);
/* A request the early server parked: answered now, or parked here as any
 * request would be. */
void scout_api_dispatch(scout_api_t *api, scout_http_req_t *req);

/* A service published: answer the blocking queries parked on it. */
void scout_api_notify(scout_api_t *api, scout_service_t *svc);

#endif
