/*
 * json_flat.c -- a registry node's usual JSON without cjson.  Nearly every
 * node a sync reads is one object of plain strings and small integers
 * ({"host":"10.0.0.1","port":20880,"weight":1}, a "meta" object of the same
 * inside): cjson took 6,100 instructions a child of that, most of them in
 * strtod and its general paths (issue 14).  This decodes only that subset,
 * and whatever is not in it -- an escape, a byte outside printable ASCII, a
 * sign, a fraction, an exponent, a leading zero, more than 15 digits, true,
 * false, null, an array, deeper nesting, trailing bytes -- gets no answer, so
 * that the caller asks cjson: what is decoded here is what cjson would have
 * made, table for table.  Tables are made as cjson makes them (lua_newtable,
 * lua_rawset in document order: the same layout, so pairs() walks them in
 * the same order) and numbers are pushed as doubles, as cjson does.
 */
#include "policy/json_flat.h"

#include <stddef.h>

#define MAX_DIGITS 15           /* exactly a double, as strtod would give */

static const char *
skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string at p (its opening quote) with nothing to unescape: pushed, and
 * the byte after its closing quote returned; NULL otherwise. */
static const char *
plain_string(lua_State *L, const char *p, const char *end)
{
    const char *s = ++p;

    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;

        if (c < 0x20 || c > 0x7e || c == '\\')
            return NULL;
        p++;
    }
    if (p >= end)
        return NULL;
    lua_pushlstring(L, s, (size_t)(p - s));
    return p + 1;
}

/* A non-negative integer of at most MAX_DIGITS digits, no leading zero, not
 * followed by a fraction or an exponent: pushed as a double. */
static const char *
small_integer(lua_State *L, const char *p, const char *end)
{
    const char *s = p;
    double v = 0;

    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        p++;
    }
    if (p - s > MAX_DIGITS || (*s == '0' && p - s > 1)
        || (p < end && (*p == '.' || *p == 'e' || *p == 'E')))
        return NULL;
    lua_pushnumber(L, v);
    return p;
}

/* An object at p ('{'): pushed, and the byte after its '}' returned; NULL
 * (with what it pushed left for the caller to drop) when it leaves the
 * subset.  depth 1 is an object inside the top one: no deeper. */
static const char *
object(lua_State *L, const char *p, const char *end, int depth)
{
    lua_newtable(L);
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        if (p >= end || *p != '"' || (p = plain_string(L, p, end)) == NULL)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = skip_ws(p + 1, end);
        if (p >= end)
            return NULL;
        if (*p == '"')
            p = plain_string(L, p, end);
        else if (*p >= '0' && *p <= '9')
            p = small_integer(L, p, end);
        else if (*p == '{' && depth == 0)
            p = object(L, p, end, 1);
        else
            return NULL;
        if (p == NULL)
            return NULL;
        lua_rawset(L, -3);
        p = skip_ws(p, end);
        if (p < end && *p == '}')
            return p + 1;
        if (p >= end || *p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
}

int
scout_json_flat_lua(lua_State *L)
{
    size_t n;
    const char *s, *p, *end;
    int top = lua_gettop(L);

    if (lua_type(L, 1) != LUA_TSTRING)
        return 0;
    s = lua_tolstring(L, 1, &n);
    end = s + n;
    p = skip_ws(s, end);
    if (p >= end || *p != '{' || !lua_checkstack(L, 8))
        return 0;
    p = object(L, p, end, 0);
    if (p == NULL || skip_ws(p, end) != end) {
        lua_settop(L, top);
        return 0;
    }
    return 1;
}
