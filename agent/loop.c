/*
 * loop.c -- timing each iteration of the event loop (see loop.h).
 *
 * An ev_check at the highest priority runs first after the poll returns,
 * an ev_prepare at the lowest runs last before the next poll: the time
 * between them is what this iteration's callbacks held the loop.  The
 * prepare is also the one place that records and logs, so the cost is two
 * wall-clock reads per iteration (vDSO), and a read of the loop thread's
 * own CPU time at most every 10 ms and after a long iteration.  An iteration past the threshold whose own CPU time was under it
 * was made long by the host (other processes, the writer threads on a busy
 * 2-core machine): it is logged and counted apart (loop_cpu_waits), so
 * loop_stalls and its warning name only work the agent did.
 */
#include "loop.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "scout.h"
#include "stats.h"

struct scout_loop_watch_s {
    struct ev_loop *loop;
    ev_check        begin;
    ev_prepare      end;
    int64_t         t0;             /* ns; 0 before the first poll */
    int64_t         cpu0;           /* the thread's CPU time at or before
                                       t0, ns (see on_begin) */
    int64_t         cpu0_at;        /* when it was read, ns */
};

static int64_t
thread_cpu_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* How old a reading of the thread's CPU clock may be when an iteration
 * starts (see on_begin): a tenth of the stall threshold. */
#define CPU_REREAD_NS 10000000

scout_loop_stats_t scout_loop_stats;

static char   note_what[128];
static double note_secs;

void
scout_loop_note(const char *what, double seconds)
{
    if (seconds > note_secs) {
        note_secs = seconds;
        snprintf(note_what, sizeof(note_what), "%s", what);
    }
}

static void
on_begin(struct ev_loop *loop, ev_check *c, int revents)
{
    scout_loop_watch_t *w = c->data;
    (void)loop;
    (void)revents;

    w->t0 = scout_now_ns();
    /* The thread's CPU clock is a real syscall, not in the vDSO: read it
     * again only when the last reading is CPU_REREAD old.  An iteration's
     * CPU is then taken from that reading, which overstates it by at most
     * the CPU of those few ms before it began: a hold is never excused as
     * a wait, and a wait is counted as a hold only when the loop really
     * ran nearly the whole threshold.  Steady changes pay no extra
     * syscall per iteration. */
    if (w->cpu0_at == 0 || w->t0 - w->cpu0_at > CPU_REREAD_NS) {
        w->cpu0 = thread_cpu_ns();
        w->cpu0_at = w->t0;
    }
    note_secs = 0;
    note_what[0] = '\0';
}

static void
record(double s)
{
    static const double le[] = {
#define X(b) b,
        SCOUT_LOOP_STALL_BUCKETS(X)
#undef X
    };
    size_t i;

    for (i = 0; i < sizeof(le) / sizeof(le[0]); i++)
        if (s <= le[i])
            scout_loop_stats.bucket[i]++;
    scout_loop_stats.count++;
    scout_loop_stats.sum += s;
    if (s > scout_loop_stats.max)
        scout_loop_stats.max = s;
}

static void
on_end(struct ev_loop *loop, ev_prepare *p, int revents)
{
    scout_loop_watch_t *w = p->data;
    double s;
    (void)loop;
    (void)revents;

    if (w->t0 == 0)
        return;                 /* the first turn has not polled yet */
    s = (double)(scout_now_ns() - w->t0) / 1e9;
    w->t0 = 0;
    record(s);
    if (s >= SCOUT_LOOP_STALL_WARN) {
        int64_t now_cpu = thread_cpu_ns();
        double cpu = (double)(now_cpu - w->cpu0) / 1e9;

        w->cpu0 = now_cpu;              /* a fresh reading, kept */
        w->cpu0_at = scout_now_ns();

        if (cpu < SCOUT_LOOP_STALL_WARN) {
            scout_stats.loop_cpu_waits++;
            scout_log(SCOUT_LOG_WARN, "loop", "one iteration took %.0f ms "
                      "but ran only %.1f ms of it: the agent waited for a "
                      "CPU (a busy host)", s * 1e3, cpu * 1e3);
            return;
        }
        scout_stats.loop_stalls++;
        if (note_what[0] != '\0')
            scout_log(SCOUT_LOG_WARN, "loop", "one iteration held the loop "
                      "for %.0f ms, %.0f ms on the CPU (longest: %s, %.0f ms)",
                      s * 1e3, cpu * 1e3, note_what, note_secs * 1e3);
        else
            scout_log(SCOUT_LOG_WARN, "loop", "one iteration held the loop "
                      "for %.0f ms, %.0f ms on the CPU", s * 1e3, cpu * 1e3);
    }
}

scout_loop_watch_t *
scout_loop_watch_new(struct ev_loop *loop, char *err)
{
    scout_loop_watch_t *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        scout_seterr(err, "out of memory");
        return NULL;
    }
    w->loop = loop;
    ev_check_init(&w->begin, on_begin);
    ev_set_priority(&w->begin, EV_MAXPRI);
    w->begin.data = w;
    ev_prepare_init(&w->end, on_end);
    ev_set_priority(&w->end, EV_MINPRI);
    w->end.data = w;
    ev_check_start(loop, &w->begin);
    ev_prepare_start(loop, &w->end);
    return w;
}

void
scout_loop_watch_free(scout_loop_watch_t *w)
{
    if (w == NULL)
        return;
    ev_check_stop(w->loop, &w->begin);
    ev_prepare_stop(w->loop, &w->end);
    free(w);
}
