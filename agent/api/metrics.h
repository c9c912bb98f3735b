/*
 * metrics.h -- GET /metrics, Prometheus's text format, from what the view
 * and stats.h hold.  Private to agent/api/.
 */
#ifndef SCOUT_METRICS_H
#define SCOUT_METRICS_H

#include <stdint.h>

#include "api/api.h"

typedef struct scout_api_metrics_s scout_api_metrics_t;

/* A render in progress; view is borrowed and must outlive it.  NULL when
 * out of memory. */
scout_api_metrics_t *scout_api_metrics_begin(const scout_api_view_t *view);

/* Renders services until done (SCOUT_OK), or until the CLOCK_MONOTONIC
 * deadline (scout_now_ns) has passed with services left (SCOUT_AGAIN);
 * SCOUT_ERROR when out of memory.  Safe across reloads: a changed service
 * list restarts the render. */
int scout_api_metrics_step(scout_api_metrics_t *m, int64_t deadline_ns);

/* After SCOUT_OK: the whole exposition in a malloc'd buffer (*len bytes)
 * the caller frees, or NULL when out of memory.  Frees m either way. */
char *scout_api_metrics_finish(scout_api_metrics_t *m, unsigned http_conns,
                               unsigned parked, size_t *len);

/* Drops a render that is not finished. */
void scout_api_metrics_free(scout_api_metrics_t *m);

/* Policy reloads so far: a render in slices that sees it move (or the
 * number of services change) starts again. */
unsigned scout_api_metrics_reloads(const scout_api_view_t *view);

#endif
