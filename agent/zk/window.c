/*
 * window.c -- a bound on the reads in flight, all sessions together.
 *
 * A service's child list asks for one data read per child at once.  At
 * 1,000,000 endpoints that put a million reads in ZooKeeper's queues within
 * seconds of the start: the server (one queue per connection, and its own
 * limit of 1,000 outstanding requests before it stops reading sockets)
 * stopped hearing sessions for longer than their timeout, expired dozens of
 * them in the middle of the sync, and every expiry started all of that
 * session's reads again.  The bare client in bench/scale learnt the same
 * (rawsync keeps a window).  100,000 services ask for 100,000 child lists at
 * once the same way.  So a read (a child list or a child's data) takes a
 * credit before it is sent and gives it back in its completion (every
 * request gets exactly one, with ZCLOSING when its handle closes); a watch
 * that finds no credit waits here, in order, what it would have read staying
 * dirty, and is read again from a timer once a quarter of the window came
 * back -- never from inside another watch's completion.  Exists and sync
 * requests are not counted: rare, and anti-entropy's exists have their own
 * rate.  This file must never block or call Lua.
 */
#include "zk/watch_int.h"

#include <stdlib.h>

static size_t         in_flight, in_flight_max;
static size_t         nwaiting;
static scout_watch_t *head, *tail;          /* waiting, first come first */
static struct ev_loop *resume_loop;

/* The waiting line is served once this many credits are back, not at every
 * credit: one credit at a time made a request per loop iteration, each its
 * own TCP segment and wakeup of the server (a fifth of the sync's CPU at
 * 10,000 x 10 went to sending); in batches, the requests of one iteration
 * leave in one corked segment (session.c).  The server still has three
 * quarters of the window to work on meanwhile. */
#define WINDOW_REFILL (SCOUT_WATCH_READ_WINDOW / 4)
static ev_timer       resume;
/* How long one turn may serve the line: a watch served may publish, which
 * calls the policy, so the line is served over several loop turns. */
#define RESUME_SLICE 0.005

size_t
scout_watch_reads_in_flight(void)
{
    return in_flight;
}

size_t
scout_watch_reads_in_flight_max(void)
{
    return in_flight_max;
}

size_t
scout_watch_reads_waiting(void)
{
    return nwaiting;
}

static void
wait_add(scout_watch_t *w)
{
    if (w->win_queued)
        return;
    w->win_queued = 1;
    w->win_next = NULL;
    w->win_prev = tail;
    if (tail != NULL)
        tail->win_next = w;
    else
        head = w;
    tail = w;
    nwaiting++;
}

void
scout_watch_window_del(scout_watch_t *w)
{
    if (!w->win_queued)
        return;
    w->win_queued = 0;
    if (w->win_prev != NULL)
        w->win_prev->win_next = w->win_next;
    else
        head = w->win_next;
    if (w->win_next != NULL)
        w->win_next->win_prev = w->win_prev;
    else
        tail = w->win_prev;
    w->win_prev = w->win_next = NULL;
    nwaiting--;
    if (head == NULL && resume_loop != NULL)
        ev_timer_stop(resume_loop, &resume);
}

/* Credits came back: the waiting watches read what is dirty, first come
 * first, until the window is full again (a watch that fills it goes back to
 * the end of the line: its reads were sent up to there).
 *
 * No test holds the two halves of 5fbc149 (this slice, and settle() letting
 * a watch whose reads another path sent leave the line): both change only
 * when a watch in the line publishes, and at a test's size the line's turn
 * comes one loop iteration after a quarter of the window is back, so the old
 * and the new order differ by an iteration, not by an event a test can wait
 * for.  Telling them apart takes 1,000 reads held unanswered ahead of the
 * watch while another path (its delay timer, a session's connect) finds
 * credits for all of its reads: credits free and not free at once, which
 * only the interleaving of many completions produced (100,000 x 10).  The
 * slice has no observable short of a loop hold of seconds (loop_stalls at
 * 100,000 services, bench/). */
static void
on_resume(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    ev_tstamp until = ev_time() + RESUME_SLICE;

    while (head != NULL && in_flight < SCOUT_WATCH_READ_WINDOW) {
        scout_watch_t *w = head;

        scout_watch_window_del(w);
        scout_watch_read_dirty(w);      /* may settle and publish: Lua */
        if (head != NULL && in_flight < SCOUT_WATCH_READ_WINDOW
            && ev_time() > until) {     /* the rest on the next turn */
            ev_timer_set(&resume, 0., 0.);
            ev_timer_start(loop, &resume);
            return;
        }
    }
}

int
scout_watch_window_take(scout_watch_t *w)
{
    if (in_flight >= SCOUT_WATCH_READ_WINDOW) {
        wait_add(w);
        return 0;
    }
    in_flight++;
    if (in_flight > in_flight_max)
        in_flight_max = in_flight;
    scout_session_reads_expected(in_flight);
    return 1;
}

void
scout_watch_window_give(scout_watch_t *w)
{
    if (in_flight > 0)
        in_flight--;
    scout_session_reads_expected(in_flight);
    if (head == NULL || ev_is_active(&resume)
        || in_flight > SCOUT_WATCH_READ_WINDOW - WINDOW_REFILL)
        return;
    resume_loop = w->loop;
    ev_init(&resume, on_resume);
    /* next iteration, after this completion and the session's turn */
    ev_timer_set(&resume, 0., 0.);
    ev_timer_start(resume_loop, &resume);
}
