/*
 * agent_lib.c -- what Lua may call in C: package.loaded["scout.agent"].
 *
 * Out of policy.c, which is about the VM and the calls into it; these are
 * the calls out.  None of them may block the loop: read_file refuses
 * anything but a small regular file, exec hands the command to a child.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* memmem */
#endif
#include "policy/agent_lib.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/endpoint_lua.h"
#include "policy/hook.h"
#include "log.h"
#include "scout.h"
#include "stats.h"

/* scout.read_file: small local files (flags, maintenance markers). */
#define READ_FILE_MAX (1 << 20)

static int
l_log(lua_State *L)
{
    int level = (int)luaL_checkinteger(L, 1);
    const char *msg = luaL_checkstring(L, 2);

    if (level < SCOUT_LOG_ERROR || level > SCOUT_LOG_DEBUG)
        level = SCOUT_LOG_INFO;
    scout_log(level, "policy", "%s", msg);
    return 0;
}

/* agent.log_enabled(level): whether a line at that level would be
 * written, so that the runtime formats a debug line only when it is. */
static int
l_log_enabled(lua_State *L)
{
    lua_pushboolean(L, scout_log_enabled((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int
l_now_ms(lua_State *L)
{
    lua_pushnumber(L, scout_now_ms());
    return 1;
}

/* A use of what a policy may not call (policy.lua raises the error). */
static int
l_refused(lua_State *L)
{
    (void)L;
    scout_stats.hook_refused++;
    return 0;
}

/* scout.read_file(path): a regular file's bytes (at most 1 MB), or nil,
 * err.  Opened non-blocking and checked with fstat, so a FIFO or a device
 * named by mistake cannot hold the loop the way io.open/io.read could. */
static int
l_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    luaL_Buffer b;
    char chunk[8192];
    size_t total = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)
        || st.st_size > READ_FILE_MAX) {
        close(fd);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: not a regular file of at most 1 MB", path);
        return 2;
    }
    luaL_buffinit(L, &b);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (total += (size_t)n) > READ_FILE_MAX)
            break;
        luaL_addlstring(&b, chunk, (size_t)n);
    }
    close(fd);
    luaL_pushresult(&b);
    return 1;
}

/* where(level [, file]): where the function at that level of the stack is
 * (debug.getinfo's levels: 0 = where itself): its line alone when its source
 * is `file`, "file:line" otherwise, nil when unknown.  The DSL asks it once
 * per `service "x"` with the policy's file, and makes the "file:line" only
 * for a message: the string, formatted and interned per service, was 1.7k
 * of the ~35k instructions a service costs to load (callgrind, 10,000). */
static int
l_where(lua_State *L)
{
    lua_Debug ar;
    const char *src, *file = luaL_optstring(L, 2, NULL);

    if (!lua_getstack(L, (int)luaL_checkinteger(L, 1), &ar)
        || !lua_getinfo(L, "Sl", &ar) || ar.source == NULL) {
        lua_pushnil(L);
        return 1;
    }
    src = ar.source[0] == '@' ? ar.source + 1 : ar.source;
    if (file != NULL && strcmp(src, file) == 0) {
        lua_pushinteger(L, ar.currentline);
        return 1;
    }
    lua_pushfstring(L, "%s:%d", src, ar.currentline);
    return 1;
}

/* is_name(s): whether s is a service's name, the DSL's NAME_PATTERN
 * "^[%w][%w_.%-]*$" (LuaJIT's %w is ASCII letters and digits, whatever the
 * locale).  Lua's matcher took 1.2k instructions a name, 10% of what a
 * service costs to load; this walk about a tenth of that. */
static int
is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static int
l_is_name(lua_State *L)
{
    size_t n = 0;
    const unsigned char *s = lua_type(L, 1) == LUA_TSTRING
        ? (const unsigned char *)lua_tolstring(L, 1, &n) : NULL;
    int ok = s != NULL && n > 0 && is_alnum(s[0]);

    for (size_t i = 1; ok && i < n; i++)
        ok = is_alnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-';
    lua_pushboolean(L, ok);
    return 1;
}

/* path_fault(v): nil when v is a ZooKeeper path a policy may name, else
 * what is wrong with it, word for word the DSL's is_path (policy.lua, which
 * keeps the Lua one outside the agent).  Its five string calls were 1.4k
 * instructions a service, the largest check of a service's load. */
static int
l_path_fault(lua_State *L)
{
    size_t n = 0;
    const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &n)
                                                  : NULL;

    if (s == NULL || n == 0 || s[0] != '/') {
        lua_pushliteral(L, "must be an absolute ZooKeeper path");
        return 1;
    }
    if (n > 1 && (s[n - 1] == '/' || memmem(s, n, "//", 2) != NULL)) {
        lua_pushliteral(L, "must not end in / or contain //");
        return 1;
    }
    /* every component follows a "/": a "." or ".." one is "/./", "/../" or
     * the same at the end */
    if (memmem(s, n, "/./", 3) != NULL || memmem(s, n, "/../", 4) != NULL
        || (s[n - 1] == '.'
            && ((n >= 2 && s[n - 2] == '/')
                || (n >= 3 && s[n - 2] == '.' && s[n - 3] == '/')))) {
        lua_pushliteral(L, "must not contain . or .. components");
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

void
scout_agent_lib_push(lua_State *L, void *ud, lua_CFunction exec,
                     lua_CFunction published, const char *dir)
{
    lua_newtable(L);
    lua_pushcfunction(L, l_log);
    lua_setfield(L, -2, "log");
    lua_pushcfunction(L, l_log_enabled);
    lua_setfield(L, -2, "log_enabled");
    lua_pushcfunction(L, l_now_ms);
    lua_setfield(L, -2, "now_ms");
    lua_pushlightuserdata(L, ud);
    lua_pushcclosure(L, exec, 1);
    lua_setfield(L, -2, "exec");
    lua_pushcfunction(L, l_refused);
    lua_setfield(L, -2, "refused");
    lua_pushcfunction(L, l_read_file);
    lua_setfield(L, -2, "read_file");
    lua_pushcfunction(L, scout_endpoint_lua_check);
    lua_setfield(L, -2, "check_endpoint");
    lua_pushlightuserdata(L, ud);
    lua_pushcclosure(L, published, 1);
    lua_setfield(L, -2, "published");
    lua_pushcfunction(L, scout_hook_lua_memory_error);
    lua_setfield(L, -2, "memory_error");
    lua_pushcfunction(L, l_where);
    lua_setfield(L, -2, "where");
    lua_pushcfunction(L, l_is_name);
    lua_setfield(L, -2, "is_name");
    lua_pushcfunction(L, l_path_fault);
    lua_setfield(L, -2, "path_fault");
    lua_pushstring(L, dir);         /* modules from here are scout's own */
    lua_setfield(L, -2, "lua_dir");
}
