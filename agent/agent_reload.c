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
 * thread); it also sorts the new services by name for the apply.  The
 * running policy serves every request until the thread says it is done
 * (an ev_async); then the apply, on the loop in slices (agent_apply.c):
 * each service answers by the old policy until its slice and by the new
 * one from it, never a mix for one service.  A SIGHUP during a reload, its
 * load or its apply, is not lost and not run twice: the reload in progress
 * finishes, then one more runs (all the SIGHUPs meanwhile coalesced into
 * it: the file as it is then).  A stop
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
    int            *order;      /* nc's positions by name (the apply's) */
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
    /* the apply's name index sorted here, not on the loop */
    if (rc == SCOUT_OK)
        r->order = scout_agent_apply_order(&r->nc);
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

/* The reload is over (applied, or refused): its result recorded and
 * told, and one more begun if SIGHUPs came meanwhile. */
static void
ended(scout_agent_t *a, int rc, const char *why)
{
    struct reload *r = a->reload;
    char err[SCOUT_ERR_LEN];

    record(a, rc, why);
    if (r->cb != NULL)
        r->cb(r->ud, rc, why);
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

static void
applied(scout_agent_t *a, int rc, const char *err)
{
    ended(a, rc, err);
}

/* On the loop: the load is over.  A refused policy is freed here (its VM
 * was the loader's; nothing of it reached the agent); a loaded one is
 * applied in slices from here (agent_apply.c), the reload over when the
 * last one switches to it. */
static void
on_loaded(struct ev_loop *loop, ev_async *w, int revents)
{
    scout_agent_t *a = w->data;
    struct reload *r = a->reload;
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
        scout_log(SCOUT_LOG_INFO, "agent", "reload: loaded on a thread in "
                  "%.1f ms (%.1f ms of its CPU) while the loop served; "
                  "applying it in slices", (t0 - r->t0) * 1e3, r->cpu_ms);
        /* takes np and nc, whatever the result */
        r->rc = scout_agent_apply_begin(a, r->np, &r->nc, r->order,
                                        applied, r->err);
        r->np = NULL;
        r->order = NULL;
        memset(&r->nc, 0, sizeof(r->nc));
        scout_loop_note("a reload's apply begun (the policy loaded on a "
                        "thread)", ev_time() - t0);
        if (r->rc == SCOUT_OK)
            return;             /* ended() once applied */
    } else {
        scout_conf_free(&r->nc);    /* (a load that failed freed it) */
        scout_policy_free(r->np);
        free(r->order);
        r->order = NULL;
    }
    r->np = NULL;
    memset(&r->nc, 0, sizeof(r->nc));
    ended(a, r->rc, r->err);
}

/* A new load on the loader thread: its signals all blocked but the load
 * budget's (scout_agent_thread_start). */
static int
begin(scout_agent_t *a, char *err)
{
    struct reload *r = a->reload;

    r->np = NULL;
    r->order = NULL;
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
    if (r != NULL && (r->running || a->apply != NULL)) {
        if (!r->again)
            scout_log(SCOUT_LOG_INFO, "agent", "reload: one is %s; one "
                      "more will run after it", r->running ? "loading"
                                                          : "applying");
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
    r->again = 0;               /* no reload begins any more */
    scout_agent_apply_free(a);  /* an apply under way finished at once */
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
        free(r->order);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}
