/*
 * policy_int.h -- what the files of the policy bridge share and nothing
 * else may use: the bridge's state, the VM, the hook budget, and the
 * runtime's functions.
 */
#ifndef SCOUT_POLICY_INT_H
#define SCOUT_POLICY_INT_H

#include <lua.h>

#include "policy/endpoint_lua.h"
#include "policy/exec.h"
#include "policy/hook.h"
#include "policy/policy.h"
#include "zk/cache.h"

/* The bridge's state: policy.c makes, loads and frees it, policy_update.c
 * runs the updates through it. */
struct scout_policy_s {
    lua_State        *L;
    int               runtime_ref;
    int               budget_ms;
    int               load_budget_ms;
    int               load_holds_loop; /* a reload: the wall clock is the
                                          CPU budget, well inside the
                                          sessions' timeout */
    int               hooked;   /* holds a reference on the budget timer */
    int               jit;      /* scout's library runs compiled (hook.h) */
    scout_hook_mem_t *mem;      /* the heap cap; outlives L */
    scout_execs_t     execs;    /* scout.exec commands running */
    /* each service's published set, by index (scout_policy_bind): the
     * runtime rebuilds a service's endpoint tables from it when it judges
     * the service again, instead of keeping them between changes */
    const scout_epset_t **bound;
    int               nbound;
    /* endpoints the runtime's check built during an update, taken by the
     * publish (endpoint_lua.h); empty between updates */
    scout_endpoint_stash_t built;
    /* the update's list of changed children and the tables it holds, kept
     * in the registry and refilled at each update (push_changes_reused) */
    int               changed_ref;
    /* runtime.update itself, taken once when the runtime is loaded: a
     * change's call found it by name (lua_getfield interns "update" and
     * looks it up at every call) */
    int               update_ref;
    /* untaken[svc]: the C side did not take that service's last update
     * (policy_update.c) */
    unsigned char    *untaken;
    int               nuntaken;
    /* the collector's mode: lazy through the sync, then eager
     * (policy_gc.c) */
    struct {
        int            state;
        int            pause;       /* the pause last set */
        unsigned char *judged;      /* per service: judged whole once */
        int            njudged, nservices;
        int            cycles;      /* the settling collection's, left */
        int            slices;      /* ... and the slices it took */
        double         bound_s;     /* 0: SYNC_BOUND_S (tests set less) */
        struct ev_loop *loop;
        ev_timer       bound, settle;
    } gc;
};


lua_State *scout_policy_L(scout_policy_t *p);
int        scout_policy_budget_ms(const scout_policy_t *p);
/* Push runtime[fn] (lua/scout/runtime.lua). */
void       scout_policy_push_fn(scout_policy_t *p, const char *fn);
/* After a call that allocated: the collector's pause for the heap's size
 * (lazier until the sync is over: policy_gc.c). */
void       scout_policy_tune_gc(scout_policy_t *p);
/* The end of a load that succeeded: the sync of nservices begins. */
int        scout_policy_gc_loaded(scout_policy_t *p, int nservices);
void       scout_policy_gc_attach(scout_policy_t *p, struct ev_loop *loop);
/* Service svc was judged (whatever came of it); whole: with its whole
 * listing, no more reads coming. */
void       scout_policy_gc_judged(scout_policy_t *p, int svc, int whole);
void       scout_policy_gc_free(scout_policy_t *p);
/* Push a cache's removed names and pending children as runtime.update
 * takes them; returns how many. */
int        scout_policy_push_changes(lua_State *L, scout_cache_t *cache);

#endif
