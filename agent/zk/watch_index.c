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

/* The key is the path string of one of the entry's watches (every watch
 * leaves the index before its path is freed, and the entry borrows the
 * next one's): a copy of each path was 32 bytes a service. */
typedef struct path_entry_s {
    const char     *path;
    scout_watch_t  *head;           /* watches of this path, any session */
    UT_hash_handle  hh;
} path_entry_t;

static path_entry_t *by_path;

void
scout_watch_index_add(scout_watch_t *w)
{
    path_entry_t *e;

    HASH_FIND_STR(by_path, w->path, e);
    if (e == NULL) {
        if ((e = calloc(1, sizeof(*e))) == NULL)
            return;             /* scout_watch_new() fails for it */
        e->path = w->path;      /* borrowed: see path_entry_t */
        HASH_ADD_KEYPTR(hh, by_path, e->path, strlen(e->path), e);
    }
    w->next_same_path = e->head;
    e->head = w;
    w->indexed = 1;
}

void
scout_watch_index_del(scout_watch_t *w)
{
    path_entry_t *e;
    scout_watch_t **pp;

    if (!w->indexed)
        return;
    w->indexed = 0;
    HASH_FIND_STR(by_path, w->path, e);
    if (e == NULL)
        return;
    for (pp = &e->head; *pp != NULL; pp = &(*pp)->next_same_path) {
        if (*pp == w) {
            *pp = w->next_same_path;
            break;
        }
    }
    if (e->head == NULL) {
        HASH_DEL(by_path, e);
        free(e);
    } else if (e->path == w->path) {
        /* the key was this watch's string: borrow the next one's */
        HASH_DEL(by_path, e);
        e->path = e->head->path;
        HASH_ADD_KEYPTR(hh, by_path, e->path, strlen(e->path), e);
    }
}

/* Events on a watched path (child list, existence). */
void
scout_watch_on_parent_event(zhandle_t *zh, int type, int state,
                            const char *path, void *ctx)
{
    path_entry_t *e;
    (void)zh;
    (void)state;

    if (type == ZOO_SESSION_EVENT)
        return;                 /* the watch stays armed; session.c acts */
    HASH_FIND_STR(by_path, path, e);
    for (scout_watch_t *w = e ? e->head : NULL, *next; w != NULL; w = next) {
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
    path_entry_t *e;
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
    HASH_FIND_STR(by_path, parent, e);
    if (parent != buf)
        free(parent);
    for (scout_watch_t *w = e ? e->head : NULL, *next; w != NULL; w = next) {
        next = w->next_same_path;
        if (scout_watch_slot_of(w, ctx) >= 0)
            scout_watch_child_event(w, type, path);
    }
}
