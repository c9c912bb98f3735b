/*
 * agent_lib.h -- the table the runtime and policies reach as
 * package.loaded["scout.agent"]: log, clock, exec, file reads, the endpoint
 * boundary, the published sets.
 */
#ifndef SCOUT_POLICY_AGENT_LIB_H
#define SCOUT_POLICY_AGENT_LIB_H

#include <lua.h>

/* Push the scout.agent table.  exec and published are closures over ud (the
 * policy, whose state they read); dir is scout's own Lua directory, whose
 * modules run compiled. */
void scout_agent_lib_push(lua_State *L, void *ud, lua_CFunction exec,
                          lua_CFunction published, const char *dir);

#endif
