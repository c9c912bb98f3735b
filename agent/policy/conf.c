/*
 * conf.c -- the table runtime.lua hands back from loading a policy, read
 * into the scout_conf_t the C side keeps.  Every duration arrives already
 * in milliseconds under a name of its own (runtime.lua converts them), so
 * nothing here knows about units or validation: the DSL did that.
 */
#include "policy/conf.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "policy/hook.h"
#include "scout.h"

/* The value on top, popped: a copy of its string (NULL when it is none),
 * or its integer (dflt when it is none). */
static char *
dup_top(lua_State *L)
{
    const char *s = lua_tostring(L, -1);
    char *copy = s != NULL ? strdup(s) : NULL;

    lua_pop(L, 1);
    return copy;
}

static int
int_top(lua_State *L, int dflt)
{
    int v = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : dflt;

    lua_pop(L, 1);
    return v;
}

static char *
dup_field(lua_State *L, int idx, const char *key)
{
    lua_getfield(L, idx, key);
    return dup_top(L);
}

static int
int_field(lua_State *L, int idx, const char *key, int dflt)
{
    lua_getfield(L, idx, key);
    return int_top(L, dflt);
}

/* For ms that may pass 2^31 (cache.max_age): a double holds them exactly. */
static int64_t
int64_field(lua_State *L, int idx, const char *key, int64_t dflt)
{
    int64_t v = dflt;

    lua_getfield(L, idx, key);
    if (lua_isnumber(L, -1))
        v = (int64_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The policy's warnings ("file:line: message"), copied: they outlive the
 * Lua call.  A warning that cannot be copied is dropped, never fatal. */
static void
copy_warnings(lua_State *L, int idx, scout_conf_t *conf)
{
    int n;

    lua_getfield(L, idx, "warnings");
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    if (n > 0 && (conf->warnings = calloc((size_t)n, sizeof(char *))) != NULL) {
        for (int i = 0; i < n; i++) {
            const char *w;

            lua_rawgeti(L, -1, i + 1);
            w = lua_tostring(L, -1);
            if (w != NULL && (conf->warnings[conf->nwarnings] = strdup(w))
                             != NULL)
                conf->nwarnings++;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
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
    for (int i = 0; i < conf->nservices; i++)
        free(conf->services[i].name);       /* and its path and codec */
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
    for (int i = 0; i < conf->nwarnings; i++)
        free(conf->warnings[i]);
    free(conf->warnings);
    memset(conf, 0, sizeof(*conf));
}

/* The base sessions the services' child-list watches need: services are
 * dealt round-robin over the base sessions (agent.c), and each session's
 * share of "/path" watches must stay under half the watch budget, the other
 * half left for data watches (zk/spread.c sends the rest to the pool).  Data
 * watches can move to pool sessions; a child-list watch cannot, so past the
 * budget a reconnect would re-send more than ZooKeeper accepts.  O(services)
 * per try; one try unless the paths are very uneven. */
#define SCOUT_SESSIONS_MAX 256

static int
sessions_needed(const scout_conf_t *conf)
{
    size_t total = 0, half = (size_t)conf->zk_watch_budget / 2;
    size_t *share;
    int n;

    if (half == 0 || conf->nservices == 0)
        return 1;
    for (int i = 0; i < conf->nservices; i++)
        total += 4 + strlen(conf->services[i].path);
    n = (int)((total + half - 1) / half);
    if (n < 1)
        n = 1;
    if ((share = calloc(SCOUT_SESSIONS_MAX, sizeof(*share))) == NULL)
        return n;
    for (; n < SCOUT_SESSIONS_MAX; n++) {
        size_t worst = 0;

        memset(share, 0, (size_t)n * sizeof(*share));
        for (int i = 0; i < conf->nservices; i++) {
            share[i % n] += 4 + strlen(conf->services[i].path);
            if (share[i % n] > worst)
                worst = share[i % n];
        }
        if (worst <= half)
            break;
    }
    free(share);
    return n;
}

/* One more load-time warning, copied; a warning that cannot be kept is
 * dropped, never fatal. */
static void
add_warning(scout_conf_t *conf, const char *msg)
{
    char **w = realloc(conf->warnings,
                       (size_t)(conf->nwarnings + 1) * sizeof(*w));

    if (w == NULL)
        return;
    conf->warnings = w;
    if ((w[conf->nwarnings] = strdup(msg)) != NULL)
        conf->nwarnings++;
}

/* An explicit `sessions` below what the child lists need: said where it is
 * written, with the number, by `scout check` and at every load. */
static void
warn_sessions(lua_State *L, int t, scout_conf_t *conf)
{
    char msg[SCOUT_ERR_LEN];
    char *at;

    conf->zk_sessions_needed = sessions_needed(conf);
    if (conf->zk_sessions == 0 || conf->zk_sessions >= conf->zk_sessions_needed)
        return;
    lua_getfield(L, t, "zookeeper");
    at = dup_field(L, -1, "sessions_at");
    lua_pop(L, 1);
    snprintf(msg, sizeof(msg), "%s: zookeeper: sessions = %d is too few: the "
             "child-list watches of %d services need %d sessions to stay "
             "under half the watch budget (%d bytes) each; %s%d or leave it "
             "out", at ? at : "policy", conf->zk_sessions, conf->nservices,
             conf->zk_sessions_needed, conf->zk_watch_budget,
             conf->zk_sessions_needed > 64 ? "sessions stops at 64: raise "
             "watch_budget, or set sessions = " : "set sessions = ",
             conf->zk_sessions_needed > 64 ? 64 : conf->zk_sessions_needed);
    free(at);
    add_warning(conf, msg);
}

/* A hook budget whose wall-clock bound (policy/hook.h: 4 x budget + 1 s,
 * for a hook that waits rather than burns CPU) passes two thirds of the
 * session timeout: one such hook holds the loop past the point where the
 * ZooKeeper client gives its connection up, and the session may expire.
 * Said where hook_budget is written, by `scout check` and at every load. */
static void
warn_hook_budget(lua_State *L, int t, scout_conf_t *conf)
{
    int wall_ms = SCOUT_HOOK_WALL_MS(conf->hook_budget_ms);
    char msg[2 * SCOUT_ERR_LEN];
    char *at;

    if ((int64_t)wall_ms * 3 <= (int64_t)conf->zk_timeout_ms * 2)
        return;
    lua_getfield(L, t, "agent");
    at = dup_field(L, -1, "hook_budget_at");
    lua_pop(L, 1);
    snprintf(msg, sizeof(msg), "%s: agent: hook_budget = %d ms lets a hook "
             "that waits hold the loop %d ms (4 x budget + 1 s), past 2/3 "
             "of the %d ms session timeout: the session may expire; lower "
             "hook_budget or raise session_timeout above %d ms",
             at ? at : "policy", conf->hook_budget_ms, wall_ms,
             conf->zk_timeout_ms, wall_ms * 3 / 2);
    free(at);
    add_warning(conf, msg);
}

/* Past 32 MB the heap is mostly endpoints: start a collection as soon as
 * the last one ends rather than when the heap has doubled (13 MB less RSS
 * at 100k endpoints).  A small heap keeps the default: collecting eagerly
 * cost 6% CPU per change in bench/propagation and saves nothing worth it.
 * Asked after loading (not during: eager collection of a big policy's
 * garbage made loading 10,000 services 40% slower) and after each update. */

/* What C reads of each service: conf.services holds one column per setting
 * (runtime.lua; a table per service was two allocations and six lookups by
 * name), each an array by service; delay_ms (0 when none) and has_sources
 * are sparse, and an empty one is not read per service. */
enum { SVC_NAME, SVC_PATH, SVC_NEEDS_DATA, SVC_DELAY_MS, SVC_CODEC,
       SVC_HAS_SOURCES, SVC_KEYS };
static const char *const svc_keys[SVC_KEYS] = {
    "name", "path", "needs_data", "delay_ms", "codec", "has_sources"
};

/* Service i's number in the column at col, dflt when it has none. */
static int
int_col(lua_State *L, int col, int i, int dflt)
{
    lua_rawgeti(L, col, i);
    return int_top(L, dflt);
}

/* Whether the (sparse) column at col holds nothing. */
static int
column_empty(lua_State *L, int col)
{
    lua_pushnil(L);
    if (lua_next(L, col) == 0)
        return 1;
    lua_pop(L, 2);
    return 0;
}

/* Service i's name, path and codec (NULL when the column has none) copied
 * into one allocation, which sc->name owns: scout_conf_free frees it alone.
 * Three strdup and three frees a service were ~1.3k instructions. */
static int
service_strings(lua_State *L, int cols, int i, scout_service_conf_t *sc)
{
    size_t ln, lp, lc = 0;
    const char *n, *p, *c;
    char *buf;

    lua_rawgeti(L, cols + SVC_NAME, i);
    lua_rawgeti(L, cols + SVC_PATH, i);
    lua_rawgeti(L, cols + SVC_CODEC, i);
    n = lua_tolstring(L, -3, &ln);
    p = lua_tolstring(L, -2, &lp);
    c = lua_tolstring(L, -1, &lc);
    if (n == NULL || p == NULL
        || (buf = malloc(ln + lp + 2 + (c != NULL ? lc + 1 : 0))) == NULL) {
        lua_pop(L, 3);
        return SCOUT_ERROR;
    }
    sc->name = memcpy(buf, n, ln + 1);
    sc->path = memcpy(buf + ln + 1, p, lp + 1);
    sc->codec = c != NULL ? memcpy(buf + ln + lp + 2, c, lc + 1) : NULL;
    lua_pop(L, 3);
    return SCOUT_OK;
}

int
scout_conf_read(lua_State *L, int t, scout_conf_t *conf, size_t *lua_memory,
                char *err)
{
    int anti_entropy, cols, no_delays, no_sources;

    copy_warnings(L, t, conf);

    lua_getfield(L, t, "zookeeper");
    conf->zk_servers = dup_field(L, -1, "servers");
    conf->zk_timeout_ms = int_field(L, -1, "session_timeout_ms", 10000);
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
    conf->shm_format = int_field(L, -1, "format", 2);
    lua_pop(L, 1);

    lua_getfield(L, t, "cache");
    conf->cache_dir = dup_field(L, -1, "dir");
    conf->cache_max_age_ms = int64_field(L, -1, "max_age_ms", 86400000);
    lua_pop(L, 1);

    lua_getfield(L, t, "agent");
    conf->log_level = dup_field(L, -1, "log_level");
    conf->hook_budget_ms = int_field(L, -1, "hook_budget_ms", 50);
    conf->drain_ms = int_field(L, -1, "drain_ms", 0);
    lua_getfield(L, -1, "reload_max_drop");
    conf->reload_max_drop = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0.5;
    lua_pop(L, 1);
    anti_entropy = int_field(L, -1, "anti_entropy_ms", 60000);
    conf->anti_entropy_rate = int_field(L, -1, "anti_entropy_rate", 500);
    lua_getfield(L, -1, "lua_memory_bytes");
    *lua_memory = lua_isnumber(L, -1) && lua_tonumber(L, -1) > 0
                  ? (size_t)lua_tonumber(L, -1) : 0;
    lua_pop(L, 2);

    lua_getfield(L, t, "renders");
    conf->nrenders = (int)lua_objlen(L, -1);
    if (conf->nrenders > 0) {
        conf->renders = calloc((size_t)conf->nrenders, sizeof(*conf->renders));
        if (conf->renders == NULL) {
            conf->nrenders = 0;
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            return SCOUT_ERROR;
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
            return SCOUT_ERROR;
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
    cols = lua_gettop(L) + 1;
    for (int k = 0; k < SVC_KEYS; k++) {
        lua_getfield(L, cols - 1, svc_keys[k]);
        if (!lua_istable(L, -1)) {        /* a column left out: all nil */
            lua_pop(L, 1);
            lua_newtable(L);
        }
    }
    conf->nservices = (int)lua_objlen(L, cols + SVC_NAME);
    no_delays = column_empty(L, cols + SVC_DELAY_MS);
    no_sources = column_empty(L, cols + SVC_HAS_SOURCES);
    if (conf->nservices > 0) {
        conf->services = calloc((size_t)conf->nservices,
                                sizeof(*conf->services));
        if (conf->services == NULL) {
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            conf->nservices = 0;
            return SCOUT_ERROR;
        }
    }
    for (int i = 0; i < conf->nservices; i++) {
        scout_service_conf_t *sc = &conf->services[i];

        if (service_strings(L, cols, i + 1, sc) != SCOUT_OK) {
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            return SCOUT_ERROR;
        }
        sc->needs_data = int_col(L, cols + SVC_NEEDS_DATA, i + 1, -1);
        sc->delay_ms = no_delays ? 0 : int_col(L, cols + SVC_DELAY_MS, i + 1, 0);
        sc->anti_entropy_ms = anti_entropy;
        sc->has_sources = no_sources ? 0
                          : int_col(L, cols + SVC_HAS_SOURCES, i + 1, 0);
    }
    lua_pop(L, 1 + SVC_KEYS);
    warn_sessions(L, t, conf);
    warn_hook_budget(L, t, conf);
    return SCOUT_OK;
}
