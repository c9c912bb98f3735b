/*
 * loop.h -- how long each turn of the one event loop holds it.
 *
 * Why: scout is one thread.  Anything that holds the loop longer than the
 * ZooKeeper session timeout expires the session and withdraws every
 * ephemeral registration, so a stall must be visible before it costs that:
 * every iteration's callback time goes into scout_loop_stats (a histogram
 * in /metrics, see stats.h), and an iteration past SCOUT_LOOP_STALL_WARN
 * is logged with the longest piece of work that ran in it, as named by
 * scout_loop_note().  This module only watches: it never runs the loop.
 */
#ifndef SCOUT_LOOP_H
#define SCOUT_LOOP_H

#include <stdint.h>

struct ev_loop;

#define SCOUT_LOOP_STALL_WARN 0.1      /* seconds: logged past this */

typedef struct scout_loop_watch_s scout_loop_watch_t;

/* Starts timing loop's iterations; NULL + err on failure. */
scout_loop_watch_t *scout_loop_watch_new(struct ev_loop *loop, char *err);
void scout_loop_watch_free(scout_loop_watch_t *w);

/* The loop thread's CPU clock without reading it (a syscall): at now
 * (wall, scout_now_ns), inside an iteration on the loop's thread, *cpu is
 * at least the clock's value (a budget charged from it is never charged
 * what came before) and at most *loose more.  SCOUT_ERROR when unknown
 * (no watch, another thread, outside an iteration). */
int  scout_loop_cpu_ceiling(int64_t now, int64_t *cpu, int64_t *loose);
/* A fresh reading of that clock, taken at now by someone else (a hook
 * budget), for the loop to count from; ignored off the loop's thread. */
void scout_loop_cpu_read(int64_t now, int64_t cpu);

/* A piece of work of the current iteration took `seconds`; the longest one
 * names the iteration in the stall log line.  what is copied. */
void scout_loop_note(const char *what, double seconds);

#endif
