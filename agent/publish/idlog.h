/*
 * idlog.h -- the ids of a service's endpoints that changed since the shm
 * publisher last made its slice (issue 14).
 *
 * The publisher keeps one per service while a change is pending: each
 * publish of the service hands over the ids it put into or deleted from
 * the set (scout_service_changed_ids), so that the next slice is made from
 * the last one by copying every endpoint not named here, without comparing
 * each with its old record (shm_reslice.c).  Endpoints are not refcounted
 * and a new one may take a freed one's address, so these ids are the one
 * safe word on "unchanged": an id not named was neither put nor deleted,
 * and the endpoint under it is the very object the last slice encoded.
 *
 * The log also keeps the service's index after the last change it noted:
 * it answers only when that is the index now (or, empty, when the index
 * has not moved since the slice), so a set changed without a word (a disk
 * snapshot seeded in, whose index is another) is compared.  Bounded: past
 * a few ids or bytes (a rolling deploy coalesced into one publication) it
 * is lost, and the reader compares, as before.  What this must never do:
 * answer with ids when a change may have gone unnoted.
 */
#ifndef SCOUT_IDLOG_H
#define SCOUT_IDLOG_H

#include <stdint.h>

/* At most this many ids, of this many bytes (NULs included), are noted
 * between two slices; one more and the log is lost. */
#define SCOUT_IDLOG_MAX_IDS   32u
#define SCOUT_IDLOG_MAX_BYTES 2048u

/* NULL: nothing noted (no memory held). */
typedef struct scout_idlog_s scout_idlog_t;

/* The id was put or deleted (made on first use; past the bounds or out of
 * memory the log is lost). */
void scout_idlog_add(scout_idlog_t **l, const char *id);
/* Every change up to the service's index now is noted. */
void scout_idlog_moved(scout_idlog_t **l, uint64_t index);
/* A change the log cannot name: lost until it is freed. */
void scout_idlog_lose(scout_idlog_t **l);
/* The ids changed since the slice made at index base, the service being
 * at index now: 1 with *ids (n of them, NUL-terminated one after the
 * other); 0 when not known. */
int  scout_idlog_since(const scout_idlog_t *l, uint64_t base, uint64_t now,
                       const char **ids, uint32_t *n);
/* The slice is made: what changes from here is news to the next one. */
void scout_idlog_free(scout_idlog_t **l);

#endif
