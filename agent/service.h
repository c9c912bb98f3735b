/*
 * service.h -- one watched service: its watch, the policy's verdict on the
 * children, and the published endpoint list with its index.
 *
 * A service publishes only when the policy produced a list that differs
 * from the last one (or the first complete one); the index then moves
 * forward.  A policy failure keeps the last good list.
 */
#ifndef SCOUT_SERVICE_H
#define SCOUT_SERVICE_H

#include <ev.h>
#include <stdint.h>

#include "endpoint.h"
#include "rcbuf.h"
#include "policy/policy.h"
#include "zk/session.h"
#include "stats.h"

typedef struct scout_service_s scout_service_t;

typedef void (*scout_service_publish_fn)(void *ud, scout_service_t *svc);

scout_service_t *scout_service_new(struct ev_loop *loop,
                                   scout_session_t *session,
                                   scout_policy_t *policy, int idx,
                                   const scout_service_conf_t *conf,
                                   char *err);
void scout_service_free(scout_service_t *s);
/* A reload kept this service (same name, path and codec): it moves to the
 * new policy, keeping its watches and cache, and everything it holds is
 * judged again by the new hooks. */
int  scout_service_rebind(scout_service_t *s, scout_policy_t *policy, int idx,
                          const scout_service_conf_t *conf, char *err);
/* A reload dropped it: stop watching, free what can be freed. */
void scout_service_retire(scout_service_t *s);

/* Called after every publish (API blocking queries, files, snapshots). */
void scout_service_on_publish(scout_service_t *s, scout_service_publish_fn fn,
                              void *ud);
/* Called when a judgement changed the state without a publish (same ud). */
void scout_service_on_state(scout_service_t *s, scout_service_publish_fn fn);

void scout_service_on_session(scout_service_t *s, scout_session_state_t st,
                              int new_session, int jitter_ms);

const char *scout_service_name(const scout_service_t *s);
/* qsort's comparator for scout_service_t * by name (strcmp's order). */
int scout_service_by_name(const void *a, const void *b);
/* Its position in the policy it is bound to (conf.services). */
int         scout_service_idx(const scout_service_t *s);
scout_session_t *scout_service_session(const scout_service_t *s);
const char *scout_service_path(const scout_service_t *s);
/* The published list: its size, and as a JSON array sorted by id (rendered
 * on the first request after a change; NULL when out of memory). */
unsigned    scout_service_count(const scout_service_t *s);
/* The published list as JSON, shared (see rcbuf.h): borrowed, valid until
 * the next publish; take a reference to keep it longer.  NULL: no memory.
 * keep: a blocking query asks, and will ask again after the next change:
 * each endpoint's JSON is kept for it, so the next list renders only what
 * changed; 0 (a plain read) keeps none made for this one (endpoint.h). */
scout_rcbuf_t *scout_service_json(scout_service_t *s, int keep);
/* Monotonic: the newest zxid reflected in the list, or one more than the
 * previous index when a republish carries no newer zxid. */
uint64_t    scout_service_index(const scout_service_t *s);
/* "syncing" | "synced" | "stale" | "protected" | "degraded" (the list is
 * not what ZooKeeper holds: the policy failed, or children whose data or
 * filter fails are kept at their last good state; last_error says which) */
const char *scout_service_state(const scout_service_t *s);
/* 1 once ZooKeeper confirmed the list (not just the disk snapshot) and it
 * is whole (not degraded). */
int         scout_service_synced(const scout_service_t *s);
int         scout_service_degraded(const scout_service_t *s);
/* 1 when there is a list to serve (from ZooKeeper or the snapshot). */
int         scout_service_serving(const scout_service_t *s);
/* published, or its policy failed on it (the whole update: its budget),
 * so that nothing better will come of waiting for it */
int         scout_service_settled(const scout_service_t *s);
/* 1 while protection holds back a drop (the last list is still served). */
int         scout_service_protected(const scout_service_t *s);
/* Why the service is degraded (the policy's failure first), or "". */
const char *scout_service_last_error(const scout_service_t *s);
/* Serve what the disk snapshot held (eps is moved; state "stale") until
 * ZooKeeper's first full listing replaces it; older lists are refused.
 * rejected: endpoints the caller dropped from it as invalid (counted). */
void scout_service_seed(scout_service_t *s, scout_epset_t *eps, uint64_t index,
                        int64_t pzxid, int64_t max_mzxid, unsigned rejected);
int  scout_service_from_snapshot(const scout_service_t *s);
/* Hand a seeded list to the policy's Lua side now, if not done yet (the
 * service does so itself before an update, explain or pick). */
void scout_service_seed_policy(scout_service_t *s);
/* The published endpoints (borrowed, valid until the next publish). */
const scout_epset_t *scout_service_epset(const scout_service_t *s);
/* While the service's on_publish runs: each id this publish put into or
 * deleted from the set, to fn, and 1 -- every other endpoint is the very
 * one the last publish had.  0 when it cannot say (outside on_publish).
 * For an output that copies what did not change (shmpub.c, idlog.h). */
int scout_service_changed_ids(const scout_service_t *s,
                              void (*fn)(void *ud, const char *id),
                              void *ud);
/* What shm readers need besides endpoints: selector and routes, as JSON. */
const char *scout_service_settings(scout_service_t *s, size_t *len);
/* JSON answers of the policy about this service (NULL + err).  explain's
 * is kept by the service until the policy's view of it changes (borrowed,
 * valid until the next call into the service; take a reference to keep
 * it); pick's is malloc'd. */
scout_rcbuf_t *scout_service_explain(scout_service_t *s, char *err);
char *scout_service_pick(scout_service_t *s, const char *query, char *err);
/* The newest child-list zxid and data zxid its cache holds: what the disk
 * snapshot records so that a cold start keeps the ordering gates. */
void scout_service_zxids(const scout_service_t *s, int64_t *pzxid,
                         int64_t *max_mzxid);
/* Seconds the published list has gone without confirmation from ZooKeeper
 * (0 while synced). */
double      scout_service_staleness(const scout_service_t *s);
const scout_service_stats_t *scout_service_stats(const scout_service_t *s);
/* The source paths it depends on besides its own (dubbo's configurators):
 * how many, the k-th one's key, and how many of its rules were refused. */
int         scout_service_nsources(const scout_service_t *s);
const char *scout_service_source_key(const scout_service_t *s, int k);
uint64_t    scout_service_source_invalid(const scout_service_t *s, int k);

#endif
