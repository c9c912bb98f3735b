/*
 * svclist.h -- the bytes of GET /v1/services, one service at a time: the
 * one encoder for the loaded API (api.c) and the early server (early.c),
 * so that both answer the same bytes for the same snapshot (test_early.py
 * compares them; test_svclist.c pins the keys, their order and the bytes).
 */
#ifndef SCOUT_SVCLIST_H
#define SCOUT_SVCLIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char   *buf;
    size_t  len, cap;
} scout_svclist_t;

/* Empty, with room for want bytes (SCOUT_ERROR: out of memory). */
int   scout_svclist_init(scout_svclist_t *l, size_t want);
/* Empty again, the buffer kept (a render started over). */
void  scout_svclist_reset(scout_svclist_t *l);
/* One service's object, after "[" or ",": name, path, endpoints, index,
 * state, in that order (SCOUT_ERROR: out of memory). */
int   scout_svclist_add(scout_svclist_t *l, const char *name,
                        const char *path, unsigned endpoints,
                        uint64_t index, const char *state);
/* The list closed ("[]" when nothing was added); the buffer is the
 * caller's (free), l is empty.  NULL: out of memory (l is freed). */
char *scout_svclist_finish(scout_svclist_t *l, size_t *len);
void  scout_svclist_free(scout_svclist_t *l);

#endif
