/*
 * persist.h -- the disk snapshot in the agent's life: loaded before the
 * first connection so a restarted agent serves at once ("fail static"),
 * written after changes (at most once a second) and at shutdown.  The file
 * format and its validation live in snapshot_read.c, snapshot_encode.c and
 * snapshot_write.c; this is only the policy of when to read, what to trust
 * and when to write.
 */
#ifndef SCOUT_PERSIST_H
#define SCOUT_PERSIST_H

#include <ev.h>
#include <stdint.h>

#include "service.h"

typedef struct scout_persist_s scout_persist_t;

/* dir is created if missing (0700).  max_age_ms: how old a snapshot may be
 * while it is all we serve before health says so. */
scout_persist_t *scout_persist_new(struct ev_loop *loop, const char *dir,
                                   int64_t max_age_ms, const char *ensemble,
                                   scout_service_t **services, int n,
                                   char *err);
/* Read the snapshot and seed every service whose name and path match.  A
 * missing, corrupt, foreign or mismatching file is logged and ignored. */
void scout_persist_load(scout_persist_t *p);
/* The start after an early one (agent_early.c): every service's list
 * decoded from the snapshot the early server read and checked
 * (snapshot_lazy.h), in slices on the loop (persist_stage.c), each seeded
 * as its service is built, with every rule of scout_persist_load, without
 * reading the file again. */
typedef struct scout_persist_stage_s scout_persist_stage_t;
typedef struct scout_snaplazy_s scout_snaplazy_t;
/* z, label, names and paths (the policy's services, in its order: the
 * arrays and their strings) are borrowed until the free, which is O(1)
 * once every seed was taken.  NULL: out of memory. */
scout_persist_stage_t *scout_persist_stage_new(const scout_snaplazy_t *z,
                                               const char *label,
                                               const char *const *names,
                                               const char *const *paths,
                                               int n);
/* Decodes services until deadline_ns (CLOCK_MONOTONIC, at least one) or
 * max of them: SCOUT_AGAIN while some are left, SCOUT_OK when all are. */
int  scout_persist_stage_step(scout_persist_stage_t *st, int64_t deadline_ns,
                              int max);
void scout_persist_stage_stats(const scout_persist_stage_t *st, int *slices,
                               double *longest_ms, double *total_ms);
int  scout_persist_stage_clean(const scout_persist_stage_t *st);
const scout_snaplazy_t *scout_persist_stage_snapshot(
    const scout_persist_stage_t *st);
/* SCOUT_OK when every list is decoded, none refused, and the snapshot is
 * for this ensemble (scout_snapshot_check_ensemble's rule); else why. */
int  scout_persist_stage_check(const scout_persist_stage_t *st,
                               const char *ensemble, char *err);
/* Service s (the policy's i-th) seeded from it: 1, or 0 when it has no
 * seed (not in the snapshot, moved, another name at i). */
int  scout_persist_stage_seed(scout_persist_stage_t *st, int i,
                              scout_service_t *s);
int  scout_persist_stage_seeded(const scout_persist_stage_t *st);
void scout_persist_stage_free(scout_persist_stage_t *st);
/* What scout_persist_load records and says, for services seeded from a
 * checked stage (scout_persist_loaded's answer, the snapshot's age). */
void scout_persist_load_staged(scout_persist_t *p,
                               const scout_persist_stage_t *st);
/* The side file (publish/snapside.h) to write after every snapshot, with
 * that snapshot's checksum put in it (copied; NULL: none). */
void scout_persist_set_side(scout_persist_t *p, const char *buf, size_t len);
/* The same without the copy: buf (malloc'd, or NULL) is the persist's now,
 * and no one may change it (the writer thread reads it). */
void scout_persist_adopt_side(scout_persist_t *p, char *buf, size_t len);
/* 1 when the start's scout_persist_load read the snapshot whole (for this
 * ensemble, no endpoint dropped): its checksum in *sum. */
int  scout_persist_loaded(const scout_persist_t *p, uint64_t *sum);
/* svc published (NULL: any service may have, a new list): write within a
 * second, re-encoding only the services named since the last write. */
void scout_persist_changed(scout_persist_t *p, scout_service_t *svc);
/* Write now if anything changed since the last write (shutdown). */
void scout_persist_flush(scout_persist_t *p);
/* 1 when a service still serves only the snapshot and it is older than
 * max_age: the reason goes to reason (for /v1/health). */
int  scout_persist_too_old(const scout_persist_t *p, char *reason,
                           size_t len);
/* 1 while writes fail (from the first failure to the next success): the
 * reason, with how long and the last error, goes to reason. */
int  scout_persist_write_failing(const scout_persist_t *p, char *reason,
                                 size_t len);
/* Wall-clock ms of the last successful write, 0 for none yet. */
int64_t scout_persist_written_ms(const scout_persist_t *p);
/* A policy reload replaced the service list. */
void scout_persist_set_services(scout_persist_t *p, scout_service_t **services, int n);
void scout_persist_free(scout_persist_t *p);

#endif
