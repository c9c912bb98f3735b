/*
 * sdnotify.c -- systemd's notify protocol through libsystemd's sd_notify()
 * (a datagram to $NOTIFY_SOCKET; libsystemd is packaged and keeps up with
 * the protocol, e.g. MONOTONIC_USEC for Type=notify-reload).
 *
 * libsystemd is opened only under systemd ($NOTIFY_SOCKET set), with
 * dlopen(): linked, it and the compression and crypto libraries it needs
 * were mapped at every start, ~4 ms of CPU on this VM, for calls that do
 * nothing without $NOTIFY_SOCKET.
 *
 * The watchdog is fed from a timer on the agent's loop, never a thread: the
 * point is that a loop that stops turning stops feeding it.
 */
#include "sdnotify.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"

static ev_timer watchdog;

/* STOPPING=1 was sent: nothing after it says READY=1 again (a reload's
 * apply a stop finishes reports its result, but the service is stopping). */
static int stopping;

/* sd_notify(3), sd_watchdog_enabled(3): NULL until opened, and when
 * not under systemd */
static int (*sd_notify_fn)(int unset_environment, const char *state);
static int (*sd_watchdog_enabled_fn)(int unset_environment, uint64_t *usec);

static int
opened(void)
{
    static int tried;
    void *h;

    if (tried)
        return sd_notify_fn != NULL;
    tried = 1;
    if (getenv("NOTIFY_SOCKET") == NULL)
        return 0;
    if ((h = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL)) == NULL) {
        scout_log(SCOUT_LOG_WARN, "main", "$NOTIFY_SOCKET is set but "
                  "libsystemd cannot be opened, systemd will not hear from "
                  "us: %s", dlerror());
        return 0;
    }
    *(void **)&sd_watchdog_enabled_fn = dlsym(h, "sd_watchdog_enabled");
    *(void **)&sd_notify_fn = dlsym(h, "sd_notify");
    if (sd_notify_fn == NULL || sd_watchdog_enabled_fn == NULL) {
        scout_log(SCOUT_LOG_WARN, "main", "libsystemd.so.0 lacks sd_notify");
        sd_notify_fn = NULL;
        dlclose(h);
        return 0;
    }
    return 1;
}

static void
notify(const char *state)
{
    if (opened())
        sd_notify_fn(0, state);
}

static void
feed(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    notify("WATCHDOG=1");
}

void
scout_sdnotify_start(struct ev_loop *loop)
{
    uint64_t usec = 0;

    if (!opened() || sd_watchdog_enabled_fn(0, &usec) <= 0 || usec == 0)
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
    char state[512];

    snprintf(state, sizeof(state), "%sSTATUS=%s", stopping ? "" : "READY=1\n",
             status);
    notify(state);
}

void
scout_sdnotify_reloading(void)
{
    struct timespec ts;
    char state[128];

    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    notify(state);
}

void
scout_sdnotify_stopping(void)
{
    stopping = 1;
    notify("STOPPING=1");
}
