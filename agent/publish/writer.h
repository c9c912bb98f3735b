/*
 * writer.h -- one output's writer thread: a job at a time, off the loop.
 *
 * The outputs (shmpub, persist, render) copy, checksum, fsync and rename in
 * a thread of their own, so the loop never waits for a disk or for a copy of
 * a whole snapshot.  A writer runs one job at a time: its owner hands one
 * over only when none is out (scout_writer_busy) and coalesces what changes
 * meanwhile into its own next job, so nothing queues.  The result comes
 * back on the loop through an ev_async, to the owner's done callback, with
 * busy already cleared (the callback may submit the next job); a "quiet"
 * job (scout_writer_set_quiet) wakes nobody and is collected when the owner
 * next asks scout_writer_busy, unless the loop asked while it ran.  Without a
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

/* In the thread, after run: may the loop learn of this finished job when it
 * next looks (scout_writer_busy) rather than be woken for it?  A wakeup of
 * an idle loop costs more than a small change; a job whose done has
 * nothing to say (no error, no follow-up) need not pay it. */
typedef int (*scout_writer_quiet_fn)(void *owner, void *job);

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
    int              told;      /* ...and the loop was woken for it */
    int              asked;     /* the loop looked while it ran: wake it */
    int              quit;
    scout_writer_quiet_fn quiet;    /* NULL: every job wakes the loop */
} scout_writer_t;

/* Starts the thread.  0, or the error number of pthread_create: the writer
 * then runs jobs on the loop (the caller logs it). */
int scout_writer_start(scout_writer_t *w, struct ev_loop *loop,
                       scout_writer_fn run, scout_writer_fn done,
                       void *owner);

/* Hands job over; only while !busy.  Without a thread, runs it and calls
 * done before returning. */
void scout_writer_submit(scout_writer_t *w, void *job);

/* Jobs for which quiet says so finish without waking the loop; the owner
 * collects them (done) at its next scout_writer_busy.  Set after start. */
static inline void
scout_writer_set_quiet(scout_writer_t *w, scout_writer_quiet_fn quiet)
{
    w->quiet = quiet;
}

/* Runs job on the loop, now, and calls done before returning; only while
 * !busy (the thread is idle, so what the job touches is the loop's).  For
 * a job the owner measured to cost microseconds: handing it to the thread
 * costs more (a mutex, a condition variable's futex calls and the thread's
 * wakeup, a context switch on a busy host).  Nothing is counted in
 * scout_writer_handoffs. */
void scout_writer_run_here(scout_writer_t *w, void *job);

/* Is a job out?  A quiet job finished meanwhile is collected here (done is
 * called first, and may submit); a job still running is asked to wake the
 * loop when it finishes. */
int scout_writer_busy(scout_writer_t *w);

/* On the loop: waits for the job out, if any, and returns it without
 * calling done (busy cleared); NULL when none was out.  For a shutdown
 * flush. */
void *scout_writer_wait(scout_writer_t *w);

/* Lets the job in flight finish, joins the thread and stops the watcher;
 * returns a job finished but not collected (the caller frees it), or NULL.
 * Harmless on a writer never started (zeroed). */
void *scout_writer_stop(scout_writer_t *w);

#endif
