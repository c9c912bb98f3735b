/*
 * conf.h -- reading a loaded policy's settings out of Lua (conf.c).
 * Private to agent/policy/: policy.h is the stage's interface.
 */
#ifndef SCOUT_CONF_H
#define SCOUT_CONF_H

#include <lua.h>
#include <stddef.h>

#include "policy/policy.h"

/* Fills conf (zeroed by the caller) from the table at index t; *lua_memory
 * gets agent.lua_memory in bytes, 0 when not set.  On SCOUT_ERROR ("out of
 * memory" in err) conf holds what was read so far: scout_conf_free it. */
int scout_conf_read(lua_State *L, int t, scout_conf_t *conf,
                    size_t *lua_memory, char *err);

#endif
