/*
 * policy.c -- the LuaJIT VM of the agent and the calls into it.
 *
 * The Lua side is lua/scout/runtime.lua; this file only moves data across
 * the boundary: ZooKeeper children in, endpoint lists out.  Data handed to
 * Lua is copied by Lua (lua_pushlstring); lists coming back are copied into
 * C before the stack is popped, so nothing here outlives a call.
 */
#include "policy/policy.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/agent_lib.h"
#include "policy/conf.h"
#include "policy/endpoint_lua.h"
#include "policy/exec.h"
#include "policy/hook.h"
#include "policy/policy_int.h"
#include "heap.h"
#include "log.h"
#include "scout.h"
#include "stats.h"

#ifndef SCOUT_LUA_DIR
#define SCOUT_LUA_DIR "/usr/local/share/scout/lua"
#endif

/* The Lua heap's cap until the policy sets its own (agent.lua_memory). */
#define DEFAULT_LUA_MEMORY ((size_t)512 << 20)
/* Loading runs the policy's top level: a generous budget, but one that a
 * reload must be given below the session timeout.  At start the budget is
 * CPU time, what stops a runaway top level; the wall clock is bounded only
 * at LOAD_WALL_FACTOR times that (a minute by default, inside systemd's
 * start timeout), since nothing waits on the loop yet and a loaded host
 * delays honest work: 100,000 services take ~2 s of CPU, and 20 s of wall
 * time at a load of 20 on two cores.  SCOUT_LOAD_BUDGET sets it. */
#define DEFAULT_LOAD_BUDGET_MS 5000
#define MAX_LOAD_BUDGET_MS     3600000
#define LOAD_WALL_FACTOR       12


/* ---- functions Lua may call: package.loaded["scout.agent"] ------------- */

/* agent.published(i, empty_meta): service i's published endpoints, id ->
 * the table a hook sees (endpoints without meta share empty_meta), made
 * anew at each call; nil when no set is bound to i (the runtime then keeps
 * its own tables).  O(the service's endpoints): the runtime asks for small
 * services only. */
static int
l_published(lua_State *L)
{
    scout_policy_t *p = lua_touserdata(L, lua_upvalueindex(1));
    int i = (int)luaL_checkinteger(L, 1) - 1;

    luaL_checktype(L, 2, LUA_TTABLE);
    if (i < 0 || i >= p->nbound || p->bound[i] == NULL)
        return 0;
    scout_epset_push_lua(L, p->bound[i], 2);
    return 1;
}

/* agent.published_one(i, id, empty_meta[, only_whether]): the one endpoint
 * of service i's published set with that id, as agent.published makes it,
 * or nil.  The runtime asks it for the few children an update touches,
 * instead of the whole set (scout.keep's thaw_part).  With only_whether,
 * true instead of the table: a removed child that no hook can see needs
 * only that (the table was ~3k instructions a delete). */
static int
l_published_one(lua_State *L)
{
    scout_policy_t *p = lua_touserdata(L, lua_upvalueindex(1));
    int i = (int)luaL_checkinteger(L, 1) - 1;
    const char *id = luaL_checkstring(L, 2);
    const scout_endpoint_t *ep;

    luaL_checktype(L, 3, LUA_TTABLE);
    if (i < 0 || i >= p->nbound || p->bound[i] == NULL
        || (ep = scout_epset_find(p->bound[i], id)) == NULL)
        return 0;
    if (lua_toboolean(L, 4))
        lua_pushboolean(L, 1);
    else
        scout_endpoint_push_lua(L, ep, 3);
    return 1;
}

int
scout_policy_bind(scout_policy_t *p, int svc, const scout_epset_t *eps)
{
    if (svc < 0)
        return SCOUT_ERROR;
    if (svc >= p->nbound) {
        int n = svc + 1 > 2 * p->nbound ? svc + 1 : 2 * p->nbound;
        const scout_epset_t **b = realloc(p->bound, (size_t)n * sizeof(*b));

        if (b == NULL)
            return SCOUT_ERROR;
        memset(b + p->nbound, 0, (size_t)(n - p->nbound) * sizeof(*b));
        p->bound = b;
        p->nbound = n;
    }
    p->bound[svc] = eps;
    return SCOUT_OK;
}

static int
l_exec(lua_State *L)
{
    scout_policy_t *p = lua_touserdata(L, lua_upvalueindex(1));

    return scout_exec_lua(L, &p->execs);
}

static int
file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Development trees run build/scout with lua/ beside build/; installs use
 * SCOUT_LUA_DIR.  $SCOUT_LUA_DIR wins over both. */
static void
find_lua_dir(char *out, size_t len)
{
    char exe[4096], probe[4200];
    ssize_t n;
    const char *env = getenv("SCOUT_LUA_DIR");

    if (env != NULL && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        if ((slash = strrchr(exe, '/')) != NULL) {
            *slash = '\0';
            snprintf(probe, sizeof(probe), "%s/../lua/scout/runtime.lua", exe);
            if (file_exists(probe)) {
                snprintf(out, len, "%s/../lua", exe);
                return;
            }
        }
    }
    snprintf(out, len, "%s", SCOUT_LUA_DIR);
}

static int
jit_wanted(void)
{
    const char *env = getenv("SCOUT_JIT");

    return env == NULL || strcmp(env, "off") != 0;
}

/* SCOUT_LOAD_BUDGET: milliseconds, as a bare number or with "ms" or "s"
 * ("10s"); 0 when unset, -1 when it says something else. */
static int
load_budget_env(void)
{
    const char *env = getenv("SCOUT_LOAD_BUDGET");
    char *end;
    double v;

    if (env == NULL || *env == '\0')
        return 0;
    v = strtod(env, &end);
    if (end == env || v != v)
        return -1;
    if (strcmp(end, "s") == 0)
        v *= 1000;
    else if (*end != '\0' && strcmp(end, "ms") != 0)
        return -1;
    return v >= 1 && v <= MAX_LOAD_BUDGET_MS ? (int)v : -1;
}

/* The policy's Lua heap comes from malloc, not from LuaJIT's own
 * allocator: its segments are mapped apart and faulted in page by page,
 * while the C heap's growth at start is made resident in steps (heap.h);
 * a policy of 10,000 services is a 13 MB heap, 3,000 faults.  Where
 * LuaJIT refuses an allocator (64-bit without GC64) its own is used. */
static void *
heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    void *q;
    (void)ud;
    (void)osize;

    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    /* a new block (most calls: a sync allocates ~11 per child) goes
     * straight to malloc, not through realloc's own checks */
    q = ptr == NULL ? malloc(nsize) : realloc(ptr, nsize);
    scout_heap_populate_check();
    return q;
}

/* What luaL_newstate would have set: an error outside any protected call
 * (a bug of ours) is said before LuaJIT aborts. */
static int
heap_state_panic(lua_State *L)
{
    const char *s = lua_tostring(L, -1);

    fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n",
            s != NULL ? s : "?");
    return 0;
}

scout_policy_t *
scout_policy_new(const char *lua_dir, char *err)
{
    scout_policy_t *p = calloc(1, sizeof(*p));
    char dir[4096], path[8300];

    if (p == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    p->runtime_ref = LUA_NOREF;
    p->changed_ref = LUA_NOREF;
    p->update_ref = LUA_NOREF;
    p->budget_ms = 50;
    if ((p->load_budget_ms = load_budget_env()) < 0) {
        snprintf(err, SCOUT_ERR_LEN, "SCOUT_LOAD_BUDGET=%s: want a duration "
                 "from 1ms to 1h, like \"10s\" or \"2500ms\"",
                 getenv("SCOUT_LOAD_BUDGET"));
        free(p);
        return NULL;
    }
    if (p->load_budget_ms == 0)
        p->load_budget_ms = DEFAULT_LOAD_BUDGET_MS;
    if ((p->L = lua_newstate(heap_alloc, NULL)) != NULL)
        lua_atpanic(p->L, heap_state_panic);
    else
        p->L = luaL_newstate();
    if (p->L == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "cannot create a Lua state");
        goto fail;
    }
    p->execs.L = p->L;
    p->execs.budget_ms = &p->budget_ms;
    if ((p->mem = scout_hook_mem_cap(p->L, DEFAULT_LUA_MEMORY)) == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        goto fail;
    }
    luaL_openlibs(p->L);
    if (scout_hook_init(p->L, err) != SCOUT_OK)
        goto fail;
    p->hooked = 1;

    if (lua_dir != NULL)
        snprintf(dir, sizeof(dir), "%s", lua_dir);
    else
        find_lua_dir(dir, sizeof(dir));
    lua_getglobal(p->L, "package");
    lua_getfield(p->L, -1, "path");
    snprintf(path, sizeof(path), "%s/?.lua;%s/?/init.lua;%s", dir, dir,
             lua_tostring(p->L, -1));
    lua_pop(p->L, 1);
    lua_pushstring(p->L, path);
    lua_setfield(p->L, -2, "path");
    lua_getfield(p->L, -1, "loaded");
    scout_agent_lib_push(p->L, p, l_exec, l_published, dir);
    scout_endpoint_lua_keys(p->L);
    lua_pop(p->L, 1);
    lua_pushlightuserdata(p->L, &p->built);
    lua_pushcclosure(p->L, scout_endpoint_lua_build, 1);
    lua_setfield(p->L, -2, "build_endpoint");
    lua_pushlightuserdata(p->L, p);
    lua_pushcclosure(p->L, l_published_one, 1);
    lua_setfield(p->L, -2, "published_one");
    lua_setfield(p->L, -2, "scout.agent");
    lua_pop(p->L, 2);

    lua_getglobal(p->L, "require");
    lua_pushstring(p->L, "scout.runtime");
    if (lua_pcall(p->L, 1, 1, 0) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "loading the Lua runtime from %s: %s",
                 dir, lua_tostring(p->L, -1));
        goto fail;
    }
    lua_getfield(p->L, -1, "update");
    p->update_ref = luaL_ref(p->L, LUA_REGISTRYINDEX);
    p->runtime_ref = luaL_ref(p->L, LUA_REGISTRYINDEX);
    /* scout's library runs compiled; the runtime has hardened the VM so
     * that everything an operator writes stays interpreted, where budgets
     * can stop it (hook.h, sandbox.lua).  SCOUT_JIT=off interprets all. */
    p->jit = jit_wanted();
    luaJIT_setmode(p->L, 0, LUAJIT_MODE_ENGINE
                            | (p->jit ? LUAJIT_MODE_ON : LUAJIT_MODE_OFF));
    return p;

fail:
    scout_policy_free(p);
    return NULL;
}

void
scout_policy_stop_children(scout_policy_t *p)
{
    if (p != NULL && p->L != NULL)
        scout_exec_stop_all(&p->execs);
}

/* What ties the VM to the loop's thread is cut here: its scout.exec
 * children (ev_child watchers), its share of the hook module (the last
 * VM's fini stops the loop's watchers).  The rest of the free is the heap's
 * alone: capped_alloc counts into this VM's own scout_hook_mem_t, refuses
 * nothing outside a budgeted call of the thread it runs on, and a free
 * never reaches heap.c's populate check (heap_alloc returns first). */
void
scout_policy_detach(scout_policy_t *p)
{
    if (p == NULL)
        return;
    if (p->L != NULL)
        scout_exec_stop_all(&p->execs);
    if (p->hooked)
        scout_hook_fini();
    p->hooked = 0;
}

void
scout_policy_free(scout_policy_t *p)
{
    if (p == NULL)
        return;
    scout_policy_gc_free(p);
    if (p->L != NULL) {
        scout_exec_stop_all(&p->execs);
        lua_close(p->L);
    }
    scout_hook_mem_free(p->mem);    /* lua_close still allocated through it */
    scout_endpoint_stash_free(&p->built);
    free(p->bound);
    free(p->untaken);
    if (p->hooked)
        scout_hook_fini();
    free(p);
}

/* Push runtime[fn]. */
void
scout_policy_push_fn(scout_policy_t *p, const char *fn)
{
    lua_rawgeti(p->L, LUA_REGISTRYINDEX, p->runtime_ref);
    lua_getfield(p->L, -1, fn);
    lua_remove(p->L, -2);
}

int
scout_policy_load(scout_policy_t *p, const char *file, scout_conf_t *conf,
                  char *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out, t, rc;
    int wall_ms = p->load_holds_loop ? p->load_budget_ms
                                     : LOAD_WALL_FACTOR * p->load_budget_ms;
    size_t lua_memory = 0;

    memset(conf, 0, sizeof(*conf));
    scout_policy_push_fn(p, "load");
    lua_pushstring(L, file);
    /* The load budget is wall time as much as CPU: it is what the loop may
     * be held for.  It runs interpreted: a one-off pass over the file that
     * the JIT only slows down (10,000 services: ~150 ms instead of ~110,
     * recording traces that abort at every return into the operator's
     * chunk, which stays interpreted anyway). */
    if (p->jit)
        luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    rc = scout_hook_pcall_wall(L, 1, 2, p->load_budget_ms, wall_ms,
                               &timed_out);
    if (p->jit)
        luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
    if (rc != 0 && timed_out) {
        /* which budget, and what sets it: a big policy on a busy host is
         * honest work, and its operator needs the knob's name */
        if (p->load_holds_loop)
            snprintf(err, SCOUT_ERR_LEN, "%s (a reload holds the loop: "
                     "%d ms of CPU and of wall-clock time, a third of the "
                     "session timeout, at most 5 s)", lua_tostring(L, -1),
                     p->load_budget_ms);
        else
            snprintf(err, SCOUT_ERR_LEN, "%s (loading the policy may take "
                     "%d ms of CPU and %d ms of wall-clock time; "
                     "SCOUT_LOAD_BUDGET=10s sets it)", lua_tostring(L, -1),
                     p->load_budget_ms, wall_ms);
        goto fail;
    }
    if (rc != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        goto fail;
    }
    if (lua_isnil(L, -2)) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        goto fail;
    }
    lua_pop(L, 1);
    t = lua_gettop(L);
    if (scout_conf_read(L, t, conf, &lua_memory, err) != SCOUT_OK)
        goto fail;
    p->budget_ms = conf->hook_budget_ms;
    scout_hook_mem_set(p->mem, lua_memory > 0 ? lua_memory
                                              : DEFAULT_LUA_MEMORY);
    lua_settop(L, top);
    if (scout_policy_gc_loaded(p, conf->nservices) != SCOUT_OK) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        goto fail;
    }
    return SCOUT_OK;

fail:
    lua_settop(L, top);
    scout_conf_free(conf);
    return SCOUT_ERROR;
}

void
scout_policy_needs_data(scout_policy_t *p, int svc, const char *const *names,
                        unsigned n, unsigned char *need)
{
    lua_State *L = p->L;
    int timed_out;

    memset(need, 1, n);     /* reading data when unsure is always safe */
    if (n == 0)
        return;
    scout_policy_push_fn(p, "needs_data");
    lua_pushinteger(L, svc + 1);
    lua_createtable(L, (int)n, 0);
    for (unsigned k = 0; k < n; k++) {
        lua_pushstring(L, names[k]);
        lua_rawseti(L, -2, (int)k + 1);
    }
    if (scout_hook_pcall(L, 2, 1, p->budget_ms, &timed_out) != 0) {
        scout_log(SCOUT_LOG_WARN, "policy", "needs_data: %s",
                  lua_tostring(L, -1));
    } else if (lua_istable(L, -1)) {
        for (unsigned k = 0; k < n; k++) {
            lua_rawgeti(L, -1, (int)k + 1);
            need[k] = lua_toboolean(L, -1) ? 1 : 0;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

int
scout_policy_delay(scout_policy_t *p, int svc, const scout_event_t *ev,
                   int fallback)
{
    lua_State *L = p->L;
    int timed_out, v = fallback;

    scout_policy_push_fn(p, "delay");
    lua_pushinteger(L, svc + 1);
    lua_pushstring(L, scout_event_kind_name(ev->kind));
    if (ev->child != NULL)
        lua_pushstring(L, ev->child);
    else
        lua_pushnil(L);
    lua_pushinteger(L, ev->pending);
    lua_pushnumber(L, ev->since_read_ms);
    if (scout_hook_pcall(L, 5, 1, p->budget_ms, &timed_out) != 0) {
        scout_log(SCOUT_LOG_WARN, "policy", "delay hook failed: %s",
                  lua_tostring(L, -1));
    } else {
        v = (int)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* Call runtime[fn](svc, arg) expecting a string or nil, err. */
static char *
call_for_string(scout_policy_t *p, const char *fn, int svc, const char *arg,
                int budget_ms, char *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out;
    char *out = NULL;

    scout_policy_push_fn(p, fn);
    lua_pushinteger(L, svc + 1);
    lua_pushstring(L, arg ? arg : "");
    if (scout_hook_pcall(L, 2, 2, budget_ms, &timed_out) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
    } else if (lua_type(L, top + 1) != LUA_TSTRING) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, top + 2)
                                               ? lua_tostring(L, top + 2)
                                               : "no answer");
    } else if ((out = strdup(lua_tostring(L, top + 1))) == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
    }
    lua_settop(L, top);
    return out;
}

char *
scout_policy_settings(scout_policy_t *p, int svc)
{
    char err[SCOUT_ERR_LEN];
    char *out = call_for_string(p, "settings", svc, NULL, p->budget_ms, err);

    if (out == NULL)
        scout_log(SCOUT_LOG_WARN, "policy", "service %d settings: %s",
                  svc + 1, err);
    return out;
}

char *
scout_policy_explain(scout_policy_t *p, int svc, char *err)
{
    /* API questions may touch every child: a generous budget */
    return call_for_string(p, "explain", svc, NULL, 20 * p->budget_ms, err);
}

char *
scout_policy_pick(scout_policy_t *p, int svc, const char *query, char *err)
{
    /* the first pick after a change builds the selector (chash: a table) */
    return call_for_string(p, "pick", svc, query, 20 * p->budget_ms, err);
}

int
scout_policy_register_body(scout_policy_t *p, int idx, char **name,
                           char **data, int *len, int *seq, char *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out;
    size_t n = 0, dn = 0;
    const char *s, *d;

    scout_policy_push_fn(p, "register_body");
    lua_pushinteger(L, idx + 1);
    if (scout_hook_pcall(L, 1, 3, p->budget_ms, &timed_out) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        lua_settop(L, top);
        return SCOUT_ERROR;
    }
    s = lua_tolstring(L, top + 1, &n);
    d = lua_tolstring(L, top + 2, &dn);
    if (s == NULL || n == 0 || memchr(s, '/', n) != NULL) {
        snprintf(err, SCOUT_ERR_LEN, "the codec gave no usable node name");
        lua_settop(L, top);
        return SCOUT_ERROR;
    }
    *name = strdup(s);
    *data = malloc(dn + 1);
    if (*name == NULL || *data == NULL) {
        free(*name);
        free(*data);
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        lua_settop(L, top);
        return SCOUT_ERROR;
    }
    if (dn > 0)
        memcpy(*data, d, dn);
    (*data)[dn] = '\0';
    *len = (int)dn;
    *seq = lua_toboolean(L, top + 3);
    lua_settop(L, top);
    return SCOUT_OK;
}

int
scout_policy_register_check(scout_policy_t *p, int idx, char *reason,
                            size_t len)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out, up = 0;

    scout_policy_push_fn(p, "register_check");
    lua_pushinteger(L, idx + 1);
    if (scout_hook_pcall(L, 1, 2, p->budget_ms, &timed_out) != 0) {
        snprintf(reason, len, "%s", lua_tostring(L, -1));
    } else {
        up = lua_toboolean(L, top + 1);
        snprintf(reason, len, "%s", lua_tostring(L, top + 2)
                                        ? lua_tostring(L, top + 2) : "");
    }
    lua_settop(L, top);
    return up;
}

char *
scout_policy_render(scout_policy_t *p, int idx, char *err)
{
    return call_for_string(p, "render", idx, NULL, 20 * p->budget_ms, err);
}

void
scout_policy_on_session(scout_policy_t *p, const char *state)
{
    lua_State *L = p->L;
    int timed_out;

    scout_policy_push_fn(p, "on_session");
    lua_pushstring(L, state);
    if (scout_hook_pcall(L, 1, 0, p->budget_ms, &timed_out) != 0) {
        scout_log(SCOUT_LOG_WARN, "policy", "on_session hook failed: %s",
                  lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

void
scout_policy_attach(scout_policy_t *p, struct ev_loop *loop)
{
    p->execs.loop = loop;
    scout_hook_attach(loop);
    scout_policy_gc_attach(p, loop);
}

void
scout_policy_set_load_budget(scout_policy_t *p, int ms)
{
    p->load_budget_ms = ms > 0 ? ms : DEFAULT_LOAD_BUDGET_MS;
    p->load_holds_loop = 1;
}

size_t
scout_policy_lua_memory_cap(scout_policy_t *p)
{
    return scout_hook_mem_cap_of(p->mem);
}

size_t
scout_policy_memory(scout_policy_t *p)
{
    return (size_t)lua_gc(p->L, LUA_GCCOUNT, 0) * 1024
           + (size_t)lua_gc(p->L, LUA_GCCOUNTB, 0);
}

lua_State *
scout_policy_L(scout_policy_t *p)
{
    return p->L;
}

int
scout_policy_budget_ms(const scout_policy_t *p)
{
    return p->budget_ms;
}
