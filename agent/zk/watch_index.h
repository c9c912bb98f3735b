/*
 * watch_index.h -- the path index of watches (watch_index.c), for watch.c:
 * every read that sets a watch names one of the two event functions here,
 * with the session as its context.  Internal to agent/zk/watch*.c.
 */
#ifndef SCOUT_WATCH_INDEX_H
#define SCOUT_WATCH_INDEX_H

#include "zk/watch_int.h"

/* Enter a new watch under its path (w->indexed says whether it did: out of
 * memory leaves it out), and leave (retire, free; a no-op when not in). */
void scout_watch_index_add(scout_watch_t *w);
void scout_watch_index_del(scout_watch_t *w);

/* The watcher functions given to ZooKeeper (ctx: the session whose handle
 * set the watch): a watched path's own events, and its children's data. */
void scout_watch_on_parent_event(zhandle_t *zh, int type, int state,
                                 const char *path, void *ctx);
void scout_watch_on_child_event(zhandle_t *zh, int type, int state,
                                const char *path, void *ctx);

#endif
