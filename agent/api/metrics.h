/*
 * metrics.h -- GET /metrics, Prometheus's text format, from what the view
 * and stats.h hold.  Private to agent/api/.
 */
#ifndef SCOUT_METRICS_H
#define SCOUT_METRICS_H

#include "api/api.h"
#include "api/http.h"

int scout_api_metrics(const scout_api_view_t *view, scout_http_req_t *req,
                      unsigned http_conns, unsigned parked);

#endif
