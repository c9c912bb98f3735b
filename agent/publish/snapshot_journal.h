/*
 * snapshot_journal.h -- the disk snapshot's journal: what changed since the
 * last full snapshot, appended beside it, so that a write costs what
 * changed and not the registry (redis's AOF beside its RDB, ZooKeeper's
 * transaction log beside its snapshot).  The full file (the base) is
 * written as before; each later write appends one record to
 * DIR/scout.snapshot.journal holding the services published since, and the
 * agent writes a full snapshot again (compaction) when the journal passes a
 * quarter of the base, when a service leaves the file, or after a failure.
 * The format is in docs/snapshot.md.
 *
 * The journal names its base (the base's checksum and body length) in its
 * header: a journal left beside another base (a crash between a
 * compaction's rename and the journal's removal, a file copied in) is never
 * applied to it.  Each record has its own XXH64: a torn or corrupt record
 * ends the journal there, and every record before it holds.
 *
 * Readers go through snapshot_merge.h, which indexes the base and its
 * journal where they are: the state they serve is the one a full write of
 * the same state would have written (stamped with the last record's
 * written_at), and every check of the full and the lazy reader applies to
 * each record as it would in that file.
 */
#ifndef SCOUT_SNAPSHOT_JOURNAL_H
#define SCOUT_SNAPSHOT_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "publish/snapshot.h"

#define SCOUT_JOURNAL_FILE     "scout.snapshot.journal"
#define SCOUT_JOURNAL_TMP      "scout.snapshot.journal.tmp"
#define SCOUT_JOURNAL_VERSION  1
#define SCOUT_JOURNAL_HDR_LEN  32
#define SCOUT_JOURNAL_REC_HDR  12       /* u32 length, u64 XXH64 */

/* ---- write -------------------------------------------------------------- */

/* The journal as this process writes it: owned by one writer at a time,
 * zero-initialise with SCOUT_JOURNAL_INIT. */
typedef struct {
    scout_snapshot_file_t file; /* open for appends and read-backs (fd
                               -1: none yet); its records' file     */
    uint64_t end;           /* bytes written and synced                */
    uint64_t base_sum;      /* the base it names...                    */
    uint64_t base_len;      /* ...and that base's body length          */
    uint64_t base_id[4];    /* the base file as written: device, inode,
                               size, mtime (ns); 0s: unknown          */
} scout_journal_t;

#define SCOUT_JOURNAL_INIT { SCOUT_SNAPSHOT_FILE_INIT, 0, 0, 0, \
                             { 0, 0, 0, 0 } }

/* The base just written (sum, body length) is the one the next append
 * names; the old journal is removed (a crash before that leaves a journal
 * naming the old base, which readers ignore).  The base file's identity
 * (device, inode, size, mtime) is kept: an append first checks that the
 * base is still the file written (one stat, and its header's length and
 * checksum, one pread). */
void scout_journal_rebase(scout_journal_t *j, const char *dir,
                          uint64_t base_sum, uint64_t base_len);

/* The same for a base scout_snapshot_commit_recs just wrote to written:
 * its checksum and identity as the commit knew them before the rename, not
 * as a stat and a read of the file by name find them after it (the file
 * may have been edited in between: that edit must not become the base the
 * journal extends).  What the agent uses; the above is for a base written
 * by other means (tools, tests). */
void scout_journal_rebase_written(scout_journal_t *j, const char *dir,
                                  const scout_snapshot_file_t *written,
                                  uint64_t base_len);

/* One record of these services' records (their bytes in memory, as
 * scout_snapshot_rec_new made them; sorted here by name, duplicates
 * refused), stamped written_at_ms, on disk once this returns: the first
 * append after a rebase writes the file whole (header and record; temp
 * file, fsync, rename, fsync of DIR), the next ones append and fdatasync.
 * Each record then knows where its bytes are in j->file
 * (scout_snapshot_rec_written), so the caller may have it give them back
 * (scout_snapshot_rec_release(r, &j->file)): the next full write reads
 * them from the journal, as it reads the base's from the base.  A rebase
 * or a close forgets the file, and every record in it is stale.
 * *wrote: the bytes added.  SCOUT_ERROR (err) leaves the journal as it
 * was on disk up to its last good record; the caller then writes a full
 * snapshot.  SCOUT_AGAIN: the base is not the file written (replaced or
 * edited under the agent: nothing appended; the full write that follows
 * finds which records to encode again).  recs is reordered. */
int scout_journal_append(scout_journal_t *j, const char *dir,
                         int64_t written_at_ms, scout_snapshot_rec_t **recs,
                         int n, size_t *wrote, char *err);

void scout_journal_close(scout_journal_t *j);

#endif
