/*
 * policy_update.c -- a service's update through the runtime: the cache's
 * changed children in, the judged endpoint list out (policy.h,
 * scout_policy_update and scout_policy_seed).  Apart from policy.c, which
 * makes, loads and frees the VM; this is the path every change takes, so
 * it reuses the tables it hands Lua and takes the endpoints the runtime's
 * check already built.  Lists coming back are copied into C before the
 * stack is popped: nothing here outlives a call.
 */
#include "policy/policy.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"
#include "log.h"
#include "scout.h"

/* A pending child as runtime.update takes it, into the table on top:
 * { name, data or "" or nil, zxid, has_data }.  zxid is the node's mzxid
 * only when its data was read; for a name-only child it is the listing's
 * pzxid, which moves on every restart and must not count as a change. */
static void
fill_child(lua_State *L, const scout_child_t *child)
{
    lua_pushstring(L, child->name);
    lua_rawseti(L, -2, 1);
    if (child->data != NULL)
        lua_pushlstring(L, child->data, scout_cache_data_len(child));
    else if (child->has_data)
        lua_pushliteral(L, "");
    else
        lua_pushnil(L);
    lua_rawseti(L, -2, 2);
    lua_pushnumber(L, (lua_Number)child->mzxid);
    lua_rawseti(L, -2, 3);
    lua_pushboolean(L, child->has_data);
    lua_rawseti(L, -2, 4);
}

/* The cache's removed names, as an array. */
static void
push_removed(lua_State *L, const scout_cache_t *cache)
{
    lua_createtable(L, (int)cache->nremoved, 0);
    for (unsigned i = 0; i < cache->nremoved; i++) {
        lua_pushstring(L, cache->removed[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/* Pushes the removed names and the pending children; returns how many. */
int
scout_policy_push_changes(lua_State *L, scout_cache_t *cache)
{
    scout_child_t *child;
    int n = 0;

    push_removed(L, cache);
    lua_newtable(L);
    for (child = cache->pending; child != NULL; child = child->next_pending) {
        lua_createtable(L, 4, 0);
        fill_child(L, child);
        lua_rawseti(L, -2, ++n);
    }
    return n + (int)cache->nremoved;
}

/* The same lists for runtime.update, whose changed list and the tables in
 * it are refilled, not made anew, at each update: a sync made and dropped
 * one table a child (12% of its Lua allocations).  The runtime must not
 * keep them past the call (it does not: they are its input).  Up to
 * CHANGED_REUSED child tables are kept between updates; the list is
 * cleared past the batch so that its length is the batch's.  The registry
 * holds { list, spare } where spare[k] is the k-th child table. */
#define CHANGED_REUSED 1024

static int
push_changes_reused(scout_policy_t *p, scout_cache_t *cache)
{
    lua_State *L = p->L;
    scout_child_t *child;
    int list, spare, had, n = 0;

    push_removed(L, cache);
    if (p->changed_ref == LUA_NOREF) {
        lua_createtable(L, 2, 0);
        lua_newtable(L);
        lua_rawseti(L, -2, 1);
        lua_newtable(L);
        lua_rawseti(L, -2, 2);
        p->changed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->changed_ref);
    lua_rawgeti(L, -1, 2);
    lua_rawgeti(L, -2, 1);
    lua_remove(L, -3);
    list = lua_gettop(L);       /* the list handed to the runtime */
    spare = list - 1;
    had = (int)lua_objlen(L, list);
    for (child = cache->pending; child != NULL; child = child->next_pending) {
        n++;
        lua_rawgeti(L, spare, n);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            lua_createtable(L, 4, 0);
            if (n <= CHANGED_REUSED) {
                lua_pushvalue(L, -1);
                lua_rawseti(L, spare, n);
            }
        }
        fill_child(L, child);
        lua_rawseti(L, list, n);
    }
    for (int k = had; k > n; k--) {
        lua_pushnil(L);
        lua_rawseti(L, list, k);
    }
    lua_remove(L, spare);
    return n + (int)cache->nremoved;
}

/* An update the C side did not take -- stopped by the budget, or C out of
 * memory reading its lists -- may have been committed by the runtime before
 * it stopped (the commit is followed by the ramp's, the back-off's and the
 * freeze's work, any of which a budget can stop).  Its next update is then
 * judged against what C publishes, not what Lua last committed
 * (runtime.update's 5th argument): else an endpoint committed in Lua alone
 * would be "already published" there and never reach C. */
static void
set_untaken(scout_policy_t *p, int svc, int v)
{
    if (svc >= p->nuntaken) {
        int n = svc + 1 > 2 * p->nuntaken ? svc + 1 : 2 * p->nuntaken;
        unsigned char *u;

        if (!v)
            return;
        if ((u = realloc(p->untaken, (size_t)n)) == NULL) {
            /* cannot remember it: the next update then trusts Lua, as
             * before this flag existed */
            scout_log(SCOUT_LOG_WARN, "policy", "service %d: out of memory "
                      "noting an update not taken", svc + 1);
            return;
        }
        memset(u + p->nuntaken, 0, (size_t)(n - p->nuntaken));
        p->untaken = u;
        p->nuntaken = n;
    }
    p->untaken[svc] = (unsigned char)v;
}

static int
untaken(const scout_policy_t *p, int svc)
{
    return svc < p->nuntaken && p->untaken[svc];
}

void
scout_update_clear(scout_update_t *up)
{
    for (int i = 0; i < up->nup; i++)
        scout_endpoint_free(up->up[i]);
    for (int i = 0; i < up->ngone; i++)
        free(up->gone[i]);
    free(up->up);
    free(up->gone);
    free(up->degraded);
    memset(up, 0, sizeof(*up));
}

int
scout_policy_update(scout_policy_t *p, int svc, scout_cache_t *cache,
                    unsigned rejudge, scout_update_t *out, char *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out, budget, n, rc;
    int whole = cache->dirty == NULL;

    memset(out, 0, sizeof(*out));
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->update_ref);
    lua_pushinteger(L, svc + 1);
    n = push_changes_reused(p, cache);
    /* more reads of this path are coming (children waiting for a read
     * slot: an initial sync): the runtime keeps the service's tables warm
     * for them instead of letting go and rebuilding at each batch */
    lua_pushboolean(L, !whole);
    lua_pushboolean(L, untaken(p, svc));
    scout_cache_delivered(cache);
    /* Decoding a large first listing is real work: the budget grows with
     * the batch (50 us a child) so that only runaway code is stopped. */
    budget = p->budget_ms + (n + (int)rejudge) / 20;
    rc = scout_hook_pcall(L, 5, 11, budget, &timed_out);
    /* judged, whatever came of it: the sync's end for the collector */
    scout_policy_gc_judged(p, svc, whole);
    if (rc != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        scout_endpoint_stash_clear(&p->built);
        lua_settop(L, top);
        set_untaken(p, svc, 1);
        return SCOUT_ERROR;
    }
    set_untaken(p, svc, 0);     /* the runtime judged against C's set */
    scout_policy_tune_gc(p);
    out->decode_errors = (int)lua_tointeger(L, top + 3);
    out->hook_errors = (int)lua_tointeger(L, top + 4);
    if (lua_isnumber(L, top + 5)) {
        out->retry_ms = (int)lua_tointeger(L, top + 5);
        scout_endpoint_stash_clear(&p->built);
        lua_settop(L, top);
        return SCOUT_AGAIN;
    }
    out->reweigh_ms = (int)lua_tointeger(L, top + 6);   /* nil: 0 */
    out->rejected = (int)lua_tointeger(L, top + 8);
    out->spared = (int)lua_tointeger(L, top + 9);       /* nil: 0 */
    if (lua_isstring(L, top + 7)
        && (out->degraded = strdup(lua_tostring(L, top + 7))) == NULL)
        goto oom;

    n = (int)lua_objlen(L, top + 1);
    if (n > 0 && (out->up = calloc((size_t)n, sizeof(*out->up))) == NULL)
        goto oom;
    for (int i = 0; i < n; i++) {
        char why[SCOUT_ERR_LEN];
        scout_endpoint_t *ep = NULL;

        lua_rawgeti(L, top + 1, i + 1);
        /* built at the check, when nothing could change the table since
         * (the runtime's 10th result maps such tables to their place), or
         * a change's one endpoint built there, without hooks or under
         * hooks that left it as it was (the 11th: that table, the stash's
         * first) */
        if (lua_istable(L, top + 10)) {
            lua_pushvalue(L, -1);
            lua_rawget(L, top + 10);
            if (lua_type(L, -1) == LUA_TNUMBER)
                ep = scout_endpoint_stash_take(&p->built,
                                               lua_tointeger(L, -1));
            lua_pop(L, 1);
        } else if (lua_rawequal(L, -1, top + 11)) {
            ep = scout_endpoint_stash_take(&p->built, 1);
        }
        if (ep == NULL)
            ep = scout_endpoint_from_lua(L, lua_gettop(L), why, sizeof(why));
        lua_pop(L, 1);
        if (ep == NULL && why[0] == '\0')
            goto oom;
        if (ep == NULL) {
            /* the runtime checked every child before judging it; only a
             * hook that changed an endpoint in place gets here: that one
             * endpoint stays as C last had it, the rest is published */
            scout_log(SCOUT_LOG_WARN, "policy", "service %d: an endpoint "
                      "changed by a hook is refused: %s", svc + 1, why);
            out->rejected++;
            continue;
        }
        out->up[out->nup++] = ep;
    }
    n = (int)lua_objlen(L, top + 2);
    if (n > 0 && (out->gone = calloc((size_t)n, sizeof(*out->gone))) == NULL)
        goto oom;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, top + 2, i + 1);
        out->gone[i] = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
        if (out->gone[i] == NULL)
            goto oom;
        out->ngone++;
    }
    scout_endpoint_stash_clear(&p->built);
    lua_settop(L, top);
    return SCOUT_OK;

oom:
    scout_update_clear(out);
    scout_endpoint_stash_clear(&p->built);
    set_untaken(p, svc, 1);
    lua_settop(L, top);
    snprintf(err, SCOUT_ERR_LEN, "out of memory reading the policy's list");
    return SCOUT_ERROR;
}

int
scout_policy_seed(scout_policy_t *p, int svc, const scout_epset_t *eps,
                  char *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out, n = 0;

    scout_policy_push_fn(p, "seed");
    lua_pushinteger(L, svc + 1);
    lua_createtable(L, (int)eps->n, 0);
    for (unsigned i = 0; i < eps->n; i++) {
        scout_endpoint_push_lua(L, eps->eps[i], 0);
        lua_rawseti(L, -2, ++n);
    }
    if (scout_hook_pcall(L, 2, 0, p->budget_ms + (int)(eps->n / 20),
                         &timed_out) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        lua_settop(L, top);
        return SCOUT_ERROR;
    }
    lua_settop(L, top);
    return SCOUT_OK;
}
