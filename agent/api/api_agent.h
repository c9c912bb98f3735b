/*
 * api_agent.h -- the routes about the agent itself rather than a service:
 * GET /v1/agent (what is running, since when, against which ensemble, and
 * whether the last reload took), GET /v1/registrations (each registration,
 * its node, its check and the check's recent flips) and GET
 * /v1/health/live (liveness: the process answers, whatever ZooKeeper
 * does).  Private to agent/api/.
 */
#ifndef SCOUT_API_AGENT_H
#define SCOUT_API_AGENT_H

#include "api/api.h"
#include "api/http.h"

int scout_api_agent(const scout_api_view_t *view, scout_http_req_t *req);
int scout_api_live(scout_http_req_t *req);
int scout_api_registrations(const scout_api_view_t *view,
                            scout_http_req_t *req);

#endif
