/*
 * endpoint.h -- a published endpoint list: immutable once built, rendered
 * to JSON exactly once, and shared by every reader until the next publish.
 */
#ifndef SCOUT_ENDPOINT_H
#define SCOUT_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *key;
    char *value;
} scout_meta_t;

typedef struct {
    char         *id;        /* the znode name */
    char         *host;
    char         *status;
    int           port;
    int           weight;
    int64_t       zxid;
    scout_meta_t *meta;      /* sorted by key */
    int           nmeta;
} scout_endpoint_t;

typedef struct {
    scout_endpoint_t *eps;   /* sorted by id */
    int               n;
    char             *json;  /* the API body: a JSON array */
    size_t            json_len;
} scout_epset_t;

scout_epset_t *scout_epset_new(int n);
/* Render eps to JSON; SCOUT_ERROR on allocation failure. */
int  scout_epset_render(scout_epset_t *set);
void scout_epset_free(scout_epset_t *set);

#endif
