/*
 * luabc.c -- scout's own Lua from the bytecode built with the agent.
 *
 * Why: every VM (the start's, an early start's, a reload's, `scout check`'s)
 * parsed the same 15 modules of lua/scout, ~13 M instructions whatever the
 * registry's size; their bytecode loads in under 1 M.  What it must never
 * do: run bytecode whose source is not the file on disk.  An operator or a
 * developer who edits lua/scout/x.lua gets the edit: a module is taken from
 * the build's table only when the file package.path found is as long as
 * the source compiled and hashes the same (XXH3 over ~10 KB: a few
 * thousand instructions, against a parse of hundreds of thousands).  The
 * chunk keeps the name the source would have had ("@" and the path found),
 * so errors, debug.getinfo and whatever derives a place from a chunk's
 * name read the same either way.  Bytecode this libluajit refuses (another
 * LuaJIT's, a damaged header) is dropped for the source.
 */
#include "policy/luabc.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "log.h"
#include "stats.h"

/* lj_bcdump.h: ESC 'L' 'J' version, flags (ULEB128), then, unless
 * stripped, the chunk name's length (ULEB128) and bytes. */
#define BCDUMP_F_STRIP 0x02

/* The module entry for path, when path is lua_dir/<rel>. */
static const scout_luabc_t *
find_entry(const scout_luabc_t *table, const char *lua_dir, const char *path)
{
    size_t n = strlen(lua_dir);
    const char *rel;

    while (n > 0 && lua_dir[n - 1] == '/')
        n--;
    if (n == 0 || strncmp(path, lua_dir, n) != 0 || path[n] != '/')
        return NULL;
    rel = path + n + 1;
    for (; table->rel != NULL; table++)
        if (strcmp(table->rel, rel) == 0)
            return table;
    return NULL;
}

/* Whether the file at path is the source e was compiled from. */
static int
source_matches(const scout_luabc_t *e, const char *path)
{
    struct stat st;
    char *buf;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), same;

    if (fd < 0)
        return 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)
        || (size_t)st.st_size != e->src_len
        || (buf = malloc(e->src_len + 1)) == NULL) {
        close(fd);
        return 0;
    }
    while (got < e->src_len) {
        ssize_t r = read(fd, buf + got, e->src_len - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    same = got == e->src_len && XXH3_64bits(buf, got) == e->src_hash;
    free(buf);
    return same;
}

static size_t
uleb_read(const unsigned char *p, size_t len, size_t *at)
{
    size_t v = 0;
    int sh = 0;

    while (*at < len && sh < 35) {
        unsigned char b = p[(*at)++];

        v |= (size_t)(b & 0x7f) << sh;
        if (b < 0x80)
            return v;
        sh += 7;
    }
    *at = len + 1;                  /* ran off the end */
    return 0;
}

static size_t
uleb_write(unsigned char *out, size_t v)
{
    size_t n = 0;

    do {
        out[n] = (unsigned char)(v & 0x7f);
        if ((v >>= 7) != 0)
            out[n] |= 0x80;
        n++;
    } while (v != 0);
    return n;
}

/* lua_load's reader over the dump with its chunk name replaced: the
 * header up to the name, the new name, the rest. */
typedef struct {
    const char *piece[3];
    size_t      len[3];
    int         next;
} bc_reader_t;

static const char *
bc_read(lua_State *L, void *ud, size_t *size)
{
    bc_reader_t *r = ud;
    (void)L;

    while (r->next < 3) {
        int i = r->next++;

        if (r->len[i] > 0) {
            *size = r->len[i];
            return r->piece[i];
        }
    }
    *size = 0;
    return NULL;
}

/* Load e's bytecode named "@path"; 0 or lua_load's error (on the stack). */
static int
load_bc(lua_State *L, const scout_luabc_t *e, const char *path)
{
    const unsigned char *bc = e->bc;
    size_t at = 4, head, name_len, plen = strlen(path);
    size_t flags;
    unsigned char pre[16];
    char *name;
    bc_reader_t r;
    int rc;

    if (e->bc_len < 5 || bc[0] != 0x1b || bc[1] != 'L' || bc[2] != 'J') {
        lua_pushstring(L, "not LuaJIT bytecode");
        return LUA_ERRSYNTAX;
    }
    flags = uleb_read(bc, e->bc_len, &at);
    if (at > e->bc_len || (flags & BCDUMP_F_STRIP))
        return luaL_loadbuffer(L, (const char *)bc, e->bc_len, path);
    head = at;
    name_len = uleb_read(bc, e->bc_len, &at);
    if (at > e->bc_len || name_len > e->bc_len - at) {
        lua_pushstring(L, "truncated bytecode header");
        return LUA_ERRSYNTAX;
    }
    at += name_len;
    if ((name = malloc(sizeof(pre) + plen + 1)) == NULL) {
        lua_pushstring(L, "out of memory");
        return LUA_ERRMEM;
    }
    /* the new name's length, '@', the path */
    {
        size_t n = uleb_write(pre, plen + 1);

        memcpy(name, pre, n);
        name[n] = '@';
        memcpy(name + n + 1, path, plen);
        r.piece[1] = name;
        r.len[1] = n + 1 + plen;
    }
    r.piece[0] = (const char *)bc;
    r.len[0] = head;
    r.piece[2] = (const char *)bc + at;
    r.len[2] = e->bc_len - at;
    r.next = 0;
    rc = lua_load(L, bc_read, &r, path);
    free(name);
    return rc;
}

int
scout_luabc_loadfile(lua_State *L, const scout_luabc_t *table,
                     const char *lua_dir, const char *path, int *from_bc)
{
    const scout_luabc_t *e = lua_dir != NULL
                             ? find_entry(table, lua_dir, path) : NULL;
    int rc;

    if (from_bc != NULL)
        *from_bc = 0;
    if (e != NULL && source_matches(e, path)) {
        if ((rc = load_bc(L, e, path)) == 0) {
            if (from_bc != NULL)
                *from_bc = 1;
            return 0;
        }
        scout_log(SCOUT_LOG_WARN, "policy", "%s: the build's bytecode does "
                  "not load in this LuaJIT (%s); parsing the source", path,
                  lua_tostring(L, -1));
        lua_pop(L, 1);
    } else if (e != NULL) {
        scout_log(SCOUT_LOG_DEBUG, "policy", "%s: not the source the agent "
                  "was built with; parsing it", path);
    }
    return luaL_loadfile(L, path);
}

/* Counted for scout's own modules only: the others were never candidates.
 * An early start's or a reload's VM loads on its own thread while the loop's
 * VM may require a module: the counters are added to atomically. */
#define STAT_INC(f) __atomic_fetch_add(&scout_stats.f, 1, __ATOMIC_RELAXED)

static int
load_counted(lua_State *L, const char *lua_dir, const char *path)
{
    int from_bc, rc = scout_luabc_loadfile(L, scout_luabc_table, lua_dir,
                                           path, &from_bc);

    if (rc == 0 && from_bc)
        STAT_INC(lua_modules_bytecode);
    else if (rc == 0 && find_entry(scout_luabc_table, lua_dir, path) != NULL)
        STAT_INC(lua_modules_source);
    return rc;
}

/* loaders[2]: package.searchpath(name, package.path), then load. */
static int
l_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *lua_dir = lua_tostring(L, lua_upvalueindex(1));
    const char *path;

    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushvalue(L, 1);
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2))
        return 1;                   /* the places tried, as a message */
    lua_pop(L, 1);
    path = lua_tostring(L, -1);
    if (load_counted(L, lua_dir, path) != 0)
        return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                          name, path, lua_tostring(L, -1));
    return 1;
}

/* loadfile(path) -> function | nil, err */
static int
l_loadfile(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);

    if (load_counted(L, lua_tostring(L, lua_upvalueindex(1)), path) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    return 1;
}

void
scout_luabc_push_searcher(lua_State *L, const char *lua_dir)
{
    lua_pushstring(L, lua_dir);
    lua_pushcclosure(L, l_searcher, 1);
}

void
scout_luabc_push_loadfile(lua_State *L, const char *lua_dir)
{
    lua_pushstring(L, lua_dir);
    lua_pushcclosure(L, l_loadfile, 1);
}
