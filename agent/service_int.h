/*
 * service_int.h -- a service's insides, shared by service.c (the list and
 * its publication) and service_source.c (the other paths it depends on).
 * Nothing else includes this; the module's interface is service.h.
 */
#ifndef SCOUT_SERVICE_INT_H
#define SCOUT_SERVICE_INT_H

#include "service.h"
#include "zk/watch.h"

/* One source path (policy.h's scout_source_conf_t, watched). */
typedef struct {
    scout_service_t *svc;
    char            *key;
    char            *path;
    char           **data;         /* names whose data is read, sorted;
                                      ndata -1: every child's         */
    int              ndata;
    scout_watch_t   *watch;
    int              seen;         /* read completely once            */
    uint64_t         invalid;      /* its rules refused (a counter)   */
} scout_source_t;

/* What only a failing service or one whose sources move needs: the retry
 * timer, the reap timer and the sources waiting to be retired.  Allocated
 * on first use (scout_service_timers), freed with the service: inline,
 * they cost 120 bytes a service that never fails (1.2 MB at 10,000). */
typedef struct {
    ev_timer                 retry;        /* ask the policy again: after
                                              a failure, or a ramp step */
    ev_timer                 reap;
    scout_source_t         **dropped;      /* no longer wanted: retired on
                                              the next loop iteration, never
                                              inside their own watch's
                                              callback                    */
    int                      ndropped;
} scout_service_timers_t;

struct scout_service_s {
    const char              *path;         /* the watch's string (NULL
                                              until it exists): a copy
                                              was 32 bytes a service   */
    char                    *settings;     /* JSON for shm readers, made
                                              on first use (NULL: not yet) */
    scout_rcbuf_t           *explain;      /* /v1/explain's answer, made on
                                              first ask, dropped whenever
                                              the policy learns anything */
    scout_rcbuf_t           *list;         /* the list's JSON, shared by
                                              the clients that asked */
    uint64_t                 list_index;   /* ... at this index */
    int                      idx;          /* position in the policy */
    int                      needs_data;   /* -1: ask the policy;
                                              -2: host:port needs none */
    int                      delay_ms;     /* -1: ask the policy      */
    int                      last_delay;   /* fallback if hook fails  */
    scout_session_t         *session;
    scout_policy_t          *policy;
    scout_watch_t           *watch;
    scout_epset_t            eps;          /* what is published       */
    double                   fresh_at;     /* last known in sync      */
    uint64_t                 index;
    char                    *last_error;   /* NULL while none: 256 bytes
                                              x 10,000 services otherwise */
    char                    *degraded;     /* the policy's word on children
                                              kept at their last good state
                                              (NULL: the list is whole) */
    scout_service_stats_t    stats;
    struct ev_loop          *loop;
    scout_service_timers_t  *timers;       /* NULL until first needed  */
    double                   retry_s;      /* the retry's back-off     */
    scout_service_publish_fn on_publish;
    void                    *on_publish_ud;
    scout_service_publish_fn on_state;  /* same ud as on_publish */
    /* sources: the other paths the list depends on (service_source.c) */
    scout_source_t         **sources;      /* sorted by key              */
    int                      nsources;
    int                      anti_entropy_ms;/* for source watches too */
    /* flags, one bit each (10,000 services: ints and their holes were
     * 60 bytes a service) */
    unsigned                 published:1;  /* at least once           */
    unsigned                 protected:1;  /* a drop is being held    */
    unsigned                 from_snapshot:1;/* not yet confirmed by ZK */
    unsigned                 policy_unseeded:1;/* seeded from the snapshot,
                                                the policy not told yet */
    unsigned                 disconnected:1;/* staleness clock running */
    unsigned                 backing_off:1;/* the whole update failed:
                                              changes wait for the retry
                                              timer (or a reload)      */
    unsigned                 has_sources:1;/* the codec declares some    */
    unsigned                 primary_seen:1;/* its path read once        */
    unsigned                 rules_changed:1;/* a source was delivered: the
                                              settings may differ        */
    unsigned                 list_kept:1;  /* list was a blocking query's:
                                              kept past its index as the
                                              next one's base (the set's
                                              edit says what changed)  */
    /* in the service's own allocation: a name as short as "svc-00001"
     * fits the 320-byte chunk's tail, and a malloc of its own was a
     * 32-byte chunk a service (test_footprint) */
    char                     name[];
};

/* service.c: the rarely used timers, allocated on first use (NULL: out
 * of memory, logged); (re-)arm the retry timer to fire in `after` s (not
 * armed when out of memory: changes then wait for the next event or a
 * reload); is it armed. */
scout_service_timers_t *scout_service_timers(scout_service_t *s);
void scout_service_retry_arm(scout_service_t *s, double after);
int  scout_service_retry_armed(const scout_service_t *s);

/* service.c: judge the pending changes of the service's own path (the
 * policy sees every source delivered before). */
void scout_service_judge(scout_service_t *s);
/* The delay of a read (the policy's delay hook or its fixed delay). */
int  scout_service_delay(void *ud, const scout_event_t *ev);
/* service_source.c */
int  scout_service_sources_sync(scout_service_t *s, char *err);
void scout_service_refresh(scout_service_t *s);
void scout_service_sources_free(scout_service_t *s, int retire);
void scout_service_sources_rebind(scout_service_t *s);
/* Children of every source (dubbo 3's instances are endpoints too). */
unsigned scout_service_sources_children(const scout_service_t *s);

#endif
