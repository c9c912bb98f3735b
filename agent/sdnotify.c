/*
 * sdnotify.c -- systemd's notify protocol through libsystemd's sd_notify()
 * (a datagram to $NOTIFY_SOCKET; libsystemd is packaged and keeps up with
 * the protocol, e.g. MONOTONIC_USEC for Type=notify-reload).
 *
 * The watchdog is fed from a timer on the agent's loop, never a thread: the
 * point is that a loop that stops turning stops feeding it.
 */
#include "sdnotify.h"

#include <inttypes.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

static ev_timer watchdog;

static void
feed(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    sd_notify(0, "WATCHDOG=1");
}

void
scout_sdnotify_start(struct ev_loop *loop)
{
    uint64_t usec = 0;

    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    /* twice per interval, as sd_watchdog_enabled(3) recommends */
    ev_timer_init(&watchdog, feed, 0., (double)usec / 2e6);
    ev_timer_again(loop, &watchdog);
    scout_log(SCOUT_LOG_INFO, "main", "systemd watchdog: every %.1f s",
              (double)usec / 2e6);
}

void
scout_sdnotify_stop(struct ev_loop *loop)
{
    ev_timer_stop(loop, &watchdog);
}

void
scout_sdnotify_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void
scout_sdnotify_reloading(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
               (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

void
scout_sdnotify_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}
