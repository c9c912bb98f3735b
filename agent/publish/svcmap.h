/*
 * svcmap.h -- which slot of an output's per-service array holds a service.
 *
 * The outputs (shmpub, persist) keep one entry per service, parallel to the
 * service list, and hear which service published: finding its slot must not
 * walk the list, or a change would cost the loop O(services) again.  An
 * open-addressing table keyed by the service's address, built once per
 * service list (start, reload), at most half full.  Loop-only.
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

#endif
