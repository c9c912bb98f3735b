/*
 * cache.c -- the children table of one watched path and its ordering gates.
 *
 * Lookups are by name through uthash (a packaged, well-kept hash table);
 * lists of dirty and pending children are intrusive so that an event costs
 * O(1) and a child list costs O(children), never O(children^2).
 */
#include "zk/cache.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"

void
scout_cache_init(scout_cache_t *c)
{
    memset(c, 0, sizeof(*c));
}

static void
child_free(scout_child_t *child)
{
    free(child->data);
    free(child);
}

void
scout_cache_free(scout_cache_t *c)
{
    scout_child_t *child, *tmp;

    HASH_ITER(hh, c->children, child, tmp) {
        HASH_DEL(c->children, child);
        child_free(child);
    }
    for (unsigned i = 0; i < c->nremoved; i++)
        free(c->removed[i]);
    free(c->removed);
    memset(c, 0, sizeof(*c));
}

scout_child_t *
scout_cache_find(scout_cache_t *c, const char *name)
{
    scout_child_t *child;

    HASH_FIND_STR(c->children, name, child);
    return child;
}

static void
list_unlink(scout_child_t **head, scout_child_t *child, size_t next_off)
{
    scout_child_t **pp = head;

    while (*pp != NULL) {
        scout_child_t **next = (scout_child_t **)((char *)*pp + next_off);
        if (*pp == child) {
            *pp = *next;
            *next = NULL;
            return;
        }
        pp = next;
    }
}

static void
make_pending(scout_cache_t *c, scout_child_t *child)
{
    if (child->pending)
        return;
    child->pending = 1;
    child->next_pending = c->pending;
    c->pending = child;
}

void
scout_cache_mark_dirty(scout_cache_t *c, scout_child_t *child)
{
    if (child->data_dirty)
        return;
    child->data_dirty = 1;
    child->next_dirty = c->dirty;
    c->dirty = child;
}

void
scout_cache_mark_all_dirty(scout_cache_t *c)
{
    scout_child_t *child, *tmp;

    HASH_ITER(hh, c->children, child, tmp) {
        if (child->needs_data)
            scout_cache_mark_dirty(c, child);
    }
}

static int
remember_removed(scout_cache_t *c, const char *name)
{
    if (c->nremoved == c->removed_cap) {
        unsigned cap = c->removed_cap ? c->removed_cap * 2 : 16;
        char **r = realloc(c->removed, cap * sizeof(*r));
        if (r == NULL)
            return SCOUT_ERROR;
        c->removed = r;
        c->removed_cap = cap;
    }
    c->removed[c->nremoved] = strdup(name);
    if (c->removed[c->nremoved] == NULL)
        return SCOUT_ERROR;
    c->nremoved++;
    return SCOUT_OK;
}

void
scout_cache_remove(scout_cache_t *c, scout_child_t *child)
{
    if (child->announced)
        remember_removed(c, child->name);
    if (child->pending)
        list_unlink(&c->pending, child,
                    offsetof(scout_child_t, next_pending));
    if (child->data_dirty)
        list_unlink(&c->dirty, child, offsetof(scout_child_t, next_dirty));
    if (child->refetch)
        c->refetching--;
    HASH_DEL(c->children, child);
    c->count--;
    if (child->needs_data) {
        c->data_children--;
        c->data_name_bytes -= strlen(child->name);
    }
    /* a deleted child's data watch fired (or fires) and leaves the client */
    if (child->slotted && c->slot_bytes != NULL) {
        size_t bytes = c->slot_base + strlen(child->name);

        c->slot_bytes[child->slot] -= bytes;
        *c->slot_total[child->slot] -= bytes;
    }
    child_free(child);
}

/* A new child, once its codec has said whether its data is read. */
static void
place_new(scout_cache_t *c, scout_child_t *child, int needs_data)
{
    child->needs_data = needs_data ? 1 : 0;
    if (child->needs_data) {
        c->data_children++;
        c->data_name_bytes += strlen(child->name);
        scout_cache_mark_dirty(c, child);
    }
    else
        make_pending(c, child);
}

/* The codec is asked once for every new child of a list. */
static void
ask_needs_data(scout_cache_t *c, scout_child_t **fresh, unsigned n,
               scout_cache_needs_data_fn needs_data, void *ud)
{
    const char **names;
    unsigned char *need;

    if (n == 0)
        return;
    names = malloc(n * (sizeof(*names) + 1));
    if (names == NULL) {
        for (unsigned k = 0; k < n; k++)
            place_new(c, fresh[k], 1);
        return;
    }
    need = (unsigned char *)(names + n);
    for (unsigned k = 0; k < n; k++)
        names[k] = fresh[k]->name;
    needs_data(ud, names, n, need);
    for (unsigned k = 0; k < n; k++)
        place_new(c, fresh[k], need[k]);
    free(names);
}

int
scout_cache_apply_children(scout_cache_t *c,
                           const struct String_vector *names,
                           const struct Stat *stat,
                           scout_cache_needs_data_fn needs_data, void *ud,
                           unsigned *changed)
{
    scout_child_t *child, *tmp, **fresh = NULL;
    unsigned nfresh = 0, cap = 0;
    size_t len;

    *changed = 0;
    if (c->have_list && stat->pzxid < c->pzxid)
        return SCOUT_AGAIN;
    c->have_list = 1;
    c->pzxid = stat->pzxid;

    HASH_ITER(hh, c->children, child, tmp) {
        child->seen = 0;
    }
    for (int32_t i = 0; i < names->count; i++) {
        const char *name = names->data[i];

        child = scout_cache_find(c, name);
        if (child != NULL) {
            child->seen = 1;
            continue;
        }
        len = strlen(name);
        if ((child = calloc(1, offsetof(scout_child_t, name) + len + 1))
            == NULL)
            continue;           /* the next list will bring it back */
        memcpy(child->name, name, len + 1);
        child->seen = 1;
        (*changed)++;
        /* Without a data read the best zxid we know is the listing's. */
        child->mzxid = stat->pzxid;
        HASH_ADD_KEYPTR(hh, c->children, child->name, len, child);
        c->count++;
        if (nfresh == cap) {    /* grows with the new names, not the list */
            scout_child_t **f = realloc(fresh, (cap ? 2 * cap : 16)
                                               * sizeof(*fresh));
            if (f == NULL) {
                place_new(c, child, 1);     /* reading is always safe */
                continue;
            }
            fresh = f;
            cap = cap ? 2 * cap : 16;
        }
        fresh[nfresh++] = child;
    }
    ask_needs_data(c, fresh, nfresh, needs_data, ud);
    free(fresh);
    HASH_ITER(hh, c->children, child, tmp) {
        if (!child->seen) {
            scout_cache_remove(c, child);
            (*changed)++;
        }
    }
    return SCOUT_OK;
}

void
scout_cache_apply_missing(scout_cache_t *c)
{
    scout_child_t *child, *tmp;

    HASH_ITER(hh, c->children, child, tmp) {
        scout_cache_remove(c, child);
    }
    c->have_list = 1;
}

int
scout_cache_apply_data(scout_cache_t *c, scout_child_t *child,
                       const char *data, int len, const struct Stat *stat)
{
    char *copy = NULL;

    /* An older incarnation of the name, or an older version of this one.
     * A refetch must bring bytes back: it is read again. */
    if ((child->czxid != 0 && stat->czxid < child->czxid)
        || (stat->czxid == child->czxid && stat->mzxid < child->mzxid)) {
        if (child->refetch)
            scout_cache_mark_dirty(c, child);
        return SCOUT_AGAIN;
    }
    if (len > 0) {
        copy = malloc((size_t)len + 1);
        if (copy == NULL)
            return SCOUT_ERROR;
        memcpy(copy, data, (size_t)len);
        copy[len] = '\0';
    }
    free(child->data);
    child->data = copy;
    child->data_len = len > 0 ? len : 0;
    child->has_data = 1;
    child->czxid = stat->czxid;
    child->mzxid = stat->mzxid;
    if (stat->mzxid > c->max_mzxid)
        c->max_mzxid = stat->mzxid;
    if (child->refetch) {
        child->refetch = 0;
        c->refetching--;
        make_pending(c, child);
    }
    if (!child->announced || child->announced_mzxid != child->mzxid)
        make_pending(c, child);
    return SCOUT_OK;
}

unsigned
scout_cache_mark_all_pending(scout_cache_t *c)
{
    scout_child_t *child, *tmp;
    unsigned n = 0;

    HASH_ITER(hh, c->children, child, tmp) {
        if (child->needs_data && child->has_data && child->data == NULL
            && child->data_len > 0) {
            /* its bytes were let go at commit: read them again */
            if (!child->refetch) {
                child->refetch = 1;
                c->refetching++;
            }
            child->announced = 1;
            scout_cache_mark_dirty(c, child);
            n++;
        } else if (!child->needs_data || child->has_data) {
            child->announced = 1;   /* a later removal must be reported */
            make_pending(c, child);
        }
    }
    return n;
}

int
scout_cache_refetching(const scout_cache_t *c)
{
    return c->refetching > 0;
}

int
scout_cache_has_pending(const scout_cache_t *c)
{
    return c->pending != NULL || c->nremoved > 0;
}

void
scout_cache_delivered(scout_cache_t *c)
{
    for (scout_child_t *child = c->pending; child; child = child->next_pending)
        child->announced = 1;
}

void
scout_cache_commit(scout_cache_t *c)
{
    scout_child_t *child = c->pending, *next;

    for (; child != NULL; child = next) {
        next = child->next_pending;
        child->next_pending = NULL;
        child->pending = 0;
        child->announced = 1;
        child->announced_mzxid = child->mzxid;
        /* the policy holds what it decoded; data_len stays: it was read */
        if (!c->keep_data) {
            free(child->data);
            child->data = NULL;
        }
    }
    c->pending = NULL;
    for (unsigned i = 0; i < c->nremoved; i++)
        free(c->removed[i]);
    c->nremoved = 0;
}
