/*
 * agent.c -- wiring: a session's transitions reach its services and the
 * policy's on_session hook; services reach the API.  Start-up order matters:
 * the policy is loaded and every service built before the sessions start,
 * so the first CONNECTED finds everything in place.
 *
 * Watches are sharded over several sessions (services round-robin): the C
 * client re-sends every watch of a session in one SetWatches packet on
 * reconnect, and past the server's 1 MB jute.maxbuffer that packet is
 * refused and the session reconnects forever (ZOOKEEPER-706).
 *
 * SIGHUP is agent_reload.c; the two share the state in agent_int.h.
 */
#include "agent.h"
#include "agent_int.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

#include "log.h"
#include "zk/watch.h"

/* Exit: how long the sessions' closes are awaited, all of them together
 * (zookeeper_close waits this long for one). */
#define SESSION_CLOSE_WAIT_MS 1500

/* Builds whose leak check must see every block freed at exit. */
#if defined(__SANITIZE_ADDRESS__)
#define LEAK_CHECKED_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LEAK_CHECKED_BUILD 1
#endif
#endif
#ifndef LEAK_CHECKED_BUILD
#define LEAK_CHECKED_BUILD 0
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* Bytes of watched paths a reconnect of session i re-sends (SetWatches):
 * zk/spread.c keeps each session's total as watches come and go. */
static size_t
watch_bytes(const scout_agent_t *a, int session)
{
    return scout_watch_session_total(a->sessions[session]);
}

/* After a publish the service's children may have grown: a session whose
 * watches approach the SetWatches limit is reported once (and again after
 * it went back under). */
void
scout_agent_on_publish(void *ud, scout_service_t *svc)
{
    scout_agent_t *a = ud;
    struct shard *sh;
    size_t bytes;
    int idx = -1;

    if (a->api != NULL)
        scout_api_notify(a->api, svc);
    if (a->persist != NULL)
        scout_persist_changed(a->persist, svc);
    if (a->shm != NULL)
        scout_shmpub_published(a->shm, svc);
    for (int i = 0; i < a->nrenders; i++)
        scout_render_changed(a->renders[i]);

    /* The SetWatches size check walks the session's services: once a
     * second is plenty, and keeps a first sync of 10,000 services linear. */
    if (ev_now(a->loop) - a->watch_check_at < 1.0)
        return;
    a->watch_check_at = ev_now(a->loop);
    for (int i = 0; i < a->nsessions && idx < 0; i++)
        if (scout_service_session(svc) == a->sessions[i])
            idx = i;
    if (idx < 0)
        return;
    sh = &a->shards[idx];
    bytes = watch_bytes(a, idx);
    if (bytes > SCOUT_WATCH_BYTES_WARN && !sh->warned) {
        sh->warned = 1;
        scout_log(SCOUT_LOG_WARN, "agent", "session %d watches %zu bytes of "
                  "paths; above 1 MB ZooKeeper refuses the re-sent watches "
                  "on reconnect: raise zookeeper { sessions = %d }", idx,
                  bytes, a->nsessions * 2);
    } else if (bytes < SCOUT_WATCH_BYTES_WARN / 2) {
        sh->warned = 0;
    }
}

/* A service's state moved without a publish: the outputs that carry the
 * state (shm, disk snapshot) re-encode that service. */
void
scout_agent_on_state(void *ud, scout_service_t *svc)
{
    scout_agent_t *a = ud;

    if (a->persist != NULL)
        scout_persist_changed(a->persist, svc);
    if (a->shm != NULL)
        scout_shmpub_changed(a->shm, svc);
}

static void
on_session(void *ud, scout_session_state_t state, int new_session)
{
    struct shard *sh = ud;
    scout_agent_t *a = sh->agent;
    /* Spread the re-reads of a new session over up to a second so a fleet
     * of agents does not hit the ensemble in lockstep. */
    int jitter = new_session && a->nservices > 1 ? 1000 : 0;

    scout_agent_sessions_notify(a, sh->idx, state, new_session, jitter);
    for (int i = 0; sh->idx == 0 && i < a->nregs; i++)
        scout_reg_on_session(a->regs[i], state, new_session);
    /* data watches that big services spread to this session */
    scout_watch_on_pool_session(a->sessions[sh->idx], state, new_session,
                                jitter);
    /* the old handle is closed: its completions and watches are done */
    if (new_session)
        scout_watch_reap(a->sessions[sh->idx]);
    /* registrations a reload dropped still need to delete their node */
    for (int i = 0; sh->idx == 0 && i < a->nretiring; i++)
        scout_reg_on_session(a->retiring[i], state, new_session);
    if (a->shm != NULL)
        scout_shmpub_changed(a->shm, NULL); /* states changed for readers */
    if (a->policy != NULL)
        scout_policy_on_session(a->policy, scout_session_state_name(state));
}

/* Data watches of a big service spread to sessions of their own (see
 * zk/watch.h): the pool adds one when every slot is over the budget. */
#define SCOUT_POOL_SESSIONS 64

static scout_session_t *
pool_session(void *ud)
{
    scout_agent_t *a = ud;
    char err[SCOUT_ERR_LEN];
    int i = a->nsessions;

    if (i >= a->nbase + SCOUT_POOL_SESSIONS) {
        scout_log(SCOUT_LOG_ERROR, "agent", "all %d extra sessions for data "
                  "watches in use; a session may exceed ZooKeeper's 1 MB on "
                  "reconnect", SCOUT_POOL_SESSIONS);
        return NULL;
    }
    a->shards[i].agent = a;
    a->shards[i].idx = i;
    a->sessions[i] = scout_session_new(a->loop, &a->so, on_session,
                                       &a->shards[i], err);
    if (a->sessions[i] == NULL) {
        scout_log(SCOUT_LOG_ERROR, "agent", "a session for data watches: %s",
                  err);
        return NULL;
    }
    a->nsessions++;
    scout_log(SCOUT_LOG_INFO, "agent", "session %d started for the data "
              "watches of big services", i);
    return a->sessions[i];
}

static int
replace(char **dst, const char *src)
{
    char *copy;

    if (src == NULL)
        return SCOUT_OK;
    if ((copy = strdup(src)) == NULL)
        return SCOUT_ERROR;
    free(*dst);
    *dst = copy;
    return SCOUT_OK;
}

/* The command line and $SCOUT_ZK win over the policy file, at start and
 * on every reload; the log level applies at once. */
int
scout_agent_apply_command_line(scout_conf_t *c, const scout_agent_opts_t *opts,
                   char *err)
{
    const char *zk = opts->zk ? opts->zk : getenv("SCOUT_ZK");
    int level;

    if ((zk && *zk && replace(&c->zk_servers, zk) != SCOUT_OK)
        || replace(&c->api_listen, opts->api) != SCOUT_OK
        || replace(&c->log_level, opts->log_level) != SCOUT_OK
        || replace(&c->cache_dir, opts->cache_dir) != SCOUT_OK) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return SCOUT_ERROR;
    }
    if (c->log_level != NULL) {
        if ((level = scout_log_parse_level(c->log_level)) < 0) {
            snprintf(err, SCOUT_ERR_LEN, "unknown log level \"%s\"",
                     c->log_level);
            return SCOUT_ERROR;
        }
        scout_log_set_level(level);
    }
    return SCOUT_OK;
}

static int
by_service_name(const void *x, const void *y)
{
    return strcmp(scout_service_name(*(scout_service_t *const *)x),
                  scout_service_name(*(scout_service_t *const *)y));
}

/* Sort services (n of them) by name into idx, which has room for n. */
void
scout_agent_index_by_name(scout_service_t **idx, scout_service_t *const *services, int n)
{
    if (n > 0)
        memcpy(idx, services, (size_t)n * sizeof(*idx));
    qsort(idx, (size_t)n, sizeof(*idx), by_service_name);
}

/* Position of name in a sorted index, or -1: every /v1/services/NAME,
 * pick and explain, and a reload's matching, in O(log n). */
int
scout_agent_find_by_name(scout_service_t *const *idx, int n, const char *name)
{
    int lo = 0, hi = n - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, scout_service_name(idx[mid]));

        if (c == 0)
            return mid;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

static scout_api_t *
api_new(scout_agent_t *a, struct ev_loop *loop, char *err)
{
    scout_api_view_t view;

    if (a->early != NULL)       /* its server and parked requests: ours */
        return scout_agent_early_adopt(a, err);
    scout_agent_api_view(a, &view);
    return scout_api_new(loop, &view, a->conf.api_listen, err);
}

/* What loaded but probably means something else (a bare number whose unit
 * changed): said at every load, as `scout check` says it. */
void
scout_agent_log_warnings(const scout_conf_t *conf)
{
    for (int i = 0; i < conf->nwarnings; i++)
        scout_log(SCOUT_LOG_WARN, "policy", "%s", conf->warnings[i]);
}

/* The process's CPU time: on a shared machine the start's wall time is
 * mostly other processes' turns, and only this says what each phase costs. */
double
scout_agent_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

scout_agent_t *
scout_agent_new(struct ev_loop *loop, const scout_agent_opts_t *opts,
                char *err)
{
    scout_agent_t *a = scout_agent_begin(loop, opts, err);

    if (a == NULL)
        return NULL;
    if (scout_agent_load(a, 1, err) != SCOUT_OK
        || scout_agent_finish(a, err) != SCOUT_OK) {
        scout_heap_populate_stop();
        scout_agent_free(a);
        return NULL;
    }
    return a;
}

int
scout_agent_finish(scout_agent_t *a, char *err)
{
    if (scout_agent_finish_begin(a, err) != SCOUT_OK
        || scout_agent_build_services(a, INT64_MAX, INT_MAX, err) != SCOUT_OK)
        return SCOUT_ERROR;
    return scout_agent_finish_end(a, err);
}

/* The start's last step in three: sessions (not yet connected), then the
 * services (in slices when the early start hands over: agent_early.c),
 * then the outputs and the API. */
int
scout_agent_finish_begin(scout_agent_t *a, char *err)
{
    struct ev_loop *loop = a->loop;
    scout_session_opts_t so;

    if (!a->attached) {
        scout_policy_attach(a->policy, loop);
        a->attached = 1;
    }
    if (scout_agent_apply_command_line(&a->conf, &a->opts, err) != SCOUT_OK)
        goto fail;
    if (a->conf.zk_servers == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "no ZooKeeper servers: set "
                 "zookeeper { servers = ... }, --zk or SCOUT_ZK");
        goto fail;
    }

    if (a->conf.nservices > 0) {
        a->services = calloc((size_t)a->conf.nservices, sizeof(*a->services));
        if (a->services == NULL) {
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            goto fail;
        }
        scout_watch_index_reserve((size_t)a->conf.nservices);
    }
    memset(&so, 0, sizeof(so));
    so.servers = a->conf.zk_servers;
    so.timeout_ms = a->conf.zk_timeout_ms;
    so.auth_scheme = a->conf.auth_scheme;
    so.auth_cred = a->conf.auth_cred;
    /* One session per 2,000 services unless the policy says otherwise, and
     * more when the services' child-list watches alone need them (long
     * paths, a lowered watch budget): those cannot move to the pool, data
     * watches can (zk/spread.c).  A policy's too-low `sessions` is warned
     * about where it is written (conf.c). */
    a->nsessions = a->conf.zk_sessions > 0 ? a->conf.zk_sessions
                                           : 1 + a->conf.nservices / 2000;
    if (a->conf.zk_sessions == 0
        && a->conf.zk_sessions_needed > a->nsessions) {
        scout_log(SCOUT_LOG_INFO, "agent", "%d sessions instead of %d: the "
                  "child-list watches of %d services need them to stay under "
                  "half the watch budget (%d bytes) each",
                  a->conf.zk_sessions_needed, a->nsessions, a->conf.nservices,
                  a->conf.zk_watch_budget);
        a->nsessions = a->conf.zk_sessions_needed;
    }
    a->nbase = a->nsessions;
    a->so = so;                 /* its strings live in a->conf */
    a->sessions = calloc((size_t)(a->nbase + SCOUT_POOL_SESSIONS),
                         sizeof(*a->sessions));
    a->shards = calloc((size_t)(a->nbase + SCOUT_POOL_SESSIONS),
                       sizeof(*a->shards));
    if (a->sessions == NULL || a->shards == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        goto fail;
    }
    scout_watch_set_pool((size_t)a->conf.zk_watch_budget, pool_session, a);
    scout_watch_set_anti_entropy_rate(a->conf.anti_entropy_rate);
    /* Sessions only connect once the loop runs: services built below are
     * in place before the first CONNECTED. */
    for (int i = 0; i < a->nsessions; i++) {
        a->shards[i].agent = a;
        a->shards[i].idx = i;
        a->sessions[i] = scout_session_new(loop, &so, on_session,
                                           &a->shards[i], err);
        if (a->sessions[i] == NULL)
            goto fail;
    }
    return SCOUT_OK;

fail:
    return SCOUT_ERROR;
}

/* Services until deadline_ns or max of them (SCOUT_AGAIN: more left).  A
 * session may have connected between two calls: a service built on it
 * then starts as a reload's new one does, after its seed. */
int
scout_agent_build_services(scout_agent_t *a, int64_t deadline_ns, int max,
                           char *err)
{
    for (int n = 0; a->nservices < a->conf.nservices; n++) {
        int i = a->nservices;
        scout_session_t *ss = a->sessions[i % a->nbase];

        if (n >= max || (n > 0 && scout_now_ns() >= deadline_ns))
            return SCOUT_AGAIN;
        a->services[i] = scout_service_new(a->loop, ss, a->policy, i,
                                           &a->conf.services[i], err);
        if (a->services[i] == NULL)
            return SCOUT_ERROR;
        scout_service_on_publish(a->services[i], scout_agent_on_publish, a);
        scout_service_on_state(a->services[i], scout_agent_on_state);
        a->nservices++;
        a->by_session_stale = 1;
        scout_agent_seed_service(a, i);
        if (scout_session_state(ss) == SCOUT_SESSION_CONNECTED)
            scout_service_on_session(a->services[i],
                                     SCOUT_SESSION_CONNECTED, 1, 0);
        scout_heap_populate_check();
    }
    return SCOUT_OK;
}

int
scout_agent_finish_end(scout_agent_t *a, char *err)
{
    const scout_agent_opts_t *opts = &a->opts;
    struct ev_loop *loop = a->loop;
    double t0 = a->t0, t_policy = a->t_policy, t_services, t_snapshot;
    double c0 = a->c0, c_policy = a->c_policy, c_services, c_snapshot;

    if (a->by_name == NULL) {   /* (an early start sorted it in a slice) */
        a->by_name = malloc((size_t)(a->nservices ? a->nservices : 1)
                            * sizeof(*a->by_name));
        if (a->by_name == NULL) {
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            goto fail;
        }
        scout_agent_index_by_name(a->by_name, a->services, a->nservices);
    }
    t_services = scout_now_ms();
    c_services = scout_agent_cpu_ms();
    if (a->conf.cache_dir != NULL) {
        /* Before the loop runs, so the snapshot is served from the first
         * request and ZooKeeper's first listing replaces it. */
        a->persist = scout_persist_new(loop, a->conf.cache_dir,
                                       a->conf.cache_max_age_ms,
                                       a->conf.zk_servers, a->services,
                                       a->nservices, err);
        if (a->persist == NULL)
            goto fail;
        scout_agent_snapshot_load(a);
        scout_agent_side_start(a);
    }
    t_snapshot = scout_now_ms();
    c_snapshot = scout_agent_cpu_ms();
    if (a->conf.nregisters > 0
        && (a->regs = calloc((size_t)a->conf.nregisters,
                             sizeof(*a->regs))) == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        goto fail;
    }
    for (int i = 0; i < a->conf.nregisters; i++) {
        a->regs[i] = scout_reg_new(loop, a->sessions[0], a->policy, i,
                                   &a->conf.registers[i], err);
        if (a->regs[i] == NULL)
            goto fail;
        a->nregs++;
    }
    if (a->conf.nrenders > 0
        && (a->renders = calloc((size_t)a->conf.nrenders,
                                sizeof(*a->renders))) == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        goto fail;
    }
    for (int i = 0; i < a->conf.nrenders; i++) {
        a->renders[i] = scout_render_new(loop, a->policy, i,
                                         &a->conf.renders[i], a->services,
                                         a->nservices, err);
        if (a->renders[i] == NULL)
            goto fail;
        a->nrenders++;
    }
    if (a->conf.shm_path != NULL) {
        a->shm = scout_shmpub_new(loop, a->conf.shm_path,
                                  a->conf.shm_format, a->services,
                                  a->nservices, err);
        if (a->shm == NULL)
            goto fail;
    }
    if (a->conf.api_listen != NULL) {
        a->api = api_new(a, loop, err);
        if (a->api == NULL)
            goto fail;
    }
    scout_agent_early_free(a);  /* a policy without an API: it goes */
    scout_log(SCOUT_LOG_INFO, "agent", "policy %s: %d services; "
              "ZooKeeper %s (%d session%s); API %s", opts->policy_file,
              a->nservices, a->conf.zk_servers, a->nsessions,
              a->nsessions == 1 ? "" : "s",
              a->conf.api_listen ? a->conf.api_listen : "off");
    scout_log(SCOUT_LOG_INFO, "agent", "ready in %.0f ms: policy %.0f ms, "
              "services %.0f ms, disk snapshot %.0f ms; CPU %.0f ms before the "
              "agent, then %.0f ms: policy %.0f ms, services %.0f ms, disk "
              "snapshot %.0f ms", scout_now_ms() - t0,
              t_policy - t0, t_services - t_policy, t_snapshot - t_services,
              c0, scout_agent_cpu_ms() - c0, c_policy - c0,
              c_services - c_policy,
              c_snapshot - c_services);
    if (a->loader == NULL)      /* (an early start's: later, agent_early.c) */
        scout_log(SCOUT_LOG_DEBUG, "agent", "start: %zu MB of heap made "
                  "resident in steps", scout_heap_populate_stop() >> 20);
    return SCOUT_OK;

fail:
    return SCOUT_ERROR;
}

void
scout_agent_stop(scout_agent_t *a)
{
    if (a->persist != NULL)
        scout_persist_flush(a->persist);
    (void)scout_session_close_all(a->sessions, a->nsessions,
                                  SESSION_CLOSE_WAIT_MS, 0);
}

void
scout_agent_free(scout_agent_t *a)
{
    if (a == NULL)
        return;
    scout_agent_apply_finish(a, "freed");   /* one policy, then freed */
    scout_watch_set_pool(0, NULL, NULL);
    scout_agent_reload_free(a);     /* a load running is left behind */
    scout_agent_early_free(a);
    scout_api_free(a->api);
    /* Close first: pending completions still point into the services. */
    if (a->sessions != NULL)
        scout_agent_stop(a);
    scout_persist_free(a->persist);
    scout_shmpub_free(a->shm);
    if (a->loop != NULL) {
        ev_timer_stop(a->loop, &a->guard);
        ev_timer_stop(a->loop, &a->drain);
    }
    for (int i = 0; i < a->nregs; i++)
        scout_reg_free(a->regs[i]);
    free(a->regs);
    for (int i = 0; i < a->nretiring; i++)
        scout_reg_free(a->retiring[i]);
    free(a->retiring);
    for (int i = 0; i < a->nrenders; i++)
        scout_render_free(a->renders[i]);
    free(a->renders);
    for (int i = 0; i < a->nservices; i++)
        scout_service_free(a->services[i]);
    for (int i = 0; a->sessions != NULL && i < a->nsessions; i++)
        scout_session_free(a->sessions[i]);
    scout_watch_reap(NULL);     /* retired watches: their handles are gone */
    free(a->sessions);
    free(a->shards);
    free(a->services);
    free(a->by_name);
    free(a->by_session);
    free(a->by_session_at);
    scout_conf_free(&a->conf);
    scout_policy_free(a->policy);
    free(a);
}

/* At exit only what the kernel does not do for us: the snapshot on disk
 * (flushed by scout_agent_stop), the sessions closed (the server deletes
 * our ephemerals now, not a session timeout later), and the outputs' writer
 * threads joined, so no file is left half written or as a temp file, and
 * the checks', renders' and scout.exec child processes stopped, and the
 * API closed (a unix socket's file removed).  The services, their
 * caches and endpoints, the sessions' memory and the Lua VM are left to the
 * process exit: that is where SIGTERM's seconds went at a million
 * endpoints. */
void
scout_agent_exit(scout_agent_t *a)
{
    const char *full = getenv("SCOUT_FREE_AT_EXIT");
    double t0 = scout_now_ms(), t1, t2;
    int n = a->sessions != NULL ? a->nsessions : 0, ended;
    int free_all = LEAK_CHECKED_BUILD || RUNNING_ON_VALGRIND
                   || (full != NULL && strcmp(full, "1") == 0);

    scout_agent_apply_finish(a, "stopping");    /* one policy in force */
    if (a->persist != NULL)
        scout_persist_flush(a->persist);    /* before anything stops */
    t1 = scout_now_ms();
    ended = scout_session_close_all(a->sessions, n, SESSION_CLOSE_WAIT_MS,
                                    !free_all);
    t2 = scout_now_ms();
    if (free_all) {
        scout_agent_free(a);
        scout_log(SCOUT_LOG_INFO, "agent", "exit: snapshot flushed in %.0f "
                  "ms, %d sessions closed in %.0f ms (%d ended by the "
                  "server together), everything freed in %.0f ms", t1 - t0,
                  n, t2 - t1, ended, scout_now_ms() - t2);
        return;
    }
    scout_agent_reload_free(a);     /* a load running is left behind */
    scout_api_free(a->api);         /* a unix socket's file is removed */
    scout_persist_free(a->persist);
    scout_shmpub_free(a->shm);
    for (int i = 0; i < a->nregs; i++)
        scout_reg_free(a->regs[i]);
    for (int i = 0; i < a->nretiring; i++)
        scout_reg_free(a->retiring[i]);
    for (int i = 0; i < a->nrenders; i++)
        scout_render_free(a->renders[i]);
    scout_policy_stop_children(a->policy);
    scout_log(SCOUT_LOG_INFO, "agent", "exit: snapshot flushed in %.0f ms, "
              "%d sessions closed in %.0f ms (%d ended by the server "
              "together), outputs stopped in %.0f ms; the rest of the "
              "memory is left to the process exit",
              t1 - t0, n, t2 - t1, ended, scout_now_ms() - t2);
}

/* ---- shutdown: deregister first, drain, then close ------------------------ */

static void
on_drained(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_agent_t *a = t->data;
    (void)loop;
    (void)revents;
    if (a->done != NULL) {
        void (*done)(void *) = a->done;
        a->done = NULL;
        done(a->done_ud);
    }
}

static void
start_drain(scout_agent_t *a)
{
    ev_timer_stop(a->loop, &a->guard);
    if (a->conf.drain_ms > 0)
        scout_log(SCOUT_LOG_INFO, "agent", "deregistered; draining for "
                  "%d ms", a->conf.drain_ms);
    ev_timer_set(&a->drain, a->conf.drain_ms / 1000.0, 0.);
    ev_timer_start(a->loop, &a->drain);
}

static void
on_withdrawn(void *ud, scout_reg_t *r)
{
    scout_agent_t *a = ud;
    (void)r;
    if (--a->withdrawing == 0)
        start_drain(a);
}

static void
on_guard(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_agent_t *a = t->data;
    (void)loop;
    (void)revents;
    scout_log(SCOUT_LOG_WARN, "agent", "%d registrations not confirmed "
              "deleted; their ephemeral nodes go when the session closes",
              a->withdrawing);
    a->withdrawing = 0;
    start_drain(a);
}

void
scout_agent_shutdown(scout_agent_t *a, void (*done)(void *ud), void *ud)
{
    a->done = done;
    a->done_ud = ud;
    scout_agent_apply_finish(a, "stopping");  /* the new policy's regs go */
    ev_init(&a->drain, on_drained);
    a->drain.data = a;
    ev_init(&a->guard, on_guard);
    a->guard.data = a;
    a->withdrawing = a->nregs;
    if (a->nregs == 0) {
        start_drain(a);
        return;
    }
    ev_timer_set(&a->guard, 5.0, 0.);
    ev_timer_start(a->loop, &a->guard);
    for (int i = 0; i < a->nregs; i++)
        scout_reg_withdraw(a->regs[i], on_withdrawn, a);
}
