/*
 * idlog.c -- the ids changed since a service's last shm slice (idlog.h).
 *
 * One allocation, made at the first change after a slice, grown by
 * doubling up to the bound and let go when the next slice is made: a
 * service whose slice is current holds no memory for it (one pointer in
 * the publisher's per-service entry).  One log of the first size let go is
 * kept for the next change of any service, instead of a calloc and a free
 * per change: that 152-byte free, past glibc's fast bins, merged into the
 * heap's top and made glibc consolidate its fast bins, ~1k instructions a
 * change in the propagation bench (issue 14).  The loop's thread only, as
 * the publisher is.
 */
#include "publish/idlog.h"

#include <stdlib.h>
#include <string.h>

struct scout_idlog_s {
    uint64_t last;          /* the service's index at the last note */
    uint32_t n, len, cap;   /* ids, their bytes, room for bytes */
    int      lost;
    char     ids[];
};

#define FIRST_CAP 128u

static scout_idlog_t *spare;    /* a log let go, of FIRST_CAP, or NULL */

static scout_idlog_t *
made(scout_idlog_t **l)
{
    if (*l != NULL)
        return *l;
    if (spare != NULL) {
        /* as calloc left it: only the header is read before it is written */
        *l = spare;
        spare = NULL;
        memset(*l, 0, sizeof(**l));
    } else if ((*l = calloc(1, sizeof(**l) + FIRST_CAP)) == NULL) {
        return NULL;
    }
    (*l)->cap = FIRST_CAP;
    return *l;
}

void
scout_idlog_lose(scout_idlog_t **l)
{
    if (made(l) != NULL)
        (*l)->lost = 1;
    /* (no memory: NULL, which answers only while the index stays; the
     * change that lost it moved the index) */
}

void
scout_idlog_add(scout_idlog_t **l, const char *id)
{
    size_t need = strlen(id) + 1;
    scout_idlog_t *g;

    if (made(l) == NULL || (*l)->lost)
        return;
    g = *l;
    if (g->n >= SCOUT_IDLOG_MAX_IDS
        || need > SCOUT_IDLOG_MAX_BYTES - g->len) {
        g->lost = 1;
        return;
    }
    if (g->len + need > g->cap) {
        uint32_t cap = g->cap * 2;

        while (cap < g->len + need)
            cap *= 2;
        if ((g = realloc(g, sizeof(*g) + cap)) == NULL) {
            (*l)->lost = 1;
            return;
        }
        g->cap = cap;
        *l = g;
    }
    memcpy(g->ids + g->len, id, need);
    g->len += (uint32_t)need;
    g->n++;
}

void
scout_idlog_moved(scout_idlog_t **l, uint64_t index)
{
    /* none yet: this change named no id (the set is as it was), or the
     * first note found no memory -- either way NULL no longer answers,
     * the index having moved */
    if (*l != NULL)
        (*l)->last = index;
}

int
scout_idlog_since(const scout_idlog_t *l, uint64_t base, uint64_t now,
                  const char **ids, uint32_t *n)
{
    if (l == NULL) {
        *ids = NULL;
        *n = 0;
        return now == base;
    }
    if (l->lost || l->last != now)
        return 0;
    *ids = l->ids;
    *n = l->n;
    return 1;
}

void
scout_idlog_free(scout_idlog_t **l)
{
    if (*l != NULL && spare == NULL && (*l)->cap == FIRST_CAP)
        spare = *l;
    else
        free(*l);
    *l = NULL;
}
