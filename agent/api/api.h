/*
 * api.h -- the HTTP API (DESIGN.md, "HTTP API"): what scout knows, as JSON,
 * for programs on the host.  Routing and rendering only; the transport is
 * http.c and the data belongs to the agent.
 */
#ifndef SCOUT_API_H
#define SCOUT_API_H

#include <ev.h>

struct scout_agent_s;
typedef struct scout_api_s scout_api_t;

scout_api_t *scout_api_new(struct ev_loop *loop, struct scout_agent_s *agent,
                           const char *listen, char *err);
void scout_api_free(scout_api_t *api);

struct scout_service_s;
/* A service published: answer the blocking queries parked on it. */
void scout_api_notify(scout_api_t *api, struct scout_service_s *svc);

#endif
