/*
 * check.h -- health checks that gate a registration (the Nerve half of
 * SmartStack).
 *
 * A check probes one local service every interval and keeps a two-state
 * verdict with hysteresis: it starts DOWN (nothing is announced before it has
 * been seen healthy), becomes UP after `rise` consecutive successes and DOWN
 * again after `fall` consecutive failures.  on_change fires once per flip and
 * never otherwise; the first `rise` successes are a flip (down -> up), the
 * initial down state is not.
 *
 * Everything runs on the caller's loop and never blocks it: no DNS, no
 * blocking connect/read, no waitpid except on a child already sent SIGKILL
 * (in _free).  Kinds:
 *
 *   tcp   "host:port"  non-blocking connect; up when it completes (then
 *         closed).  host is an IPv4 literal, a bracketed IPv6 literal
 *         ("[::1]:8080") or "localhost" (= 127.0.0.1; write [::1] for v6).
 *         Other names are refused at setup: resolving them would either
 *         block the loop (and the ZooKeeper heartbeats with it) or need a
 *         resolver thread, and checks are meant for services on this host.
 *   http  "http://host[:port]/path"  same host rules, port 80 by default;
 *         sends "GET path HTTP/1.0" with Host and Connection: close, up on a
 *         2xx status.  The status line and headers are parsed with
 *         http-parser; the verdict is taken when the headers end, the body is
 *         never read, and at most SCOUT_CHECK_HTTP_MAX bytes are read before
 *         that (more: down).  Only http:// (there is no TLS in the agent).
 *   exec  "cmd"  /bin/sh -c cmd via posix_spawn, in its own process group,
 *         stdin and stdout on /dev/null, stderr inherited (the agent's log);
 *         exit 0 = up.  On timeout the whole group gets SIGKILL.  Reaped by
 *         an ev_child watcher, which libev only supports on the default
 *         loop, so an exec check on another loop is refused at setup.
 *   lua   lua_fn(lua_ud, reason, len) is called on the loop each round and
 *         returns 1 (up) or 0 (down); it may write a NUL-terminated reason
 *         (len bytes at most).  It is synchronous, so the timeout does not
 *         apply; it must not free the check.
 *
 * Rounds never overlap: the next one starts `interval_ms` after the previous
 * one ended (a slow or killed probe delays the next, like Nerve's loop), and
 * the first one runs on the first loop iteration after _new.  A round that
 * has not finished after `timeout_ms` counts as a failure with the reason
 * "timeout after N ms".
 */
#ifndef SCOUT_CHECK_H
#define SCOUT_CHECK_H

#include <stddef.h>

#include <ev.h>

#include "scout.h"

#define SCOUT_CHECK_TCP  1
#define SCOUT_CHECK_HTTP 2
#define SCOUT_CHECK_EXEC 3
#define SCOUT_CHECK_LUA  4

/* A zero field in the conf takes these (HAProxy's rise/fall; an interval of
 * 2 s and a 1 s timeout suit a local probe). */
#define SCOUT_CHECK_DEFAULT_INTERVAL_MS 2000
#define SCOUT_CHECK_DEFAULT_TIMEOUT_MS  1000
#define SCOUT_CHECK_DEFAULT_RISE        2
#define SCOUT_CHECK_DEFAULT_FALL        3

#define SCOUT_CHECK_HTTP_MAX (64 * 1024)    /* bytes read before the verdict */

typedef struct scout_check_s scout_check_t;

/* Called on every flip.  reason says what the flipping round saw ("tcp
 * 127.0.0.1:8080: connection refused", "http 503", "exec exited 1", "timeout
 * after 2000 ms"); it is owned by the check and valid until the callback
 * returns.  The callback may call scout_check_free() on this check. */
typedef void (*scout_check_fn)(void *ud, int up, const char *reason);

/* The lua kind's probe: 1 up, 0 down; may fill reason (len bytes). */
typedef int (*scout_check_lua_fn)(void *ud, char *reason, size_t len);

typedef struct {
    int                 kind;         /* SCOUT_CHECK_* */
    const char         *target;       /* tcp/http/exec; copied; unused by lua */
    int                 interval_ms;  /* 0 = default; all must be >= 0 */
    int                 timeout_ms;
    int                 rise;
    int                 fall;
    scout_check_lua_fn  lua_fn;       /* lua kind only */
    void               *lua_ud;
} scout_check_conf_t;

/* "tcp" | "http" | "exec" | "lua" -> SCOUT_CHECK_*, or SCOUT_ERROR. */
int scout_check_kind_parse(const char *name);

/* Validates conf (target syntax, address literal, exec needs the default
 * loop) and schedules the first round.  NULL + err on a bad conf. */
scout_check_t *scout_check_new(struct ev_loop *loop,
                               const scout_check_conf_t *conf,
                               scout_check_fn on_change, void *ud, char *err);

/* Stops every watcher, closes the socket, SIGKILLs and reaps a running exec
 * child's process group.  No callback fires.  NULL is fine. */
void scout_check_free(scout_check_t *c);

/* 1 up, 0 down. */
int scout_check_up(const scout_check_t *c);

/* What the latest finished round saw (not necessarily the round that
 * flipped the state: a down check that has seen one success says so);
 * "not checked yet" before the first.  Owned by the check, valid until the
 * next round ends. */
const char *scout_check_reason(const scout_check_t *c);

#endif
