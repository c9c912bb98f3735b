/*
 * http.h - the local HTTP/1.1 server behind scout's API.
 *
 * Why: app developers on the host ask scout over a 0600 unix socket or a
 * loopback port (DESIGN.md, "HTTP API"). This module only speaks HTTP; it
 * knows nothing about services. It parses with http-parser, never blocks,
 * never owns the loop, and refuses to listen anywhere but loopback or a unix
 * socket, because the API has no authentication. (Why not libmicrohttpd:
 * docs/http-server.md, with the trial's numbers.)
 *
 * Ownership: the server owns every connection and every request object. A
 * request pointer handed to the handler stays valid until the request is
 * answered with scout_http_respond() or aborted (on_abort called); after that
 * it must not be touched. Strings returned by the accessors live as long as
 * the request.
 */

#ifndef SCOUT_HTTP_H
#define SCOUT_HTTP_H

#include <stddef.h>

#include "rcbuf.h"
#include "scout.h"

/* A value was present but could not be decoded (bad %-escape, %00, or it
 * does not fit the caller's buffer). Distinct from SCOUT_ERROR ("absent") so
 * handlers can answer 400 instead of using a default. */
#define SCOUT_HTTP_BAD -3

#define SCOUT_HTTP_MAX_URL      4096         /* longer: 414 */
#define SCOUT_HTTP_MAX_HEADER   8192         /* request line + headers: 431 */
#define SCOUT_HTTP_MAX_BODY     (64 * 1024)  /* discarded; longer: 413 */
#define SCOUT_HTTP_MAX_CONNS    1024         /* at most; fewer when the fd
                                                limit is low. Beyond: the
                                                longest-idle keep-alive one
                                                is closed, else the new one */
#define SCOUT_HTTP_IDLE_TIMEOUT 60.0         /* seconds without progress */
/* A request (line, headers, body) must be complete this many seconds after
 * its first byte, however it trickles in (or within the idle timeout, if
 * that is shorter). */
#define SCOUT_HTTP_REQUEST_TIMEOUT 10.0
/* Handler time per loop iteration; past it, complete requests wait for a
 * later iteration (ZooKeeper's socket is served in between). */
#define SCOUT_HTTP_BUDGET       0.02

struct ev_loop;

typedef struct scout_http_s     scout_http_t;
typedef struct scout_http_req_s scout_http_req_t;

/*
 * Called once per complete request. Return SCOUT_OK after responding, or
 * SCOUT_AGAIN to answer later (a deferred response: the connection reads no
 * further pipelined requests until scout_http_respond() is called from some
 * other loop callback). Returning anything else, or SCOUT_OK without having
 * responded, sends 500. The handler must not call scout_http_free().
 */
typedef int (*scout_http_handler_fn)(void *ud, scout_http_req_t *req);

/*
 * Called when a deferred request can no longer be answered: the client went
 * away (EOF, reset) or scout_http_free() is tearing the server down. req is
 * still readable inside the callback and freed right after it returns; do not
 * respond to it. Called at most once, and never after scout_http_respond().
 * It must not call scout_http_free() (nor may the handler).
 */
typedef void (*scout_http_abort_fn)(scout_http_req_t *req, void *data);

/*
 * listen: "unix:/path" (created 0600; a stale socket nobody listens on is
 * replaced, anything else at the path is refused), "HOST:PORT" or
 * "[::1]:PORT" where HOST is 127.0.0.0/8, ::1 or "localhost" (127.0.0.1).
 * Port 0 picks a free port; see scout_http_port(). Returns NULL and writes
 * err on failure. The loop is borrowed and must outlive the server.
 */
scout_http_t *scout_http_new(struct ev_loop *loop, const char *listen,
                             scout_http_handler_fn handler, void *ud,
                             char *err);

/* Stops all watchers, aborts pending requests (on_abort), closes every
 * connection and unlinks the unix socket if it is still the one we made. */
void scout_http_free(scout_http_t *h);

/* The bound TCP port (useful after port 0); 0 for unix sockets. */
int scout_http_port(const scout_http_t *h);

/* Open connections right now (for metrics). */
unsigned scout_http_nconns(const scout_http_t *h);

/* Override the defaults above; 0 keeps the current value. Applies to
 * connections accepted afterwards (idle) and to the next accept (max). */
void scout_http_set_limits(scout_http_t *h, unsigned max_conns,
                           double idle_timeout);

/* "GET", "POST", ... (static strings). */
const char *scout_http_req_method(const scout_http_req_t *req);

/* Raw, still %-encoded path ("/v1/services/a%2Fb"); never NULL. */
const char *scout_http_req_path(const scout_http_req_t *req);

/* Raw query string without '?', "" when there is none; never NULL. */
const char *scout_http_req_query(const scout_http_req_t *req);

/* First request header called name (case-insensitive), or NULL. */
const char *scout_http_req_header(const scout_http_req_t *req,
                                  const char *name);

/*
 * Decode query parameter name into buf (NUL-terminated; '+' is a space).
 * "?stale" yields "". Returns the decoded length, SCOUT_ERROR if absent,
 * SCOUT_HTTP_BAD if malformed or longer than len - 1.
 */
int scout_http_query_get(const scout_http_req_t *req, const char *name,
                         char *buf, size_t len);

/* %-decode src[0..srclen) into dst (NUL-terminated; '+' stays '+'), for path
 * segments. Returns the length or SCOUT_HTTP_BAD. */
int scout_http_unescape(const char *src, size_t srclen, char *dst,
                        size_t dstlen);

/* Extra response header, before scout_http_respond(). Returns SCOUT_ERROR
 * for CR/LF in name or value, or when the header space (4 KiB) is full. */
int scout_http_add_header(scout_http_req_t *req, const char *name,
                          const char *value);

/*
 * Answer req: status (200-599), content_type (NULL: omitted), body[0..len).
 * Content-Length, Date and Connection are added here. The body is copied.
 * On SCOUT_OK req is consumed and invalid afterwards, even if the client has
 * gone meanwhile (the response is then dropped). Never does I/O or re-enters
 * the handler: a deferred answer is written from the next loop callback.
 * Returns SCOUT_ERROR, leaving req as it was, for a status outside 200-599 or
 * when called from req's own on_abort. Calling it twice is a use-after-free.
 */
int scout_http_respond(scout_http_req_t *req, int status,
                       const char *content_type, const char *body,
                       size_t len);

/* Like scout_http_respond(), but the body is not copied: the connection
 * takes a reference (rcbuf.h) and sends from the shared buffer, so a
 * thousand clients of one big answer hold it once. */
int scout_http_respond_shared(scout_http_req_t *req, int status,
                              const char *content_type, scout_rcbuf_t *body);

/* Hand the server to another handler: the requests complete from here on
 * go to it; the deferred ones stay with whoever holds them.  The early
 * server (early.h) passes its listener and connections to the API so. */
void scout_http_set_handler(scout_http_t *h, scout_http_handler_fn handler,
                            void *ud);

/* Register the abort callback of a deferred request (one per request; a
 * second call replaces the first). */
void scout_http_req_on_abort(scout_http_req_t *req, scout_http_abort_fn fn,
                             void *data);

#endif /* SCOUT_HTTP_H */
