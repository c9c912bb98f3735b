/*
 * test_endpoints.h -- endpoints built by hand for the C tests that encode
 * them (the disk snapshot, the shared-memory snapshot).
 */
#ifndef SCOUT_TEST_ENDPOINTS_H
#define SCOUT_TEST_ENDPOINTS_H

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"

/* An endpoint with nmeta key, value pairs after nmeta (keys ascending). */
static inline scout_endpoint_t *
mk_ep(const char *id, const char *host, int port, int weight,
      const char *status, int64_t zxid, int nmeta, ...)
{
    scout_endpoint_t *ep = scout_endpoint_new(id, strlen(id), host,
                                              strlen(host), status,
                                              strlen(status));
    va_list ap;

    ep->port = port;
    ep->weight = weight;
    ep->zxid = zxid;
    ep->nmeta = nmeta;
    ep->meta = nmeta ? calloc((size_t)nmeta, sizeof(*ep->meta)) : NULL;
    va_start(ap, nmeta);
    for (int j = 0; j < nmeta; j++) {
        ep->meta[j].key = strdup(va_arg(ap, const char *));
        ep->meta[j].value = strdup(va_arg(ap, const char *));
    }
    va_end(ap);
    return ep;
}

/* Two endpoints the same, field for field, meta in order. */
static inline int
ep_equal(const scout_endpoint_t *a, const scout_endpoint_t *b)
{
    if (strcmp(a->id, b->id) || strcmp(a->host, b->host)
        || strcmp(a->status, b->status) || a->port != b->port
        || a->weight != b->weight || a->zxid != b->zxid
        || a->nmeta != b->nmeta)
        return 0;
    for (int j = 0; j < a->nmeta; j++)
        if (strcmp(a->meta[j].key, b->meta[j].key)
            || strcmp(a->meta[j].value, b->meta[j].value))
            return 0;
    return 1;
}

#endif
