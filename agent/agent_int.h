/*
 * agent_int.h -- the agent's state, shared by the two files that wire it:
 * agent.c (start, sessions, publishes, the API's view, shutdown),
 * agent_reload.c (SIGHUP: the load) and agent_apply.c (its apply).
 * Nothing else includes it; agent.h stays the
 * agent's whole interface.
 */
#ifndef SCOUT_AGENT_INT_H
#define SCOUT_AGENT_INT_H

#include <pthread.h>

#include "agent.h"
#include "api/api.h"
#include "policy/policy.h"
#include "publish/persist.h"
#include "publish/render.h"
#include "publish/shmpub.h"
#include "register/register.h"
#include "scout.h"

struct scout_agent_s {
    struct ev_loop   *loop;
    scout_agent_opts_t opts;         /* as given: a reload applies them again */
    scout_policy_t   *policy;
    scout_conf_t      conf;
    scout_session_t **sessions;
    struct shard     *shards;      /* the on_session context of each */
    int               nsessions;     /* nbase + the data-watch pool's */
    int               nbase;         /* the services are sharded over */
    scout_session_opts_t so;         /* for the pool's new sessions */
    scout_service_t **services;
    int               nservices;
    scout_service_t **by_name;       /* services sorted by name */
    /* on_session's index: each session's services, so that an event walks
     * only its own (52 sessions x 100,000 services at a ZooKeeper restart
     * walked 5.2 million).  Session i's are by_session[at[i] .. at[i+1]),
     * in services' order; rebuilt on the next event once stale. */
    scout_service_t **by_session;
    int              *by_session_at;
    int               by_session_n;  /* sessions it was built for */
    int               by_session_stale; /* services changed (a reload) */
    scout_api_t      *api;
    scout_persist_t  *persist;
    scout_shmpub_t   *shm;
    scout_render_t  **renders;
    int               nrenders;
    scout_reg_t     **regs;          /* registrations, on session 0 */
    int               nregs;
    scout_reg_t     **retiring;      /* dropped by a reload, deleting */
    int               nretiring;
    double            watch_check_at; /* last SetWatches size check */
    double            started_at;    /* wall clock, for /v1/agent */
    unsigned          reloads;       /* SIGHUPs tried, and the last one's */
    unsigned          reloads_ok;
    double            reload_at;     /* wall clock                        */
    int               reload_ok;
    char              reload_err[SCOUT_ERR_LEN];
    /* shutdown: withdraw registrations, drain, then done() */
    int               withdrawing;
    ev_timer          guard;         /* give up waiting for deletions */
    ev_timer          drain;
    void            (*done)(void *ud);
    void             *done_ud;
    /* the start (agent_early.c): its steps' times, the early server and
     * the thread the policy loads on meanwhile */
    double            t0, c0, t_policy, c_policy;
    int               attached;      /* the policy has the loop */
    struct scout_early_s *early;
    struct loader    *loader;
    uint64_t          fp;            /* the side file's fingerprint, 0 */
    struct reload    *reload;        /* agent_reload.c's, once one ran */
    struct apply     *apply;         /* agent_apply.c's, while one runs */
    struct reaper    *reaper;        /* ... freeing an old VM, on a thread */
};

struct shard {
    scout_agent_t *agent;
    int            idx;
    int            warned;     /* over SCOUT_WATCH_BYTES_WARN, said so */
};

/* Keep each session's SetWatches well under the server's 1 MB limit. */
#define SCOUT_WATCH_BYTES_WARN (512 * 1024)

/* A service published: wake the API's parked queries, schedule the
 * snapshots and renders, watch the session's SetWatches size. */
void scout_agent_on_publish(void *ud, scout_service_t *svc);
void scout_agent_on_state(void *ud, scout_service_t *svc);
/* The command line's overrides (--zk, --api, ...) over a loaded policy. */
int  scout_agent_apply_command_line(scout_conf_t *c,
                                    const scout_agent_opts_t *opts,
                                    char *err);
/* idx: the services sorted by name; find: a name's position in it, or -1. */
void scout_agent_index_by_name(scout_service_t **idx,
                               scout_service_t *const *services, int n);
int  scout_agent_find_by_name(scout_service_t *const *idx, int n,
                              const char *name);
/* agent_sessions.c: by_session made fresh (SCOUT_ERROR: out of memory,
 * the old index is not to be used). */
int  scout_agent_index_sessions(scout_agent_t *a);
/* agent_sessions.c: tell each service of session idx its new state, through
 * the index (or a scan of every service if it cannot be made). */
void scout_agent_sessions_notify(scout_agent_t *a, int idx,
                                 scout_session_state_t state, int new_session,
                                 int jitter);
/* The start's steps (agent.c): begin and finish on the loop's thread, load
 * on any one thread (attach: give the policy the loop first). */
scout_agent_t *scout_agent_begin(struct ev_loop *loop,
                                 const scout_agent_opts_t *opts, char *err);
int  scout_agent_load(scout_agent_t *a, int attach, char *err);
int  scout_agent_finish(scout_agent_t *a, char *err);
/* finish in three steps (agent.c): sessions; services, SCOUT_AGAIN while
 * some are left (until deadline_ns, CLOCK_MONOTONIC, or max of them);
 * then the disk snapshot, the outputs and the API. */
int  scout_agent_finish_begin(scout_agent_t *a, char *err);
int  scout_agent_build_services(scout_agent_t *a, int64_t deadline_ns,
                                int max, char *err);
int  scout_agent_finish_end(scout_agent_t *a, char *err);
/* agent.c: the process's CPU time, ms. */
double scout_agent_cpu_ms(void);
void scout_agent_api_view(scout_agent_t *a, scout_api_view_t *out);
/* agent_early.c: the API on the early server, the side file at start and
 * after a reload, the early server freed (if any). */
scout_api_t *scout_agent_early_adopt(scout_agent_t *a, char *err);
void scout_agent_side_start(scout_agent_t *a);
void scout_agent_side_update(scout_agent_t *a);
void scout_agent_early_free(scout_agent_t *a);
/* agent_early.c: scout_persist_load, from the early start's index when the
 * hand-over decoded it (persist_stage.c). */
void scout_agent_snapshot_load(scout_agent_t *a);
/* agent_early.c: service i just built seeded from the hand-over's lists,
 * if any (before its session may read it). */
void scout_agent_seed_service(scout_agent_t *a, int i);

/* agent_early.c: a loader thread, every signal blocked in it but the
 * load budget's SIGALRM (its timer is the thread's own, policy/hook.c).
 * pthread_create's result. */
int  scout_agent_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);
/* agent_reload.c: the reload's state freed; a load still running is left
 * to the process exit (never joined: it may wait on anything). */
void scout_agent_reload_free(scout_agent_t *a);

/* agent_apply.c: a loaded policy (np and nc taken, whatever the result)
 * put in force in slices on the loop; done(a, SCOUT_OK, "") once it is,
 * or SCOUT_ERROR with err at once (out of memory: the running policy
 * stays).  _applying: one is under way (how far, for /v1/agent); _finish:
 * the rest of it at once (a stop: why is logged); _free: that, and the old
 * VM's freeing thread joined. */
typedef void (*scout_agent_applied_fn)(scout_agent_t *a, int rc,
                                       const char *err);
int  scout_agent_apply_begin(scout_agent_t *a, scout_policy_t *np,
                             scout_conf_t *nc, int *order,
                             scout_agent_applied_fn done, char *err);
/* On the loader thread: nc's positions sorted by name (malloc'd, taken by
 * _begin as order; NULL: out of memory, the switch sorts instead). */
int *scout_agent_apply_order(const scout_conf_t *nc);
int  scout_agent_applying(const scout_agent_t *a, int *placed, int *of,
                          unsigned *slices);
void scout_agent_apply_finish(scout_agent_t *a, const char *why);
void scout_agent_apply_free(scout_agent_t *a);

/* The policy's load-time warnings ("file:line: message"), logged. */
void scout_agent_log_warnings(const scout_conf_t *conf);

#endif
