/*
 * sliced.h -- an API answer rendered in slices, shared by every request
 * that waits for it.  Private to agent/api/.
 *
 * Why: an answer whose size grows with the registry (/metrics, the service
 * table) took 100-300 ms to render at 10,000 services in one callback, and
 * the loop -- ZooKeeper's socket, every other client -- waited that long.
 * Such an answer is rendered under a deadline of SCOUT_API_SLICE a call:
 * the first slice from the handler, the next ones from an idle watcher, so
 * whatever else is ready runs in between.  Every request that arrives while
 * a render is under way waits for the same render, and the finished body
 * is shared (rcbuf.h), not copied, with all of them and with the requests
 * of the rest of the loop iteration it was finished in.
 *
 * The owner says how to render (scout_sliced_ops_t); a job must stay valid
 * across slices on its own (re-reading the view each step, restarting when
 * the service list is replaced).
 */
#ifndef SCOUT_SLICED_H
#define SCOUT_SLICED_H

#include <stddef.h>
#include <stdint.h>

#include "api/http.h"

struct ev_loop;

/* Time one slice may take (seconds). */
#define SCOUT_API_SLICE 0.002

typedef struct {
    const char *what;       /* names a slice in the stall log */
    const char *type;       /* the answer's Content-Type */
    /* a new render; NULL when out of memory */
    void *(*begin)(void *ud);
    /* renders until done (SCOUT_OK) or until the scout_now_ns() deadline
     * has passed with work left (SCOUT_AGAIN); SCOUT_ERROR: out of memory */
    int   (*step)(void *job, int64_t deadline_ns);
    /* after SCOUT_OK: the body (malloc'd, *len bytes) or NULL when out of
     * memory; frees job either way */
    char *(*finish)(void *ud, void *job, size_t *len);
    /* drops a job that is not finished */
    void  (*drop)(void *job);
} scout_sliced_ops_t;

typedef struct scout_sliced_s scout_sliced_t;

/* ops and ud are borrowed and must outlive it; NULL when out of memory. */
scout_sliced_t *scout_sliced_new(struct ev_loop *loop,
                                 const scout_sliced_ops_t *ops, void *ud);

/* Answers req: at once (the rest of an iteration's answer, or a render
 * that fits one slice; the respond's return code), or later, when the
 * render in progress ends (SCOUT_AGAIN).  A request that goes away
 * meanwhile is dropped; when none is left the render stops. */
int scout_sliced_answer(scout_sliced_t *s, scout_http_req_t *req);

/* The bytes of a finished answer it still holds (0: none).  An answer is
 * held only for the rest of the loop iteration it was finished in. */
size_t scout_sliced_held(const scout_sliced_t *s);

/* 1 while a render is under way (requests wait for it). */
int scout_sliced_busy(const scout_sliced_t *s);

/* Call after the HTTP server is freed (which aborts the waiting
 * requests). */
void scout_sliced_free(scout_sliced_t *s);

#endif
