/*
 * endpoint.c -- endpoint sets and their JSON form.  JSON goes through
 * jansson (packaged, well kept, exact string escaping); we never build JSON
 * by hand.  Rendering is O(n log n) and happens at most once per change,
 * and only when a reader asks.
 */
#include "endpoint.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"

static char *
put(char *dst, const char *src, size_t len)
{
    memcpy(dst, src, len);
    dst[len] = '\0';
    return dst + len + 1;
}

scout_endpoint_t *
scout_endpoint_new(const char *id, size_t id_len, const char *host,
                   size_t host_len, const char *status, size_t status_len)
{
    scout_endpoint_t *ep = calloc(1, sizeof(*ep) + id_len + host_len
                                     + status_len + 3);
    char *p;

    if (ep == NULL)
        return NULL;
    p = (char *)(ep + 1);
    ep->id = p;
    p = put(p, id, id_len);
    ep->host = p;
    p = put(p, host, host_len);
    ep->status = p;
    put(p, status, status_len);
    return ep;
}

void
scout_endpoint_free(scout_endpoint_t *ep)
{
    if (ep == NULL)
        return;
    for (int j = 0; j < ep->nmeta; j++) {
        free(ep->meta[j].key);
        free(ep->meta[j].value);
    }
    free(ep->meta);
    free(ep);
}

void
scout_epset_init(scout_epset_t *set)
{
    memset(set, 0, sizeof(*set));
}

void
scout_epset_free(scout_epset_t *set)
{
    scout_endpoint_t *ep, *tmp;

    HASH_ITER(hh, set->map, ep, tmp) {
        HASH_DEL(set->map, ep);
        scout_endpoint_free(ep);
    }
    free(set->json);
    memset(set, 0, sizeof(*set));
}

void
scout_epset_del(scout_epset_t *set, const char *id)
{
    scout_endpoint_t *ep;

    HASH_FIND_STR(set->map, id, ep);
    if (ep == NULL)
        return;
    HASH_DEL(set->map, ep);
    scout_endpoint_free(ep);
    set->n--;
    free(set->json);
    set->json = NULL;
}

void
scout_epset_put(scout_epset_t *set, scout_endpoint_t *ep)
{
    scout_epset_del(set, ep->id);
    HASH_ADD_KEYPTR(hh, set->map, ep->id, strlen(ep->id), ep);
    set->n++;
    free(set->json);
    set->json = NULL;
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

static int
by_id(const void *a, const void *b)
{
    return strcmp((*(scout_endpoint_t *const *)a)->id,
                  (*(scout_endpoint_t *const *)b)->id);
}

const char *
scout_epset_json(scout_epset_t *set, size_t *len)
{
    scout_endpoint_t **sorted, *ep, *tmp;
    json_t *arr;
    unsigned i = 0;

    if (set->json != NULL) {
        *len = set->json_len;
        return set->json;
    }
    sorted = malloc((set->n ? set->n : 1) * sizeof(*sorted));
    arr = json_array();
    if (sorted == NULL || arr == NULL)
        goto fail;
    HASH_ITER(hh, set->map, ep, tmp) {
        sorted[i++] = ep;
    }
    qsort(sorted, set->n, sizeof(*sorted), by_id);
    for (i = 0; i < set->n; i++) {
        json_t *o = endpoint_json(sorted[i]);
        if (o == NULL || json_array_append_new(arr, o) != 0)
            goto fail;
    }
    set->json = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (set->json == NULL)
        goto fail;
    set->json_len = strlen(set->json);
    json_decref(arr);
    free(sorted);
    *len = set->json_len;
    return set->json;

fail:
    json_decref(arr);
    free(sorted);
    return NULL;
}
