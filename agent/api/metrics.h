/*
 * metrics.h -- GET /metrics, Prometheus's text format, from what the view
 * and stats.h hold.  Private to agent/api/.
 */
#ifndef SCOUT_METRICS_H
#define SCOUT_METRICS_H

#include "api/api.h"

/* The whole exposition in a malloc'd buffer (*len bytes) the caller
 * frees, or NULL when out of memory. */
char *scout_api_metrics_render(const scout_api_view_t *view,
                               unsigned http_conns, unsigned parked,
                               size_t *len);

#endif
