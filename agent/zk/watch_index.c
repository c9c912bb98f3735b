/*
 * watch_index.c -- events find their watches by path.
 *
 * Every watch of a session is registered with the same (function, context):
 * the session itself.  On every session event the C client walks its
 * watchers and removes duplicate (function, context) pairs with a linear
 * search per watch; one context per service made that watches x services
 * (a 150 ms stall per session and state change at 10,000 services).  Events
 * find their watches here instead, by path; a retired watch leaves the
 * index and so hears nothing more.  Nothing here reads or schedules: an
 * event is handed to watch.c's scout_watch_parent_event/child_event.
 */
#include "zk/watch_int.h"
#include "zk/watch_index.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"

/* An open-addressed table of the first watch of each path (the others
 * follow on next_same_path), keyed by that watch's own path string: a
 * uthash entry per path was a 72-byte malloc (an 80-byte chunk) a service,
 * a slot here is 8 bytes at a load of at most 3/4.  Linear probing, and a
 * removal shifts the rest of its run back (no tombstones).  Growing
 * rehashes every path once per doubling, as uthash's bucket expansion
 * walked every entry (both a few ms a doubling at 100,000 paths). */
static scout_watch_t **slots;
static size_t          nslot;       /* a power of two, or 0 */
static size_t          used;

static size_t
hash_of(const char *path)
{
    uint64_t h = 1469598103934665603ULL;            /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    /* FNV's low bits, the ones a mask keeps, mix poorly: a finalizer */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h;
}

/* The slot of path: its first watch, or the empty slot it would take
 * (NULL: no table yet). */
static scout_watch_t **
slot_of(const char *path)
{
    size_t i;

    if (nslot == 0)
        return NULL;
    for (i = hash_of(path) & (nslot - 1);
         slots[i] != NULL && strcmp(slots[i]->path, path) != 0;
         i = (i + 1) & (nslot - 1))
        ;
    return &slots[i];
}

/* Rehashes every path into a table of n slots (a power of two that holds
 * them at a load of at most 3/4). */
static int
grow_to(size_t n)
{
    scout_watch_t **old = slots;
    size_t oldn = nslot;

    if ((slots = calloc(n, sizeof(*slots))) == NULL) {
        slots = old;
        return SCOUT_ERROR;
    }
    nslot = n;
    for (size_t i = 0; i < oldn; i++) {
        size_t j;

        if (old[i] == NULL)
            continue;
        /* paths are unique here: the first free slot, no comparisons */
        for (j = hash_of(old[i]->path) & (n - 1); slots[j] != NULL;
             j = (j + 1) & (n - 1))
            ;
        slots[j] = old[i];
    }
    free(old);
    return SCOUT_OK;
}

static int
grow(void)
{
    return grow_to(nslot ? nslot * 2 : 64);
}

/* Room for paths in all, made at once: the services of a start or a reload
 * are added in deadline-bounded slices, and a doubling met in one of them
 * would rehash every path there (~10 ms at 10,000 on a busy host). */
void
scout_watch_index_reserve(size_t paths)
{
    size_t n = nslot ? nslot : 64;

    while (paths * 4 > n * 3)
        n *= 2;
    if (n > nslot && grow_to(n) != SCOUT_OK)
        return;                 /* it grows as paths come, as before */
}

/* Slot i was emptied: move the run after it back so that no lookup stops
 * short of its path. */
static void
shift_back(size_t i)
{
    size_t mask = nslot - 1;

    for (size_t j = (i + 1) & mask; slots[j] != NULL; j = (j + 1) & mask) {
        size_t k = hash_of(slots[j]->path) & mask;

        /* j's path may move to i when its home k is not in (i, j] */
        if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
            slots[i] = slots[j];
            slots[j] = NULL;
            i = j;
        }
    }
}

void
scout_watch_index_add(scout_watch_t *w)
{
    scout_watch_t **slot;

    if ((used + 1) * 4 > nslot * 3 && grow() != SCOUT_OK)
        return;                 /* scout_watch_new() fails for it */
    slot = slot_of(w->path);
    if (*slot == NULL)
        used++;
    w->next_same_path = *slot;
    *slot = w;
    w->indexed = 1;
}

void
scout_watch_index_del(scout_watch_t *w)
{
    scout_watch_t **slot, **pp;

    if (!w->indexed)
        return;
    w->indexed = 0;
    if ((slot = slot_of(w->path)) == NULL || *slot == NULL)
        return;
    for (pp = slot; *pp != NULL; pp = &(*pp)->next_same_path) {
        if (*pp == w) {
            *pp = w->next_same_path;
            break;
        }
    }
    if (*slot != NULL)
        return;                 /* the path's next watch is its key now */
    shift_back((size_t)(slot - slots));
    if (--used == 0) {
        free(slots);            /* the last watch left: nothing held */
        slots = NULL;
        nslot = 0;
    }
}

/* Events on a watched path (child list, existence). */
void
scout_watch_on_parent_event(zhandle_t *zh, int type, int state,
                            const char *path, void *ctx)
{
    scout_watch_t **slot;
    (void)zh;
    (void)state;

    if (type == ZOO_SESSION_EVENT)
        return;                 /* the watch stays armed; session.c acts */
    slot = slot_of(path);
    for (scout_watch_t *w = slot ? *slot : NULL, *next; w != NULL; w = next) {
        next = w->next_same_path;
        if (w->session == ctx)
            scout_watch_parent_event(w, type);
    }
}

/* Events on a child's data: its parent is the watched path. */
void
scout_watch_on_child_event(zhandle_t *zh, int type, int state,
                           const char *path, void *ctx)
{
    char buf[1024];
    char *parent = buf;
    const char *slash = strrchr(path, '/');
    scout_watch_t **slot;
    size_t len;
    (void)zh;
    (void)state;

    if (type == ZOO_SESSION_EVENT || slash == NULL)
        return;
    len = slash == path ? 1 : (size_t)(slash - path);   /* "/x" -> "/" */
    /* ZooKeeper's paths have no length limit of their own: a long one must
     * not lose its events (it did, silently, past a fixed 4 KB buffer) */
    if (len >= sizeof(buf) && (parent = malloc(len + 1)) == NULL) {
        scout_log(SCOUT_LOG_ERROR, "watch", "out of memory: an event for a "
                  "child of a %zu-byte path is lost", len);
        return;
    }
    memcpy(parent, path, len);
    parent[len] = '\0';
    slot = slot_of(parent);
    if (parent != buf)
        free(parent);
    for (scout_watch_t *w = slot ? *slot : NULL, *next; w != NULL; w = next) {
        next = w->next_same_path;
        if (scout_watch_slot_of(w, ctx) >= 0)
            scout_watch_child_event(w, type, path);
    }
}
