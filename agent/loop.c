/*
 * loop.c -- timing each iteration of the event loop (see loop.h).
 *
 * An ev_check at the highest priority runs first after the poll returns,
 * an ev_prepare at the lowest runs last before the next poll: the time
 * between them is what this iteration's callbacks held the loop.  The
 * prepare is also the one place that records and logs, so the cost is two
 * wall-clock reads per iteration (vDSO), and a read of the loop thread's
 * own CPU time (a real syscall) once the iterations since the last one held
 * the loop 10 ms, and after a long iteration: a quiet agent's changes pay
 * none.  An iteration past the threshold whose own CPU time was under it
 * was made long by the host (other processes, the writer threads on a busy
 * 2-core machine): it is logged and counted apart (loop_cpu_waits), so
 * loop_stalls and its warning name only work the agent did.
 */
#include "loop.h"

#include <ev.h>
#include <pthread.h>
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
    /* The last reading of the thread's CPU clock (the loop's or a hook
     * budget's, scout_loop_cpu_read) and what the loop did since: the
     * clock now is at least ref_cpu and at most ref_cpu + slack(). */
    int64_t         ref_cpu;
    int64_t         ref_at;         /* when it was read, ns; 0: never */
    int64_t         ref_held;       /* ns iterations held the loop since,
                                       the current one's excluded */
    int64_t         ref_gaps;       /* polls since */
    pthread_t       thread;         /* the loop's */
};

/* The one watch (main's), for the hook budgets' scout_loop_cpu_*. */
static scout_loop_watch_t *the_watch;

static int64_t
thread_cpu_ns(void)
{
    struct timespec ts;

    scout_stats.cpu_clock_reads++;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* How much loop time a reading of the thread's CPU clock may be behind
 * when an iteration starts (see on_begin): a tenth of the stall
 * threshold. */
#define CPU_REREAD_NS 10000000
/* What one poll between iterations may cost the thread in CPU: the
 * epoll_wait call, libev's timer and fd bookkeeping, a signal handler (a
 * few us each here; a sleeping thread spends nothing), with room to
 * spare. */
#define POLL_CPU_NS 50000

/* How far past ref_cpu the thread's CPU clock may be at now (wall, ns):
 * everything the loop held since the reading, in wall time (never less
 * than CPU time), and the polls between. */
static int64_t
slack(const scout_loop_watch_t *w, int64_t now)
{
    int64_t from = w->ref_at > w->t0 ? w->ref_at : w->t0;

    return w->ref_held + w->ref_gaps * POLL_CPU_NS
           + (w->t0 != 0 ? now - from : 0);
}

static void
ref_set(scout_loop_watch_t *w, int64_t now, int64_t cpu)
{
    w->ref_cpu = cpu;
    w->ref_at = now;
    w->ref_held = 0;
    w->ref_gaps = 0;
}

int
scout_loop_cpu_ceiling(int64_t now, int64_t *cpu, int64_t *loose)
{
    scout_loop_watch_t *w = the_watch;

    /* only inside an iteration of the loop's own thread (a policy loaded
     * before the loop runs, or on another thread, reads its own clock) */
    if (w == NULL || w->ref_at == 0 || w->t0 == 0 || now < w->ref_at
        || !pthread_equal(pthread_self(), w->thread))
        return SCOUT_ERROR;
    *loose = slack(w, now);
    *cpu = w->ref_cpu + *loose;
    return SCOUT_OK;
}

void
scout_loop_cpu_read(int64_t now, int64_t cpu)
{
    scout_loop_watch_t *w = the_watch;

    if (w != NULL && w->t0 != 0 && now >= w->t0
        && pthread_equal(pthread_self(), w->thread))
        ref_set(w, now, cpu);
}

scout_loop_stats_t scout_loop_stats;

static char   note_what[128];
static double note_secs;

/* Noted by every ZooKeeper completion and API request (two or three times
 * a change), read only when an iteration stalls: a plain bounded copy, not
 * snprintf's format parsing (1.8k instructions a change, callgrind). */
void
scout_loop_note(const char *what, double seconds)
{
    if (seconds > note_secs) {
        size_t n = strnlen(what, sizeof(note_what) - 1);

        note_secs = seconds;
        memcpy(note_what, what, n);
        note_what[n] = '\0';
    }
}

static void
on_begin(struct ev_loop *loop, ev_check *c, int revents)
{
    scout_loop_watch_t *w = c->data;
    (void)loop;
    (void)revents;

    if (w->ref_at != 0)
        w->ref_gaps++;          /* the poll just done */
    w->t0 = scout_now_ns();
    /* The thread's CPU clock is a real syscall, not in the vDSO: read it
     * again only when the loop did CPU_REREAD_NS of work since the last
     * reading (slack(): iterations in wall time, which is never less than
     * their CPU time, and the polls between).  An iteration's CPU is then
     * taken from that reading, which overstates it by at most that: a
     * hold is never excused as a wait, and a wait is counted as a hold
     * only when the loop really ran nearly the whole threshold.  The age
     * of the reading does not matter: it used to be read again after
     * 10 ms, once per change of a quiet registry (a syscall of the ~19
     * such a change costs); now a quiet agent reads it once per ~10 ms of
     * its own work, and the hook budgets take theirs from it too. */
    if (w->ref_at == 0 || slack(w, w->t0) > CPU_REREAD_NS)
        ref_set(w, w->t0, thread_cpu_ns());
    w->cpu0 = w->ref_cpu;
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
    int64_t now;
    double s;
    (void)loop;
    (void)revents;

    if (w->t0 == 0)
        return;                 /* the first turn has not polled yet */
    now = scout_now_ns();
    w->ref_held += now - (w->ref_at > w->t0 ? w->ref_at : w->t0);
    s = (double)(now - w->t0) / 1e9;
    w->t0 = 0;
    record(s);
    if (s >= SCOUT_LOOP_STALL_WARN) {
        int64_t now_cpu = thread_cpu_ns();
        double cpu = (double)(now_cpu - w->cpu0) / 1e9;

        ref_set(w, scout_now_ns(), now_cpu);    /* a fresh reading, kept */

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
    w->thread = pthread_self();
    the_watch = w;
    return w;
}

void
scout_loop_watch_free(scout_loop_watch_t *w)
{
    if (w == NULL)
        return;
    ev_check_stop(w->loop, &w->begin);
    ev_prepare_stop(w->loop, &w->end);
    if (the_watch == w)
        the_watch = NULL;
    free(w);
}
