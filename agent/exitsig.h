/*
 * exitsig.h -- SIGTERM or SIGINT once the loop has ended: exit now.
 *
 * main.c's loop acts on the stop signals while it runs; the exit after it
 * (the snapshot flushed, the sessions closed, a stuck load waited for) has
 * no loop, so this module takes the signals over for that time: one more
 * logs "signal N again while exiting" and ends the process, status 0.
 * A SIGHUP then is logged and ignored (no loop is left to reload).
 */
#ifndef SCOUT_EXITSIG_H
#define SCOUT_EXITSIG_H

/* Block SIGTERM, SIGINT and SIGHUP in the calling thread: a signal from here on
 * waits for scout_exitsig_start() instead of taking a default action once
 * the loop's watchers are stopped.  Call it before stopping them. */
void scout_exitsig_block(void);
/* Take SIGTERM, SIGINT and SIGHUP (unblocking them again): the next stop
 * ends the process, a SIGHUP is logged.  SCOUT_OK, or SCOUT_ERROR (no pipe or thread: the signals keep
 * their default action, as before). */
int  scout_exitsig_start(void);
/* The exit is done (or the loop runs again): the thread is joined and the
 * signals' previous actions restored. */
void scout_exitsig_stop(void);

#endif
