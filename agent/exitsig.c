/*
 * exitsig.c -- a stop signal while the agent exits ends the exit at once.
 *
 * The first SIGTERM or SIGINT starts a clean exit, and some of its steps
 * wait: the registrations' deletions and the drain run on the loop (a
 * second signal there breaks it: main.c); once the loop has ended come
 * the snapshot's flush, the sessions' close and a policy load caught in a
 * C call (up to 5 s: agent_early.c, agent_reload.c).  With the loop gone
 * no watcher acts on a signal: libev's handler recorded it for nobody (a
 * stop during an early start's load waited its 5 s whatever came), or the
 * watchers were stopped and the default action killed the process with
 * nothing in the log (a stop during a reload).  A second signal should end
 * the wait, as users of daemons expect (an operator's second Ctrl-C, nginx
 * stopping a worker's agent).  So from the loop's end this module takes
 * SIGTERM and SIGINT: the handler only write()s the signal's number to a
 * pipe, and a thread of its own reads it, logs the line and ends the
 * process with _exit(0).  It takes SIGHUP too, which has no watcher now
 * either: a reload asked for during the exit (a config tool, a careless
 * `kill -HUP`) is logged and ignored, where its default action killed
 * the process halfway through the exit.  Nothing on disk is left half done for a reader:
 * the disk snapshot is replaced by rename, the shared memory by
 * generation; the session is not closed, so its ephemerals go at its
 * timeout, as after a crash.
 *
 * What it must never do: run anything but write() in the handler, or
 * take a signal while the loop runs (the loop's own watchers do).
 */
#define _GNU_SOURCE             /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "exitsig.h"
#include "log.h"
#include "scout.h"

static int              fds[2] = { -1, -1 };
static pthread_t        thread;
static struct sigaction was_term, was_int, was_hup;

static void
on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    int saved = errno;

    if (write(fds[1], &b, 1) < 0) {
        /* the pipe is full or gone: one signal is enough either way */
    }
    errno = saved;
}

static void *
watch_main(void *arg)
{
    unsigned char b;
    ssize_t n;
    (void)arg;

    while ((n = read(fds[0], &b, 1)) < 0 ? errno == EINTR
           : n == 1 && b == SIGHUP) {
        if (n == 1)
            scout_log(SCOUT_LOG_INFO, "main", "SIGHUP while exiting: "
                      "no reload, the exit goes on");
    }
    if (n == 1) {
        scout_log(SCOUT_LOG_WARN, "main", "signal %d again while exiting: "
                  "exiting now, the rest of the exit not waited for", b);
        _exit(0);
    }
    return NULL;                /* the exit ended on its own */
}

/* SIGTERM, SIGINT and SIGHUP, the signals this module takes */
static sigset_t
stop_signals(void)
{
    sigset_t stops;

    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGHUP);
    return stops;
}

static void
unblock(void)
{
    sigset_t stops = stop_signals();

    pthread_sigmask(SIG_UNBLOCK, &stops, NULL);
}

int
scout_exitsig_start(void)
{
    struct sigaction sa;
    sigset_t all, was;

    if (fds[0] >= 0)
        return SCOUT_OK;
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        fds[0] = fds[1] = -1;
        unblock();
        return SCOUT_ERROR;
    }
    /* the reader blocks: only the handler's end is non-blocking */
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) & ~O_NONBLOCK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &was);   /* the thread takes none */
    sigdelset(&was, SIGTERM);
    sigdelset(&was, SIGINT);
    sigdelset(&was, SIGHUP);
    if (pthread_create(&thread, NULL, watch_main, NULL) != 0) {
        pthread_sigmask(SIG_SETMASK, &was, NULL);
        close(fds[0]);
        close(fds[1]);
        fds[0] = fds[1] = -1;
        return SCOUT_ERROR;
    }
    /* a signal between the loop's watchers and this handler stays pending
     * (every other thread blocks them) and comes here once unblocked */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &was_term);
    sigaction(SIGINT, &sa, &was_int);
    sigaction(SIGHUP, &sa, &was_hup);
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    return SCOUT_OK;
}

void
scout_exitsig_block(void)
{
    sigset_t stops = stop_signals();

    pthread_sigmask(SIG_BLOCK, &stops, NULL);
}

void
scout_exitsig_stop(void)
{
    sigset_t stops = stop_signals(), was;

    if (fds[0] < 0)
        return;
    pthread_sigmask(SIG_BLOCK, &stops, &was);
    sigaction(SIGTERM, &was_term, NULL);
    sigaction(SIGINT, &was_int, NULL);
    sigaction(SIGHUP, &was_hup, NULL);
    close(fds[1]);              /* the thread reads EOF and ends */
    pthread_join(thread, NULL);
    close(fds[0]);
    fds[0] = fds[1] = -1;
    pthread_sigmask(SIG_SETMASK, &was, NULL);
}
