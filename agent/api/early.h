/*
 * early.h -- the disk snapshot served before the policy is loaded (issue
 * 14: a restart answers from its last known state at once, as Consul's
 * agent does, and becomes fully itself when the policy is loaded).
 *
 * Only when the side file (publish/snapside.h) says the policy about to
 * load is the one that wrote the snapshot: the same files, overrides and
 * API address, and the snapshot it vouches for.  Then, on the loop thread
 * while the policy loads on another: GET /v1/services and
 * /v1/services/NAME (the bytes the loaded agent sends for the same
 * snapshot, a service decoded when first asked; X-Scout-State stale),
 * /v1/health 503, /v1/health/live 200.  Everything else (pick, explain,
 * blocking queries, /metrics, /v1/agent...) is parked and answered by the
 * loaded agent: the server and its connections are handed to the API
 * (scout_early_handover), never to another thread.
 */
#ifndef SCOUT_EARLY_H
#define SCOUT_EARLY_H

#include "api/http.h"
#include "publish/snapside.h"

struct ev_loop;

typedef struct scout_early_s scout_early_t;

/* Listening and serving, or NULL with why (one line: why the start is the
 * normal one).  in->listen is ignored: --api (in->api) or the side file's
 * address is where it listens. */
scout_early_t *scout_early_new(struct ev_loop *loop, const char *cache_dir,
                               const scout_snapside_inputs_t *in, char *why);

/* The address it listens on. */
const char *scout_early_listen(const scout_early_t *e);

/* The fingerprint it checked (the loaded policy's must equal it). */
uint64_t scout_early_fingerprint(const scout_early_t *e);

/* The snapshot it serves, read and checked (borrowed until the free). */
const struct scout_snaplazy_s *scout_early_snapshot(const scout_early_t *e);

/* Requests answered and parked so far (for the log and the tests). */
unsigned scout_early_answered(const scout_early_t *e);

/* The server, for scout_api_adopt, and the parked requests, for
 * scout_api_dispatch (*parked malloc'd, the caller frees the array), in
 * the order they came.  After it e answers nothing new; free it with
 * scout_early_free, which waits for a list render under way to end. */
scout_http_t *scout_early_handover(scout_early_t *e,
                                   scout_http_req_t ***parked, int *n);

/* Closes the server too unless it was handed over. */
void scout_early_free(scout_early_t *e);
/* Before scout_early_free of a server handed over: its snapshot's bytes
 * given back a slice per call, max bytes each; SCOUT_AGAIN while some are
 * left, SCOUT_OK when none (or a list render under way still reads the
 * server: scout_early_free waits for it then, as before). */
int  scout_early_release(scout_early_t *e, size_t max);

#endif
