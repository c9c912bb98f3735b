/*
 * endpoint.c -- endpoint lists and their JSON form.  JSON goes through
 * jansson (packaged, well kept, exact string escaping); we never build JSON
 * by hand.
 */
#include "endpoint.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"

scout_epset_t *
scout_epset_new(int n)
{
    scout_epset_t *set = calloc(1, sizeof(*set));

    if (set == NULL)
        return NULL;
    if (n > 0 && (set->eps = calloc((size_t)n, sizeof(*set->eps))) == NULL) {
        free(set);
        return NULL;
    }
    set->n = n;
    return set;
}

void
scout_epset_free(scout_epset_t *set)
{
    if (set == NULL)
        return;
    for (int i = 0; i < set->n; i++) {
        scout_endpoint_t *ep = &set->eps[i];
        free(ep->id);
        free(ep->host);
        free(ep->status);
        for (int j = 0; j < ep->nmeta; j++) {
            free(ep->meta[j].key);
            free(ep->meta[j].value);
        }
        free(ep->meta);
    }
    free(set->eps);
    free(set->json);
    free(set);
}

static json_t *
endpoint_json(const scout_endpoint_t *ep)
{
    json_t *o = json_object(), *meta = json_object();

    if (o == NULL || meta == NULL) {
        json_decref(o);
        json_decref(meta);
        return NULL;
    }
    for (int j = 0; j < ep->nmeta; j++)
        json_object_set_new(meta, ep->meta[j].key,
                            json_string(ep->meta[j].value));
    json_object_set_new(o, "id", json_string(ep->id));
    json_object_set_new(o, "host", json_string(ep->host));
    json_object_set_new(o, "port", json_integer(ep->port));
    json_object_set_new(o, "weight", json_integer(ep->weight));
    json_object_set_new(o, "status", json_string(ep->status));
    json_object_set_new(o, "zxid", json_integer(ep->zxid));
    json_object_set_new(o, "meta", meta);
    return o;
}

int
scout_epset_render(scout_epset_t *set)
{
    json_t *arr = json_array();

    if (arr == NULL)
        return SCOUT_ERROR;
    for (int i = 0; i < set->n; i++) {
        json_t *o = endpoint_json(&set->eps[i]);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return SCOUT_ERROR;
        }
    }
    free(set->json);
    /* Meta keys are already sorted; ids too: output is deterministic. */
    set->json = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(arr);
    if (set->json == NULL)
        return SCOUT_ERROR;
    set->json_len = strlen(set->json);
    return SCOUT_OK;
}
