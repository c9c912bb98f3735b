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

/* The field names as Lua strings, made once per state and kept in its
 * registry: lua_getfield interns its C string at every call (a hash and a
 * lookup), and a sync reads seven fields of each of its 100,000 children.
 * Looked up with lua_gettable, as lua_getfield does: __index still
 * applies. */
enum { K_ID = 1, K_HOST, K_STATUS, K_PORT, K_WEIGHT, K_META, K_ZXID,
       K_N = K_ZXID };
static const char *const key_name[K_N + 1] = {
    NULL, "id", "host", "status", "port", "weight", "meta", "zxid"
};
static const char keys_tag;

void
scout_endpoint_lua_keys(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&keys_tag);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_istable(L, -1))
        return;
    lua_pop(L, 1);
    lua_createtable(L, K_N, 0);
    for (int k = 1; k <= K_N; k++) {
        lua_pushstring(L, key_name[k]);
        lua_rawseti(L, -2, k);
    }
    lua_pushlightuserdata(L, (void *)&keys_tag);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

/* t[key k] (t at absolute index t, the names at absolute index keys), as
 * lua_getfield(L, t, key_name[k]) would push it. */
static void
get_key(lua_State *L, int t, int keys, int k)
{
    lua_rawgeti(L, keys, k);
    lua_gettable(L, t);
}

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

/* The integer field k's value at stack index i, or dflt when it is nil;
 * SCOUT_ERROR when it is something else, not integral, or out of
 * [lo, hi]. */
static int
int_at(lua_State *L, int i, int k, double dflt, double lo, double hi,
       double *out, char *why, size_t len)
{
    const char *name = key_name[k];
    double v;

    if (lua_isnil(L, i)) {
        v = dflt;
    } else if (lua_type(L, i) != LUA_TNUMBER) {
        snprintf(why, len, "%s is a %s, not a number", name,
                 luaL_typename(L, i));
        return SCOUT_ERROR;
    } else {
        v = lua_tonumber(L, i);
    }
    if (!(v >= lo && v <= hi) || v != (double)(int64_t)v) {
        snprintf(why, len, "%s %.17g is not an integer in %.0f..%.0f", name,
                 v, lo, hi);
        return SCOUT_ERROR;
    }
    *out = v;
    return SCOUT_OK;
}

/* The same for field k of the table at idx. */
static int
int_field(lua_State *L, int idx, int keys, int k, double dflt, double lo,
          double hi, double *out, char *why, size_t len)
{
    int rc;

    get_key(L, idx, keys, k);
    rc = int_at(L, lua_gettop(L), k, dflt, lo, hi, out, why, len);
    lua_pop(L, 1);
    return rc;
}

#define PORT_RANGE   0, 1, 65535
#define WEIGHT_RANGE 1, 0, 2147483647.0

/* An endpoint table's fields as read from the stack; the strings stay on
 * it (pushed above the caller's top) until the caller restores the top. */
typedef struct {
    const char *id, *host, *status;
    size_t      id_len, host_len, status_len, meta_bytes;
    double      port, weight;
    int         meta;           /* stack index of ep.meta (a table or nil) */
    int         keys;           /* stack index of the field names */
    unsigned    nmeta;
} fields_t;

/* ep.meta at stack index m (f->meta): nil, or a table meta_size takes. */
static int
meta_at(lua_State *L, int m, fields_t *f, char *why, size_t len)
{
    f->meta = m;
    if (!lua_isnil(L, m) && !lua_istable(L, m)) {
        snprintf(why, len, "meta is a %s, not a table", luaL_typename(L, m));
        return SCOUT_ERROR;
    }
    if (lua_istable(L, m)
        && meta_size(L, m, &f->nmeta, &f->meta_bytes, why, len) != SCOUT_OK)
        return SCOUT_ERROR;
    return SCOUT_OK;
}

/* Reads and checks the table at idx (absolute) field by field: the text
 * rule for every string, the ranges of port and weight, meta's shape and
 * sizes.  SCOUT_ERROR with why set, the stack then left as it is. */
static int
read_fields(lua_State *L, int idx, fields_t *f, char *why, size_t len)
{
    int top = lua_gettop(L);

    f->nmeta = 0;
    f->meta_bytes = 0;
    if (!lua_istable(L, idx)) {
        snprintf(why, len, "an endpoint is a %s, not a table",
                 luaL_typename(L, idx));
        return SCOUT_ERROR;
    }
    scout_endpoint_lua_keys(L);
    f->keys = top + 1;
    get_key(L, idx, f->keys, K_ID);
    get_key(L, idx, f->keys, K_HOST);
    get_key(L, idx, f->keys, K_STATUS);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "up");
    }
    if ((f->id = text_at(L, top + 2, "id", &f->id_len, why, len)) == NULL
        || (f->host = text_at(L, top + 3, "host", &f->host_len, why, len))
           == NULL
        || (f->status = text_at(L, top + 4, "status", &f->status_len, why,
                                len)) == NULL
        || int_field(L, idx, f->keys, K_PORT, PORT_RANGE, &f->port, why,
                     len) != SCOUT_OK
        || int_field(L, idx, f->keys, K_WEIGHT, WEIGHT_RANGE, &f->weight,
                     why, len) != SCOUT_OK)
        return SCOUT_ERROR;
    get_key(L, idx, f->keys, K_META);
    if (meta_at(L, lua_gettop(L), f, why, len) != SCOUT_OK)
        return SCOUT_ERROR;
    lua_settop(L, f->meta);
    return SCOUT_OK;
}

/* The same checks, in the same order, of the values the runtime read from
 * the table itself and passed at stack index v on: id, host, port, weight,
 * status, meta (agent.build_endpoint's arguments after the table).  The
 * interpreter reads a field for a fraction of what lua_gettable costs from
 * C (~115 instructions a field, issue 14); a nil status becomes "up" in its
 * slot. */
static int
fields_at(lua_State *L, int v, fields_t *f, char *why, size_t len)
{
    f->nmeta = 0;
    f->meta_bytes = 0;
    if (lua_isnil(L, v + 4)) {
        lua_pushliteral(L, "up");
        lua_replace(L, v + 4);
    }
    if ((f->id = text_at(L, v, "id", &f->id_len, why, len)) == NULL
        || (f->host = text_at(L, v + 1, "host", &f->host_len, why, len))
           == NULL
        || (f->status = text_at(L, v + 4, "status", &f->status_len, why,
                                len)) == NULL
        || int_at(L, v + 2, K_PORT, PORT_RANGE, &f->port, why, len)
           != SCOUT_OK
        || int_at(L, v + 3, K_WEIGHT, WEIGHT_RANGE, &f->weight, why, len)
           != SCOUT_OK)
        return SCOUT_ERROR;
    return meta_at(L, v + 5, f, why, len);
}

/* The endpoint of fields f checked and zxid (at stack index z), or NULL
 * with why set (empty: out of memory). */
static scout_endpoint_t *
build_fields(lua_State *L, fields_t *f, int z, char *why, size_t len)
{
    scout_endpoint_t *ep;
    double zxid;

    /* the zxid is ours (the cache's mzxid), not the codec's: as given */
    zxid = lua_isnumber(L, z) ? lua_tonumber(L, z) : 0;
    if (!(zxid > -9.2e18 && zxid < 9.2e18))
        zxid = 0;
    ep = scout_endpoint_new_meta(f->id, f->id_len, f->host, f->host_len,
                                 f->status, f->status_len, f->nmeta,
                                 f->meta_bytes);
    if (ep == NULL)
        return NULL;            /* why stays empty: out of memory */
    ep->port = (int)f->port;
    ep->weight = (int)f->weight;
    ep->zxid = (int64_t)zxid;
    if (f->nmeta > 0)
        meta_fill(L, f->meta, ep);
    /* the fields were held to the text rule and Lua's keys are unique: the
     * rest of the rule, without a second pass over the bytes */
    if (scout_endpoint_check_parts(f->id, f->host, f->status, ep->port,
                                   ep->weight,
                                   f->id_len + f->host_len + f->status_len
                                   + f->meta_bytes, why, len) != SCOUT_OK) {
        scout_endpoint_free(ep);
        ep = NULL;
    }
    return ep;
}

scout_endpoint_t *
scout_endpoint_from_lua(lua_State *L, int idx, char *why, size_t len)
{
    scout_endpoint_t *ep = NULL;
    fields_t f;
    int top = lua_gettop(L);

    why[0] = '\0';
    if (idx < 0)
        idx = top + idx + 1;
    if (read_fields(L, idx, &f, why, len) != SCOUT_OK)
        goto done;
    get_key(L, idx, f.keys, K_ZXID);
    ep = build_fields(L, &f, lua_gettop(L), why, len);

done:
    lua_settop(L, top);
    return ep;
}

/* The same verdict as scout_endpoint_from_lua without building the
 * endpoint: the runtime asks it of every decoded child before judging it,
 * and a sync's 100,000 children paid an allocation, a copy and a second
 * pass over every string each, only to free it (policy_update builds the
 * ones published).  Lua's string keys are unique, so meta's order cannot
 * fail the rule; everything else is scout_endpoint_check_parts. */
int
scout_endpoint_lua_check(lua_State *L)
{
    char why[SCOUT_ERR_LEN];
    fields_t f;

    why[0] = '\0';
    if (read_fields(L, 1, &f, why, sizeof(why)) == SCOUT_OK
        && scout_endpoint_check_parts(f.id, f.host, f.status, (int)f.port,
                                      (int)f.weight,
                                      f.id_len + f.host_len + f.status_len
                                      + f.meta_bytes,
                                      why, sizeof(why)) == SCOUT_OK) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, why);
    return 1;
}

int
scout_endpoint_lua_build(lua_State *L)
{
    scout_endpoint_stash_t *st = lua_touserdata(L, lua_upvalueindex(1));
    char why[SCOUT_ERR_LEN];
    scout_endpoint_t *ep = NULL;
    fields_t f;

    if (lua_gettop(L) < 8) {
        ep = scout_endpoint_from_lua(L, 1, why, sizeof(why));
    } else {
        /* the fields as the runtime read them: (ep, id, host, port,
         * weight, status, meta, zxid) */
        why[0] = '\0';
        lua_settop(L, 8);
        if (fields_at(L, 2, &f, why, sizeof(why)) == SCOUT_OK)
            ep = build_fields(L, &f, 8, why, sizeof(why));
        lua_settop(L, 8);
    }
    if (ep == NULL && why[0] != '\0') {
        lua_pushstring(L, why);
        return 1;
    }
    lua_pushnil(L);
    if (ep == NULL)
        return 1;               /* out of memory: the publish builds it */
    if (st->n == st->cap) {
        unsigned cap = st->cap ? st->cap * 2 : 64;
        scout_endpoint_t **eps = realloc(st->eps, cap * sizeof(*eps));

        if (eps == NULL) {
            scout_endpoint_free(ep);
            return 1;
        }
        st->eps = eps;
        st->cap = cap;
    }
    st->eps[st->n++] = ep;
    lua_pushinteger(L, (lua_Integer)st->n);
    return 2;
}

scout_endpoint_t *
scout_endpoint_stash_take(scout_endpoint_stash_t *st, lua_Integer k)
{
    scout_endpoint_t *ep;

    if (k < 1 || k > (lua_Integer)st->n)
        return NULL;
    ep = st->eps[k - 1];
    st->eps[k - 1] = NULL;
    return ep;
}

void
scout_endpoint_stash_clear(scout_endpoint_stash_t *st)
{
    for (unsigned i = 0; i < st->n; i++)
        scout_endpoint_free(st->eps[i]);
    st->n = 0;
}

void
scout_endpoint_stash_free(scout_endpoint_stash_t *st)
{
    scout_endpoint_stash_clear(st);
    free(st->eps);
    st->eps = NULL;
    st->cap = 0;
}

/* ep's table, its fixed fields stored under the names kept in the keys
 * table at absolute index keys: lua_setfield would intern each C name
 * again (a hash and a lookup) and go through the metamethod path, for
 * seven fields an endpoint.  A change's removed endpoint is made so for
 * the hooks' diff, and a thaw makes a whole set. */
static void
push_with_keys(lua_State *L, const scout_endpoint_t *ep, int empty_meta,
               int keys)
{
    lua_createtable(L, 0, 7);
    lua_rawgeti(L, keys, K_ID);
    lua_pushstring(L, ep->id);
    lua_rawset(L, -3);
    lua_rawgeti(L, keys, K_HOST);
    lua_pushstring(L, ep->host);
    lua_rawset(L, -3);
    lua_rawgeti(L, keys, K_PORT);
    lua_pushinteger(L, ep->port);
    lua_rawset(L, -3);
    lua_rawgeti(L, keys, K_WEIGHT);
    lua_pushinteger(L, ep->weight);
    lua_rawset(L, -3);
    lua_rawgeti(L, keys, K_STATUS);
    lua_pushstring(L, ep->status);
    lua_rawset(L, -3);
    lua_rawgeti(L, keys, K_ZXID);
    lua_pushnumber(L, (lua_Number)ep->zxid);
    lua_rawset(L, -3);
    lua_rawgeti(L, keys, K_META);
    if (ep->nmeta == 0 && empty_meta != 0) {
        lua_pushvalue(L, empty_meta);
        lua_rawset(L, -3);
        return;
    }
    lua_createtable(L, 0, ep->nmeta);
    for (int j = 0; j < ep->nmeta; j++) {
        lua_pushstring(L, ep->meta[j].value);
        lua_setfield(L, -2, ep->meta[j].key);
    }
    lua_rawset(L, -3);
}

void
scout_endpoint_push_lua(lua_State *L, const scout_endpoint_t *ep,
                        int empty_meta)
{
    if (empty_meta < 0)
        empty_meta = lua_gettop(L) + empty_meta + 1;
    scout_endpoint_lua_keys(L);
    push_with_keys(L, ep, empty_meta, lua_gettop(L));
    lua_remove(L, -2);
}

void
scout_epset_push_lua(lua_State *L, const scout_epset_t *eps, int empty_meta)
{
    int keys;

    if (empty_meta < 0)
        empty_meta = lua_gettop(L) + empty_meta + 1;
    scout_endpoint_lua_keys(L);
    keys = lua_gettop(L);
    lua_createtable(L, 0, (int)eps->n);
    for (unsigned i = 0; i < eps->n; i++) {
        push_with_keys(L, eps->eps[i], empty_meta, keys);
        lua_setfield(L, -2, eps->eps[i]->id);
    }
    lua_remove(L, keys);
}
