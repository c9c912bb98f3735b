/*
 * spread.c -- one path's data watches spread over several sessions.
 *
 * The C client re-sends all watches of a session in one SetWatches packet
 * when it reconnects, and the server closes the connection on a packet over
 * jute.maxbuffer (1 MB; ZOOKEEPER-706): a service with enough children with
 * data could never reconnect.  Each child's data watch therefore lives on a
 * session "slot" with room under the budget, kept for as long as the child
 * is known (a read always sets its watch in the same request, on the slot's
 * session); the agent's pool adds sessions when every slot is full.  The
 * child list, syncs and anti-entropy stay on the watch's own session (slot
 * 0).  Watches with more than one slot are on the `spread` list, which the
 * pool sessions' transitions walk.
 */
#include "zk/watch_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"

static scout_watch_t *spread;   /* watches with more than one slot */

/* the pool of extra sessions for data watches (scout_watch_set_pool) */
static size_t              pool_budget;
static scout_watch_pool_fn pool_fn;
static void               *pool_ud;

void
scout_watch_set_pool(size_t budget, scout_watch_pool_fn fn, void *ud)
{
    pool_budget = budget;
    pool_fn = fn;
    pool_ud = ud;
}

int
scout_watch_slot_of(const scout_watch_t *w, const void *session)
{
    for (int i = 0; i < w->nslots; i++)
        if (w->slot_session[i] == session)
            return i;
    return -1;
}

zhandle_t *
scout_watch_slot_zh(scout_watch_t *w, int slot)
{
    scout_session_t *s = w->slot_session[slot];

    if (scout_session_state(s) != SCOUT_SESSION_CONNECTED)
        return NULL;
    return scout_session_zh(s);
}

void
scout_watch_kick_slots(scout_watch_t *w)
{
    for (int i = 0; i < w->nslots; i++)
        scout_session_kick(w->slot_session[i]);
}

void
scout_watch_slots_init(scout_watch_t *w, scout_session_t *session)
{
    w->slot_session = &w->slot0_session;
    w->slot_bytes = &w->slot0_bytes;
    w->slot0_session = session;
    w->slot0_bytes = 0;
    w->nslots = 1;
    w->cache.slot_bytes = w->slot_bytes;
}

void
scout_watch_slots_free(scout_watch_t *w)
{
    if (w->slot_session != NULL && w->slot_session != &w->slot0_session) {
        free(w->slot_session);
        free(w->slot_bytes);
    }
    w->slot_session = NULL;
    w->slot_bytes = NULL;
}

/* Room for every slot, allocated the first time a path spreads; on failure
 * the path stays on the slots it has (the least full takes the child). */
static int
slots_grow(scout_watch_t *w)
{
    scout_session_t **ss;
    size_t *sb;

    if (w->slot_session != &w->slot0_session)
        return SCOUT_OK;
    ss = calloc(SCOUT_WATCH_MAX_SLOTS, sizeof(*ss));
    sb = calloc(SCOUT_WATCH_MAX_SLOTS, sizeof(*sb));
    if (ss == NULL || sb == NULL) {
        free(ss);
        free(sb);
        return SCOUT_ERROR;
    }
    ss[0] = w->slot0_session;
    sb[0] = w->slot0_bytes;
    w->slot_session = ss;
    w->slot_bytes = sb;
    if (w->cache.slot_bytes != NULL)    /* NULL once retired */
        w->cache.slot_bytes = sb;
    return SCOUT_OK;
}

/* The slot a child's data watch lives on: the first with room under the
 * budget (slot 0 is the service's session, shared with other services, so
 * it gets half), else a new session from the pool, else the least full. */
int
scout_watch_assign_slot(scout_watch_t *w, scout_child_t *child)
{
    size_t bytes = w->cache.slot_base + strlen(child->name);
    int best = 0;

    if (child->slotted)
        return child->slot;
    for (int i = 0; pool_budget > 0 && i < w->nslots; i++) {
        size_t budget = i == 0 ? pool_budget / 2 : pool_budget;

        if (w->slot_bytes[i] + bytes <= budget) {
            best = i;
            goto found;
        }
        if (w->slot_bytes[i] < w->slot_bytes[best])
            best = i;
    }
    if (pool_budget > 0 && pool_fn != NULL
        && w->nslots < SCOUT_WATCH_MAX_SLOTS && slots_grow(w) == SCOUT_OK) {
        scout_session_t *s = pool_fn(pool_ud);

        if (s != NULL) {
            if (w->nslots == 1) {      /* now on the spread list */
                w->next_spread = spread;
                spread = w;
            }
            best = w->nslots++;
            w->slot_session[best] = s;
            w->slot_bytes[best] = 0;
            scout_log(SCOUT_LOG_INFO, "watch", "%s: data watches over %zu "
                      "bytes per session; spreading them to session slot %d",
                      w->path, pool_budget, best);
        }
    }
found:
    child->slot = (unsigned)best;
    child->slotted = 1;
    w->slot_bytes[best] += bytes;
    return best;
}

size_t
scout_watch_session_bytes(const scout_watch_t *w,
                          const scout_session_t *session)
{
    size_t bytes = 0;

    if (w->session == session)      /* the child-list (or exists) watch */
        bytes += 4 + w->path_len;
    for (int i = 0; i < w->nslots; i++)
        if (w->slot_session[i] == session)
            bytes += w->slot_bytes[i];
    return bytes;
}

void
scout_watch_on_pool_session(scout_session_t *session,
                            scout_session_state_t state, int new_session,
                            int jitter_ms)
{
    if (state != SCOUT_SESSION_CONNECTED)
        return;
    for (scout_watch_t *w = spread; w != NULL; w = w->next_spread) {
        int slot = scout_watch_slot_of(w, session);
        scout_child_t *child, *ctmp;

        if (slot < 1)
            continue;       /* slot 0: scout_watch_on_session */
        if (new_session) {
            /* that session's watches are gone: read its children again */
            HASH_ITER(hh, w->cache.children, child, ctmp)
                if (child->slotted && (int)child->slot == slot
                    && child->needs_data)
                    scout_cache_mark_dirty(&w->cache, child);
        }
        if (w->cache.dirty == NULL || ev_is_active(&w->timer))
            continue;
        if (new_session && jitter_ms > 0) {
            int ms = rand() % (jitter_ms + 1);

            w->deadline = ev_now(w->loop) + ms / 1000.0;
            ev_timer_set(&w->timer, ms / 1000.0, 0.);
            ev_timer_start(w->loop, &w->timer);
        } else {
            scout_watch_read_dirty(w);
        }
    }
}

void
scout_watch_spread_del(scout_watch_t *w)
{
    for (scout_watch_t **pp = &spread; *pp != NULL; pp = &(*pp)->next_spread)
        if (*pp == w) {
            *pp = w->next_spread;
            return;
        }
}
