/*
 * spread.c -- data watches spread over sessions, so that no session's
 * re-sent watches pass what ZooKeeper accepts.
 *
 * The C client re-sends all watches of a session in one SetWatches packet
 * when it reconnects, and the server closes the connection on a packet over
 * jute.maxbuffer (1 MB; ZOOKEEPER-706): a session that watched too much
 * could never reconnect.  Room is judged per session, over every path on
 * it: each session has a total of watched bytes (child-list and exists
 * watches, data watches), kept here as watches are placed and dropped, O(1)
 * each.  A child's data watch goes to a session "slot" of its path whose
 * total stays under the budget, else to a pool session with room (shared by
 * every path), else to a new pool session; the child keeps that slot for as
 * long as it is known (a read always sets its watch in the same request, on
 * the slot's session).  Judging per path was not enough: 10,000 services of
 * 100 children each stayed under the budget one by one and filled their
 * shared session to 4 MB.  The child list, syncs and anti-entropy stay on
 * the watch's own session (slot 0).  Watches with more than one slot are on
 * the `spread` list, which the pool sessions' transitions walk.
 */
#include "zk/watch_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"

static scout_watch_t *spread;   /* watches with more than one slot */

/* Each session's watched bytes: what its SetWatches would carry. */
typedef struct {
    const scout_session_t *session;
    size_t                 bytes;
    UT_hash_handle         hh;
} acct_t;

static acct_t  *accts;              /* by session pointer */
static size_t   acct_lost;          /* the total of a session without one */
static acct_t  *pool[SCOUT_WATCH_MAX_SLOTS];    /* the pool's sessions */
static int      npool;

static size_t *
total_of(const scout_session_t *session)
{
    acct_t *a;

    HASH_FIND_PTR(accts, &session, a);
    if (a == NULL) {
        if ((a = calloc(1, sizeof(*a))) == NULL)
            return &acct_lost;      /* counted nowhere: never over budget */
        a->session = session;
        HASH_ADD_PTR(accts, session, a);
    }
    return &a->bytes;
}

size_t
scout_watch_session_total(const scout_session_t *session)
{
    acct_t *a;

    HASH_FIND_PTR(accts, &session, a);
    return a != NULL ? a->bytes : 0;
}

void
scout_watch_accts_free(void)
{
    acct_t *a, *tmp;

    HASH_ITER(hh, accts, a, tmp) {
        HASH_DEL(accts, a);
        free(a);
    }
    npool = 0;
}

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

/* The child-list (or exists) watch on the path: "/path" with its length. */
static size_t
list_bytes(const scout_watch_t *w)
{
    return 4 + w->path_len;
}

void
scout_watch_slots_init(scout_watch_t *w, scout_session_t *session)
{
    w->slot_session = &w->slot0_session;
    w->slot_bytes = &w->slot0_bytes;
    w->slot0_session = session;
    w->slot0_bytes = 0;
    w->slot0_total = total_of(session);
    w->nslots = 1;
    w->cache.slot_bytes = w->slot_bytes;
    w->cache.slot_total = &w->slot0_total;
    *w->slot0_total += list_bytes(w);
}

void
scout_watch_acct_drop(scout_watch_t *w)
{
    if (w->cache.slot_total == NULL)
        return;
    for (int i = 0; i < w->nslots; i++) {
        *w->cache.slot_total[i] -= w->slot_bytes[i];
        w->slot_bytes[i] = 0;
    }
    *w->cache.slot_total[0] -= list_bytes(w);
    if (w->cache.slot_total != &w->slot0_total)
        free(w->cache.slot_total);
    w->cache.slot_bytes = NULL;     /* removals no longer count */
    w->cache.slot_total = NULL;
}

void
scout_watch_slots_free(scout_watch_t *w)
{
    scout_watch_acct_drop(w);
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
    size_t **st;

    if (w->slot_session != &w->slot0_session)
        return SCOUT_OK;
    ss = calloc(SCOUT_WATCH_MAX_SLOTS, sizeof(*ss));
    sb = calloc(SCOUT_WATCH_MAX_SLOTS, sizeof(*sb));
    st = calloc(SCOUT_WATCH_MAX_SLOTS, sizeof(*st));
    if (ss == NULL || sb == NULL || st == NULL) {
        free(ss);
        free(sb);
        free(st);
        return SCOUT_ERROR;
    }
    ss[0] = w->slot0_session;
    sb[0] = w->slot0_bytes;
    st[0] = w->slot0_total;
    w->slot_session = ss;
    w->slot_bytes = sb;
    w->cache.slot_bytes = sb;
    w->cache.slot_total = st;
    return SCOUT_OK;
}

/* A pool session whose total has room for bytes more (first fit: the
 * pool fills in order, and a path's earlier slots were tried already). */
static acct_t *
pool_with_room(size_t bytes)
{
    for (int i = 0; i < npool; i++)
        if (pool[i]->bytes + bytes <= pool_budget)
            return pool[i];
    return NULL;
}

/* A new session from the agent's pool, counted as one of the pool's. */
static acct_t *
pool_new(void)
{
    scout_session_t *s;
    acct_t *a;

    if (pool_fn == NULL || npool >= SCOUT_WATCH_MAX_SLOTS
        || (s = pool_fn(pool_ud)) == NULL)
        return NULL;
    total_of(s);
    HASH_FIND_PTR(accts, &s, a);
    if (a == NULL)
        return NULL;
    pool[npool++] = a;
    return a;
}

/* The slot a child's data watch lives on: the first of the path's slots
 * whose session's total stays under the budget, else a pool session with
 * room (a new slot of the path), else a new pool session, else the least
 * full slot. */
int
scout_watch_assign_slot(scout_watch_t *w, scout_child_t *child)
{
    size_t bytes = w->cache.slot_base + strlen(child->name);
    acct_t *a;
    int best = 0;

    if (child->slotted)
        return child->slot;
    if (pool_budget == 0)
        goto found;
    for (int i = 0; i < w->nslots; i++) {
        if (*w->cache.slot_total[i] + bytes <= pool_budget) {
            best = i;
            goto found;
        }
        if (*w->cache.slot_total[i] < *w->cache.slot_total[best])
            best = i;
    }
    if (w->nslots >= SCOUT_WATCH_MAX_SLOTS || slots_grow(w) != SCOUT_OK)
        goto found;
    if ((a = pool_with_room(bytes)) == NULL && (a = pool_new()) == NULL)
        goto found;
    if (w->nslots == 1) {           /* now on the spread list */
        w->next_spread = spread;
        spread = w;
    }
    best = w->nslots++;
    w->slot_session[best] = (scout_session_t *)a->session;
    w->slot_bytes[best] = 0;
    w->cache.slot_total[best] = &a->bytes;
    scout_log(SCOUT_LOG_DEBUG, "watch", "%s: its sessions are over %zu "
              "watched bytes; data watches go to session slot %d too",
              w->path, pool_budget, best);
found:
    child->slot = (unsigned)best;
    child->slotted = 1;
    w->slot_bytes[best] += bytes;
    *w->cache.slot_total[best] += bytes;
    return best;
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
        scout_child_t *child;

        if (slot < 1)
            continue;       /* slot 0: scout_watch_on_session */
        if (new_session) {
            /* that session's watches are gone: read its children again */
            for (unsigned at = 0;
                 (child = scout_cache_next(&w->cache, &at)) != NULL;)
                if (child->slotted && (int)child->slot == slot
                    && child->needs_data)
                    scout_cache_mark_dirty(&w->cache, child);
        }
        if (w->cache.dirty == NULL || scout_watch_delay_armed(w))
            continue;
        if (new_session && jitter_ms > 0) {
            scout_watch_delay_arm(w, rand() % (jitter_ms + 1));
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
