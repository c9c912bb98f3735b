/*
 * test_luabc.c -- scout's own Lua from the build's bytecode (policy/luabc.c):
 * taken only while the file on disk is the source it was compiled from,
 * with the chunk name the source would have had, so that a runtime error in
 * scout's Lua reads the same, file:line included; an edited source, a
 * module outside scout's Lua directory, and bytecode this LuaJIT refuses
 * (another version's header, a truncated dump) are parsed from source.
 * The table is the one linked into the agent (built from this tree's lua/;
 * tests/run.sh runs the C tests from the tree's root).
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/luabc.h"
#include "testing.h"

#define MOD "scout/backoff.lua"

static char tmp_dir[] = "/tmp/scout-test-luabc-XXXXXX";
static char tmp_mod[256];

static const scout_luabc_t *
entry(const char *rel)
{
    const scout_luabc_t *e;

    for (e = scout_luabc_table; e->rel != NULL; e++)
        if (strcmp(e->rel, rel) == 0)
            return e;
    return NULL;
}

/* Load lua_dir/MOD with the table, run its chunk, then call
 * M.failed(nil, "x", 0): its first line indexes nil.  The error message
 * into msg; returns the loader's from_bc (-1 if it did not load). */
static int
load_and_fail(const scout_luabc_t *table, const char *lua_dir, char *msg,
              size_t len, char *source, size_t slen)
{
    lua_State *L = luaL_newstate();
    char path[512];
    lua_Debug ar;
    int from_bc = -1;

    luaL_openlibs(L);
    snprintf(path, sizeof(path), "%s/%s", lua_dir, MOD);
    msg[0] = source[0] = '\0';
    if (scout_luabc_loadfile(L, table, lua_dir, path, &from_bc) != 0) {
        snprintf(msg, len, "load: %s", lua_tostring(L, -1));
        lua_close(L);
        return -1;
    }
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">S", &ar);
    snprintf(source, slen, "%s", ar.source);
    if (lua_pcall(L, 0, 1, 0) != 0) {
        snprintf(msg, len, "chunk: %s", lua_tostring(L, -1));
    } else {
        lua_getfield(L, -1, "failed");
        lua_pushnil(L);
        lua_pushstring(L, "x");
        lua_pushinteger(L, 0);
        lua_pcall(L, 3, 0, 0);
        snprintf(msg, len, "%s", lua_tostring(L, -1));
    }
    lua_close(L);
    return from_bc;
}

static void
test_table_covers_scouts_lua(void)
{
    CHECK(entry("scout/runtime.lua") != NULL, "runtime.lua not in the table");
    CHECK(entry(MOD) != NULL, MOD " not in the table");
}

/* The unchanged source: bytecode, named as the source, failing alike. */
static void
test_unchanged_source_loads_bytecode_that_errs_as_the_source(void)
{
    static const scout_luabc_t none[] = {{NULL, 0, 0, NULL, 0}};
    char bc_msg[512], src_msg[512], bc_name[512], src_name[512];

    CHECK(load_and_fail(scout_luabc_table, "lua", bc_msg, sizeof(bc_msg),
                        bc_name, sizeof(bc_name)) == 1, "not from bytecode");
    CHECK(load_and_fail(none, "lua", src_msg, sizeof(src_msg), src_name,
                        sizeof(src_name)) == 0, "the source");
    CHECK(strcmp(bc_name, "@lua/" MOD) == 0, "chunk name %s", bc_name);
    CHECK(strcmp(bc_name, src_name) == 0, "%s / %s", bc_name, src_name);
    CHECK(strncmp(src_msg, "lua/" MOD ":", strlen("lua/" MOD ":")) == 0,
          "the source's error: %s", src_msg);
    CHECK(strcmp(bc_msg, src_msg) == 0, "bytecode's error \"%s\", the "
          "source's \"%s\"", bc_msg, src_msg);
    /* a copy elsewhere, byte for byte: the bytecode too, named there */
    {
        char name[512], msg[512], want[512];

        CHECK(load_and_fail(scout_luabc_table, tmp_dir, msg, sizeof(msg),
                            name, sizeof(name)) == 1, "the copy");
        snprintf(want, sizeof(want), "@%s/%s", tmp_dir, MOD);
        CHECK(strcmp(name, want) == 0, "chunk name %s", name);
        snprintf(want, sizeof(want), "%s/%s:", tmp_dir, MOD);
        CHECK(strncmp(msg, want, strlen(want)) == 0, "error %s", msg);
    }
}

/* An edit the same length as the source (a changed constant): parsed,
 * and the module has the edit. */
static void
test_edited_source_is_parsed(void)
{
    lua_State *L = luaL_newstate();
    FILE *f = fopen(tmp_mod, "r+b");
    char line[4096];
    long at = -1;
    int from_bc = -1;

    luaL_openlibs(L);
    CHECK(f != NULL, "%s", tmp_mod);
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = strstr(line, "= 1000, ");

        if (p != NULL) {
            at = ftell(f) - (long)strlen(line) + (p - line);
            break;
        }
    }
    CHECK(at >= 0, "the line to edit");
    fseek(f, at + 2, SEEK_SET);         /* M.FIRST_MS = 1000 -> 9000 */
    fputc('9', f);
    fclose(f);
    CHECK(scout_luabc_loadfile(L, scout_luabc_table, tmp_dir, tmp_mod,
                               &from_bc) == 0, "load");
    CHECK(from_bc == 0, "stale bytecode used");
    lua_call(L, 0, 1);
    lua_getfield(L, -1, "FIRST_MS");
    CHECK(lua_tointeger(L, -1) == 9000, "FIRST_MS %d, not the edit's",
          (int)lua_tointeger(L, -1));
    lua_close(L);
}

/* Outside scout's Lua directory: never from the table. */
static void
test_other_directory_is_parsed(void)
{
    lua_State *L = luaL_newstate();
    int from_bc = -1;

    CHECK(scout_luabc_loadfile(L, scout_luabc_table, "/nonexistent",
                               "lua/" MOD, &from_bc) == 0, "load");
    CHECK(from_bc == 0, "bytecode for a file outside the directory");
    lua_close(L);
}

/* Bytecode this LuaJIT refuses: the source instead. */
static void
test_foreign_or_truncated_bytecode_falls_back(void)
{
    const scout_luabc_t *e = entry(MOD);
    unsigned char *bad;
    scout_luabc_t t[2];
    char msg[512], name[512];

    if (e == NULL)
        return;
    bad = malloc(e->bc_len);
    memcpy(bad, e->bc, e->bc_len);
    bad[3] ^= 0x40;                     /* another bytecode version */
    t[0] = *e;
    t[0].bc = bad;
    memset(&t[1], 0, sizeof(t[1]));
    CHECK(load_and_fail(t, "lua", msg, sizeof(msg), name,
                        sizeof(name)) == 0, "foreign bytecode used");
    CHECK(strncmp(msg, "lua/" MOD ":", strlen("lua/" MOD ":")) == 0,
          "%s", msg);
    memcpy(bad, e->bc, e->bc_len);
    t[0].bc_len = e->bc_len / 2;        /* truncated */
    CHECK(load_and_fail(t, "lua", msg, sizeof(msg), name,
                        sizeof(name)) == 0, "truncated bytecode used");
    CHECK(strncmp(msg, "lua/" MOD ":", strlen("lua/" MOD ":")) == 0,
          "%s", msg);
    t[0].bc_len = 6;                    /* cut inside the chunk name */
    CHECK(load_and_fail(t, "lua", msg, sizeof(msg), name,
                        sizeof(name)) == 0, "a cut header used");
    free(bad);
}

int
main(void)
{
    char cmd[1024];

    CHECK(mkdtemp(tmp_dir) != NULL, "mkdtemp");
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/scout && cp lua/%s %s/%s",
             tmp_dir, MOD, tmp_dir, MOD);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(tmp_mod, sizeof(tmp_mod), "%s/%s", tmp_dir, MOD);
    RUN(test_table_covers_scouts_lua());
    RUN(test_unchanged_source_loads_bytecode_that_errs_as_the_source());
    RUN(test_edited_source_is_parsed());
    RUN(test_other_directory_is_parsed());
    RUN(test_foreign_or_truncated_bytecode_falls_back());
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp_dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    return test_summary();
}
