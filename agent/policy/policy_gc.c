/*
 * policy_gc.c -- when the policy's Lua collector is eager, and when not.
 *
 * A long-lived daemon's Lua heap is mostly live state, and LuaJIT keeps the
 * pages of its high-water mark: past a few MB (thousands of services) the
 * collector starts a cycle as soon as one ends (pause 100), so that RSS
 * stays near the live state (10,000 services without endpoints: 64 -> 43
 * MB).  During the initial sync that is the wrong trade: the heap grows all
 * along, and every eager cycle marks the whole live heap again for little
 * garbage (10,000 x 10: 17% of the updates' instructions with the default
 * pause instead).  So a VM past that size keeps a lazier pause
 * (GC_PAUSE_SYNC, below) from its load until the sync is over, then
 * collects once, in slices that never hold the loop past a millisecond,
 * and turns eager.  A smaller heap keeps the default (200) throughout.
 *
 * "Over" is what this layer sees by itself: every service of the policy
 * has been judged once with its whole first listing (the runtime was not
 * told that more reads were coming), whether the judgement published, was
 * held by protection or failed.  That is never later than the first health
 * 200 (a synced service was judged whole) and it also ends for a service
 * that never syncs but was read: a missing path (judged empty), a filter or
 * an update that keeps failing.  One that is never read at all (ZooKeeper
 * down, a child whose read keeps failing) is bounded by time: SYNC_BOUND_S
 * after the VM is loaded and on the loop, the collector turns eager anyway.
 * The longest sync measured, 100,000 x 10 endpoints, took 55 s to health
 * 200 on a quiet machine; past the bound, a sync that has not ended costs
 * only its eager cycles, as it did before.  A reload's new VM (loaded on a
 * thread) and an early start's start over: their services are judged again
 * by the new VM (a rebind re-judges every child).  Nothing here runs before
 * the VM is attached to the loop, and nothing of it on the loader thread.
 */
#include "policy/policy_int.h"

#include <lauxlib.h>
#include <stdlib.h>

#include "log.h"
#include "scout.h"
#include "stats.h"

/* The heap past which the collector is eager once synced: a small agent
 * (a few MB: nothing to gain) keeps the default and its CPU per change. */
#define SCOUT_GC_EAGER_KB (4 * 1024)
#define GC_PAUSE_EAGER    100
#define GC_PAUSE_DEFAULT  200
/* Through the sync of a heap past SCOUT_GC_EAGER_KB: a cycle once the heap
 * has grown by a fifth.  Not the default (200): the sync's garbage lives in
 * the C heap (the Lua heap is malloc's, heap.h), between the endpoints and
 * children allocated meanwhile, and that much headroom left it fragmented
 * for good (10,000 x 10, VmRSS after the sync; eager before: 58.8-59.1 MB):
 * 200: 63.1-63.7 MB (malloc_trim after the collection gave back 0.3 MB),
 * 150: 61.1, 130: 60.0, 120: 59.5-59.8 MB (bench/scale STOP_AFTER=memory;
 * docs/performance/memory.md).  LuaJIT's own allocator, at 200: 66.7. */
#define GC_PAUSE_SYNC     120
#define SYNC_BOUND_S      300.0
/* One slice of the settling collection: what it may hold the loop. */
#define SETTLE_SLICE_NS   1000000
/* Cycles the settling collection completes: the first ends the cycle in
 * progress (its sweep may be past garbage made since its mark), the second
 * is whole. */
#define SETTLE_CYCLES     2

enum { GC_SYNCING = 1, GC_SETTLING, GC_EAGER };

static void settle_start(scout_policy_t *p);

void
scout_policy_tune_gc(scout_policy_t *p)
{
    int pause = GC_PAUSE_DEFAULT;

    if (lua_gc(p->L, LUA_GCCOUNT, 0) > SCOUT_GC_EAGER_KB)
        pause = p->gc.state == GC_SYNCING ? GC_PAUSE_SYNC : GC_PAUSE_EAGER;
    if (pause != p->gc.pause) {
        lua_gc(p->L, LUA_GCSETPAUSE, pause);
        p->gc.pause = pause;
    }
}

static void
end_sync(scout_policy_t *p, int bounded)
{
    p->gc.state = GC_SETTLING;
    free(p->gc.judged);
    p->gc.judged = NULL;
    if (p->gc.loop != NULL)
        ev_timer_stop(p->gc.loop, &p->gc.bound);
    scout_stats.lua_gc_sync_ends++;
    if (bounded)
        scout_stats.lua_gc_sync_bounds++;
    scout_policy_tune_gc(p);
    scout_log(SCOUT_LOG_INFO, "policy", "%s for the Lua collector (%d of %d "
              "services judged; Lua heap %d KB): one collection, then pause "
              "%d", bounded ? "sync not over after its bound, taken as over"
                            : "initial sync over",
              p->gc.njudged, p->gc.nservices, lua_gc(p->L, LUA_GCCOUNT, 0),
              p->gc.pause);
    settle_start(p);
}

static void
on_bound(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_policy_t *p = t->data;
    (void)loop;
    (void)revents;

    if (p->gc.state == GC_SYNCING)
        end_sync(p, 1);
}

/* Steps of the collector for up to SETTLE_SLICE_NS; returns how many cycles
 * ended.  Protected: a step may run a finalizer. */
static int
settle_steps(lua_State *L)
{
    int64_t end = scout_now_ns() + SETTLE_SLICE_NS;
    int left = (int)lua_tointeger(L, 1), ended = 0;

    do {
        if (lua_gc(L, LUA_GCSTEP, 64) && ++ended == left)
            break;
    } while (scout_now_ns() < end);
    lua_pushinteger(L, ended);
    return 1;
}

static void
on_settle(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_policy_t *p = t->data;
    lua_State *L = p->L;
    (void)revents;

    lua_pushcfunction(L, settle_steps);
    lua_pushinteger(L, p->gc.cycles);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        scout_log(SCOUT_LOG_WARN, "policy", "collecting after the sync: %s",
                  lua_tostring(L, -1));
        p->gc.cycles = 0;
    } else {
        p->gc.cycles -= (int)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    p->gc.slices++;
    if (p->gc.cycles <= 0) {
        p->gc.state = GC_EAGER;
        scout_policy_tune_gc(p);
        scout_stats.lua_gc_settles++;
        scout_log(SCOUT_LOG_INFO, "policy", "collected after the sync in %d "
                  "slices of at most 1 ms: Lua heap %d KB", p->gc.slices,
                  lua_gc(L, LUA_GCCOUNT, 0));
        return;
    }
    ev_timer_set(t, 0, 0);
    ev_timer_start(loop, t);
}

static void
settle_start(scout_policy_t *p)
{
    p->gc.cycles = SETTLE_CYCLES;
    p->gc.slices = 0;
    if (p->gc.loop == NULL)
        return;                 /* scout_policy_gc_attach starts it */
    ev_timer_set(&p->gc.settle, 0, 0);
    ev_timer_start(p->gc.loop, &p->gc.settle);
}

int
scout_policy_gc_loaded(scout_policy_t *p, int nservices)
{
    scout_policy_gc_free(p);    /* a VM loads once; a test may load twice */
    p->gc.state = GC_SYNCING;
    p->gc.nservices = nservices;
    p->gc.njudged = 0;
    if (nservices > 0
        && (p->gc.judged = calloc((size_t)nservices, 1)) == NULL)
        return SCOUT_ERROR;
    if (nservices == 0)
        p->gc.state = GC_EAGER;     /* nothing to sync */
    scout_policy_tune_gc(p);
    if (nservices > 0 && p->gc.loop != NULL)
        ev_timer_start(p->gc.loop, &p->gc.bound);
    return SCOUT_OK;
}

void
scout_policy_gc_attach(scout_policy_t *p, struct ev_loop *loop)
{
    if (p->gc.loop != NULL)
        return;
    p->gc.loop = loop;
    ev_timer_init(&p->gc.bound, on_bound,
                  p->gc.bound_s > 0 ? p->gc.bound_s : SYNC_BOUND_S, 0);
    p->gc.bound.data = p;
    ev_init(&p->gc.settle, on_settle);
    p->gc.settle.data = p;
    if (p->gc.state == GC_SYNCING)
        ev_timer_start(loop, &p->gc.bound);
    else if (p->gc.state == GC_SETTLING)
        settle_start(p);
}

void
scout_policy_gc_judged(scout_policy_t *p, int svc, int whole)
{
    if (p->gc.state != GC_SYNCING || !whole || svc < 0
        || svc >= p->gc.nservices || p->gc.judged[svc])
        return;
    p->gc.judged[svc] = 1;
    if (++p->gc.njudged == p->gc.nservices)
        end_sync(p, 0);
}

int
scout_policy_gc_pause(const scout_policy_t *p)
{
    return p->gc.pause;
}

void
scout_policy_gc_free(scout_policy_t *p)
{
    if (p->gc.loop != NULL) {
        ev_timer_stop(p->gc.loop, &p->gc.bound);
        ev_timer_stop(p->gc.loop, &p->gc.settle);
    }
    free(p->gc.judged);
    p->gc.judged = NULL;
}
