/*
 * sdnotify.h -- tell systemd how the agent is doing (Type=notify units):
 * READY=1 once the API answers, RELOADING=1 ... READY=1 around a SIGHUP,
 * STOPPING=1 at shutdown, and WATCHDOG=1 from a timer on the agent's own
 * loop, so that a loop stalled past WatchdogSec= gets the agent restarted.
 * Outside systemd ($NOTIFY_SOCKET unset) every call does nothing.
 */
#ifndef SCOUT_SDNOTIFY_H
#define SCOUT_SDNOTIFY_H

#include <ev.h>

/* Starts the watchdog timer if systemd asked for one. */
void scout_sdnotify_start(struct ev_loop *loop);
void scout_sdnotify_stop(struct ev_loop *loop);
void scout_sdnotify_ready(const char *status);
void scout_sdnotify_reloading(void);
void scout_sdnotify_stopping(void);

#endif
