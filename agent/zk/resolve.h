/*
 * resolve.h -- the connect string's host names, resolved off the loop.
 *
 * The C client resolves host names with a blocking getaddrinfo() inside
 * zookeeper_init() and on every connection loss: on a slow or dead DNS
 * server that holds the loop for seconds and the session expires.  This
 * module resolves them on a worker thread and hands the loop a connect string
 * of IP literals, which the client parses without any lookup.  A connect
 * string that is all IP literals is used as is and never resolved.
 */
#ifndef SCOUT_RESOLVE_H
#define SCOUT_RESOLVE_H

#include <ev.h>

typedef struct scout_resolve_s scout_resolve_t;

/* Called on the loop when a resolution produced a list that differs from the
 * last one: hosts is "ip:port[,ip:port...]" (no chroot), borrowed. */
typedef void (*scout_resolve_fn)(void *ud, const char *hosts);

/* servers: "h:p[,h:p...][/chroot]".  Starts the first resolution (when any
 * host is a name) and re-resolves every `every` seconds. */
scout_resolve_t *scout_resolve_new(struct ev_loop *loop, const char *servers,
                                   double every, scout_resolve_fn fn,
                                   void *ud, char *err);
void scout_resolve_free(scout_resolve_t *r);

/* Resolve again now (after a connection loss); a no-op for IP literals or
 * while a resolution is running. */
void scout_resolve_refresh(scout_resolve_t *r);

/* The latest list of IP literals, or NULL before the first resolution
 * finished with at least one address. */
const char *scout_resolve_hosts(const scout_resolve_t *r);
/* "" or "/chroot" */
const char *scout_resolve_chroot(const scout_resolve_t *r);

#endif
