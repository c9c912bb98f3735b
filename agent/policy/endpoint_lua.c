/*
 * endpoint_lua.c -- endpoints across the C/Lua boundary (endpoint_lua.h).
 * One allocation per endpoint on the C side (scout_endpoint_new); strings
 * are copied, never borrowed from the Lua state.
 */
#include "policy/endpoint_lua.h"

#include <stdlib.h>
#include <string.h>

#include "scout.h"

static int
meta_cmp(const void *a, const void *b)
{
    return strcmp(((const scout_meta_t *)a)->key,
                  ((const scout_meta_t *)b)->key);
}

static int
read_meta(lua_State *L, int idx, scout_endpoint_t *ep)
{
    int n = 0, cap = 0, t;

    lua_getfield(L, idx, "meta");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return SCOUT_OK;
    }
    t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        /* string keys only; values are copied so tostring never changes
         * the table while lua_next walks it */
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *v;
            if (n == cap) {
                scout_meta_t *m;
                cap = cap ? cap * 2 : 4;
                m = realloc(ep->meta, (size_t)cap * sizeof(*m));
                if (m == NULL) {
                    lua_settop(L, t - 1);
                    return SCOUT_ERROR;
                }
                ep->meta = m;
            }
            lua_pushvalue(L, -1);
            v = lua_tostring(L, -1);
            ep->meta[n].key = strdup(lua_tostring(L, -3));
            ep->meta[n].value = strdup(v ? v : "");
            lua_pop(L, 1);
            ep->nmeta = ++n;
            if (ep->meta[n - 1].key == NULL || ep->meta[n - 1].value == NULL) {
                lua_settop(L, t - 1);
                return SCOUT_ERROR;
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (n > 1)
        qsort(ep->meta, (size_t)n, sizeof(*ep->meta), meta_cmp);
    return SCOUT_OK;
}

/* The string at stack index i, or dflt; valid while i stays on the stack
 * (a field computed by an __index metamethod is held by nothing else). */
static const char *
str_at(lua_State *L, int i, const char *dflt, size_t *len)
{
    const char *s = NULL;

    if (lua_type(L, i) == LUA_TSTRING)
        s = lua_tolstring(L, i, len);
    if (s == NULL) {
        s = dflt;
        *len = strlen(dflt);
    }
    return s;
}

scout_endpoint_t *
scout_endpoint_from_lua(lua_State *L, int idx)
{
    scout_endpoint_t *ep;
    size_t id_len, host_len, status_len;
    const char *id, *host, *status;

    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    lua_getfield(L, idx, "id");
    lua_getfield(L, idx, "host");
    lua_getfield(L, idx, "status");
    id = str_at(L, -3, "", &id_len);
    host = str_at(L, -2, "", &host_len);
    status = str_at(L, -1, "up", &status_len);
    /* strnlen: a NUL inside a Lua string ends it, as strdup did */
    ep = scout_endpoint_new(id, strnlen(id, id_len), host,
                            strnlen(host, host_len), status,
                            strnlen(status, status_len));
    lua_pop(L, 3);
    if (ep == NULL)
        return NULL;
    lua_getfield(L, idx, "port");
    ep->port = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    lua_getfield(L, idx, "weight");
    ep->weight = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 1;
    lua_getfield(L, idx, "zxid");
    ep->zxid = lua_isnumber(L, -1) ? (int64_t)lua_tonumber(L, -1) : 0;
    lua_pop(L, 3);
    if (read_meta(L, idx, ep) != SCOUT_OK) {
        scout_endpoint_free(ep);
        return NULL;
    }
    return ep;
}

void
scout_endpoint_push_lua(lua_State *L, const scout_endpoint_t *ep)
{
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
    lua_createtable(L, 0, ep->nmeta);
    for (int j = 0; j < ep->nmeta; j++) {
        lua_pushstring(L, ep->meta[j].value);
        lua_setfield(L, -2, ep->meta[j].key);
    }
    lua_setfield(L, -2, "meta");
}
