/*
 * writer.c -- one output's writer thread (see writer.h).
 *
 * A mutex and a condition variable hand a job over and back; the ev_async
 * wakes the loop.  The thread never calls into the loop's state: it runs
 * the owner's run callback on the job and parks the result.
 *
 * The thread runs SCOUT_WRITER_NICE below the loop.  On a busy 2-core host
 * the loop's long "stalls" during snapshot writes were not the loop's own
 * work (it spent under 1 ms on the CPU in each of them) but time waiting
 * for a CPU, which the writers' checksums and copies took; a file written
 * a little later costs nobody anything, an answer or a ZooKeeper ping late
 * does.
 */
#define _GNU_SOURCE                 /* pthread_setname_np */
#include "publish/writer.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "stats.h"

/* The writer's thread: named for ps and top, and nicer than the loop (no
 * privilege needed to lower one's own priority; a failure changes
 * nothing but the share). */
static void
writer_thread_setup(void)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int nice;

    pthread_setname_np(pthread_self(), "scout-writer");
    errno = 0;
    nice = getpriority(PRIO_PROCESS, (id_t)tid);
    if (errno == 0) {
        nice += SCOUT_WRITER_NICE;
        setpriority(PRIO_PROCESS, (id_t)tid, nice > 19 ? 19 : nice);
    }
}

static void *
writer_main(void *arg)
{
    scout_writer_t *w = arg;
    void *j;

    writer_thread_setup();
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->todo == NULL && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->todo == NULL)
            break;              /* quit, and nothing left to run */
        int quiet;

        j = w->todo;
        w->todo = NULL;
        pthread_mutex_unlock(&w->mu);
        w->run(w->owner, j);
        quiet = w->quiet != NULL && w->quiet(w->owner, j);
        pthread_mutex_lock(&w->mu);
        w->finished = j;
        /* a quiet job is left for the loop's next look, unless it looked
         * already (it has something waiting on this one) */
        w->told = !quiet || w->asked;
        w->asked = 0;
        pthread_cond_broadcast(&w->cv);     /* scout_writer_wait */
        if (!w->quit && w->told)
            ev_async_send(w->loop, &w->async);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* On the loop: the job the thread finished, if any. */
static void *
take_finished(scout_writer_t *w)
{
    void *j;

    pthread_mutex_lock(&w->mu);
    j = w->finished;
    w->finished = NULL;
    pthread_mutex_unlock(&w->mu);
    return j;
}

static void
on_async(struct ev_loop *loop, ev_async *a, int revents)
{
    scout_writer_t *w = a->data;
    void *j = take_finished(w);
    (void)loop;
    (void)revents;

    if (j == NULL)
        return;                 /* taken by scout_writer_wait or _busy */
    scout_stats.writer_wakeups++;
    w->busy = 0;
    w->done(w->owner, j);
}

int
scout_writer_busy(scout_writer_t *w)
{
    void *j = NULL;

    if (!w->busy || !w->thread_ok)
        return w->busy;
    pthread_mutex_lock(&w->mu);
    if (w->finished != NULL && !w->told) {
        j = w->finished;        /* quiet, and nobody woken for it */
        w->finished = NULL;
    } else if (w->finished == NULL) {
        w->asked = 1;           /* running: wake us when it is done */
    }
    pthread_mutex_unlock(&w->mu);
    if (j == NULL)
        return 1;               /* running, or its wakeup is on the way */
    w->busy = 0;
    w->done(w->owner, j);
    return w->busy;
}

int
scout_writer_start(scout_writer_t *w, struct ev_loop *loop,
                   scout_writer_fn run, scout_writer_fn done, void *owner)
{
    sigset_t all, old;
    int rc;

    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->run = run;
    w->done = done;
    w->owner = owner;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    ev_async_init(&w->async, on_async);
    w->async.data = w;
    ev_async_start(loop, &w->async);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        w->thread_ok = 1;
    return rc;
}

void
scout_writer_submit(scout_writer_t *w, void *job)
{
    if (!w->thread_ok) {        /* no thread: on the loop */
        w->run(w->owner, job);
        w->done(w->owner, job);
        return;
    }
    scout_stats.writer_handoffs++;
    w->busy = 1;
    pthread_mutex_lock(&w->mu);
    w->todo = job;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void
scout_writer_run_here(scout_writer_t *w, void *job)
{
    w->run(w->owner, job);
    w->done(w->owner, job);
}

void *
scout_writer_wait(scout_writer_t *w)
{
    if (!w->busy)
        return NULL;
    pthread_mutex_lock(&w->mu);
    while (w->finished == NULL)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    w->busy = 0;
    return take_finished(w);
}

void *
scout_writer_stop(scout_writer_t *w)
{
    void *j;

    if (w->loop == NULL)
        return NULL;
    if (w->thread_ok) {         /* a job in flight is finished first */
        pthread_mutex_lock(&w->mu);
        w->quit = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        w->thread_ok = 0;
    }
    ev_async_stop(w->loop, &w->async);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    j = w->finished;
    w->finished = NULL;
    w->loop = NULL;
    return j;
}
