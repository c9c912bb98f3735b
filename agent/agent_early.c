/*
 * agent_early.c -- wiring of a start that serves the disk snapshot before
 * the policy is loaded (api/early.h), and of the side file that makes it
 * safe (publish/snapside.h).
 *
 * The choice, checked against the code: the loop's thread keeps every
 * socket.  It checks the side file, indexes the snapshot and listens
 * (api/early.c); the policy's VM is built and its file run on a second
 * thread, which touches no loop and no agent state but a->policy and
 * a->conf (scout_agent_load), and says it is done with an ev_async.  Then,
 * on the loop's thread again, the hand-over: the policy's services' lists
 * are decoded from the snapshot the early server read and checked
 * (publish/persist.h's stage: no second read, no second checksum); then
 * the sessions are made, and the services built, each seeded from its list
 * as it is made (a move).  Both in slices of at most 2 ms or 128 services,
 * one per loop iteration (an ev_check after the poll, an ev_idle so the
 * poll does not block), the early server answering between them.  What
 * would walk or sort the whole registry in one iteration is done by the
 * loader thread before it says it is done, on the conf nobody changes
 * meanwhile: the names and paths the decoding borrows, the name index's
 * order (each service put in its place as it is built).  Then, in one
 * iteration, the rest of a normal start (the disk snapshot, the outputs)
 * and the API adopts the early server (scout_http_set_handler) and
 * answers what it parked; what only the next start or nobody waits for
 * (the side file, the early server's memory) comes in later iterations,
 * one step each (agent_side.c).  Ordering with ZooKeeper: a session may
 * connect between two building slices, but a service is seeded in the
 * slice that builds it, before it can send a read, and one built on a
 * connected session starts as a reload's new service does: its first
 * listing always comes after its seed and replaces it.  No output (disk,
 * shm, renders, the API) exists before the last slice, so none sees a
 * half-seeded registry; a service ZooKeeper listed meanwhile is written
 * to disk once there is a disk snapshot (scout_agent_snapshot_load).  No socket or connection crosses threads;
 * the VM does, once, and only one thread touches it at a time.  The load's
 * budget timer (policy/hook.c) is the loader thread's own and signals it
 * alone (a reload's loader likewise, while the old VM's hooks run on the
 * loop under the loop's timer).  scout.exec is not
 * given the loop until the load is over (it answers nil, err meanwhile,
 * as in `scout check`).
 *
 * Where the side file is found before the policy says where the cache is:
 * only --cache-dir.  A policy's cache { dir = ... } alone means a normal
 * start (said in the log): a pre-scan of the policy's text would guess.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* pthread_timedjoin_np */
#endif
#include "agent.h"
#include "agent_early_int.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/early.h"
#include "heap.h"
#include "log.h"
#include "loop.h"
#include "policy/hook.h"
#include "publish/persist.h"
#include "publish/snapshot.h"
#include "publish/snapside.h"

scout_api_t *
scout_agent_early_adopt(scout_agent_t *a, char *err)
{
    scout_early_t *e = a->early;
    scout_http_req_t **parked;
    scout_api_view_t view;
    scout_http_t *http;
    scout_api_t *api;
    int n;

    scout_agent_api_view(a, &view);
    if (strcmp(a->conf.api_listen, scout_early_listen(e)) != 0) {
        scout_log(SCOUT_LOG_WARN, "agent", "the policy listens on %s, not "
                  "on %s where the snapshot was served: moving",
                  a->conf.api_listen, scout_early_listen(e));
        scout_agent_early_free(a);  /* its clients are disconnected */
        return scout_api_new(a->loop, &view, a->conf.api_listen, err);
    }
    http = scout_early_handover(e, &parked, &n);
    if ((api = scout_api_adopt(a->loop, &view, http, err)) == NULL) {
        scout_http_free(http);      /* aborts the parked requests */
        free(parked);
        return NULL;
    }
    scout_log(SCOUT_LOG_INFO, "agent", "the loaded agent serves %s now: "
              "%u requests came before, %d of them parked and answered now",
              a->conf.api_listen, scout_early_answered(e), n);
    for (int i = 0; i < n; i++)
        scout_api_dispatch(api, parked[i]);
    free(parked);
    /* its index and the snapshot's bytes: freed in a later iteration
     * (munmap of tens of MB is not free) */
    if (a->loader != NULL && a->loader->after_step != 0) {
        a->loader->retired = e;
        a->early = NULL;
    } else {
        scout_agent_early_free(a);
    }
    return api;
}

/* The early server; and once the start is over (scout_agent_early_end),
 * the steps still pending after it (the agent is freed). */
void
scout_agent_early_free(scout_agent_t *a)
{
    struct loader *l = a->loader;

    scout_early_free(a->early);
    a->early = NULL;
    if (l == NULL || !l->ended)
        return;
    scout_agent_after_stop(a);
    free(l);
    a->loader = NULL;
}

/* ---- the start's first two steps (agent.c finishes it) -------------------- */

/* The start is three steps so that the policy may load on another thread
 * while the loop serves the disk snapshot (agent_early.c): begin and
 * finish on the loop's thread, load on either, one at a time. */
scout_agent_t *
scout_agent_begin(struct ev_loop *loop, const scout_agent_opts_t *opts,
                  char *err)
{
    scout_agent_t *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    a->t0 = scout_now_ms();
    a->c0 = scout_agent_cpu_ms();
    /* Half the start's CPU was first touches of fresh heap pages: the
     * heap grows in steps made resident in one call each, until ready. */
    scout_heap_populate_start(SCOUT_HEAP_STEP);
    a->loop = loop;
    a->started_at = scout_wall_ms() / 1000.0;
    a->opts = *opts;            /* main's strings live as long as we do */
    return a;
}

/* Touches no loop: the VM, the policy's top level, its conf.  With attach
 * the policy gets the loop first (scout.exec while loading), as before. */
int
scout_agent_load(scout_agent_t *a, int attach, char *err)
{
    a->policy = scout_policy_new(a->opts.lua_dir, err);
    if (a->policy == NULL)
        return SCOUT_ERROR;
    if (attach) {
        scout_policy_attach(a->policy, a->loop);
        a->attached = 1;
    }
    if (scout_policy_load(a->policy, a->opts.policy_file, &a->conf, err)
        != SCOUT_OK)
        return SCOUT_ERROR;
    scout_agent_log_warnings(&a->conf);
    a->t_policy = scout_now_ms();
    a->c_policy = scout_agent_cpu_ms();
    return SCOUT_OK;
}

/* ---- the loader thread ---------------------------------------------------- */

/* An early start stopped during its load: left to the process exit, and
 * reachable from here until then (LeakSanitizer reports only what nothing
 * points to).  volatile: a static stored to and never read is a dead store
 * the compiler drops, and with it the pointer (it did: 5.7 KB "leaked"). */
static scout_agent_t *volatile abandoned_start;

/* A stop during the load: cancel it and wait for the thread (at most 5 s:
 * a load stuck in one C call is not waited for).  1 when joined; else the
 * thread will touch the loop no more. */
static int
stop_load(struct loader *l)
{
    struct timespec until;

    pthread_mutex_lock(&l->mu);
    l->stopping = 1;
    if (l->hook != NULL)
        scout_hook_thread_cancel(l->hook, l->thread);
    pthread_mutex_unlock(&l->mu);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    if (pthread_timedjoin_np(l->thread, NULL, &until) == 0)
        return 1;
    pthread_mutex_lock(&l->mu);
    l->abandoned = 1;
    pthread_mutex_unlock(&l->mu);
    pthread_detach(l->thread);
    return 0;
}

struct byname {
    const char *name;
    int         i;
};

static int
by_name(const void *x, const void *y)
{
    return strcmp(((const struct byname *)x)->name,
                  ((const struct byname *)y)->name);
}

/* On the loader thread, the policy loaded: what the hand-over would
 * otherwise walk or sort on the loop (agent_early_int.h).  Out of memory
 * leaves the part NULL, and the loop does it as before. */
static void
load_prep(scout_agent_t *a)
{
    struct loader *l = a->loader;
    int n = a->conf.nservices;
    size_t m = (size_t)n + 1;
    struct byname *order;
    struct timespec c0, c1;

    l->names = malloc(m * sizeof(*l->names));
    l->paths = malloc(m * sizeof(*l->paths));
    if (l->names != NULL && l->paths != NULL) {
        for (int i = 0; i < n; i++) {
            l->names[i] = a->conf.services[i].name;
            l->paths[i] = a->conf.services[i].path;
        }
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    order = malloc(m * sizeof(*order));
    l->rank = malloc(m * sizeof(*l->rank));
    l->by_name = calloc(m, sizeof(*l->by_name));
    if (order == NULL || l->rank == NULL || l->by_name == NULL) {
        free(l->rank);
        free(l->by_name);
        l->rank = NULL;
        l->by_name = NULL;
    } else {
        for (int i = 0; i < n; i++) {
            order[i].name = a->conf.services[i].name;
            order[i].i = i;
        }
        qsort(order, (size_t)n, sizeof(*order), by_name);
        for (int k = 0; k < n; k++)
            l->rank[order[k].i] = k;
    }
    free(order);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    l->sort_ms = (c1.tv_sec - c0.tv_sec) * 1e3
                 + (c1.tv_nsec - c0.tv_nsec) / 1e6;
}

static void *
load_main(void *ud)
{
    scout_agent_t *a = ud;
    struct loader *l = a->loader;

    pthread_mutex_lock(&l->mu);
    l->hook = scout_hook_thread_self();
    if (l->stopping)            /* the stop came before this */
        scout_hook_thread_cancel(l->hook, pthread_self());
    pthread_mutex_unlock(&l->mu);
    l->rc = scout_agent_load(a, 0, l->err);
    if (l->rc == SCOUT_OK)
        load_prep(a);
    scout_hook_thread_end();    /* the VM's next calls are the loop's */
    pthread_mutex_lock(&l->mu);
    l->hook = NULL;
    if (!l->abandoned)          /* else the loop is gone */
        ev_async_send(a->loop, &l->done);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void
join(scout_agent_t *a)
{
    struct loader *l = a->loader;

    if (!l->running)
        return;
    pthread_join(l->thread, NULL);
    l->running = 0;
}

int
scout_agent_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, was;
    int rc;

    /* the thread inherits this mask: it takes no signal but the load
     * budget's, which its own timer sends to it alone */
    sigfillset(&all);
    sigdelset(&all, SIGALRM);
    pthread_sigmask(SIG_SETMASK, &all, &was);
    rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    return rc;
}

/* What a normal start does before the loop runs, the services aside:
 * named, since here the loop's early clients wait for it.  Its time in
 * ms, wall and CPU. */
static double
finish_end(scout_agent_t *a, double *cpu_ms)
{
    struct loader *l = a->loader;
    double t0 = ev_time();
    struct timespec c0, c1;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    l->rc = scout_agent_finish_end(a, l->err);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    *cpu_ms = (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6;
    scout_loop_note("the start after the policy loaded: the disk snapshot, "
                    "the outputs, the API", ev_time() - t0);
    return (ev_time() - t0) * 1e3;
}

static double
cpu_ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
seed_stop(scout_agent_t *a)
{
    struct loader *l = a->loader;

    ev_check_stop(a->loop, &l->seed);
    ev_idle_stop(a->loop, &l->spin);
}

/* Decoded: the sessions (not connected before the loop polls again), and
 * the snapshot checked against the policy's ensemble before any seed. */
static int
build_begin(scout_agent_t *a)
{
    struct loader *l = a->loader;
    char err[SCOUT_ERR_LEN];
    double c0 = cpu_ms_now();

    l->rc = scout_agent_finish_begin(a, l->err);
    l->begin_ms = cpu_ms_now() - c0;
    if (l->rc != SCOUT_OK)
        return SCOUT_ERROR;
    if (scout_persist_stage_check(l->stage, a->conf.zk_servers, err)
        != SCOUT_OK) {
        scout_log(SCOUT_LOG_WARN, "persist", "ignoring the snapshot: %s",
                  err);
        scout_persist_stage_free(l->stage);
        l->stage = NULL;
    }
    l->building = 1;
    return SCOUT_OK;
}

static void
prep_free(struct loader *l)
{
    free(l->names);
    free(l->paths);
    free(l->rank);
    free(l->by_name);
    l->names = l->paths = NULL;
    l->rank = NULL;
    l->by_name = NULL;
}

/* Every service built, each put in its place in the loader's index as it
 * was (scout_agent_seed_service): the index, in O(1); agent.c sorts the
 * services in the last iteration only when the loader had no memory. */
static void
order_apply(scout_agent_t *a)
{
    struct loader *l = a->loader;

    if (l->by_name != NULL && a->by_name == NULL
        && a->nservices == a->conf.nservices) {
        a->by_name = l->by_name;
        l->by_name = NULL;
        l->by_loader = 1;
    }
}

/* One slice per loop iteration: first the lists decoded from the early
 * index, then the services built, each seeded as it is made.  Then the rest of the start in one iteration, and the API
 * takes the socket. */
static void
on_seed(struct ev_loop *loop, ev_check *w, int revents)
{
    scout_agent_t *a = w->data;
    struct loader *l = a->loader;
    double longest, total, held, cpu, ms;
    int slices, rc, n0;
    unsigned answered;
    int64_t t0 = scout_now_ns();
    (void)revents;

    if (!l->building) {
        if (scout_persist_stage_step(l->stage, t0 + SEED_SLICE_NS,
                                     SEED_SLICE_MAX) == SCOUT_AGAIN)
            return;
        if (build_begin(a) != SCOUT_OK)
            goto out;
        return;                 /* the services from the next iteration */
    }
    n0 = a->nservices;
    rc = scout_agent_build_services(a, t0 + SEED_SLICE_NS, SEED_SLICE_MAX,
                                    l->err);
    for (int i = n0; i < a->nservices; i++)
        l->on_connected += scout_session_state(scout_service_session(
                               a->services[i])) == SCOUT_SESSION_CONNECTED;
    ms = (double)(scout_now_ns() - t0) / 1e6;
    l->slices++;
    l->total_ms += ms;
    if (ms > l->longest_ms)
        l->longest_ms = ms;
    if (rc == SCOUT_AGAIN)
        return;
    if ((l->rc = rc) != SCOUT_OK)
        goto out;
    slices = 0;
    longest = total = 0;
    if (l->stage != NULL)
        scout_persist_stage_stats(l->stage, &slices, &longest, &total);
    answered = scout_early_answered(a->early) - l->answered0;
    order_apply(a);
    held = finish_end(a, &cpu);     /* a->early goes to the API */
    scout_log(SCOUT_LOG_INFO, "agent", "the hand-over decoded %d services' "
              "lists from the early index in %d slices (longest %.1f ms, "
              "%.1f ms in all) and built and seeded the services in %d "
              "(longest %.1f ms, %.1f ms in all; %d on a session already "
              "connected); %u early requests came meanwhile; then it held "
              "the loop %.1f ms (%.1f ms of CPU) for the disk snapshot, the "
              "outputs and the API; its first iteration %.1f ms of CPU (the "
              "lists staged), the sessions' %.1f ms; the name index %s",
              a->conf.nservices, slices, longest,
              total, l->slices, l->longest_ms, l->total_ms, l->on_connected,
              answered, held, cpu, l->staged_ms, l->begin_ms, l->by_loader
              ? "sorted by the loader thread" : "sorted in the last iteration");
out:
    seed_stop(a);
    ev_break(loop, EVBREAK_ONE);
}

static void
on_spin(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* The lists to decode in slices, or NULL: finished at once, the snapshot
 * read again by scout_persist_load (out of memory).  O(1): the loader
 * made the names and paths it borrows. */
static scout_persist_stage_t *
stage_new(scout_agent_t *a)
{
    struct loader *l = a->loader;

    if (a->early == NULL        /* (only with --cache-dir: the policy's dir) */
        || l->names == NULL || l->paths == NULL)
        return NULL;
    return scout_persist_stage_new(scout_early_snapshot(a->early), l->file,
                                   (const char *const *)l->names,
                                   (const char *const *)l->paths,
                                   a->conf.nservices);
}

static void
on_loaded(struct ev_loop *loop, ev_async *w, int revents)
{
    scout_agent_t *a = w->data;
    struct loader *l = a->loader;
    double t0 = ev_time(), c0 = cpu_ms_now();
    (void)revents;

    ev_async_stop(loop, w);
    join(a);
    l->loaded = 1;
    if (l->rc == SCOUT_OK && (l->stage = stage_new(a)) != NULL) {
        l->staged = 1;
        l->answered0 = scout_early_answered(a->early);
        ev_check_init(&l->seed, on_seed);
        l->seed.data = a;
        ev_check_start(loop, &l->seed);
        ev_idle_init(&l->spin, on_spin);
        ev_idle_start(loop, &l->spin);
        l->staged_ms = cpu_ms_now() - c0;
        return;
    }
    if (l->rc == SCOUT_OK) {
        l->rc = scout_agent_finish(a, l->err);
        scout_loop_note("the start after the policy loaded: services, the "
                        "disk snapshot, the API", ev_time() - t0);
    }
    ev_break(loop, EVBREAK_ONE);
}

void
scout_agent_seed_service(scout_agent_t *a, int i)
{
    struct loader *l = a->loader;

    if (l == NULL)
        return;
    if (l->stage != NULL)
        scout_persist_stage_seed(l->stage, i, a->services[i]);
    if (l->by_name != NULL)     /* its place in the loader's name index */
        l->by_name[l->rank[i]] = a->services[i];
}

/* In scout_agent_finish_end: what the hand-over seeded, recorded (or the
 * snapshot read from the file by a normal start), in O(1).  A service
 * ZooKeeper listed while the services were built published before there
 * was a disk snapshot to write: it is marked in the steps after
 * (agent_side.c's AFTER_MARK, in slices), for the next write. */
void
scout_agent_snapshot_load(scout_agent_t *a)
{
    struct loader *l = a->loader;

    if (l == NULL || !l->staged) {
        scout_persist_load(a->persist);
        return;
    }
    if (l->stage != NULL)
        scout_persist_load_staged(a->persist, l->stage);
    scout_persist_stage_free(l->stage);
    l->stage = NULL;
}

scout_agent_t *
scout_agent_new_early(struct ev_loop *loop, const scout_agent_opts_t *opts,
                      int *loading, char *err)
{
    scout_snapside_inputs_t in;
    char why[SCOUT_ERR_LEN];
    scout_agent_t *a;
    struct loader *l;
    struct timespec c0, c1;
    int rc;

    *loading = 0;
    if (opts->cache_dir == NULL) {
        scout_log(SCOUT_LOG_DEBUG, "agent", "a disk snapshot is served "
                  "once the policy is loaded (only --cache-dir says where "
                  "it is before)");
        return scout_agent_new(loop, opts, err);
    }
    if ((a = scout_agent_begin(loop, opts, err)) == NULL)
        return NULL;
    scout_agent_side_inputs(a, &in);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    if ((a->early = scout_early_new(loop, opts->cache_dir, &in, why))
        == NULL) {
        scout_log(SCOUT_LOG_INFO, "agent", "the disk snapshot is served "
                  "once the policy is loaded: %s", why);
        scout_agent_free(a);
        return scout_agent_new(loop, opts, err);
    }
    if ((l = a->loader = calloc(1, sizeof(*l))) == NULL) {
        scout_agent_free(a);
        return scout_agent_new(loop, opts, err);
    }
    pthread_mutex_init(&l->mu, NULL);
    snprintf(l->file, sizeof(l->file), "%s/%s", opts->cache_dir,
             SCOUT_SNAPSHOT_FILE);
    /* One malloc arena for every thread: the policy's heap is the loader's
     * mallocs, and a thread's own arena grows by mmap, a page fault per
     * first touch (~14 us here: the load took twice its wall time); the
     * main arena's growth is made resident in steps (heap.h). */
    mallopt(M_ARENA_MAX, 1);
    ev_async_init(&l->done, on_loaded);
    l->done.data = a;
    ev_async_start(loop, &l->done);
    rc = scout_agent_thread_start(&l->thread, load_main, a);
    if (rc != 0) {
        ev_async_stop(loop, &l->done);
        scout_agent_free(a);
        return scout_agent_new(loop, opts, err);
    }
    l->running = 1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    scout_log(SCOUT_LOG_INFO, "agent", "serving the disk snapshot of %s on "
              "%s while the policy loads (checked, indexed and listening in "
              "%.1f ms of CPU)", opts->cache_dir, scout_early_listen(a->early),
              (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6);
    *loading = 1;
    return a;
}

int
scout_agent_early_end(scout_agent_t *a, char *err)
{
    struct loader *l = a->loader;
    int rc;

    if (l == NULL)
        return SCOUT_OK;
    if (ev_is_active(&l->seed)) {
        /* stopped during the hand-over's slices: as during the load (the
         * process exits; sessions and services go with it) */
        seed_stop(a);
        l->loaded = 0;
    }
    scout_persist_stage_free(l->stage);     /* borrows the early index */
    l->stage = NULL;
    if (!l->loaded) {
        /* stopped by a signal during the load: it is cancelled (its Lua
         * stops at the next instruction), joined and its VM freed.  One
         * stuck in a C call (a FIFO, a dead mount) for as long as a stop
         * waits for deletions (5 s) is left to the process exit: it sends
         * nothing to the loop, which main destroys next.  Either way the
         * agent is left to the exit (reachable, for LeakSanitizer too). */
        if (l->running)
            scout_log(SCOUT_LOG_INFO, "agent", "stopped while the policy "
                      "loads: its load is stopped, waiting for it");
        if (l->running && stop_load(l)) {
            l->running = 0;
            scout_policy_free(a->policy);
            a->policy = NULL;
            scout_conf_free(&a->conf);
        } else if (l->running) {
            scout_log(SCOUT_LOG_WARN, "agent", "the policy's load is stuck "
                      "in a C call: left to the process exit");
        }
        abandoned_start = a;
        ev_async_stop(a->loop, &l->done);
        if (!l->running)
            prep_free(l);
        scout_agent_early_free(a);      /* the loop's: a unix socket goes */
        scout_heap_populate_stop();
        return SCOUT_AGAIN;
    }
    prep_free(l);
    {
        rc = l->rc;
        if (rc != SCOUT_OK)
            snprintf(err, SCOUT_ERR_LEN, "%s", l->err);
    }
    if (rc == SCOUT_OK && l->after_step != 0) {
        l->ended = 1;           /* the rest in the next iterations */
        return rc;
    }
    scout_agent_after_stop(a);
    free(l);
    a->loader = NULL;
    scout_heap_populate_stop();
    return rc;
}
