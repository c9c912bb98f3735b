/*
 * policy_int.h -- what the files of the policy bridge share and nothing
 * else may use: the VM, the hook budget, and the runtime's functions.
 */
#ifndef SCOUT_POLICY_INT_H
#define SCOUT_POLICY_INT_H

#include <lua.h>

#include "policy/policy.h"
#include "zk/cache.h"

lua_State *scout_policy_L(scout_policy_t *p);
int        scout_policy_budget_ms(const scout_policy_t *p);
/* Push runtime[fn] (lua/scout/runtime.lua). */
void       scout_policy_push_fn(scout_policy_t *p, const char *fn);
/* Push a cache's removed names and pending children as runtime.update
 * takes them; returns how many. */
int        scout_policy_push_changes(lua_State *L, scout_cache_t *cache);

#endif
