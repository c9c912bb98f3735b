/*
 * writer.h -- one output's writer thread: a job at a time, off the loop.
 *
 * The outputs (shmpub, persist, render) copy, checksum, fsync and rename in
 * a thread of their own, so the loop never waits for a disk or for a copy of
 * a whole snapshot.  A writer runs one job at a time: its owner hands one
 * over only when none is out (scout_writer_busy) and coalesces what changes
 * meanwhile into its own next job, so nothing queues.  The result comes
 * back on the loop through an ev_async, to the owner's done callback, with
 * busy already cleared (the callback may submit the next job).  Without a
 * thread (pthread_create failed) a job runs on the loop, at submit.  The
 * thread blocks every signal, so SIGTERM, SIGHUP and the hook budget's
 * SIGALRM keep reaching the loop's thread.
 *
 * Embedded in its owner; the job is the owner's type, opaque here.
 */
#ifndef SCOUT_WRITER_H
#define SCOUT_WRITER_H

#include <ev.h>
#include <pthread.h>

/* How much nicer than the loop a writer thread runs (named
 * "scout-writer" in ps -L). */
#define SCOUT_WRITER_NICE 10

/* run: in the thread (or on the loop without one); touches only the job
 * and what the job was lent.  done: on the loop; the job is the owner's
 * again. */
typedef void (*scout_writer_fn)(void *owner, void *job);

typedef struct {
    struct ev_loop  *loop;      /* NULL until started */
    scout_writer_fn  run;
    scout_writer_fn  done;
    void            *owner;
    int              busy;      /* a job is out: loop-only */
    int              thread_ok;
    pthread_t        thread;
    ev_async         async;
    /* below mu, guarded by it */
    pthread_mutex_t  mu;
    pthread_cond_t   cv;
    void            *todo;      /* handed over, not started */
    void            *finished;  /* done, not yet collected */
    int              quit;
} scout_writer_t;

/* Starts the thread.  0, or the error number of pthread_create: the writer
 * then runs jobs on the loop (the caller logs it). */
int scout_writer_start(scout_writer_t *w, struct ev_loop *loop,
                       scout_writer_fn run, scout_writer_fn done,
                       void *owner);

/* Hands job over; only while !busy.  Without a thread, runs it and calls
 * done before returning. */
void scout_writer_submit(scout_writer_t *w, void *job);

static inline int
scout_writer_busy(const scout_writer_t *w)
{
    return w->busy;
}

/* On the loop: waits for the job out, if any, and returns it without
 * calling done (busy cleared); NULL when none was out.  For a shutdown
 * flush. */
void *scout_writer_wait(scout_writer_t *w);

/* Lets the job in flight finish, joins the thread and stops the watcher;
 * returns a job finished but not collected (the caller frees it), or NULL.
 * Harmless on a writer never started (zeroed). */
void *scout_writer_stop(scout_writer_t *w);

#endif
