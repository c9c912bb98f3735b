/*
 * hook.c -- the time budget behind every call into Lua (see hook.h).
 *
 * Only one Lua call runs at a time (one thread, one VM), so one timer and a
 * few static variables are enough.  The signal handler touches nothing but
 * lua_sethook and two volatile flags.
 */
#include "policy/hook.h"

#include <lauxlib.h>
#include <luajit.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "scout.h"
#include "stats.h"

static timer_t                budget_timer;
static int                    timer_ok;
static int                    users;        /* VMs sharing the timer (a reload
                                               briefly has two) */
static lua_State *volatile    armed_L;      /* the call in progress        */
static volatile int64_t       call_start;   /* its start, in CPU time      */
static volatile int64_t       call_budget;  /* its budget, ns              */
static volatile sig_atomic_t  timer_armed;  /* the POSIX timer is running  */
static volatile int64_t       timer_due;    /* when it fires               */
static volatile sig_atomic_t  expired;
static int                    current_budget;

static char                   stopped_at[256]; /* "policy.lua:8: " */
static int                    stopped;      /* this call raised already  */

static void
budget_hook(lua_State *L, lua_Debug *ar)
{
    lua_Debug here;
    (void)ar;
    /* Inside a hook, level 0 is the interrupted function: name its line,
     * which is where the operator's loop is.  Every later raise names the
     * same line: a pcall in the runtime (one child's filter) catches the
     * first, and the next instruction, in the runtime, must not take the
     * credit for the operator's loop. */
    if (!stopped) {
        stopped = 1;
        stopped_at[0] = '\0';
        if (lua_getstack(L, 0, &here) && lua_getinfo(L, "Sl", &here)
            && here.currentline > 0)
            snprintf(stopped_at, sizeof(stopped_at), "%s:%d: ",
                     here.short_src, here.currentline);
    }
    lua_pushstring(L, stopped_at);
    lua_pushfstring(L, "exceeded its %d ms budget", current_budget);
    lua_concat(L, 2);
    /* The hook stays installed until the outer call returns: every further
     * instruction raises again, whatever pcalls the hook code holds. */
    lua_error(L);
}

/* Budgets are CPU time, not wall time: on a loaded host (50 agents on two
 * cores) a trivial hook can wait longer than its budget for the CPU, and
 * stopping it would be wrong; a runaway loop burns CPU and is stopped all
 * the same.  The clock is the loop thread's own: the snapshot writer
 * thread's CPU is not the hook's (it blocks SIGALRM, so the signal always
 * lands here).  clock_gettime is async-signal-safe. */
static int64_t
cpu_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
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
    timer_due = cpu_now_ns() + ns;
    timer_armed = 1;
    timer_settime(budget_timer, 0, &its, NULL);   /* async-signal-safe */
}

/* The timer is armed lazily and never disarmed after a call: a stream of
 * short calls costs no timer_settime each (reading the thread's CPU clock
 * at the start of a call is one cheap syscall, ~0.2 us).  When it fires,
 * the call then in
 * progress (if any) is stopped only if it has really spent its budget;
 * otherwise the timer is re-armed for what remains. */
static void
on_alarm(int sig)
{
    lua_State *L = armed_L;
    int64_t spent;
    (void)sig;

    timer_armed = 0;
    if (L == NULL)
        return;
    spent = cpu_now_ns() - call_start;
    if (spent < call_budget) {
        arm(call_budget - spent);
        return;
    }
    expired = 1;
    lua_sethook(L, budget_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                1);
}

int
scout_hook_init(lua_State *L, char *err)
{
    struct sigaction sa;
    struct sigevent sev;

    /* Hooks never run inside compiled traces: without this a
     * `while true do end` would be unstoppable. */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);

    if (users++ > 0)
        return SCOUT_OK;        /* one timer and one handler for all VMs */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "sigaction(SIGALRM) failed");
        return SCOUT_ERROR;
    }
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGALRM;
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &budget_timer) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "timer_create failed");
        return SCOUT_ERROR;
    }
    timer_ok = 1;
    return SCOUT_OK;
}

void
scout_hook_fini(void)
{
    if (users == 0 || --users > 0)
        return;
    armed_L = NULL;
    if (timer_ok)
        timer_delete(budget_timer);
    timer_ok = 0;
}

int
scout_hook_pcall(lua_State *L, int nargs, int nresults, int budget_ms,
                 int *timed_out)
{
    int64_t wall_start;
    int rc;

    scout_stats.hook_calls++;
    if (budget_ms <= 0)
        budget_ms = 1;
    current_budget = budget_ms;
    expired = 0;
    stopped = 0;
    call_budget = (int64_t)budget_ms * 1000000;
    call_start = cpu_now_ns();
    armed_L = L;        /* before looking at the timer: see on_alarm */
    if (timer_ok && (!timer_armed || timer_due > call_start + call_budget))
        arm(call_budget);
    wall_start = scout_now_ns();       /* vDSO: no syscall */
    rc = lua_pcall(L, nargs, nresults, 0);
    armed_L = NULL;
    scout_stats.hook_microseconds +=
        (uint64_t)((scout_now_ns() - wall_start) / 1000);
    /* The signal may have landed between the call's return and now. */
    if (expired)
        lua_sethook(L, NULL, 0, 0);
    *timed_out = expired ? 1 : 0;
    if (rc != 0) {
        scout_stats.hook_errors++;
        if (*timed_out)
            scout_stats.hook_timeouts++;
    } else if (*timed_out) {
        *timed_out = 0;         /* finished before the hook could act */
    }
    return rc;
}
