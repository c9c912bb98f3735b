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

struct scout_service_s {
    char                    *name;
    char                    *path;
    char                    *settings;     /* JSON for shm readers, made
                                              on first use (NULL: not yet) */
    scout_rcbuf_t           *explain;      /* /v1/explain's answer, made on
                                              first ask, dropped whenever
                                              the policy learns anything */
    scout_rcbuf_t           *list;         /* the list's JSON, shared by
                                              the clients that asked */
    uint64_t                 list_index;   /* ... at this index */
    int                      idx;          /* position in the policy */
    int                      needs_data;   /* -1: ask the policy      */
    int                      delay_ms;     /* -1: ask the policy      */
    int                      last_delay;   /* fallback if hook fails  */
    scout_session_t         *session;
    scout_policy_t          *policy;
    scout_watch_t           *watch;
    scout_epset_t            eps;          /* what is published       */
    int                      published;    /* at least once           */
    int                      protected;    /* a drop is being held    */
    int                      from_snapshot;/* not yet confirmed by ZK */
    int                      policy_unseeded;/* seeded from the snapshot,
                                                the policy not told yet */
    double                   fresh_at;     /* last known in sync      */
    int                      disconnected; /* staleness clock running */
    uint64_t                 index;
    char                    *last_error;   /* NULL while none: 256 bytes
                                              x 10,000 services otherwise */
    char                    *degraded;     /* the policy's word on children
                                              kept at their last good state
                                              (NULL: the list is whole) */
    scout_service_stats_t    stats;
    struct ev_loop          *loop;
    ev_timer                 retry;        /* ask the policy again: after
                                              a failure, or a ramp step */
    double                   retry_s;      /* its back-off             */
    int                      backing_off;  /* the whole update failed:
                                              changes wait for the retry
                                              timer (or a reload)      */
    scout_service_publish_fn on_publish;
    void                    *on_publish_ud;
    scout_service_publish_fn on_state;  /* same ud as on_publish */
    /* sources: the other paths the list depends on (service_source.c) */
    int                      has_sources;  /* the codec declares some    */
    scout_source_t         **sources;      /* sorted by key              */
    int                      nsources;
    scout_source_t         **dropped;      /* no longer wanted: retired on
                                              the next loop iteration, never
                                              inside their own watch's
                                              callback                    */
    int                      ndropped;
    ev_timer                 reap;
    int                      anti_entropy_ms;/* for source watches too */
    int                      primary_seen; /* its path read once         */
    int                      rules_changed;/* a source was delivered: the
                                              settings may differ        */
};

/* service.c: judge the pending changes of the service's own path (the
 * policy sees every source delivered before). */
void scout_service_judge(scout_service_t *s);
/* The delay of a read (the policy's delay hook or its fixed delay). */
int  scout_service_delay(void *ud, const scout_event_t *ev);
/* service_source.c */
void scout_service_sources_init(scout_service_t *s);
int  scout_service_sources_sync(scout_service_t *s, char *err);
void scout_service_refresh(scout_service_t *s);
void scout_service_sources_free(scout_service_t *s, int retire);
void scout_service_sources_rebind(scout_service_t *s);
/* Children of every source (dubbo 3's instances are endpoints too). */
unsigned scout_service_sources_children(const scout_service_t *s);

#endif
