/*
 * watch_notify.c -- an owner's request to hear from a watch once more.
 *
 * A service over several paths judges its list when any of them changed,
 * but only from a consistent view of its own path: when that path has reads
 * in flight, the judgement waits for them, and the watch must call on_update
 * when they settle even if they brought no change.
 */
#include "zk/watch_int.h"

void
scout_watch_notify(scout_watch_t *w)
{
    w->notify = 1;
}
