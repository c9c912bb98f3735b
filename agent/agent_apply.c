/*
 * agent_apply.c -- a reload's new policy put in force on the loop, in
 * slices, and the old one freed off it (issue 14's loop rule).
 *
 * Why: at 10,000 services the apply was one iteration of ~200 ms of CPU
 * (400 ms of wall time on a busy host): three quarters rebinding every
 * kept service to the new VM (its seed, its judgement by the new codec,
 * filter and protection), a sixth the old VM's lua_close, the rest the
 * name index, the conf and the outputs.  Now:
 *
 *   1. the plan, in the iteration the load ends in (agent_reload.c): the
 *      arrays, the running settings kept.  Nothing below backs out.
 *   2. the services placed in slices of at most 2 ms or 128 of them, one
 *      slice per loop iteration (an ev_check after the poll, an ev_idle so
 *      the poll does not block: the API, the sessions and their watches
 *      are served between two slices): in the new policy's order, a kept
 *      service is rebound to the new VM, a new one built (not started).
 *   3. the switch, one iteration: the service list, the name index, the
 *      new services started, the dropped ones retired, the registrations,
 *      the renders, the snapshots' lists, the conf and a->policy.
 *   4. the old VM and the old conf freed on a thread of their own (the VM
 *      is unreachable then: scout_policy_detach cut its ties to the loop
 *      first); the loop hears when it is done, and joins it.
 *
 * What a client sees meanwhile: every service is bound to one VM at every
 * point, the old one until its slice and the new one from it; whatever
 * it answers (its list, a pick, an explain, a ZooKeeper change judged)
 * is that policy's alone, never a mix for one service.  A kept service's
 * hooks run in the old VM until its slice (it stays alive until the
 * switch).  The list (/v1/services, /v1/services/NAME for a name, the
 * snapshots, the renders) is the old policy's until the switch: an added
 * service appears, and a dropped one goes, in the switch's iteration.
 * /v1/agent says how far an apply is (reload.applying).  A SIGHUP during
 * the apply is coalesced as one during the load is: one more reload
 * after it.  A stop (scout_agent_shutdown, or the agent freed) finishes
 * the apply at once, in its own iteration: the agent stops with one policy
 * in force, the new one, and withdraws the new policy's registrations.
 *
 * SCOUT_APPLY_GATE=FIFO (for tests): the apply opens the FIFO to read and
 * each slice after the plan waits for one byte from it and places one
 * service (an ev_io: the loop serves meanwhile); its writer's close lets
 * the rest run freely.  Tests take their "during the apply" from it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* qsort_r */
#endif
#include "agent_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "zk/watch.h"

#define APPLY_SLICE_NS  (2 * 1000 * 1000)
#define APPLY_SLICE_MAX 128

/* The old VM and conf on their way out, on a thread of their own. */
struct reaper {
    pthread_t       thread;
    ev_async        done;
    scout_policy_t *policy;
    scout_conf_t    conf;
    double          cpu_ms;     /* the thread's */
};

struct apply {
    scout_policy_t   *np;
    scout_conf_t      nc;
    scout_service_t **svcs;     /* by position in nc: NULL until placed */
    unsigned char    *fresh;    /* ... built by this apply, not kept     */
    scout_service_t **old;      /* the running name index */
    int               nold;
    char             *taken;    /* old services kept, by position in old */
    scout_service_t **idx;      /* the new name index, for the switch */
    int              *order;    /* nc's positions by name (the loader's
                                   sort), or NULL: sorted at the switch */
    scout_reg_t     **regs;
    int               next;     /* the next position of nc to place */
    int               kept, added, dropped;
    unsigned          slices;
    double            t0, longest_ms, total_ms, longest_cpu_ms;
    ev_check          step;
    ev_idle           spin;
    /* SCOUT_APPLY_GATE */
    int               gate_fd;
    ev_io             gate;
    int               permits;
    scout_agent_applied_fn done;
    char              err[SCOUT_ERR_LEN];
};

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
        || !same_str(a->conf.shm_path, nc->shm_path)
        || a->conf.shm_format != nc->shm_format)
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
    nc->shm_format = a->conf.shm_format;
}

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

/* ---- 4. the old VM freed off the loop ------------------------------------ */

static void *
reap_main(void *ud)
{
    scout_agent_t *a = ud;
    struct reaper *k = a->reaper;
    struct timespec c0, c1;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    scout_conf_free(&k->conf);
    scout_policy_free(k->policy);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    k->cpu_ms = (c1.tv_sec - c0.tv_sec) * 1e3
                + (c1.tv_nsec - c0.tv_nsec) / 1e6;
    ev_async_send(a->loop, &k->done);
    return NULL;
}

static void
reaper_join(scout_agent_t *a, int log)
{
    struct reaper *k = a->reaper;

    if (k == NULL)
        return;
    ev_async_stop(a->loop, &k->done);
    pthread_join(k->thread, NULL);
    if (log)
        scout_log(SCOUT_LOG_INFO, "agent", "reload: the old policy's VM "
                  "and conf freed on a thread (%.1f ms of its CPU)",
                  k->cpu_ms);
    a->reaper = NULL;
    free(k);
}

static void
on_reaped(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    reaper_join(w->data, 1);
}

/* p (detached) and conf (taken) freed on a thread; at once, here, if
 * none can be started. */
static void
reap(scout_agent_t *a, scout_policy_t *p, scout_conf_t *conf)
{
    struct reaper *k;

    reaper_join(a, 1);          /* the last one's: long done, as a rule */
    scout_policy_detach(p);
    if ((k = calloc(1, sizeof(*k))) != NULL) {
        k->policy = p;
        k->conf = *conf;
        ev_async_init(&k->done, on_reaped);
        k->done.data = a;
        ev_async_start(a->loop, &k->done);
        a->reaper = k;
        if (scout_agent_thread_start(&k->thread, reap_main, a) == 0)
            return;
        ev_async_stop(a->loop, &k->done);
        a->reaper = NULL;
        free(k);
    }
    scout_conf_free(conf);
    scout_policy_free(p);
}

/* ---- 2. the services placed, a slice at a time ----------------------------- */

/* New position i: the old service of that name rebound to the new VM (its
 * path and codec unchanged), or a new one built, not started yet. */
static void
place(scout_agent_t *a, struct apply *ap, int i)
{
    scout_service_conf_t *sc = &ap->nc.services[i];
    int j = scout_agent_find_by_name(ap->old, ap->nold, sc->name);
    char *err = ap->err;

    if (j >= 0 && !ap->taken[j]) {
        scout_service_t *o = ap->old[j];
        /* its old config: o is still bound to the running policy here */
        const scout_service_conf_t *oc =
            &a->conf.services[scout_service_idx(o)];

        if (strcmp(oc->path, sc->path) == 0
            && sc->codec != NULL && same_str(oc->codec, sc->codec)
            && scout_service_rebind(o, ap->np, i, sc, err) == SCOUT_OK) {
            ap->svcs[i] = o;
            ap->taken[j] = 1;
            ap->kept++;
            return;
        }
    }
    ap->svcs[i] = scout_service_new(a->loop, a->sessions[i % a->nbase],
                                    ap->np, i, sc, err);
    if (ap->svcs[i] == NULL) {
        scout_log(SCOUT_LOG_ERROR, "agent", "reload: service %s: %s",
                  sc->name, err);
        return;
    }
    scout_service_on_publish(ap->svcs[i], scout_agent_on_publish, a);
    scout_service_on_state(ap->svcs[i], scout_agent_on_state);
    ap->fresh[i] = 1;
    ap->added++;
}

/* Until deadline_ns (0: none) or max placed; 1 when every one is. */
static int
place_some(scout_agent_t *a, struct apply *ap, int64_t deadline_ns, int max)
{
    for (int n = 0; ap->next < ap->nc.nservices && n < max; n++) {
        place(a, ap, ap->next++);
        if (deadline_ns != 0 && scout_now_ns() >= deadline_ns)
            break;
    }
    return ap->next >= ap->nc.nservices;
}

/* ---- 3. the switch: the new policy's list, outputs and conf ---------------- */

static void
switch_over(scout_agent_t *a, struct apply *ap)
{
    scout_conf_t nc = ap->nc;
    scout_policy_t *np = ap->np;
    scout_service_t **old_list = a->services;   /* renders, persist and shm
                                                   hold it until told */
    scout_conf_t old_conf;
    int n = 0;

    /* the name index in the loader's order (a sort of 10,000 names was
     * most of this iteration), then the new list (publishes walk it),
     * then the dropped ones go */
    if (ap->order != NULL)
        for (int k = 0; k < nc.nservices; k++)
            if (ap->svcs[ap->order[k]] != NULL)
                ap->idx[n++] = ap->svcs[ap->order[k]];
    n = 0;
    for (int i = 0; i < nc.nservices; i++)
        if (ap->svcs[i] != NULL)
            ap->svcs[n++] = ap->svcs[i];
    a->services = ap->svcs;
    ap->svcs = NULL;
    a->nservices = n;
    a->by_session_stale = 1;    /* on_session indexes them again */
    if (ap->order == NULL)
        scout_agent_index_by_name(ap->idx, a->services, n);
    a->by_name = ap->idx;
    ap->idx = NULL;
    /* the new ones start now, listed: a session's events reach them */
    for (int k = 0; k < n; k++) {
        scout_service_t *s = a->services[k];
        if (ap->fresh[scout_service_idx(s)]
            && scout_session_state(scout_service_session(s))
               == SCOUT_SESSION_CONNECTED)
            scout_service_on_session(s, SCOUT_SESSION_CONNECTED, 1, 0);
    }
    for (int j = 0; j < ap->nold; j++) {
        if (ap->taken[j])
            continue;
        if (a->api != NULL)
            scout_api_notify(a->api, ap->old[j]);   /* wake parked queries */
        scout_service_retire(ap->old[j]);
        ap->dropped++;
    }
    free(ap->old);              /* the old name index (a->by_name's) */
    ap->old = NULL;

    for (int i = 0; i < nc.nregisters; i++) {
        for (int j = 0; j < a->nregs; j++) {
            if (a->regs[j] != NULL
                && strcmp(scout_reg_name(a->regs[j]), nc.registers[i].name)
                   == 0
                && scout_reg_rebind(a->regs[j], np, i, &nc.registers[i],
                                    ap->err) == SCOUT_OK) {
                ap->regs[i] = a->regs[j];
                a->regs[j] = NULL;
                break;
            }
        }
        if (ap->regs[i] == NULL) {
            ap->regs[i] = scout_reg_new(a->loop, a->sessions[0], np, i,
                                        &nc.registers[i], ap->err);
            if (ap->regs[i] == NULL) {
                scout_log(SCOUT_LOG_ERROR, "agent", "reload: %s", ap->err);
                continue;
            }
            scout_reg_on_session(ap->regs[i],
                                 scout_session_state(a->sessions[0]), 1);
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
    n = 0;
    for (int i = 0; i < nc.nregisters; i++)
        if (ap->regs[i] != NULL)
            ap->regs[n++] = ap->regs[i];
    free(a->regs);
    a->regs = ap->regs;
    ap->regs = NULL;
    a->nregs = n;

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
                a->loop, np, i, &nc.renders[i], a->services, a->nservices,
                ap->err);
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
    old_conf = a->conf;
    a->conf = nc;
    memset(&ap->nc, 0, sizeof(ap->nc));
    scout_watch_set_anti_entropy_rate(a->conf.anti_entropy_rate);
    /* nothing calls into the old VM any more: it and the old conf are
     * freed off the loop */
    reap(a, a->policy, &old_conf);
    a->policy = np;
    ap->np = NULL;
    scout_agent_side_update(a);     /* the new policy writes what follows */
}

/* ---- on the loader thread: the name index's order --------------------------- */

static int
by_name(const void *x, const void *y, void *ud)
{
    const scout_conf_t *nc = ud;

    return strcmp(nc->services[*(const int *)x].name,
                  nc->services[*(const int *)y].name);
}

int *
scout_agent_apply_order(const scout_conf_t *nc)
{
    int *order = malloc((size_t)(nc->nservices + 1) * sizeof(*order));

    if (order == NULL)
        return NULL;
    for (int i = 0; i < nc->nservices; i++)
        order[i] = i;
    qsort_r(order, (size_t)nc->nservices, sizeof(*order), by_name,
            (void *)nc);
    return order;
}

/* ---- the apply's life ------------------------------------------------------ */

static void
apply_free(scout_agent_t *a, struct apply *ap)
{
    ev_check_stop(a->loop, &ap->step);
    ev_idle_stop(a->loop, &ap->spin);
    if (ap->gate_fd >= 0) {
        ev_io_stop(a->loop, &ap->gate);
        close(ap->gate_fd);
    }
    free(ap->svcs);
    free(ap->fresh);
    free(ap->old);
    free(ap->taken);
    free(ap->idx);
    free(ap->order);
    free(ap->regs);
    scout_conf_free(&ap->nc);   /* (taken by the switch: empty then) */
    scout_policy_free(ap->np);  /* (likewise NULL) */
    free(ap);
}

static void
finished(scout_agent_t *a, struct apply *ap)
{
    scout_agent_applied_fn done = ap->done;
    int64_t t0 = scout_now_ns();
    struct timespec c0, c1;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    switch_over(a, ap);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    scout_log(SCOUT_LOG_INFO, "agent", "reloaded %s: %d services kept, %d "
              "added, %d dropped; %d registrations; applied in %u slices "
              "(longest %.1f ms, %.1f ms of CPU; %.1f ms in all) and a "
              "switch of %.1f ms (%.1f ms of CPU) over %.1f ms",
              a->opts.policy_file, ap->kept, ap->added, ap->dropped,
              a->nregs, ap->slices, ap->longest_ms, ap->longest_cpu_ms,
              ap->total_ms, (double)(scout_now_ns() - t0) / 1e6,
              (c1.tv_sec - c0.tv_sec) * 1e3
              + (c1.tv_nsec - c0.tv_nsec) / 1e6,
              (ev_time() - ap->t0) * 1e3);
    a->apply = NULL;
    apply_free(a, ap);
    done(a, SCOUT_OK, "");
}

/* One slice per iteration (after the poll: what it brought is served
 * first), the switch in an iteration of its own. */
static void
on_step(struct ev_loop *loop, ev_check *w, int revents)
{
    scout_agent_t *a = w->data;
    struct apply *ap = a->apply;
    int64_t t0 = scout_now_ns();
    struct timespec c0, c1;
    double ms, cpu;
    int gated = ap->gate_fd >= 0, all;
    (void)loop;
    (void)revents;

    if (ap->next >= ap->nc.nservices) {
        finished(a, ap);
        scout_loop_note("a reload's switch to the new policy",
                        (double)(scout_now_ns() - t0) / 1e9);
        return;
    }
    if (gated && ap->permits == 0) {
        ev_idle_stop(a->loop, &ap->spin);   /* the poll waits for the gate */
        return;
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    all = place_some(a, ap, t0 + APPLY_SLICE_NS,
                     gated ? 1 : APPLY_SLICE_MAX);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    if (gated)
        ap->permits--;
    ms = (double)(scout_now_ns() - t0) / 1e6;
    cpu = (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6;
    ap->slices++;
    ap->total_ms += ms;
    if (ms > ap->longest_ms)
        ap->longest_ms = ms;
    if (cpu > ap->longest_cpu_ms)
        ap->longest_cpu_ms = cpu;
    scout_log(SCOUT_LOG_DEBUG, "agent", "reload: apply slice %u: %d of %d "
              "services placed (%.1f ms, %.1f ms of CPU)", ap->slices,
              ap->next, ap->nc.nservices, ms, cpu);
    if (all || !gated || ap->permits > 0)
        ev_idle_start(a->loop, &ap->spin);
    else
        ev_idle_stop(a->loop, &ap->spin);
}

static void
on_spin(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static void
on_gate(struct ev_loop *loop, ev_io *w, int revents)
{
    scout_agent_t *a = w->data;
    struct apply *ap = a->apply;
    char buf[64];
    ssize_t n = read(ap->gate_fd, buf, sizeof(buf));
    (void)revents;

    if (n > 0) {
        ap->permits += (int)n;
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        ev_io_stop(loop, w);    /* its writer is gone: run freely */
        close(ap->gate_fd);
        ap->gate_fd = -1;
    }
    ev_idle_start(loop, &ap->spin);
}

int
scout_agent_apply_begin(scout_agent_t *a, scout_policy_t *np,
                        scout_conf_t *nc, int *order,
                        scout_agent_applied_fn done, char *err)
{
    struct apply *ap = calloc(1, sizeof(*ap));
    int n = nc->nservices ? nc->nservices : 1;
    const char *gate = getenv("SCOUT_APPLY_GATE");

    if (ap == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        free(order);
        scout_conf_free(nc);
        scout_policy_free(np);
        return SCOUT_ERROR;
    }
    ap->np = np;
    ap->nc = *nc;
    ap->order = order;
    memset(nc, 0, sizeof(*nc));
    ap->gate_fd = -1;
    ap->done = done;
    ap->t0 = ev_time();
    ap->svcs = calloc((size_t)n, sizeof(*ap->svcs));
    ap->fresh = calloc((size_t)n, 1);
    ap->idx = malloc((size_t)n * sizeof(*ap->idx));
    ap->regs = calloc((size_t)(ap->nc.nregisters ? ap->nc.nregisters : 1),
                      sizeof(*ap->regs));
    ap->taken = calloc((size_t)(a->nservices ? a->nservices : 1), 1);
    if (ap->svcs == NULL || ap->fresh == NULL || ap->idx == NULL
        || ap->regs == NULL || ap->taken == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        apply_free(a, ap);
        return SCOUT_ERROR;
    }
    if (gate != NULL && *gate != '\0'
        && (ap->gate_fd = open(gate, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
        scout_log(SCOUT_LOG_WARN, "agent", "SCOUT_APPLY_GATE=%s: %s; not "
                  "gated", gate, strerror(errno));
    /* the old services' paths stay indexed until they are retired */
    scout_watch_index_reserve((size_t)a->nservices
                              + (size_t)ap->nc.nservices);
    /* after the last way out: it swaps strings with the running conf */
    keep_running_settings(a, &ap->nc);
    /* From here on the new policy is in force: nothing below backs out. */
    ap->old = a->by_name;       /* a->by_name too, until the switch */
    ap->nold = a->nservices;
    ev_check_init(&ap->step, on_step);
    ap->step.data = a;
    ev_check_start(a->loop, &ap->step);
    ev_idle_init(&ap->spin, on_spin);
    ev_idle_start(a->loop, &ap->spin);
    if (ap->gate_fd >= 0) {
        ev_io_init(&ap->gate, on_gate, ap->gate_fd, EV_READ);
        ap->gate.data = a;
        ev_io_start(a->loop, &ap->gate);
        ev_idle_stop(a->loop, &ap->spin);
    }
    a->apply = ap;
    return SCOUT_OK;
}

int
scout_agent_applying(const scout_agent_t *a, int *placed, int *of,
                     unsigned *slices)
{
    if (a->apply == NULL)
        return 0;
    *placed = a->apply->next;
    *of = a->apply->nc.nservices;
    *slices = a->apply->slices;
    return 1;
}

void
scout_agent_apply_finish(scout_agent_t *a, const char *why)
{
    struct apply *ap = a->apply;

    if (ap == NULL)
        return;
    scout_log(SCOUT_LOG_INFO, "agent", "%s during a reload's apply (%d of "
              "%d services placed): the rest of it at once", why, ap->next,
              ap->nc.nservices);
    place_some(a, ap, 0, ap->nc.nservices);
    finished(a, ap);
}

void
scout_agent_apply_free(scout_agent_t *a)
{
    scout_agent_apply_finish(a, "freed");
    reaper_join(a, 0);
}
