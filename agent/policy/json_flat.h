/*
 * json_flat.h -- the usual shape of a registry node's JSON decoded without
 * cjson (json_flat.c): agent.json_flat(text) for the codecs.
 */
#ifndef SCOUT_JSON_FLAT_H
#define SCOUT_JSON_FLAT_H

#include <lua.h>

/* agent.json_flat(text): the table cjson would decode text into, when text
 * is one object of plain strings and small integers (with at most one level
 * of such objects inside it); nothing otherwise, and the caller asks cjson. */
int scout_json_flat_lua(lua_State *L);

#endif
