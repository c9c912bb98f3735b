/*
 * agent_reload.c -- SIGHUP: load the policy file again into a new VM and
 * apply it as a difference.  Services and registrations kept by name keep
 * their state and their session; others are added or retired.  Whatever
 * fails -- the load, a registration that cannot be built, the reload guard
 * -- leaves the running policy in place and changes nothing.
 *
 * The load holds no loop: at 10,000 services it is ~300 M instructions
 * (the DSL, the runtime, the conf read), and the loop must keep serving
 * the API, the sessions and their watches meanwhile.  So it runs on a
 * loader thread, as the early start's does (agent_early.c): the thread
 * builds the VM, runs the file under the load budget (its own timer,
 * policy/hook.c: the old VM's hooks keep their budgets on the loop
 * meanwhile), reads the conf and checks it -- the command line, the reload
 * guard, the registrations -- touching no loop and no agent state but
 * a->conf, which only the apply changes (and the apply waits for the
 * thread).  The running policy serves every request until the thread says
 * it is done (an ev_async); then the apply, on the loop in one iteration:
 * a client sees the old policy's answers up to it and the new one's after,
 * never a mix for one service.  A SIGHUP during a reload is not lost and
 * not run twice: the reload in progress finishes, then one more runs (all
 * the SIGHUPs meanwhile coalesced into it: the file as it is then).  A stop
 * during the load leaves the thread to the process exit: it may wait on
 * anything (a FIFO, a slow disk), so it is never joined; it touches the
 * agent no more (a mutex-guarded flag), and its VM stays reachable.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* pthread_timedjoin_np */
#endif
#include "agent_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "loop.h"
#include "policy/hook.h"
#include "policy/reload_guard.h"
#include "zk/watch.h"

/* ---- SIGHUP: a new policy, applied as a difference ------------------------- */

static void
on_retired(void *ud, scout_reg_t *r)
{
    scout_agent_t *a = ud;

    for (int i = 0; i < a->nretiring; i++) {
        if (a->retiring[i] == r) {
            a->retiring[i] = a->retiring[--a->nretiring];
            break;
        }
    }
    scout_reg_free(r);
}

static int
same_str(const char *x, const char *y)
{
    return (x == NULL && y == NULL) || (x && y && strcmp(x, y) == 0);
}

/* What a reload cannot change without dropping the session (or the
 * listening socket): kept as running, with a warning. */
static void
keep_running_settings(scout_agent_t *a, scout_conf_t *nc)
{
    if (!same_str(a->conf.zk_servers, nc->zk_servers)
        || a->conf.zk_timeout_ms != nc->zk_timeout_ms
        || !same_str(a->conf.auth_scheme, nc->auth_scheme)
        || !same_str(a->conf.auth_cred, nc->auth_cred)
        || !same_str(a->conf.api_listen, nc->api_listen)
        || !same_str(a->conf.cache_dir, nc->cache_dir)
        || !same_str(a->conf.shm_path, nc->shm_path))
        scout_log(SCOUT_LOG_WARN, "agent", "reload: zookeeper, api, cache "
                  "and shm settings need a restart; keeping the running ones");
#define KEEP(f) do { char *t = nc->f; nc->f = a->conf.f; a->conf.f = t; } \
                while (0)
    KEEP(zk_servers);
    KEEP(auth_scheme);
    KEEP(auth_cred);
    KEEP(api_listen);
    KEEP(cache_dir);
    KEEP(shm_path);
#undef KEEP
    nc->zk_timeout_ms = a->conf.zk_timeout_ms;
    nc->zk_sessions = a->conf.zk_sessions;
    nc->zk_watch_budget = a->conf.zk_watch_budget;
    nc->cache_max_age_ms = a->conf.cache_max_age_ms;
}

/* One reload in progress: the loader thread's, then the loop's. */
struct reload {
    pthread_t       thread;
    ev_async        done;
    pthread_mutex_t mu;         /* abandoned, and what it guards */
    int             abandoned;  /* the agent is gone: touch nothing */
    int             stopping;   /* the agent stops: the load is cancelled */
    scout_hook_thread_t *hook;  /* the loader's calls, to cancel them */
    scout_agent_opts_t opts;    /* the thread's copies */
    /* the thread's results, the loop's once done is sent */
    scout_policy_t *np;
    scout_conf_t    nc;
    int             rc;
    char            err[SCOUT_ERR_LEN];
    double          cpu_ms;     /* the thread's CPU for the load */
    /* the loop's */
    int             running;    /* the thread is not joined yet */
    int             again;      /* SIGHUPs meanwhile: one more after */
    double          t0;         /* when it began, for the log */
    scout_agent_reloaded_fn cb;
    void           *ud;
};

/* The thread and the VM of a reload that a stop left running: reachable
 * (the process exits without them), never touched again. */
static struct reload *abandoned_reload;

static int  apply(scout_agent_t *a, struct reload *r);
static int  begin(scout_agent_t *a, char *err);

/* Every reload's result is kept for /v1/agent: an operator who sent a
 * SIGHUP asks whether it took, without reading the log. */
static void
record(scout_agent_t *a, int rc, const char *err)
{
    a->reloads++;
    a->reload_at = scout_wall_ms() / 1000.0;
    a->reload_ok = rc == SCOUT_OK;
    a->reloads_ok += a->reload_ok;
    snprintf(a->reload_err, sizeof(a->reload_err), "%s",
             rc == SCOUT_OK ? "" : err);
}

/* On the loader thread: the new VM loaded and checked, or refused.  It
 * touches a->conf only under the mutex, the agent still there. */
static int
load(scout_agent_t *a, struct reload *r)
{
    char *err = r->err;
    int rc;

    r->np = scout_policy_new(r->opts.lua_dir, err);
    if (r->np == NULL)
        return SCOUT_ERROR;
    /* The load's budget is a start's (SCOUT_LOAD_BUDGET, its wall clock a
     * dozen times that): it holds no loop now, only the SIGHUPs after it.
     * It used to be a third of the session timeout, at most 5 s, of wall
     * time too, since the loop waited. */
    if (scout_policy_load(r->np, r->opts.policy_file, &r->nc, err)
        != SCOUT_OK)
        return SCOUT_ERROR;
    scout_agent_log_warnings(&r->nc);
    if (scout_agent_apply_command_line(&r->nc, &r->opts, err) != SCOUT_OK)
        return SCOUT_ERROR;
    /* a registration that cannot be built refuses the policy: taking it
     * would retire the running one and delete its node */
    for (int i = 0; i < r->nc.nregisters; i++)
        if (scout_reg_validate(r->np, i, &r->nc.registers[i], err)
            != SCOUT_OK)
            return SCOUT_ERROR;
    pthread_mutex_lock(&r->mu);
    rc = r->abandoned ? SCOUT_ERROR
         : scout_reload_guard_check(&a->conf, &r->nc, r->opts.policy_file,
                                    err);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static void *
load_main(void *ud)
{
    scout_agent_t *a = ud;
    struct reload *r = a->reload;
    struct timespec c0, c1;

    pthread_mutex_lock(&r->mu);
    r->hook = scout_hook_thread_self();
    if (r->stopping)            /* the stop came before this */
        scout_hook_thread_cancel(r->hook, pthread_self());
    pthread_mutex_unlock(&r->mu);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    r->rc = load(a, r);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    r->cpu_ms = (c1.tv_sec - c0.tv_sec) * 1e3
                + (c1.tv_nsec - c0.tv_nsec) / 1e6;
    scout_hook_thread_end();    /* the VM's next calls are the loop's */
    pthread_mutex_lock(&r->mu);
    r->hook = NULL;
    if (!r->abandoned)
        ev_async_send(a->loop, &r->done);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* On the loop: the load is over.  A refused policy is freed here (its VM
 * was the loader's; nothing of it reached the agent). */
static void
on_loaded(struct ev_loop *loop, ev_async *w, int revents)
{
    scout_agent_t *a = w->data;
    struct reload *r = a->reload;
    char err[SCOUT_ERR_LEN];
    double t0 = ev_time();
    (void)revents;

    ev_async_stop(loop, w);
    pthread_join(r->thread, NULL);
    r->running = 0;
    if (r->rc == SCOUT_OK && a->done != NULL) {
        snprintf(r->err, sizeof(r->err), "shutting down");
        r->rc = SCOUT_ERROR;
    }
    if (r->rc == SCOUT_OK) {
        scout_policy_attach(r->np, a->loop);
        r->rc = apply(a, r);    /* takes np and nc */
        scout_loop_note("a reload's apply (the policy loaded on a "
                        "thread)", ev_time() - t0);
        if (r->rc == SCOUT_OK)
            scout_log(SCOUT_LOG_INFO, "agent", "reload: loaded on a thread "
                      "in %.1f ms (%.1f ms of its CPU) while the loop "
                      "served; applied in %.1f ms", (t0 - r->t0) * 1e3,
                      r->cpu_ms, (ev_time() - t0) * 1e3);
    } else {
        scout_conf_free(&r->nc);    /* (a load that failed freed it) */
        scout_policy_free(r->np);
    }
    r->np = NULL;
    memset(&r->nc, 0, sizeof(r->nc));
    record(a, r->rc, r->err);
    if (r->cb != NULL)
        r->cb(r->ud, r->rc, r->err);
    if (r->again && a->done == NULL) {
        r->again = 0;
        scout_log(SCOUT_LOG_INFO, "agent", "reload: SIGHUP came during "
                  "that one: reloading once more");
        if (begin(a, err) != SCOUT_OK) {
            record(a, SCOUT_ERROR, err);
            if (r->cb != NULL)
                r->cb(r->ud, SCOUT_ERROR, err);
        }
    }
}

/* A new load on the loader thread: its signals all blocked but the load
 * budget's (scout_agent_thread_start). */
static int
begin(scout_agent_t *a, char *err)
{
    struct reload *r = a->reload;

    r->np = NULL;
    memset(&r->nc, 0, sizeof(r->nc));
    r->rc = SCOUT_ERROR;
    r->err[0] = '\0';
    r->opts = a->opts;
    r->t0 = ev_time();
    ev_async_init(&r->done, on_loaded);
    r->done.data = a;
    ev_async_start(a->loop, &r->done);
    if (scout_agent_thread_start(&r->thread, load_main, a) != 0) {
        ev_async_stop(a->loop, &r->done);
        snprintf(err, SCOUT_ERR_LEN, "cannot start the loader thread");
        return SCOUT_ERROR;
    }
    r->running = 1;
    return SCOUT_OK;
}

int
scout_agent_reload(scout_agent_t *a, scout_agent_reloaded_fn cb, void *ud,
                   char *err)
{
    struct reload *r = a->reload;
    int rc;

    if (a->done != NULL) {
        snprintf(err, SCOUT_ERR_LEN, "shutting down");
        record(a, SCOUT_ERROR, err);
        return SCOUT_ERROR;
    }
    if (r != NULL && r->running) {
        if (!r->again)
            scout_log(SCOUT_LOG_INFO, "agent", "reload: one is loading; "
                      "one more will run after it");
        r->again = 1;           /* coalesced: one more after this one */
        return SCOUT_AGAIN;
    }
    if (r == NULL) {
        if ((r = calloc(1, sizeof(*r))) == NULL) {
            snprintf(err, SCOUT_ERR_LEN, "out of memory");
            record(a, SCOUT_ERROR, err);
            return SCOUT_ERROR;
        }
        pthread_mutex_init(&r->mu, NULL);
        a->reload = r;
    }
    r->cb = cb;
    r->ud = ud;
    if ((rc = begin(a, err)) != SCOUT_OK)
        record(a, rc, err);
    return rc == SCOUT_OK ? SCOUT_AGAIN : rc;
}

/* The agent goes.  A load still running is cancelled (policy/hook.c: its
 * Lua stops at the next instruction) and joined, its VM freed; one stuck
 * in a C call (a FIFO, a dead NFS mount) for as long as a stop waits for
 * its registrations' deletions (5 s) is left to the process exit instead:
 * it touches the agent no more, its VM stays reachable (LeakSanitizer may
 * still report a LuaJIT block whose only pointers are NaN-tagged). */
#define RELOAD_STOP_WAIT_S 5

void
scout_agent_reload_free(scout_agent_t *a)
{
    struct reload *r = a->reload;
    struct timespec until;

    if (r == NULL)
        return;
    a->reload = NULL;
    if (r->running) {
        pthread_mutex_lock(&r->mu);
        r->stopping = 1;
        if (r->hook != NULL)
            scout_hook_thread_cancel(r->hook, r->thread);
        pthread_mutex_unlock(&r->mu);
        scout_log(SCOUT_LOG_INFO, "agent", "stopping during a reload: "
                  "its load is stopped, waiting for it");
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += RELOAD_STOP_WAIT_S;
        if (pthread_timedjoin_np(r->thread, NULL, &until) != 0) {
            pthread_mutex_lock(&r->mu);
            r->abandoned = 1;
            pthread_mutex_unlock(&r->mu);
            ev_async_stop(a->loop, &r->done);
            pthread_detach(r->thread);
            abandoned_reload = r;
            scout_log(SCOUT_LOG_WARN, "agent", "the reload's load is stuck "
                      "in a C call: left to the process exit");
            return;
        }
        ev_async_stop(a->loop, &r->done);
        scout_conf_free(&r->nc);
        scout_policy_free(r->np);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* On the loop, the new policy loaded and checked: in force from here on,
 * in this one iteration.  np and nc are taken, whatever the result. */
static int
apply(scout_agent_t *a, struct reload *r)
{
    scout_policy_t *np = r->np;
    scout_conf_t nc = r->nc;
    char *err = r->err;
    scout_service_t **svcs = NULL, **old = a->by_name, **idx = NULL;
    scout_service_t **old_list = a->services;   /* renders, persist and shm
                                                   hold it until told */
    scout_reg_t **regs = NULL;
    int kept = 0, added = 0, dropped = 0, nold = a->nservices;
    char *taken = NULL;         /* old services moved over, by position in
                                   the old name index (a->services stays
                                   whole: publishes walk it) */

    svcs = calloc((size_t)(nc.nservices ? nc.nservices : 1), sizeof(*svcs));
    /* the old services' paths stay indexed until they are retired */
    scout_watch_index_reserve((size_t)a->nservices + (size_t)nc.nservices);
    regs = calloc((size_t)(nc.nregisters ? nc.nregisters : 1), sizeof(*regs));
    idx = malloc((size_t)(nc.nservices ? nc.nservices : 1) * sizeof(*idx));
    taken = calloc((size_t)(nold ? nold : 1), 1);
    if (svcs == NULL || regs == NULL || idx == NULL || taken == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        goto fail;
    }
    /* after the last way out: it swaps strings with the running conf */
    keep_running_settings(a, &nc);
    /* From here on the new policy is in force: nothing below backs out. */
    for (int i = 0; i < nc.nservices; i++) {
        scout_service_conf_t *sc = &nc.services[i];
        int j = scout_agent_find_by_name(old, nold, sc->name);

        if (j >= 0 && !taken[j]) {
            scout_service_t *o = old[j];
            /* its old config: idx is its place in the running policy */
            const scout_service_conf_t *oc =
                &a->conf.services[scout_service_idx(o)];

            if (strcmp(oc->path, sc->path) == 0
                && sc->codec != NULL && same_str(oc->codec, sc->codec)
                && scout_service_rebind(o, np, i, sc, err) == SCOUT_OK) {
                svcs[i] = o;
                taken[j] = 1;
                kept++;
            }
        }
        if (svcs[i] == NULL) {
            scout_session_t *ss = a->sessions[i % a->nbase];
            svcs[i] = scout_service_new(a->loop, ss, np, i, sc, err);
            if (svcs[i] == NULL) {
                scout_log(SCOUT_LOG_ERROR, "agent", "reload: service %s: %s",
                          sc->name, err);
                continue;
            }
            scout_service_on_publish(svcs[i], scout_agent_on_publish, a);
            scout_service_on_state(svcs[i], scout_agent_on_state);
            if (scout_session_state(ss) == SCOUT_SESSION_CONNECTED)
                scout_service_on_session(svcs[i], SCOUT_SESSION_CONNECTED, 1,
                                         0);
            added++;
        }
    }
    /* the new list first (publishes walk it), then the dropped ones go */
    {
        int n = 0;
        for (int i = 0; i < nc.nservices; i++)
            if (svcs[i] != NULL)
                svcs[n++] = svcs[i];
        a->services = svcs;
        a->nservices = n;
        a->by_session_stale = 1;    /* on_session indexes them again */
        scout_agent_index_by_name(idx, svcs, n);
        a->by_name = idx;       /* the old index stays in old until below */
        idx = NULL;
    }
    for (int j = 0; j < nold; j++) {
        if (taken[j])
            continue;
        if (a->api != NULL)
            scout_api_notify(a->api, old[j]);   /* wake parked queries */
        scout_service_retire(old[j]);
        dropped++;
    }
    free(old);                  /* the old name index */
    free(taken);
    taken = NULL;

    for (int i = 0; i < nc.nregisters; i++) {
        for (int j = 0; j < a->nregs; j++) {
            if (a->regs[j] != NULL
                && strcmp(scout_reg_name(a->regs[j]), nc.registers[i].name)
                   == 0
                && scout_reg_rebind(a->regs[j], np, i, &nc.registers[i], err)
                   == SCOUT_OK) {
                regs[i] = a->regs[j];
                a->regs[j] = NULL;
                break;
            }
        }
        if (regs[i] == NULL) {
            regs[i] = scout_reg_new(a->loop, a->sessions[0], np, i,
                                    &nc.registers[i], err);
            if (regs[i] == NULL) {
                scout_log(SCOUT_LOG_ERROR, "agent", "reload: %s", err);
                continue;
            }
            scout_reg_on_session(regs[i], scout_session_state(a->sessions[0]),
                                 1);
        }
    }
    for (int j = 0; j < a->nregs; j++) {
        scout_reg_t **t;
        if (a->regs[j] == NULL)
            continue;
        t = realloc(a->retiring, (size_t)(a->nretiring + 1) * sizeof(*t));
        if (t == NULL) {
            /* out of memory: withdraw it untracked (leaked, never freed
             * under its own requests in flight) */
            scout_reg_withdraw(a->regs[j], NULL, NULL);
            continue;
        }
        a->retiring = t;
        a->retiring[a->nretiring++] = a->regs[j];
        scout_reg_withdraw(a->regs[j], on_retired, a);
    }
    {
        int n = 0;
        for (int i = 0; i < nc.nregisters; i++)
            if (regs[i] != NULL)
                regs[n++] = regs[i];
        free(a->regs);
        a->regs = regs;
        a->nregs = n;
    }

    for (int i = 0; i < a->nrenders; i++)
        scout_render_free(a->renders[i]);
    free(a->renders);
    a->renders = NULL;
    a->nrenders = 0;
    if (nc.nrenders > 0
        && (a->renders = calloc((size_t)nc.nrenders, sizeof(*a->renders)))
           != NULL) {
        for (int i = 0; i < nc.nrenders; i++) {
            a->renders[a->nrenders] = scout_render_new(
                a->loop, np, i, &nc.renders[i], a->services, a->nservices, err);
            if (a->renders[a->nrenders] != NULL)
                scout_render_changed(a->renders[a->nrenders++]);
        }
    }
    if (a->persist != NULL) {
        scout_persist_set_services(a->persist, a->services, a->nservices);
        scout_persist_changed(a->persist, NULL);
    }
    if (a->shm != NULL) {
        scout_shmpub_set_services(a->shm, a->services, a->nservices);
        scout_shmpub_changed(a->shm, NULL);
    }
    free(old_list);
    scout_conf_free(&a->conf);
    a->conf = nc;
    scout_watch_set_anti_entropy_rate(a->conf.anti_entropy_rate);
    scout_policy_free(a->policy);
    a->policy = np;
    scout_agent_side_update(a);     /* the new policy writes what follows */
    scout_log(SCOUT_LOG_INFO, "agent", "reloaded %s: %d services kept, %d "
              "added, %d dropped; %d registrations", a->opts.policy_file,
              kept, added, dropped, a->nregs);
    return SCOUT_OK;

fail:
    free(svcs);
    free(regs);
    free(idx);
    free(taken);
    scout_conf_free(&nc);
    scout_policy_free(np);
    return SCOUT_ERROR;
}

