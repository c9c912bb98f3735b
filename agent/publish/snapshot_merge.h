/*
 * snapshot_merge.h -- the disk snapshot's base and journal indexed where
 * they are, for the readers (snapshot_read.c, snapshot_lazy.c): which
 * record of each service is the newest (a journal record beats an older
 * one and the base's), in name order, and where a fold of the two into
 * one file would have put it.  Private to the readers, like snapshot_rd.h.
 *
 * Why not fold: the readers used to copy base + journal into the bytes a
 * full write of the same state gives, then check that copy.  At 10,000 x
 * 10 with the largest journal the agent lets stand, the copy and its
 * checksum cost ~25-30 ms of CPU before the first answer of a start after
 * a crash, for bytes already checked: the base by its own XXH64, each
 * journal record by its own (what redis does with RDB + AOF and ZooKeeper
 * with snapshot + log: both read where they are).  The state is the same:
 * the merge here is the fold's merge, record for record (the same ties,
 * the same order), only nothing is copied, and the readers check each
 * record that survives as they would have checked it in the folded file,
 * saying its offset there (scout_snaprec_t.at), so that what they serve or
 * refuse, and their words, are the fold's.  tests/c/test_snapshot_merge.c
 * holds the fold as the reference and compares.
 *
 * What must never happen: a journal applied to a base it does not name, a
 * record applied whose checksum fails or anything after it, a superseded
 * record served, a read past a length that was not checked.
 */
#ifndef SCOUT_SNAPSHOT_MERGE_H
#define SCOUT_SNAPSHOT_MERGE_H

#include "publish/snapshot_rd.h"

typedef struct {
    unsigned char   *base;          /* the base file, pages of its own */
    size_t           base_size, base_len;
    unsigned char   *jnl;           /* the journal (merged only), likewise */
    size_t           jnl_size, jnl_len;
    uint64_t         base_sum;      /* the base's header checksum, or 0 */
    /* merged: the journal applies (one record or more, naming the base,
     * the base's header and head good, within the size limit); then: */
    int              merged;
    const char      *writer, *ensemble;     /* the base's, in place */
    size_t           writer_len, ensemble_len;
    int64_t          written_at_ms; /* the last applied record's */
    size_t           count_at;      /* offset of the service count */
    uint32_t         n;
    scout_snaprec_t *recs;          /* [n], the newest of each name, in
                                       name order, as the fold puts them;
                                       .checked: passed the lazy check in
                                       place (the others are to be checked
                                       by the reader, at their .at) */
    char             note[SCOUT_ERR_LEN];  /* what the journal did, "" */
} scout_snapmerge_t;

/* The base at path (DIR/scout.snapshot) and the journal beside it.
 * SCOUT_ERROR (err) only when the base cannot be read.  Not merged: the
 * base alone is the state (no journal, one for another base, nothing in it
 * that applies, or a base the fold could not apply it to: note says why);
 * the reader reads m->base as it reads a file without a journal, its own
 * header checks included. */
int  scout_snapmerge_open(const char *path, scout_snapmerge_t *m, char *err);
/* Gives back at most max bytes of the files' pages, from the journal's
 * end, then the base's; the bytes left.  Nothing is read after the first
 * call. */
size_t scout_snapmerge_release(scout_snapmerge_t *m, size_t max);
void scout_snapmerge_close(scout_snapmerge_t *m);

#endif
