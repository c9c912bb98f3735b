/*
 * hook.c -- the time and memory budgets behind every call into Lua (see
 * hook.h).
 *
 * One Lua call runs at a time per thread: the loop's thread runs the
 * policy's hooks, and a loader thread may load the next policy into a VM
 * of its own meanwhile (a reload, the early start).  So a call's state is
 * the thread's own (thread-local, initial-exec: reading it in the signal
 * handler takes no lock and no allocation), and each thread that makes
 * budgeted calls has its own POSIX timer, whose SIGALRM is directed at
 * that thread (SIGEV_THREAD_ID): a runaway hook on the loop is stopped
 * while a load runs, and a runaway load is stopped while hooks run.  The
 * signal handler touches nothing but lua_sethook, the thread's flags and
 * atomic counters.  The heap cap is an allocator wrapped around LuaJIT's
 * own: it refuses only inside a budgeted call of the thread the VM runs
 * on, where the "not enough memory" it causes is caught; outside one (C
 * pushing a ZooKeeper listing) a refusal would be an unprotected error, a
 * panic.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* SIGEV_THREAD_ID, gettid */
#endif
#include "policy/hook.h"

#include <ev.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loop.h"
#include "scout.h"
#include "stats.h"

#include <pthread.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* Counters that two threads' calls may bump (a load beside the loop's
 * hooks): atomic, which is also async-signal-safe. */
#define STAT_ADD(f, n) __atomic_fetch_add(&scout_stats.f, (n), \
                                          __ATOMIC_RELAXED)

/* One thread's budgeted call and its timer. */
struct scout_hook_thread_s {
    timer_t                timer;
    int                    timer_ok;
    int                    timer_failed;  /* timer_create refused: once */
    lua_State *volatile    armed_L;      /* the call in progress        */
    volatile int64_t       call_start;   /* its start, in CPU time, or a
                                            little after: see below  */
    int64_t                ref_cpu;      /* the last reading of the CPU
                                            clock...                 */
    int64_t                ref_wall;     /* ...and when (monotonic)   */
    volatile int64_t       call_budget;  /* its budget, ns              */
    volatile int64_t       wall_start;   /* its start, monotonic        */
    volatile int64_t       wall_budget;  /* its wall-clock budget, ns   */
    volatile sig_atomic_t  timer_armed;  /* the POSIX timer is running  */
    volatile int64_t       timer_due;    /* when it fires (monotonic)   */
    volatile sig_atomic_t  expired;
    int                    current_budget;
    volatile sig_atomic_t  polling;      /* the loop waits (its thread) */
    volatile sig_atomic_t  cancel;       /* another thread stops the
                                            calls: scout_hook_thread_cancel */
    int                    mem_refused;  /* the call hit a heap cap     */
    char                   mem_where[256]; /* the policy's file:line then */
    char                   budget_where[256]; /* where it was first stopped */
};
static __thread struct scout_hook_thread_s T __attribute__((tls_model("initial-exec")));

static pthread_once_t         handler_once = PTHREAD_ONCE_INIT;
static int                    handler_ok;
static int                    users;        /* VMs alive (atomic: a reload
                                               briefly has two, on two
                                               threads) */
static struct ev_loop        *idle_loop;    /* where disarm_w runs        */
static ev_prepare             disarm_w;
static ev_check               polled_w;     /* the loop's wait has ended  */

/* The heap cap of one VM: LuaJIT's allocator wrapped. */
struct scout_hook_mem_s {
    lua_Alloc  orig;
    void      *orig_ud;
    size_t     total;       /* bytes the VM holds, as LuaJIT counts them */
    size_t     cap;
    lua_State *L;
};

static void
budget_hook(lua_State *L, lua_Debug *ar)
{
    lua_Debug here;
    (void)ar;
    /* Inside a hook, level 0 is the interrupted function: name its line,
     * which is where the operator's loop is.  Only the first time: the hook
     * raises again wherever a pcall that caught it goes on (the loader's
     * pcall around a policy's top level, the runtime's per-child pcall
     * around a filter), and that place is not the operator's loop. */
    if (T.budget_where[0] == '\0' && lua_getstack(L, 0, &here)
        && lua_getinfo(L, "Sl", &here) && here.currentline > 0)
        snprintf(T.budget_where, sizeof(T.budget_where), "%s:%d: ",
                 here.short_src, here.currentline);
    lua_pushstring(L, T.budget_where);
    lua_pushfstring(L, "exceeded its %d ms budget", T.current_budget);
    lua_concat(L, 2);
    /* The hook stays installed until the outer call returns: every further
     * instruction raises again, whatever pcalls the hook code holds. */
    lua_error(L);
}

/* Budgets are CPU time first: on a loaded host (50 agents on two cores) a
 * trivial hook can wait longer than its budget for the CPU, and stopping it
 * would be wrong; a runaway loop burns CPU and is stopped all the same.  The
 * clock is the calling thread's own: the snapshot writer's CPU is not the
 * hook's, nor a loader thread's the loop's (each thread's timer signals
 * that thread alone, so the handler reads the right clock).
 *
 * But the session expires in wall time: a hook that stalls without burning
 * CPU (anything that waits) is stopped at its wall-clock budget, a few times
 * the CPU one (hook.h).  One timer on the monotonic clock serves both: CPU
 * spent is never more than wall time spent, so arming it for the CPU budget
 * left is never late.  clock_gettime is async-signal-safe. */
static int64_t
cpu_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
wall_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
arm(int64_t ns)
{
    struct itimerspec its;

    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = ns / 1000000000;
    its.it_value.tv_nsec = ns % 1000000000;
    if (ns > 0 && its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1;
    T.timer_due = wall_now_ns() + ns;
    T.timer_armed = 1;
    timer_settime(T.timer, 0, &its, NULL);   /* async-signal-safe */
}

/* The loop is about to wait: a timer the iteration's calls left running is
 * stopped, since it can only find the loop idle and wake it for nothing
 * (once per change of a quiet registry: a wakeup costs more than the
 * change).  One timer_settime per iteration that called into Lua; the
 * signal landing between the test and the call finds no call and returns. */
static void
disarm_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct itimerspec its;
    (void)loop;
    (void)w;
    (void)revents;

    T.polling = 1;    /* the last prepare: an alarm from here on wakes it */
    if (!T.timer_armed || T.armed_L != NULL)
        return;
    memset(&its, 0, sizeof(its));
    T.timer_armed = 0;
    timer_settime(T.timer, 0, &its, NULL);
}

static void
polled_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    T.polling = 0;
}

/* The timer is armed lazily and not disarmed after a call, only before the
 * loop waits (disarm_cb): a stream of short calls costs no timer_settime
 * each.  When it fires, the call then in
 * progress (if any) is stopped only if it has really spent its budget;
 * otherwise the timer is re-armed for what remains. */
static void
on_alarm(int sig)
{
    lua_State *L = T.armed_L;
    int64_t spent, waited;
    (void)sig;

    STAT_ADD(hook_alarms, 1);
    if (T.polling)                /* what disarm_cb is there to prevent */
        STAT_ADD(hook_idle_alarms, 1);
    T.timer_armed = 0;
    if (L == NULL)
        return;
    if (T.cancel) {
        T.expired = 1;
        lua_sethook(L, budget_hook,
                    LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
        return;
    }
    spent = cpu_now_ns() - T.call_start;
    waited = wall_now_ns() - T.wall_start;
    if (spent < T.call_budget && waited < T.wall_budget) {
        int64_t left = T.call_budget - spent;
        if (T.wall_budget - waited < left)
            left = T.wall_budget - waited;
        arm(left);
        return;
    }
    T.expired = 1;
    lua_sethook(L, budget_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                1);
}

static void
install_handler(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    handler_ok = sigaction(SIGALRM, &sa, NULL) == 0;
}

/* The calling thread's timer, its SIGALRM sent to this thread alone. */
static int
thread_timer(void)
{
    struct sigevent sev;

    if (T.timer_ok || T.timer_failed)
        return T.timer_ok;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGALRM;
    sev.sigev_notify_thread_id = (pid_t)gettid();
    if (timer_create(CLOCK_MONOTONIC, &sev, &T.timer) != 0) {
        T.timer_failed = 1;
        return 0;
    }
    T.timer_ok = 1;
    return 1;
}

int
scout_hook_init(lua_State *L, char *err)
{
    (void)L;    /* what runs under a budget stays interpreted: hook.h */
    pthread_once(&handler_once, install_handler);
    if (!handler_ok) {
        snprintf(err, SCOUT_ERR_LEN, "sigaction(SIGALRM) failed");
        return SCOUT_ERROR;
    }
    if (!thread_timer()) {
        snprintf(err, SCOUT_ERR_LEN, "timer_create failed");
        return SCOUT_ERROR;
    }
    __atomic_fetch_add(&users, 1, __ATOMIC_RELAXED);
    return SCOUT_OK;
}

scout_hook_thread_t *
scout_hook_thread_self(void)
{
    return &T;
}

/* From another thread: h's calls stop at their next Lua instruction (the
 * signal interrupts one in progress; a call that starts after it is
 * stopped at once).  One blocked in C stops once that returns.
 *
 * The handler is installed here too, not only by the first VM's init: a
 * stop can come before the thread has made its VM (an early start's
 * loader is the process's first), and SIGALRM's default action kills the
 * process -- a stop during an early start's load exited by SIGALRM.
 * Without a handler no signal is sent: the flag alone stops the calls. */
void
scout_hook_thread_cancel(scout_hook_thread_t *h, pthread_t t)
{
    h->cancel = 1;
    pthread_once(&handler_once, install_handler);
    if (handler_ok)
        pthread_kill(t, SIGALRM);
}

/* The thread's timer goes (a loader thread's, before it ends). */
void
scout_hook_thread_end(void)
{
    T.armed_L = NULL;
    if (T.timer_ok)
        timer_delete(T.timer);
    T.timer_ok = 0;
    T.timer_armed = 0;
    T.timer_failed = 0;
}

void
scout_hook_fini(void)
{
    int left;

    if (__atomic_load_n(&users, __ATOMIC_RELAXED) == 0)
        return;
    left = __atomic_sub_fetch(&users, 1, __ATOMIC_RELAXED);
    if (left > 0)
        return;
    /* the last VM: the loop's thread frees it (the loader's is handed
     * over or freed before) */
    if (idle_loop != NULL) {
        ev_ref(idle_loop);
        ev_prepare_stop(idle_loop, &disarm_w);
        ev_ref(idle_loop);
        ev_check_stop(idle_loop, &polled_w);
        idle_loop = NULL;
    }
    scout_hook_thread_end();
}

void
scout_hook_attach(struct ev_loop *loop)
{
    if (idle_loop != NULL || !thread_timer())
        return;                 /* one watcher for all VMs: the loop's */
    idle_loop = loop;
    ev_prepare_init(&disarm_w, disarm_cb);
    ev_set_priority(&disarm_w, EV_MINPRI);
    ev_prepare_start(loop, &disarm_w);
    ev_unref(loop);             /* it never keeps the loop running */
    ev_check_init(&polled_w, polled_cb);
    ev_set_priority(&polled_w, EV_MAXPRI);
    ev_check_start(loop, &polled_w);
    ev_unref(loop);
}

/* Where the policy was when the cap refused: the innermost Lua frame.
 * Nothing here allocates (short_src is a buffer in the lua_Debug). */
static void
note_where(lua_State *L)
{
    lua_Debug ar;

    T.mem_where[0] = '\0';
    for (int level = 0; level < 32 && lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(T.mem_where, sizeof(T.mem_where), "%s:%d: ", ar.short_src,
                     ar.currentline);
            return;
        }
    }
}

static void *
capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    scout_hook_mem_t *m = ud;
    size_t old = ptr != NULL ? osize : 0;
    void *q;

    /* Growing past the cap inside a budgeted call: refuse, and LuaJIT
     * raises "not enough memory" there (string.rep("x", 1.5e9) never
     * touches a page).  Shrinking and freeing always go through. */
    if (nsize > old && T.armed_L != NULL && m->cap > 0
        && m->total - old + nsize > m->cap) {
        if (!T.mem_refused)
            note_where(T.armed_L);
        T.mem_refused = 1;
        return NULL;
    }
    q = m->orig(m->orig_ud, ptr, osize, nsize);
    if (q != NULL || nsize == 0)
        m->total = m->total - old + nsize;
    return q;
}

#define MEM_MESSAGE "not enough memory: the policy's Lua heap reached its " \
                    "cap (agent { lua_memory = ... })"

int
scout_hook_lua_memory_error(lua_State *L)
{
    if (T.mem_refused)
        lua_pushfstring(L, "%s" MEM_MESSAGE, T.mem_where);
    else
        lua_pushnil(L);
    return 1;
}

scout_hook_mem_t *
scout_hook_mem_cap(lua_State *L, size_t cap)
{
    scout_hook_mem_t *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    m->orig = lua_getallocf(L, &m->orig_ud);
    m->total = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024
               + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
    m->cap = cap;
    m->L = L;
    lua_setallocf(L, capped_alloc, m);
    return m;
}

void
scout_hook_mem_set(scout_hook_mem_t *m, size_t cap)
{
    if (m != NULL)
        m->cap = cap;
}

size_t
scout_hook_mem_cap_of(const scout_hook_mem_t *m)
{
    return m != NULL ? m->cap : 0;
}

void
scout_hook_mem_free(scout_hook_mem_t *m)
{
    free(m);
}

int
scout_hook_pcall(lua_State *L, int nargs, int nresults, int budget_ms,
                 int *timed_out)
{
    if (budget_ms <= 0)
        budget_ms = 1;
    return scout_hook_pcall_wall(L, nargs, nresults, budget_ms,
                                 SCOUT_HOOK_WALL_MS(budget_ms), timed_out);
}

/* Where a call starts in CPU time, without a syscall per call.  The thread's
 * CPU clock is not in the vDSO: each reading is a real syscall, and the
 * agent makes one to three calls per ZooKeeper change, close together.  CPU
 * time never runs faster than the wall clock, so from the last reading
 * (T.ref_cpu at T.ref_wall, read in that order) the CPU clock now is at most
 * T.ref_cpu + (now - T.ref_wall): charging the call from there charges it no
 * more than it spends (a hook is never stopped early, nor one that waited
 * for the CPU), and at most now - T.ref_wall less.  The clock is read again
 * once that slack would pass an eighth of the budget, so a runaway loop is
 * stopped after at most 9/8 of its budget of CPU.
 *
 * On the loop, the loop's own bound is tighter (loop.h): it counts only
 * the time the loop was busy since the last reading, not the time it slept,
 * so a quiet agent's calls, seconds apart, still share one reading (it
 * used to be read again for nearly every change).  A reading taken here is
 * handed to the loop, for both to count from. */
static int64_t
cpu_start(int64_t now, int64_t budget)
{
    int64_t cpu, loose;

    if (scout_loop_cpu_ceiling(now, &cpu, &loose) == SCOUT_OK
        && loose <= budget / 8)
        return cpu;
    if (T.ref_wall == 0 || now - T.ref_wall > budget / 8) {
        T.ref_wall = now;
        T.ref_cpu = cpu_now_ns();
        STAT_ADD(cpu_clock_reads, 1);
        scout_loop_cpu_read(T.ref_wall, T.ref_cpu);
    }
    return T.ref_cpu + (now - T.ref_wall);
}

/* A require() stopped half-way by the budget or the heap cap leaves
 * LuaJIT's "loading" mark in package.loaded, and every later require of
 * that module fails with "loop or previous error loading module" for the
 * VM's life: valgrind's slowdown stopped the runtime's first require of
 * scout.route, and /v1/explain failed until a restart.  The call has
 * unwound, so no load is in progress: the marks go.  The mark is a light
 * userdata that GC64 builds show as a number, so it is learnt once per VM,
 * from a load that fails on purpose, and kept in the registry. */
#define LOADING_MARK "scout.loading_mark"
static const char learn_mark[] =
    "local n = 'scout.loading-mark-probe' "
    "package.preload[n] = function() error('') end "
    "pcall(require, n) local m = package.loaded[n] "
    "package.loaded[n], package.preload[n] = nil, nil return m";

static void
clear_stopped_requires(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LOADING_MARK);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (luaL_loadstring(L, learn_mark) != 0
            || lua_pcall(L, 0, 1, 0) != 0) {
            lua_pop(L, 1);
            return;
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, LOADING_MARK);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    if (lua_isnil(L, -2) || !lua_istable(L, -1)) {
        lua_pop(L, 2);
        return;
    }
    lua_pushnil(L);                             /* mark, loaded, key */
    while (lua_next(L, -2) != 0) {
        if (lua_rawequal(L, -1, -4)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, -4);
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
}

int
scout_hook_pcall_wall(lua_State *L, int nargs, int nresults, int budget_ms,
                      int wall_ms, int *timed_out)
{
    int64_t started;
    int rc;

    STAT_ADD(hook_calls, 1);
    if (budget_ms <= 0)
        budget_ms = 1;
    if (wall_ms < budget_ms)
        wall_ms = budget_ms;
    T.current_budget = budget_ms;
    T.expired = 0;
    T.mem_refused = 0;
    T.budget_where[0] = '\0';
    T.call_budget = (int64_t)budget_ms * 1000000;
    T.wall_budget = (int64_t)wall_ms * 1000000;
    T.wall_start = started = wall_now_ns();
    T.call_start = cpu_start(started, T.call_budget);
    T.armed_L = L;        /* before looking at the timer: see on_alarm */
    if (T.cancel) {
        T.expired = 1;
        lua_sethook(L, budget_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                    1);
    }
    if (thread_timer()     /* once per thread (the loop's after an early
                              start's load: that one was the loader's) */
        && (!T.timer_armed || T.timer_due > started + T.call_budget))
        arm(T.call_budget);
    rc = lua_pcall(L, nargs, nresults, 0);
    T.armed_L = NULL;
    STAT_ADD(hook_microseconds,
             (uint64_t)((wall_now_ns() - started) / 1000));
    /* The signal may have landed between the call's return and now. */
    if (T.expired)
        lua_sethook(L, NULL, 0, 0);
    *timed_out = T.expired ? 1 : 0;
    if (*timed_out || T.mem_refused)
        clear_stopped_requires(L);
    if (rc != 0) {
        STAT_ADD(hook_errors, 1);
        if (*timed_out)
            STAT_ADD(hook_timeouts, 1);
        if (T.mem_refused) {
            /* LuaJIT's message names no place: say where and why */
            STAT_ADD(hook_memory_errors, 1);
            lua_pop(L, 1);
            lua_pushfstring(L, "%s" MEM_MESSAGE, T.mem_where);
            /* LuaJIT collects on its own schedule, not when an allocation
             * fails: what the stopped call built is garbage now, and
             * without this the next calls would meet the cap again. */
            lua_gc(L, LUA_GCCOLLECT, 0);
        }
    } else {
        if (*timed_out)
            *timed_out = 0;     /* finished before the hook could act */
        if (T.mem_refused) {
            /* the cap was met inside a pcall of the runtime's own (one
             * child's filter), which kept the other children going: it is
             * still a stopped hook, and its garbage must go */
            STAT_ADD(hook_memory_errors, 1);
            lua_gc(L, LUA_GCCOLLECT, 0);
        }
    }
    T.mem_refused = 0;
    return rc;
}
