/*
 * snapshot_lazy.h -- the disk snapshot read lazily, for serving it before
 * the policy is loaded (api/early.h): the file is read and its checksum
 * checked, the services are indexed (name, path, index, count, where their
 * endpoints start) without decoding an endpoint, and a service's endpoints
 * are decoded, with every check scout_snapshot_read() makes, only when it
 * is asked for.  Indexing 10,000 services costs a few ms; reading them all
 * costs 50-80.  Implemented in snapshot_read.c, beside the full reader,
 * with which it shares every check.
 */
#ifndef SCOUT_SNAPSHOT_LAZY_H
#define SCOUT_SNAPSHOT_LAZY_H

#include <stdint.h>

#include "endpoint.h"

typedef struct scout_snaplazy_s scout_snaplazy_t;

typedef struct {
    const char *name, *path;        /* borrowed, until the free */
    uint64_t    index;
    int64_t     pzxid, max_mzxid;   /* the floor ZooKeeper's reads meet */
    unsigned    nendpoints;
} scout_snaplazy_service_t;

/* The file and the journal beside it (snapshot_journal.h), indexed where
 * they are (snapshot_merge.h): what a fold of the two would give, without
 * the copy.  NULL with the reason in err when the file is unusable (as the
 * full reader says it, for what the index walk sees). */
scout_snaplazy_t *scout_snaplazy_read(const char *path, char *err);
void scout_snaplazy_free(scout_snaplazy_t *z);

/* The base file's own checksum (with a journal, not the checksum of what
 * a fold would serve: the side file names the base). */
uint64_t    scout_snaplazy_checksum(const scout_snaplazy_t *z);
/* What the journal beside the file did ("" for none): to log. */
const char *scout_snaplazy_note(const scout_snaplazy_t *z);
const char *scout_snaplazy_ensemble(const scout_snaplazy_t *z);
int64_t     scout_snaplazy_written_at_ms(const scout_snaplazy_t *z);
int         scout_snaplazy_count(const scout_snaplazy_t *z);
/* by name, O(log n); -1 when absent */
int         scout_snaplazy_find(const scout_snaplazy_t *z, const char *name);
void        scout_snaplazy_get(const scout_snaplazy_t *z, int i,
                               scout_snaplazy_service_t *out);
/* Gives the files' bytes back to the system, at most max from the end per
 * call, the journal's first (unmapping tens of MB takes milliseconds: a
 * caller on the loop spreads it); the bytes left.  Nothing may be decoded after the first
 * call; the names, paths and counts stay. */
size_t      scout_snaplazy_release(scout_snaplazy_t *z, size_t max);
/* The i-th service's endpoints into dst (initialised, empty): SCOUT_ERROR
 * with the reason in err when they break the format (dst is then left
 * empty). */
int         scout_snaplazy_decode(const scout_snaplazy_t *z, int i,
                                  scout_epset_t *dst, char *err);

#endif
