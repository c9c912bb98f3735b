/*
 * test_writer.c -- when a writer thread's finished job wakes the loop.
 *
 * Why: each wakeup of an idle loop costs more than a small change's work
 * (bench/propagation), so a job whose result the loop has nothing to do
 * with (a shm generation written) must not wake it; but a failure must (the
 * owner retries), and so must any job the loop looked at while it ran (the
 * owner has a change waiting on it).  Orderings only: the tests wait for
 * the thread to have parked its job (under the writer's mutex), never for a
 * time.
 */
#include <ev.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>

#include "publish/writer.h"
#include "stats.h"
#include "testing.h"

struct job {
    int    fail;            /* the job's outcome */
    sem_t *gate;            /* run waits for it, when set */
};

static int done_calls;

static void
run(void *owner, void *job)
{
    struct job *j = job;
    (void)owner;

    if (j->gate != NULL)
        sem_wait(j->gate);
}

static int
quiet(void *owner, void *job)
{
    (void)owner;
    return !((struct job *)job)->fail;
}

static void
done(void *owner, void *job)
{
    (void)owner;
    (void)job;
    done_calls++;
}

/* The thread has parked the job (finished and told, or not). */
static void
wait_parked(scout_writer_t *w)
{
    for (;;) {
        int parked;

        pthread_mutex_lock(&w->mu);
        parked = w->finished != NULL;
        pthread_mutex_unlock(&w->mu);
        if (parked)
            return;
        sched_yield();
    }
}

static void
test_a_quiet_job_is_collected_at_the_next_look(struct ev_loop *loop)
{
    scout_writer_t w;
    struct job j = { 0, NULL };
    uint64_t wakeups = scout_stats.writer_wakeups;

    done_calls = 0;
    CHECK(scout_writer_start(&w, loop, run, done, NULL) == 0);
    scout_writer_set_quiet(&w, quiet);
    scout_writer_submit(&w, &j);
    wait_parked(&w);
    ev_run(loop, EVRUN_NOWAIT);     /* nothing pending: it was not woken */
    CHECK(done_calls == 0, "done ran %d times before the loop looked",
          done_calls);
    CHECK(scout_writer_busy(&w) == 0, "still busy after the job finished");
    CHECK(done_calls == 1, "done ran %d times", done_calls);
    CHECK(scout_stats.writer_wakeups == wakeups);
    CHECK(scout_writer_stop(&w) == NULL);
}

static void
test_a_failed_job_wakes_the_loop(struct ev_loop *loop)
{
    scout_writer_t w;
    struct job j = { 1, NULL };
    uint64_t wakeups = scout_stats.writer_wakeups;

    done_calls = 0;
    CHECK(scout_writer_start(&w, loop, run, done, NULL) == 0);
    scout_writer_set_quiet(&w, quiet);
    scout_writer_submit(&w, &j);
    while (done_calls == 0)
        ev_run(loop, EVRUN_ONCE);   /* returns when the ev_async came */
    CHECK(done_calls == 1);
    CHECK(scout_stats.writer_wakeups == wakeups + 1);
    CHECK(scout_writer_busy(&w) == 0);
    CHECK(scout_writer_stop(&w) == NULL);
}

static void
test_a_job_the_loop_waits_on_wakes_it(struct ev_loop *loop)
{
    scout_writer_t w;
    sem_t gate;
    struct job j = { 0, &gate };
    uint64_t wakeups = scout_stats.writer_wakeups;

    done_calls = 0;
    sem_init(&gate, 0, 0);
    CHECK(scout_writer_start(&w, loop, run, done, NULL) == 0);
    scout_writer_set_quiet(&w, quiet);
    scout_writer_submit(&w, &j);
    CHECK(scout_writer_busy(&w) == 1, "not busy while the job runs");
    sem_post(&gate);                /* finishes after the loop looked */
    while (done_calls == 0)
        ev_run(loop, EVRUN_ONCE);
    CHECK(done_calls == 1);
    CHECK(scout_stats.writer_wakeups == wakeups + 1);
    CHECK(scout_writer_stop(&w) == NULL);
    sem_destroy(&gate);
}

/* Stopped with a quiet job nobody collected: the owner gets it back. */
static void
test_stop_returns_an_uncollected_job(struct ev_loop *loop)
{
    scout_writer_t w;
    struct job j = { 0, NULL };

    done_calls = 0;
    CHECK(scout_writer_start(&w, loop, run, done, NULL) == 0);
    scout_writer_set_quiet(&w, quiet);
    scout_writer_submit(&w, &j);
    wait_parked(&w);
    CHECK(scout_writer_stop(&w) == &j);
    CHECK(done_calls == 0);
}

int
main(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

    RUN(test_a_quiet_job_is_collected_at_the_next_look(loop));
    RUN(test_a_failed_job_wakes_the_loop(loop));
    RUN(test_a_job_the_loop_waits_on_wakes_it(loop));
    RUN(test_stop_returns_an_uncollected_job(loop));
    ev_loop_destroy(loop);
    return test_summary();
}
