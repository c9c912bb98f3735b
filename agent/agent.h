/*
 * agent.h -- the running agent: one session, one policy, the services it
 * watches and the API that serves them.  main.c builds it on its loop and
 * frees it; the agent itself never runs the loop.
 */
#ifndef SCOUT_AGENT_H
#define SCOUT_AGENT_H

#include <ev.h>
#include <stddef.h>

#include "service.h"
#include "zk/session.h"

typedef struct scout_agent_s scout_agent_t;

typedef struct {
    const char *policy_file;
    const char *lua_dir;       /* NULL: found next to the binary       */
    const char *zk;            /* overrides the policy's servers       */
    const char *api;           /* overrides the policy's api.listen    */
    const char *log_level;     /* overrides the policy's log level     */
    const char *cache_dir;     /* overrides the policy's cache.dir     */
} scout_agent_opts_t;

scout_agent_t *scout_agent_new(struct ev_loop *loop,
                               const scout_agent_opts_t *opts, char *err);
/* The same, serving the disk snapshot while the policy loads when
 * --cache-dir holds one that the side file ties to this policy
 * (agent_early.c): then *loading is 1, the caller runs the loop until it
 * breaks and asks scout_agent_early_end.  Otherwise scout_agent_new. */
scout_agent_t *scout_agent_new_early(struct ev_loop *loop,
                                     const scout_agent_opts_t *opts,
                                     int *loading, char *err);
/* After that loop: SCOUT_OK, the agent is whole; SCOUT_ERROR, the policy
 * (or the start) failed, err says how ("file:line: message"); SCOUT_AGAIN,
 * stopped by a signal before the load ended: then a is left to the process
 * exit (the load may still run).  Free a after SCOUT_ERROR. */
int  scout_agent_early_end(scout_agent_t *a, char *err);
/* SIGHUP: load the policy file again into a new VM and apply it as a
 * difference -- services and registrations kept by name keep their state
 * and the session; others are added or dropped.  The load runs on a
 * thread while the loop serves with the running policy; the result comes
 * to cb on the loop (rc, and "file:line: message" in err when refused: a
 * policy that fails changes nothing).  Returns SCOUT_AGAIN once the load
 * began, or when one is in progress (then one more runs after it, every
 * SIGHUP meanwhile coalesced into it; cb is called for each reload run);
 * SCOUT_ERROR when it cannot begin (err says why; cb is not called). */
typedef void (*scout_agent_reloaded_fn)(void *ud, int rc, const char *err);
int  scout_agent_reload(scout_agent_t *a, scout_agent_reloaded_fn cb,
                        void *ud, char *err);
/* The first step of a clean exit: delete every registration (so clients
 * stop sending before we go), wait for the deletions (at most 5 s), keep
 * serving for agent { drain = ... }, then call done. */
void scout_agent_shutdown(scout_agent_t *a, void (*done)(void *ud), void *ud);
/* Close the session (the server drops our ephemerals and watches at once),
 * stop serving.  Safe to call twice. */
void scout_agent_stop(scout_agent_t *a);
void scout_agent_free(scout_agent_t *a);
/* The last step of a process that exits right after: stops the agent
 * (snapshot flushed, sessions closed), lets the outputs' writer threads
 * finish and their files close, and leaves the rest of the memory to the
 * process exit -- freeing a million endpoints piece by piece took 8-30 s.
 * Leak-checking builds (ASan, valgrind, SCOUT_FREE_AT_EXIT=1 in the
 * environment) free everything, as scout_agent_free().  a is gone after
 * either way. */
void scout_agent_exit(scout_agent_t *a);


#endif
