/*
 * endpoint_lua.c -- endpoints across the C/Lua boundary (endpoint_lua.h).
 * One allocation per endpoint on the C side, meta included
 * (scout_endpoint_new_meta); strings are copied, never borrowed from the Lua
 * state.  This is the boundary of
 * endpoint.h's rule: every byte that reaches shm, the disk snapshot, JSON
 * or a template came through here, so a value that breaks the rule is
 * refused here, whole, and never cut (strdup used to stop at a NUL).
 */
#include "policy/endpoint_lua.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"

/* The string at stack index i with its length, or NULL with why set (its
 * type is wrong, or it breaks the text rule). */
static const char *
text_at(lua_State *L, int i, const char *what, size_t *n, char *why,
        size_t len)
{
    const char *s, *bad;

    if (lua_type(L, i) != LUA_TSTRING && lua_type(L, i) != LUA_TNUMBER) {
        snprintf(why, len, "%s is a %s, not a string", what,
                 luaL_typename(L, i));
        return NULL;
    }
    s = lua_tolstring(L, i, n);     /* a number becomes a string in place */
    if ((bad = scout_endpoint_check_text(s, *n)) != NULL) {
        snprintf(why, len, "%s %s", what, bad);
        return NULL;
    }
    return s;
}

/* First pass over ep.meta (at stack index t): every entry is checked, and
 * counted with its bytes, so that the endpoint is allocated once, meta and
 * all (endpoint.h).  The table is not changed between the two passes, so
 * lua_next visits the same entries in the same order. */
static int
meta_size(lua_State *L, int t, unsigned *n, size_t *bytes, char *why,
          size_t len)
{
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        size_t kl, vl;

        if (lua_type(L, -2) != LUA_TSTRING) {
            snprintf(why, len, "a meta key is a %s, not a string",
                     luaL_typename(L, -2));
            return SCOUT_ERROR;
        }
        if (*n >= SCOUT_ENDPOINT_MAX_META) {
            snprintf(why, len, "over %u meta entries",
                     SCOUT_ENDPOINT_MAX_META);
            return SCOUT_ERROR;
        }
        /* the key is read as is (lua_next needs it unchanged); the value is
         * copied so that tostring of a number never touches the table */
        lua_pushvalue(L, -1);
        if (text_at(L, -3, "a meta key", &kl, why, len) == NULL
            || text_at(L, -1, "a meta value", &vl, why, len) == NULL)
            return SCOUT_ERROR;
        (*n)++;
        *bytes += kl + vl;
        if (*bytes > SCOUT_ENDPOINT_MAX_BYTES) {
            snprintf(why, len, "%zu bytes of strings, over the %u limit",
                     *bytes, SCOUT_ENDPOINT_MAX_BYTES);
            return SCOUT_ERROR;
        }
        lua_pop(L, 2);
    }
    return SCOUT_OK;
}

/* Second pass: copy the entries meta_size checked into ep's room. */
static void
meta_fill(lua_State *L, int t, scout_endpoint_t *ep)
{
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        const char *k, *v;
        size_t kl, vl;

        lua_pushvalue(L, -1);
        k = lua_tolstring(L, -3, &kl);
        v = lua_tolstring(L, -1, &vl);
        scout_endpoint_add_meta(ep, k, kl, v, vl);
        lua_pop(L, 2);
    }
    scout_endpoint_sort_meta(ep);
}

/* An integer field, or dflt when absent; SCOUT_ERROR when it is something
 * else, not integral, or out of [lo, hi]. */
static int
int_field(lua_State *L, int idx, const char *name, double dflt, double lo,
          double hi, double *out, char *why, size_t len)
{
    double v;

    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1)) {
        v = dflt;
    } else if (lua_type(L, -1) != LUA_TNUMBER) {
        snprintf(why, len, "%s is a %s, not a number", name,
                 luaL_typename(L, -1));
        lua_pop(L, 1);
        return SCOUT_ERROR;
    } else {
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    if (!(v >= lo && v <= hi) || v != (double)(int64_t)v) {
        snprintf(why, len, "%s %.17g is not an integer in %.0f..%.0f", name,
                 v, lo, hi);
        return SCOUT_ERROR;
    }
    *out = v;
    return SCOUT_OK;
}

scout_endpoint_t *
scout_endpoint_from_lua(lua_State *L, int idx, char *why, size_t len)
{
    scout_endpoint_t *ep = NULL;
    size_t id_len, host_len, status_len;
    const char *id, *host, *status;
    double port, weight, zxid;
    int top = lua_gettop(L), meta;
    unsigned nmeta = 0;
    size_t meta_bytes = 0;

    why[0] = '\0';
    if (idx < 0)
        idx = top + idx + 1;
    if (!lua_istable(L, idx)) {
        snprintf(why, len, "an endpoint is a %s, not a table",
                 luaL_typename(L, idx));
        return NULL;
    }
    lua_getfield(L, idx, "id");
    lua_getfield(L, idx, "host");
    lua_getfield(L, idx, "status");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "up");
    }
    if ((id = text_at(L, top + 1, "id", &id_len, why, len)) == NULL
        || (host = text_at(L, top + 2, "host", &host_len, why, len)) == NULL
        || (status = text_at(L, top + 3, "status", &status_len, why, len))
           == NULL
        || int_field(L, idx, "port", 0, 1, 65535, &port, why, len)
           != SCOUT_OK
        || int_field(L, idx, "weight", 1, 0, 2147483647.0, &weight, why, len)
           != SCOUT_OK)
        goto done;
    /* the zxid is ours (the cache's mzxid), not the codec's: as given */
    lua_getfield(L, idx, "zxid");
    zxid = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    if (!(zxid > -9.2e18 && zxid < 9.2e18))
        zxid = 0;
    lua_getfield(L, idx, "meta");
    meta = lua_gettop(L);
    if (!lua_isnil(L, meta) && !lua_istable(L, meta)) {
        snprintf(why, len, "meta is a %s, not a table",
                 luaL_typename(L, meta));
        goto done;
    }
    if (lua_istable(L, meta)
        && meta_size(L, meta, &nmeta, &meta_bytes, why, len) != SCOUT_OK)
        goto done;
    lua_settop(L, meta);
    ep = scout_endpoint_new_meta(id, id_len, host, host_len, status,
                                 status_len, nmeta, meta_bytes);
    if (ep == NULL)
        goto done;              /* why stays empty: out of memory */
    ep->port = (int)port;
    ep->weight = (int)weight;
    ep->zxid = (int64_t)zxid;
    if (nmeta > 0)
        meta_fill(L, meta, ep);
    if (scout_endpoint_check(ep, why, len) != SCOUT_OK) {
        scout_endpoint_free(ep);
        ep = NULL;
    }

done:
    lua_settop(L, top);
    return ep;
}

int
scout_endpoint_lua_check(lua_State *L)
{
    char why[SCOUT_ERR_LEN];
    scout_endpoint_t *ep = scout_endpoint_from_lua(L, 1, why, sizeof(why));

    if (ep != NULL) {
        scout_endpoint_free(ep);
        lua_pushnil(L);
        return 1;
    }
    if (why[0] == '\0')
        return luaL_error(L, "out of memory");
    lua_pushstring(L, why);
    return 1;
}

void
scout_endpoint_push_lua(lua_State *L, const scout_endpoint_t *ep,
                        int empty_meta)
{
    if (empty_meta < 0)
        empty_meta = lua_gettop(L) + empty_meta + 1;
    lua_createtable(L, 0, 7);
    lua_pushstring(L, ep->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, ep->host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, ep->port);
    lua_setfield(L, -2, "port");
    lua_pushinteger(L, ep->weight);
    lua_setfield(L, -2, "weight");
    lua_pushstring(L, ep->status);
    lua_setfield(L, -2, "status");
    lua_pushnumber(L, (lua_Number)ep->zxid);
    lua_setfield(L, -2, "zxid");
    if (ep->nmeta == 0 && empty_meta != 0) {
        lua_pushvalue(L, empty_meta);
        lua_setfield(L, -2, "meta");
        return;
    }
    lua_createtable(L, 0, ep->nmeta);
    for (int j = 0; j < ep->nmeta; j++) {
        lua_pushstring(L, ep->meta[j].value);
        lua_setfield(L, -2, ep->meta[j].key);
    }
    lua_setfield(L, -2, "meta");
}

void
scout_epset_push_lua(lua_State *L, const scout_epset_t *eps, int empty_meta)
{
    if (empty_meta < 0)
        empty_meta = lua_gettop(L) + empty_meta + 1;
    lua_createtable(L, 0, (int)eps->n);
    for (unsigned i = 0; i < eps->n; i++) {
        scout_endpoint_push_lua(L, eps->eps[i], empty_meta);
        lua_setfield(L, -2, eps->eps[i]->id);
    }
}
