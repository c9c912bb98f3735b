/*
 * policy.c -- the LuaJIT VM of the agent and the calls into it.
 *
 * The Lua side is lua/scout/runtime.lua; this file only moves data across
 * the boundary: ZooKeeper children in, endpoint lists out.  Data handed to
 * Lua is copied by Lua (lua_pushlstring); lists coming back are copied into
 * C before the stack is popped, so nothing here outlives a call.
 */
#include "policy/policy.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/endpoint_lua.h"
#include "policy/hook.h"
#include "log.h"
#include "scout.h"
#include "stats.h"

#ifndef SCOUT_LUA_DIR
#define SCOUT_LUA_DIR "/usr/local/share/scout/lua"
#endif

struct scout_policy_s {
    lua_State *L;
    int        runtime_ref;
    int        budget_ms;
    int        hooked;      /* holds a reference on the budget timer */
};

/* ---- functions Lua may call: package.loaded["scout.agent"] ------------- */

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

static int
l_now_ms(lua_State *L)
{
    lua_pushnumber(L, scout_now_ms());
    return 1;
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
    p->budget_ms = 50;
    p->L = luaL_newstate();
    if (p->L == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "cannot create a Lua state");
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
    lua_newtable(p->L);
    lua_pushcfunction(p->L, l_log);
    lua_setfield(p->L, -2, "log");
    lua_pushcfunction(p->L, l_now_ms);
    lua_setfield(p->L, -2, "now_ms");
    lua_setfield(p->L, -2, "scout.agent");
    lua_pop(p->L, 2);

    lua_getglobal(p->L, "require");
    lua_pushstring(p->L, "scout.runtime");
    if (lua_pcall(p->L, 1, 1, 0) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "loading the Lua runtime from %s: %s",
                 dir, lua_tostring(p->L, -1));
        goto fail;
    }
    p->runtime_ref = luaL_ref(p->L, LUA_REGISTRYINDEX);
    return p;

fail:
    scout_policy_free(p);
    return NULL;
}

void
scout_policy_free(scout_policy_t *p)
{
    if (p == NULL)
        return;
    if (p->L != NULL)
        lua_close(p->L);
    if (p->hooked)
        scout_hook_fini();
    free(p);
}

/* Push runtime[fn]. */
static void
push_runtime_fn(scout_policy_t *p, const char *fn)
{
    lua_rawgeti(p->L, LUA_REGISTRYINDEX, p->runtime_ref);
    lua_getfield(p->L, -1, fn);
    lua_remove(p->L, -2);
}

static char *
dup_field(lua_State *L, int idx, const char *key)
{
    const char *s;
    char *copy = NULL;

    lua_getfield(L, idx, key);
    s = lua_tostring(L, -1);
    if (s != NULL)
        copy = strdup(s);
    lua_pop(L, 1);
    return copy;
}

static int
int_field(lua_State *L, int idx, const char *key, int dflt)
{
    int v = dflt;

    lua_getfield(L, idx, key);
    if (lua_isnumber(L, -1))
        v = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

void
scout_conf_free(scout_conf_t *conf)
{
    free(conf->zk_servers);
    free(conf->auth_scheme);
    if (conf->auth_cred != NULL)
        memset(conf->auth_cred, 0, strlen(conf->auth_cred));
    free(conf->auth_cred);
    free(conf->api_listen);
    free(conf->cache_dir);
    free(conf->shm_path);
    free(conf->log_level);
    for (int i = 0; i < conf->nservices; i++) {
        free(conf->services[i].name);
        free(conf->services[i].path);
        free(conf->services[i].codec);
    }
    free(conf->services);
    for (int i = 0; i < conf->nrenders; i++) {
        free(conf->renders[i].dest);
        free(conf->renders[i].command);
    }
    free(conf->renders);
    for (int i = 0; i < conf->nregisters; i++) {
        scout_reg_conf_t *rc = &conf->registers[i];
        free(rc->name);
        free(rc->path);
        free(rc->acl);
        free(rc->check_kind);
        free(rc->check_target);
    }
    free(conf->registers);
    memset(conf, 0, sizeof(*conf));
}

/* Past 32 MB the heap is mostly endpoints: start a collection as soon as
 * the last one ends rather than when the heap has doubled (13 MB less RSS
 * at 100k endpoints).  A small heap keeps the default: collecting eagerly
 * cost 6% CPU per change in bench/propagation and saves nothing worth it.
 * Asked after loading (not during: eager collection of a big policy's
 * garbage made loading 10,000 services 40% slower) and after each update. */
static void
tune_gc(lua_State *L)
{
    lua_gc(L, LUA_GCSETPAUSE, lua_gc(L, LUA_GCCOUNT, 0) > 32 * 1024 ? 100
                                                                    : 200);
}

int
scout_policy_load(scout_policy_t *p, const char *file, scout_conf_t *conf,
                  char *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out, t, anti_entropy;

    memset(conf, 0, sizeof(*conf));
    push_runtime_fn(p, "load");
    lua_pushstring(L, file);
    /* Loading runs the policy's top level: give it a generous budget. */
    if (scout_hook_pcall(L, 1, 2, 5000, &timed_out) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        goto fail;
    }
    if (lua_isnil(L, -2)) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        goto fail;
    }
    lua_pop(L, 1);
    t = lua_gettop(L);

    lua_getfield(L, t, "zookeeper");
    conf->zk_servers = dup_field(L, -1, "servers");
    conf->zk_timeout_ms = int_field(L, -1, "session_timeout", 10000);
    conf->zk_sessions = int_field(L, -1, "sessions", 0);
    conf->zk_watch_budget = int_field(L, -1, "watch_budget", 512 * 1024);
    lua_getfield(L, -1, "auth");
    if (lua_istable(L, -1)) {
        conf->auth_scheme = dup_field(L, -1, "scheme");
        conf->auth_cred = dup_field(L, -1, "credential");
    }
    lua_pop(L, 2);

    lua_getfield(L, t, "api");
    conf->api_listen = dup_field(L, -1, "listen");
    lua_pop(L, 1);

    lua_getfield(L, t, "shm");
    conf->shm_path = dup_field(L, -1, "path");
    lua_pop(L, 1);

    lua_getfield(L, t, "cache");
    conf->cache_dir = dup_field(L, -1, "dir");
    conf->cache_max_age_s = int_field(L, -1, "max_age_s", 86400);
    lua_pop(L, 1);

    lua_getfield(L, t, "agent");
    conf->log_level = dup_field(L, -1, "log_level");
    conf->hook_budget_ms = int_field(L, -1, "hook_budget", 50);
    conf->drain_ms = int_field(L, -1, "drain_ms", 0);
    anti_entropy = int_field(L, -1, "anti_entropy_ms", 60000);
    p->budget_ms = conf->hook_budget_ms;
    lua_pop(L, 1);

    lua_getfield(L, t, "renders");
    conf->nrenders = (int)lua_objlen(L, -1);
    if (conf->nrenders > 0) {
        conf->renders = calloc((size_t)conf->nrenders, sizeof(*conf->renders));
        if (conf->renders == NULL) {
            conf->nrenders = 0;
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            goto fail;
        }
    }
    for (int i = 0; i < conf->nrenders; i++) {
        scout_render_conf_t *rc = &conf->renders[i];
        lua_rawgeti(L, -1, i + 1);
        rc->dest = dup_field(L, -1, "dest");
        rc->command = dup_field(L, -1, "command");
        rc->wait_min_ms = int_field(L, -1, "wait_min_ms", 0);
        rc->wait_max_ms = int_field(L, -1, "wait_max_ms", 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_getfield(L, t, "registers");
    conf->nregisters = (int)lua_objlen(L, -1);
    if (conf->nregisters > 0) {
        conf->registers = calloc((size_t)conf->nregisters,
                                 sizeof(*conf->registers));
        if (conf->registers == NULL) {
            conf->nregisters = 0;
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            goto fail;
        }
    }
    for (int i = 0; i < conf->nregisters; i++) {
        scout_reg_conf_t *rc = &conf->registers[i];
        lua_rawgeti(L, -1, i + 1);
        rc->name = dup_field(L, -1, "name");
        rc->path = dup_field(L, -1, "path");
        rc->ephemeral = int_field(L, -1, "ephemeral", 1);
        rc->acl = dup_field(L, -1, "acl");
        rc->authenticated = conf->auth_scheme != NULL;
        rc->check_kind = dup_field(L, -1, "check_kind");
        rc->check_target = dup_field(L, -1, "check_target");
        rc->check_interval_ms = int_field(L, -1, "check_interval_ms", 2000);
        rc->check_timeout_ms = int_field(L, -1, "check_timeout_ms", 1000);
        rc->check_rise = int_field(L, -1, "check_rise", 2);
        rc->check_fall = int_field(L, -1, "check_fall", 3);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_getfield(L, t, "services");
    conf->nservices = (int)lua_objlen(L, -1);
    if (conf->nservices > 0) {
        conf->services = calloc((size_t)conf->nservices,
                                sizeof(*conf->services));
        if (conf->services == NULL) {
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            conf->nservices = 0;
            goto fail;
        }
    }
    for (int i = 0; i < conf->nservices; i++) {
        scout_service_conf_t *sc = &conf->services[i];

        lua_rawgeti(L, -1, i + 1);
        sc->name = dup_field(L, -1, "name");
        sc->path = dup_field(L, -1, "path");
        sc->needs_data = int_field(L, -1, "needs_data", -1);
        sc->delay_ms = int_field(L, -1, "delay_ms", -1);
        sc->anti_entropy_ms = anti_entropy;
        sc->codec = dup_field(L, -1, "codec");
        lua_pop(L, 1);
        if (sc->name == NULL || sc->path == NULL) {
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            goto fail;
        }
    }
    lua_settop(L, top);
    tune_gc(L);
    return SCOUT_OK;

fail:
    lua_settop(L, top);
    scout_conf_free(conf);
    return SCOUT_ERROR;
}

int
scout_policy_needs_data(scout_policy_t *p, int svc, const char *child)
{
    lua_State *L = p->L;
    int timed_out, v = 1;

    push_runtime_fn(p, "needs_data");
    lua_pushinteger(L, svc + 1);
    lua_pushstring(L, child);
    if (scout_hook_pcall(L, 2, 1, p->budget_ms, &timed_out) != 0) {
        scout_log(SCOUT_LOG_WARN, "policy", "needs_data: %s",
                  lua_tostring(L, -1));
    } else {
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;               /* reading data when unsure is always safe */
}

int
scout_policy_delay(scout_policy_t *p, int svc, const scout_event_t *ev,
                   int fallback)
{
    lua_State *L = p->L;
    int timed_out, v = fallback;

    push_runtime_fn(p, "delay");
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

/* ---- update: pending changes in, endpoint list out -------------------- */

/* Pushes the removed names and the pending children; returns how many. */
static int
push_changes(lua_State *L, scout_cache_t *cache)
{
    scout_child_t *child;
    int n = 0;

    lua_createtable(L, (int)cache->nremoved, 0);
    for (unsigned i = 0; i < cache->nremoved; i++) {
        lua_pushstring(L, cache->removed[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_newtable(L);
    for (child = cache->pending; child != NULL; child = child->next_pending) {
        lua_createtable(L, 4, 0);
        lua_pushstring(L, child->name);
        lua_rawseti(L, -2, 1);
        if (child->data != NULL)
            lua_pushlstring(L, child->data, (size_t)child->data_len);
        else if (child->has_data)
            lua_pushliteral(L, "");
        else
            lua_pushnil(L);
        lua_rawseti(L, -2, 2);
        lua_pushnumber(L, (lua_Number)child->mzxid);
        lua_rawseti(L, -2, 3);
        /* zxid is the node's mzxid only when its data was read; for a
         * name-only child it is the listing's pzxid, which moves on every
         * restart and must not count as a change */
        lua_pushboolean(L, child->has_data);
        lua_rawseti(L, -2, 4);
        lua_rawseti(L, -2, ++n);
    }
    return n + (int)cache->nremoved;
}

void
scout_update_clear(scout_update_t *up)
{
    for (int i = 0; i < up->nup; i++)
        scout_endpoint_free(up->up[i]);
    for (int i = 0; i < up->ngone; i++)
        free(up->gone[i]);
    free(up->up);
    free(up->gone);
    memset(up, 0, sizeof(*up));
}

int
scout_policy_update(scout_policy_t *p, int svc, scout_cache_t *cache,
                    scout_update_t *out, char *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out, budget, n;

    memset(out, 0, sizeof(*out));
    push_runtime_fn(p, "update");
    lua_pushinteger(L, svc + 1);
    n = push_changes(L, cache);
    scout_cache_delivered(cache);
    /* Decoding a large first listing is real work: the budget grows with
     * the batch (50 us a child) so that only runaway code is stopped. */
    budget = p->budget_ms + n / 20;
    if (scout_hook_pcall(L, 3, 6, budget, &timed_out) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        lua_settop(L, top);
        return SCOUT_ERROR;
    }
    tune_gc(L);
    out->decode_errors = (int)lua_tointeger(L, top + 3);
    out->hook_errors = (int)lua_tointeger(L, top + 4);
    if (lua_isnumber(L, top + 5)) {
        out->retry_ms = (int)lua_tointeger(L, top + 5);
        lua_settop(L, top);
        return SCOUT_AGAIN;
    }
    out->reweigh_ms = (int)lua_tointeger(L, top + 6);   /* nil: 0 */

    n = (int)lua_objlen(L, top + 1);
    if (n > 0 && (out->up = calloc((size_t)n, sizeof(*out->up))) == NULL)
        goto oom;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, top + 1, i + 1);
        out->up[i] = scout_endpoint_from_lua(L, lua_gettop(L));
        lua_pop(L, 1);
        if (out->up[i] == NULL)
            goto oom;
        out->nup++;
    }
    n = (int)lua_objlen(L, top + 2);
    if (n > 0 && (out->gone = calloc((size_t)n, sizeof(*out->gone))) == NULL)
        goto oom;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, top + 2, i + 1);
        out->gone[i] = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
        if (out->gone[i] == NULL)
            goto oom;
        out->ngone++;
    }
    lua_settop(L, top);
    return SCOUT_OK;

oom:
    scout_update_clear(out);
    lua_settop(L, top);
    snprintf(err, SCOUT_ERR_LEN, "out of memory reading the policy's list");
    return SCOUT_ERROR;
}

int
scout_policy_seed(scout_policy_t *p, int svc, const scout_epset_t *eps,
                  char *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out, n = 0;
    const scout_endpoint_t *ep, *tmp;

    push_runtime_fn(p, "seed");
    lua_pushinteger(L, svc + 1);
    lua_createtable(L, (int)eps->n, 0);
    HASH_ITER(hh, eps->map, ep, tmp) {
        scout_endpoint_push_lua(L, ep);
        lua_rawseti(L, -2, ++n);
    }
    if (scout_hook_pcall(L, 2, 0, p->budget_ms + (int)(eps->n / 20),
                         &timed_out) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "%s", lua_tostring(L, -1));
        lua_settop(L, top);
        return SCOUT_ERROR;
    }
    lua_settop(L, top);
    return SCOUT_OK;
}

/* Call runtime[fn](svc, arg) expecting a string or nil, err. */
static char *
call_for_string(scout_policy_t *p, const char *fn, int svc, const char *arg,
                int budget_ms, char *err)
{
    lua_State *L = p->L;
    int top = lua_gettop(L), timed_out;
    char *out = NULL;

    push_runtime_fn(p, fn);
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

    push_runtime_fn(p, "register_body");
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

    push_runtime_fn(p, "register_check");
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

    push_runtime_fn(p, "on_session");
    lua_pushstring(L, state);
    if (scout_hook_pcall(L, 1, 0, p->budget_ms, &timed_out) != 0) {
        scout_log(SCOUT_LOG_WARN, "policy", "on_session hook failed: %s",
                  lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

size_t
scout_policy_memory(scout_policy_t *p)
{
    return (size_t)lua_gc(p->L, LUA_GCCOUNT, 0) * 1024
           + (size_t)lua_gc(p->L, LUA_GCCOUNTB, 0);
}
