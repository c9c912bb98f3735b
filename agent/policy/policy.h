/*
 * policy.h -- the bridge to the operator's Lua policy.
 *
 * One LuaJIT VM in the agent's thread loads the policy through the DSL in
 * lua/scout/ (policy.lua validates it, runtime.lua runs it).  C asks the
 * policy four things: the configuration, whether a child needs its data
 * read, how long to delay a read, and -- with the pending changes of a
 * service -- the endpoint list to publish.  Every call is protected and
 * budgeted (hook.h); a failure is logged with the policy's file:line and
 * reported to the caller, who keeps the last good state.
 */
#ifndef SCOUT_POLICY_H
#define SCOUT_POLICY_H

#include <ev.h>
#include <stdint.h>

#include "zk/cache.h"
#include "policy/render_conf.h"

/* One register block, as the C side keeps it. */
typedef struct {
    char *name;
    char *path;             /* the parent: the node goes below it */
    int   ephemeral;
    char *acl;              /* NULL: creator+read with auth, else open */
    int   authenticated;    /* the session adds digest auth */
    char *check_kind;       /* NULL (always up) | tcp | http | exec | lua */
    char *check_target;
    int   check_interval_ms;
    int   check_timeout_ms;
    int   check_rise;
    int   check_fall;
} scout_reg_conf_t;
#include "endpoint.h"
#include "zk/watch.h"

typedef struct scout_policy_s scout_policy_t;

/* needs_data's value for the plain codec (its data_unless_address): the
 * agent answers by scout_endpoint_is_hostport, without a call into Lua. */
#define SCOUT_NEEDS_DATA_UNLESS_HOSTPORT  (-2)

typedef struct {
    char *name;           /* one allocation with path and codec (conf.c):
                             scout_conf_free frees name alone           */
    char *path;
    int   needs_data;     /* -1: ask per child; -2: the plain codec's
                             rule, in C (a child named host:port needs
                             no data); else fixed 0/1                  */
    int   delay_ms;       /* -1: ask the delay hook per event           */
    int   anti_entropy_ms;/* re-list period; 0 = off                    */
    char *codec;          /* built-in codec name; NULL for a user table  */
    int   has_sources;    /* 1: the codec declares source paths besides
                             path (scout_policy_sources)               */
} scout_service_conf_t;

/* One source path a service depends on besides its own (dubbo's
 * configurators): key names it to the policy; only the children named in
 * data have their data read (ndata -1: every child's). */
typedef struct {
    char  *key;
    char  *path;
    char **data;
    int    ndata;
} scout_source_conf_t;

typedef struct {
    char                 *zk_servers;
    int                   zk_timeout_ms;
    int                   zk_sessions;   /* 0: one per 2,000 services */
    int                   zk_watch_budget; /* bytes per session; 0 = off */
    int                   zk_sessions_needed; /* for the services' child
                                             lists (scout_conf_read)   */
    char                 *auth_scheme;
    char                 *auth_cred;
    char                 *api_listen;
    char                 *cache_dir;     /* NULL: no disk snapshot     */
    char                 *shm_path;      /* NULL: no shm snapshot      */
    int                   shm_format;    /* its format version: 1 or 2 */
    int64_t               cache_max_age_ms;
    char                 *log_level;     /* NULL: not set in the policy */
    int                   hook_budget_ms;
    scout_service_conf_t *services;
    int                   nservices;
    scout_render_conf_t  *renders;
    int                   nrenders;
    scout_reg_conf_t     *registers;
    int                   nregisters;
    int                   drain_ms;      /* after deregistering, at exit */
    int                   anti_entropy_rate; /* requests per second */
    char                **warnings;      /* "file:line: message": loaded, */
    int                   nwarnings;     /* but check prints, agent logs  */
    double                reload_max_drop;/* share of services and
                                            registrations a reload may
                                            drop (0..1; default 0.5)   */
} scout_conf_t;

/* lua_dir holds the scout Lua modules; NULL finds it next to the binary or in the
 * installed share directory. */
scout_policy_t *scout_policy_new(const char *lua_dir, char *err);
void scout_policy_free(scout_policy_t *p);
/* On the loop's thread, once nothing calls into p any more: its ties to
 * the loop cut, so that scout_policy_free(p) may then run on any one
 * thread (a reload frees the old VM, tens of MB at 10,000 services, off
 * the loop). */
void scout_policy_detach(scout_policy_t *p);
/* At a fast exit: stop what the policy started outside the process (the
 * process groups of scout.exec commands still running); the VM is left to
 * the process exit. */
void scout_policy_stop_children(scout_policy_t *p);

/* Load and validate a policy file.  On error err holds "file:line: msg". */
int  scout_policy_load(scout_policy_t *p, const char *file, scout_conf_t *conf,
                       char *err);
void scout_conf_free(scout_conf_t *conf);
/* After a load: every file it read as Lua, the policy file first, then the
 * modules in package.loaded that package.path finds (scout's library and
 * the operator's), sorted: what the disk snapshot's side file fingerprints
 * (publish/snapside.h).  *files is one malloc'd block the caller frees.
 * Files read otherwise (io.open, a C module) are not in it. */
int  scout_policy_files(scout_policy_t *p, const char *file, char ***files,
                        int *n, char *err);
/* Bytes the policy's Lua VM holds (its GC heap): a /metrics gauge. */
size_t scout_policy_memory(scout_policy_t *p);
/* The Lua collector's pause (a /metrics gauge): for a heap past 4 MB, 120
 * until the initial sync is over, then 100; 200 below (policy_gc.c). */
int    scout_policy_gc_pause(const scout_policy_t *p);
/* The heap's cap (agent { lua_memory = ... }, 512 MB by default). */
size_t scout_policy_lua_memory_cap(scout_policy_t *p);
/* Give the policy the agent's loop: scout.exec runs commands on it.  Until
 * then (scout check, loading) scout.exec answers nil, err. */
void scout_policy_attach(scout_policy_t *p, struct ev_loop *loop);
/* The budget (CPU and wall clock alike) of the next scout_policy_load: a
 * reload holds the loop and must stay well inside the session timeout.
 * 0: the default.  Without it (a start, scout check) the load may take
 * SCOUT_LOAD_BUDGET (default 5 s) of CPU and twelve times that of wall
 * clock (nothing waits on the loop yet). */
void scout_policy_set_load_budget(scout_policy_t *p, int ms);

/* need[k] = whether names[k] (a new child of service svc) has its data read:
 * one call into Lua for all n (the codec's needs_data per name); 1 for
 * every name when the call fails. */
void scout_policy_needs_data(scout_policy_t *p, int svc,
                             const char *const *names, unsigned n,
                             unsigned char *need);
/* The delay hook's answer in ms, or fallback when it fails. */
int scout_policy_delay(scout_policy_t *p, int svc, const scout_event_t *ev,
                       int fallback);

/* The policy's verdict on a batch of changes: endpoints that are new or
 * replaced, and ids no longer published.  The caller owns both arrays and
 * everything in them (scout_update_clear). */
typedef struct {
    scout_endpoint_t **up;
    int                nup;
    char             **gone;
    int                ngone;
    int                decode_errors; /* children skipped in this batch     */
    int                hook_errors;   /* filter calls on one child, on_change
                                         failures (the rest is published)   */
    int                retry_ms;      /* held back: read again after this   */
    int                reweigh_ms;    /* weights still ramp, or a failed
                                         child's back-off ends: call again */
    int                spared;        /* failed children not asked again:
                                         backing off (scout.backoff)       */
    int                rejected;      /* refused by endpoint.h's rule       */
    char              *degraded;      /* why the list is not what ZooKeeper
                                         holds (children kept at their last
                                         good state), or NULL               */
} scout_update_t;

/* Hand a service's pending changes to the policy.  SCOUT_ERROR with err set
 * when a hook failed, SCOUT_AGAIN when protection holds the batch back
 * (retry_ms set); in both cases the changes stay pending in the cache.
 * rejudge: children the call judges besides the batch (a source's rules
 * changed: every child), for its budget. */
int scout_policy_update(scout_policy_t *p, int svc, scout_cache_t *cache,
                        unsigned rejudge, scout_update_t *out, char *err);
void scout_update_clear(scout_update_t *up);

/* Bind service svc's published set (owned by the service, valid until the
 * service is freed or bound anew; NULL unbinds): the runtime reads a small
 * service's endpoints from it when it judges the service again, and keeps
 * no Lua table per endpoint in between.  SCOUT_ERROR when out of memory
 * (the runtime then keeps its own tables for that service). */
int scout_policy_bind(scout_policy_t *p, int svc, const scout_epset_t *eps);

/* Tell the runtime what a service published before a restart (from the
 * disk snapshot): diffs and protection start from it. */
int scout_policy_seed(scout_policy_t *p, int svc, const scout_epset_t *eps,
                      char *err);

/* The idx-th registration's node name (a prefix when seq), data and
 * length (malloc'd, caller frees both), or SCOUT_ERROR + err. */
int scout_policy_register_body(scout_policy_t *p, int idx, char **name,
                               char **data, int *len, int *seq, char *err);
/* A registration's Lua health check: 1 up, 0 down (reason filled). */
int scout_policy_register_check(scout_policy_t *p, int idx, char *reason,
                                size_t len);
/* The text of the policy's idx-th render block (malloc'd), or NULL + err. */
char *scout_policy_render(scout_policy_t *p, int idx, char *err);
/* The service's settings for shm readers as JSON (selector, its options and
 * route rules); malloc'd, NULL if the policy has none to give. */
char *scout_policy_settings(scout_policy_t *p, int svc);
/* /v1/explain: every child and its verdict, as JSON (malloc'd, caller
 * frees), or NULL with err. */
char *scout_policy_explain(scout_policy_t *p, int svc, char *err);
/* /v1/pick: one endpoint as JSON (malloc'd) chosen by the service's route
 * rules and selector for the request's query string; NULL with err ("no
 * endpoint", "bad query: ...") otherwise. */
char *scout_policy_pick(scout_policy_t *p, int svc, const char *query,
                        char *err);

void scout_policy_on_session(scout_policy_t *p, const char *state);

/* ---- sources (policy_source.c) ----------------------------------------- */

/* The sources service svc depends on now: *out is malloc'd (the caller
 * frees it with scout_source_conf_free), sorted by key. */
int  scout_policy_sources(scout_policy_t *p, int svc,
                          scout_source_conf_t **out, int *n, char *err);
void scout_source_conf_free(scout_source_conf_t *v, int n);
/* Hand source key's pending changes to the policy (cache NULL: the source
 * is dropped).  *invalid: nodes of the batch refused as rules. */
int  scout_policy_source_update(scout_policy_t *p, int svc, const char *key,
                                scout_cache_t *cache, int *invalid,
                                char *err);

#endif
