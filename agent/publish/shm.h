/*
 * shm.h -- publish every service into a shared-memory file for readers on
 * the host (nginx workers via lua/scout/shm.lua, C via lib/scout_shm.h).
 *
 * Each publish writes one complete, immutable snapshot under the next
 * generation number; readers never block the writer and never see a torn
 * snapshot.  Format and protocol: docs/shm.md.  One writer: a scout_shm_t is
 * used by one thread at a time, never concurrently.
 */
#ifndef SCOUT_SHM_AGENT_H
#define SCOUT_SHM_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"

typedef struct scout_shm_s scout_shm_t;

/* One service as published.  Every pointer is borrowed for the duration of
 * scout_shm_publish() only; NULL strings publish as "", a NULL eps as no
 * endpoints.  settings is opaque bytes (the agent puts a JSON object there). */
typedef struct {
    const char          *name;        /* required, unique */
    const char          *path;
    const char          *state;       /* syncing | synced | stale | protected */
    uint64_t             index;
    const char          *settings;
    size_t               settings_len;
    const scout_epset_t *eps;
} scout_shm_service_t;

/* Open the snapshot file at path (e.g. /dev/shm/scout.snapshot), creating
 * it mode 0644.  A valid file left by an earlier agent is adopted: readers
 * keep serving its last snapshot and generations continue from it.  Another
 * live agent on the same path is refused.  NULL with err filled on failure. */
scout_shm_t *scout_shm_open(const char *path, char *err);

/* The same, writing format version `version` (docs/shm.md): 2, the
 * default, checksums the body in chunks and rehashes only the ones a
 * publish rewrote; 1 checksums every body whole, for readers that know
 * only version 1 (an nginx with an older scout, during an upgrade).  A
 * file of the other version is not adopted but replaced. */
scout_shm_t *scout_shm_open_version(const char *path, int version,
                                    char *err);

/* Publish svcs[0..n) as the next generation.  SCOUT_OK, or SCOUT_ERROR with
 * err filled and the previous snapshot still the current one.  Cost is one
 * pass over the data plus a sort of service names and of each service's
 * endpoint ids; no allocation once the scratch arrays have grown. */
int scout_shm_publish(scout_shm_t *shm, const scout_shm_service_t *svcs,
                      int n, char *err);

/* One service encoded for the snapshot once, to be published again while
 * it does not change (the agent keeps one per service and index).
 * Immutable; nothing of s is kept.  The reference count is atomic, so a
 * slice may be released by another thread.  NULL + err on failure. */
typedef struct scout_shm_slice_s scout_shm_slice_t;
scout_shm_slice_t *scout_shm_slice_new(const scout_shm_service_t *s,
                                       char *err);
/* The same service's slice made from prev, its last one (or any slice;
 * NULL: scout_shm_slice_new): the very bytes scout_shm_slice_new writes,
 * where each endpoint equal in every field to one prev encoded is copied
 * from prev instead of encoded again (shm_reslice.c).  prev is only read. */
scout_shm_slice_t *scout_shm_slice_next(const scout_shm_slice_t *prev,
                                        const scout_shm_service_t *s,
                                        char *err);
/* The same, told which ids may have changed since prev was made: ids, n
 * of them, NUL-terminated one after the other, every id put into or
 * deleted from s->eps since (a superset is fine; none missing).  Each
 * endpoint not named is copied from prev without a comparison: the cost
 * is the named ones, a binary search each, and copies in blocks.  When the
 * two do not line up as the ids say (a wrong prev, a set out of order),
 * it compares every endpoint as scout_shm_slice_next does. */
scout_shm_slice_t *scout_shm_slice_known(const scout_shm_slice_t *prev,
                                         const scout_shm_service_t *s,
                                         const char *ids, uint32_t n,
                                         char *err);
scout_shm_slice_t *scout_shm_slice_ref(scout_shm_slice_t *sl);
void scout_shm_slice_unref(scout_shm_slice_t *sl);

/* A slice let go keeps its buffer for the next one (a few, of at most
 * 64 KB, shared by every thread).  This frees them: at exit, for the leak
 * checks; any time is safe. */
void scout_shm_slice_spares_free(void);

/* scout_shm_publish() from slices: the very same bytes for the same
 * services, at the cost of copying them (slices is reordered by name; in
 * that order already, one pass over the names checks it).
 * It touches only shm and the slices, so one thread at a time may call it
 * -- the agent's shm writer thread, which owns shm once it has started. */
int scout_shm_publish_slices(scout_shm_t *shm, scout_shm_slice_t **slices,
                             int n, char *err);

/* The generation of the last successful publish (or the adopted file's). */
uint64_t scout_shm_generation(const scout_shm_t *shm);

/* Bytes of the file and of the last snapshot body, for metrics. */
size_t scout_shm_file_size(const scout_shm_t *shm);
size_t scout_shm_snapshot_size(const scout_shm_t *shm);

/* Unmap and close.  unlink_file removes the file too (only if the path still
 * names ours); readers that mapped it keep their last snapshot. */
void scout_shm_close(scout_shm_t *shm, int unlink_file);

#endif
