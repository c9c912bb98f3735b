/*
 * svclist.c -- GET /v1/services' bytes (svclist.h).  Why one encoder: the
 * early server answers the table before the policy is loaded and must send
 * what the loaded agent sends for the same snapshot; two copies of the
 * encoder could drift (a key renamed in one).  Each object goes through
 * jansson (its escaping and number format are the API's) straight into a
 * growing buffer: a tree of every service at once left megabytes of heap
 * behind.
 */
#include "api/svclist.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"

static int
put(scout_svclist_t *l, const char *s, size_t n)
{
    if (l->len + n > l->cap) {
        size_t cap = l->cap ? l->cap : 4096;
        char *p;

        while (cap < l->len + n)
            cap *= 2;
        if ((p = realloc(l->buf, cap)) == NULL)
            return SCOUT_ERROR;
        l->buf = p;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return SCOUT_OK;
}

static int
dump(const char *s, size_t n, void *l)
{
    return put(l, s, n) == SCOUT_OK ? 0 : -1;
}

int
scout_svclist_init(scout_svclist_t *l, size_t want)
{
    l->len = 0;
    l->cap = want ? want : 1;
    l->buf = malloc(l->cap);
    return l->buf != NULL ? SCOUT_OK : SCOUT_ERROR;
}

void
scout_svclist_reset(scout_svclist_t *l)
{
    l->len = 0;
}

int
scout_svclist_add(scout_svclist_t *l, const char *name, const char *path,
                  unsigned endpoints, uint64_t index, const char *state)
{
    json_t *o = json_pack("{ss ss si sI ss}", "name", name, "path", path,
                          "endpoints", (int)endpoints,
                          "index", (json_int_t)index, "state", state);
    int rc = o == NULL ? SCOUT_ERROR : put(l, l->len > 0 ? "," : "[", 1);

    if (rc == SCOUT_OK
        && json_dump_callback(o, dump, l,
                              JSON_COMPACT | JSON_PRESERVE_ORDER) != 0)
        rc = SCOUT_ERROR;
    json_decref(o);
    return rc;
}

char *
scout_svclist_finish(scout_svclist_t *l, size_t *len)
{
    char *buf;

    if (put(l, l->len > 0 ? "]" : "[]", l->len > 0 ? 1 : 2) != SCOUT_OK) {
        scout_svclist_free(l);
        return NULL;
    }
    buf = l->buf;
    *len = l->len;
    l->buf = NULL;
    l->len = l->cap = 0;
    return buf;
}

void
scout_svclist_free(scout_svclist_t *l)
{
    free(l->buf);
    l->buf = NULL;
    l->len = l->cap = 0;
}
