/*
 * rcbuf.h -- an immutable, reference-counted byte buffer.
 *
 * Why: one rendered answer (a service's endpoint list, its explain) is sent
 * to every client that asks until it changes.  Copying it into each
 * connection's output made a thousand slow readers of a 5 MB list hold
 * 5 GB; sharing one buffer holds 5 MB however many wait.  The owner drops
 * its reference when the answer changes; connections drop theirs when
 * sent.  One thread: the count is a plain integer.
 */
#ifndef SCOUT_RCBUF_H
#define SCOUT_RCBUF_H

#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned refs;
    size_t   len;
    char    *data;      /* malloc'd, owned */
} scout_rcbuf_t;

/* Takes data (malloc'd; freed with the last reference).  NULL when out of
 * memory; data is then freed too. */
static inline scout_rcbuf_t *
scout_rcbuf_adopt(char *data, size_t len)
{
    scout_rcbuf_t *b = malloc(sizeof(*b));

    if (b == NULL) {
        free(data);
        return NULL;
    }
    b->refs = 1;
    b->len = len;
    b->data = data;
    return b;
}

/* A copy of data[0..len) with one reference; NULL when out of memory. */
static inline scout_rcbuf_t *
scout_rcbuf_copy(const char *data, size_t len)
{
    char *d = malloc(len ? len : 1);

    if (d == NULL)
        return NULL;
    memcpy(d, data, len);
    return scout_rcbuf_adopt(d, len);
}

static inline scout_rcbuf_t *
scout_rcbuf_ref(scout_rcbuf_t *b)
{
    b->refs++;
    return b;
}

/* NULL is fine. */
static inline void
scout_rcbuf_unref(scout_rcbuf_t *b)
{
    if (b != NULL && --b->refs == 0) {
        free(b->data);
        free(b);
    }
}

#endif
