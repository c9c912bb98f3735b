/*
 * policy_source.c -- the policy's side of a service over several paths.
 *
 * The runtime says which source paths a service depends on (its codec's
 * sources(), e.g. dubbo's configurators and routers) and takes each
 * source's changes in the same batches as the service's own children.
 * Like policy.c this only moves data across the boundary: what Lua returns
 * is copied before the stack is popped.
 */
#include "policy/policy_int.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "policy/hook.h"
#include "log.h"
#include "scout.h"

void
scout_source_conf_free(scout_source_conf_t *v, int n)
{
    if (v == NULL)
        return;
    for (int i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].path);
        for (int k = 0; k < v[i].ndata; k++)
            free(v[i].data[k]);
        free(v[i].data);
    }
    free(v);
}

/* The descriptor at the top of the stack into d; SCOUT_ERROR: no memory. */
static int
read_source(lua_State *L, scout_source_conf_t *d)
{
    int t = lua_gettop(L), n;

    lua_getfield(L, t, "key");
    lua_getfield(L, t, "path");
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 2);
        return SCOUT_AGAIN;     /* runtime validated them: skipped */
    }
    d->key = strdup(lua_tostring(L, -2));
    d->path = strdup(lua_tostring(L, -1));
    lua_pop(L, 2);
    if (d->key == NULL || d->path == NULL)
        return SCOUT_ERROR;
    lua_getfield(L, t, "data");
    if (lua_isboolean(L, -1) && lua_toboolean(L, -1))
        d->ndata = -1;          /* every child's data */
    else if (lua_istable(L, -1) && (n = (int)lua_objlen(L, -1)) > 0) {
        if ((d->data = calloc((size_t)n, sizeof(*d->data))) == NULL) {
            lua_pop(L, 1);
            return SCOUT_ERROR;
        }
        for (int k = 0; k < n; k++) {
            lua_rawgeti(L, -1, k + 1);
            if (lua_type(L, -1) == LUA_TSTRING) {
                if ((d->data[d->ndata] = strdup(lua_tostring(L, -1)))
                    == NULL) {
                    lua_pop(L, 2);
                    return SCOUT_ERROR;
                }
                d->ndata++;
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return SCOUT_OK;
}

int
scout_policy_sources(scout_policy_t *p, int svc, scout_source_conf_t **out,
                     int *n, char *err)
{
    lua_State *L = scout_policy_L(p);
    int top = lua_gettop(L), timed_out, len, rc;
    scout_source_conf_t *v = NULL;

    *out = NULL;
    *n = 0;
    scout_policy_push_fn(p, "sources");
    lua_pushinteger(L, svc + 1);
    if (scout_hook_pcall(L, 1, 1, scout_policy_budget_ms(p), &timed_out)
        != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        lua_settop(L, top);
        return SCOUT_ERROR;
    }
    len = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    if (len > 0 && (v = calloc((size_t)len, sizeof(*v))) == NULL)
        goto oom;
    for (int i = 0; i < len; i++) {
        lua_rawgeti(L, top + 1, i + 1);
        rc = lua_istable(L, -1) ? read_source(L, &v[*n]) : SCOUT_AGAIN;
        lua_pop(L, 1);
        if (rc == SCOUT_ERROR) {
            (*n)++;             /* freed with the rest */
            goto oom;
        }
        if (rc == SCOUT_OK)
            (*n)++;
    }
    lua_settop(L, top);
    *out = v;
    return SCOUT_OK;

oom:
    scout_source_conf_free(v, *n);
    *n = 0;
    lua_settop(L, top);
    snprintf(err, SCOUT_ERR_LEN, "out of memory reading the sources");
    return SCOUT_ERROR;
}

int
scout_policy_source_update(scout_policy_t *p, int svc, const char *key,
                           scout_cache_t *cache, int *invalid, char *err)
{
    lua_State *L = scout_policy_L(p);
    int top = lua_gettop(L), timed_out, n = 0;

    *invalid = 0;
    scout_policy_push_fn(p, "source_update");
    lua_pushinteger(L, svc + 1);
    lua_pushstring(L, key);
    if (cache != NULL) {
        n = scout_policy_push_changes(L, cache);
        scout_cache_delivered(cache);
    } else {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    /* compiling a source is real work for a big one, like a listing */
    if (scout_hook_pcall(L, 4, 2, scout_policy_budget_ms(p) + n / 20,
                         &timed_out) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        lua_settop(L, top);
        return SCOUT_ERROR;
    }
    *invalid = (int)lua_tointeger(L, top + 1);
    if (lua_type(L, top + 2) == LUA_TSTRING)
        scout_log(SCOUT_LOG_WARN, "policy", "%s", lua_tostring(L, top + 2));
    lua_settop(L, top);
    return SCOUT_OK;
}
