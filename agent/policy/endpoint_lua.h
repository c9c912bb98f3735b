/*
 * endpoint_lua.h -- endpoints across the C/Lua boundary: the policy's
 * runtime hands back endpoint tables that become scout_endpoint_t, and a
 * seeded list goes the other way.  Kept apart from policy.c, which is about
 * when the policy is asked, not how an endpoint is spelled on each side.
 */
#ifndef SCOUT_ENDPOINT_LUA_H
#define SCOUT_ENDPOINT_LUA_H

#include <lua.h>

#include "endpoint.h"

/* The endpoint table at idx as a new endpoint (the runtime validated it;
 * anything odd becomes a default, never a crash); NULL when out of memory.
 * Meta keys that are not strings are skipped; meta is sorted by key. */
scout_endpoint_t *scout_endpoint_from_lua(lua_State *L, int idx);

/* Push ep as the table a policy hook sees: id, host, port, weight, status,
 * zxid, meta. */
void scout_endpoint_push_lua(lua_State *L, const scout_endpoint_t *ep);

#endif
