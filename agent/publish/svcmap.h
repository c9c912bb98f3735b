/*
 * svcmap.h -- which slot of an output's per-service array holds a service.
 *
 * The outputs (shmpub, persist) keep one entry per service, parallel to the
 * service list, and hear which service published: finding its slot must not
 * walk the list, or a change would cost the loop O(services) again.  An
 * open-addressing table keyed by the service's address, built once per
 * service list (start, reload), at most half full.  On it, the marks: the
 * slots named since the output last wrote, each once, so that a write
 * visits what changed and not the list; and the slots' order, chosen once
 * per list (the outputs keep theirs in name order, which their files need,
 * so that no write sorts the whole registry again).  Loop-only.
 */
#ifndef SCOUT_SVCMAP_H
#define SCOUT_SVCMAP_H

#include <stdint.h>
#include <stdlib.h>

#include "scout.h"

typedef struct {
    const void **keys;          /* [mask + 1], NULL = empty */
    int         *slots;
    size_t       mask;
} scout_svcmap_t;

static inline size_t
scout_svcmap_hash(const void *key, size_t mask)
{
    uint64_t h = (uint64_t)(uintptr_t)key;

    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & mask;
}

static inline void
scout_svcmap_free(scout_svcmap_t *m)
{
    free(m->keys);
    free(m->slots);
    m->keys = NULL;
    m->slots = NULL;
    m->mask = 0;
}

/* keys[i] gets slot i.  SCOUT_OK, or SCOUT_ERROR (out of memory) with m
 * empty. */
static inline int
scout_svcmap_build(scout_svcmap_t *m, void *const *keys, int n)
{
    size_t size = 8;

    scout_svcmap_free(m);
    while (size < (size_t)n * 2)
        size *= 2;
    m->keys = calloc(size, sizeof(*m->keys));
    m->slots = malloc(size * sizeof(*m->slots));
    if (m->keys == NULL || m->slots == NULL) {
        scout_svcmap_free(m);
        return SCOUT_ERROR;
    }
    m->mask = size - 1;
    for (int i = 0; i < n; i++) {
        size_t h = scout_svcmap_hash(keys[i], m->mask);

        while (m->keys[h] != NULL && m->keys[h] != keys[i])
            h = (h + 1) & m->mask;
        m->keys[h] = keys[i];
        m->slots[h] = i;
    }
    return SCOUT_OK;
}

/* The slot of key, or -1 when it is not in the list. */
static inline int
scout_svcmap_find(const scout_svcmap_t *m, const void *key)
{
    size_t h;

    if (m->keys == NULL || key == NULL)
        return -1;
    for (h = scout_svcmap_hash(key, m->mask); m->keys[h] != NULL;
         h = (h + 1) & m->mask)
        if (m->keys[h] == key)
            return m->slots[h];
    return -1;
}

/* The slots of a service list named since the last write, each once; all
 * when every slot may have moved (a new list, a session change). */
typedef struct {
    scout_svcmap_t  map;
    void          **keys;       /* [n]: slot i's key */
    int            *marked;     /* [n] */
    int             nmarked;
    unsigned char  *is_marked;  /* [n] */
    int             all;
} scout_svcmap_marks_t;

static inline void
scout_svcmap_marks_free(scout_svcmap_marks_t *m)
{
    free(m->keys);
    free(m->marked);
    free(m->is_marked);
    m->keys = NULL;
    m->marked = NULL;
    m->is_marked = NULL;
    m->nmarked = 0;
    scout_svcmap_free(&m->map);
}

/* Marks for keys[0..n), every slot named (all); slots in cmp's order (a
 * qsort comparator on the keys), or in keys' order when cmp is NULL.
 * SCOUT_OK, or SCOUT_ERROR (out of memory) with m empty. */
static inline int
scout_svcmap_marks_build(scout_svcmap_marks_t *m, void *const *keys, int n,
                         int (*cmp)(const void *, const void *))
{
    size_t size = (size_t)(n ? n : 1);

    scout_svcmap_marks_free(m);
    m->keys = malloc(size * sizeof(*m->keys));
    m->marked = malloc(size * sizeof(*m->marked));
    m->is_marked = calloc(size, 1);
    if (m->keys == NULL || m->marked == NULL || m->is_marked == NULL) {
        scout_svcmap_marks_free(m);
        return SCOUT_ERROR;
    }
    for (int i = 0; i < n; i++)
        m->keys[i] = keys[i];
    if (cmp != NULL && n > 1)
        qsort(m->keys, (size_t)n, sizeof(*m->keys), cmp);
    if (scout_svcmap_build(&m->map, m->keys, n) != SCOUT_OK) {
        scout_svcmap_marks_free(m);
        return SCOUT_ERROR;
    }
    m->all = 1;
    return SCOUT_OK;
}

/* key's slot is named; key NULL: every slot.  A key not in the map (the
 * marks not built yet) is left to the build, which names every slot. */
static inline void
scout_svcmap_mark(scout_svcmap_marks_t *m, const void *key)
{
    int i;

    if (key == NULL)
        m->all = 1;
    else if ((i = scout_svcmap_find(&m->map, key)) >= 0 && !m->is_marked[i]) {
        m->is_marked[i] = 1;
        m->marked[m->nmarked++] = i;
    }
}

/* The slot named last and not yet taken, or -1; scout_svcmap_taken() once
 * it is dealt with (a failure leaves it named). */
static inline int
scout_svcmap_next(const scout_svcmap_marks_t *m)
{
    return m->nmarked > 0 ? m->marked[m->nmarked - 1] : -1;
}

static inline void
scout_svcmap_taken(scout_svcmap_marks_t *m)
{
    m->is_marked[m->marked[--m->nmarked]] = 0;
}

#endif
