/*
 * luabc.h -- scout's own Lua, loaded from the bytecode built with the agent.
 *
 * LuaJIT parsed scout's library at every start (~13 M instructions, the
 * same at any registry size).  The Makefile compiles each lua/scout module
 * with the packaged luajit (-bg: debug info kept, so errors still say
 * file:line) into a table linked into the agent, next to a hash of the
 * source it came from.  A module is taken from that table only when the
 * file package.path finds under scout's Lua directory hashes the same:
 * whoever edits lua/scout/x.lua gets the edit, never the build's copy.
 * Anything else (another directory, an edited or new file, bytecode this
 * libluajit refuses) is parsed from source, as before.
 */
#ifndef SCOUT_POLICY_LUABC_H
#define SCOUT_POLICY_LUABC_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char          *rel;       /* "scout/runtime.lua", under the Lua dir */
    uint64_t             src_hash;  /* XXH3-64 of the source compiled */
    size_t               src_len;
    const unsigned char *bc;        /* luajit -bg output */
    size_t               bc_len;
} scout_luabc_t;

/* The build's table (build/gen/luabc.c), ended by rel == NULL; empty when
 * no luajit was found at build time. */
extern const scout_luabc_t scout_luabc_table[];

/* luaL_loadfile(L, path), but from table's bytecode when path is
 * lua_dir/<rel> of an entry whose source path still holds byte for byte
 * (its chunk then has the name the source would have had, "@path").
 * Returns what luaL_loadfile returns; *from_bc (may be NULL) says which. */
int scout_luabc_loadfile(lua_State *L, const scout_luabc_t *table,
                         const char *lua_dir, const char *path,
                         int *from_bc);

/* Push a package.loaders searcher that finds modules on package.path as
 * the Lua one does and loads them with scout_luabc_loadfile (lua_dir and
 * the build's table), and a loadfile(path) for sandbox.lua's searcher:
 * both closures keep their own copy of lua_dir. */
void scout_luabc_push_searcher(lua_State *L, const char *lua_dir);
void scout_luabc_push_loadfile(lua_State *L, const char *lua_dir);

#endif
