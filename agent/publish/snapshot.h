/*
 * snapshot.h -- the disk snapshot: the published state of every service,
 * written after changes so that a restarted agent can serve at once ("fail
 * static") while it connects, or keep serving when ZooKeeper cannot be
 * reached.  The format is in docs/snapshot.md.
 *
 * Writing is two steps so the caller may keep the blocking part off the
 * loop: scout_snapshot_encode() turns the state into the file's bytes (pure,
 * no I/O, touches nothing but its arguments) and scout_snapshot_commit()
 * puts them on disk crash-safely (temp file, fsync, rename, fsync of the
 * directory; touches no agent state, so it may run in a worker thread).
 * scout_snapshot_write() does both.
 *
 * Reading validates the whole file before returning anything: a truncated,
 * corrupt, foreign, oversize or inconsistent file gives NULL and one line
 * of reason in err, never a half-loaded snapshot.  Which ensemble the file
 * was written for is not judged by the reader; the caller asks
 * scout_snapshot_check_ensemble() with its own connect string.
 */
#ifndef SCOUT_SNAPSHOT_H
#define SCOUT_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "endpoint.h"

#define SCOUT_SNAPSHOT_FILE     "scout.snapshot"      /* in the cache dir  */
#define SCOUT_SNAPSHOT_TMP      "scout.snapshot.tmp"
#define SCOUT_SNAPSHOT_VERSION  1
#define SCOUT_SNAPSHOT_HDR_LEN  32

/* Limits, enforced by the writer and the reader alike, so that whatever
 * one writes the other reads. */
#define SCOUT_SNAPSHOT_MAX_SIZE      (256u << 20)  /* whole file, bytes    */
#define SCOUT_SNAPSHOT_MAX_STR       65536u        /* one string, bytes    */
#define SCOUT_SNAPSHOT_MAX_SERVICES  1000000u
#define SCOUT_SNAPSHOT_MAX_ENDPOINTS 1000000u      /* per service          */
#define SCOUT_SNAPSHOT_MAX_META      65536u        /* per endpoint         */

/* One service as written, or as read back (then every pointer is borrowed
 * from the snapshot and valid until scout_snapshot_free). */
typedef struct {
    const char          *name;      /* service name                        */
    const char          *path;      /* ZooKeeper path                      */
    uint64_t             index;     /* X-Scout-Index at publish            */
    int64_t              pzxid;     /* newest child-list zxid held         */
    int64_t              max_mzxid; /* newest data zxid held               */
    const scout_epset_t *eps;       /* the published endpoints             */
} scout_snapshot_service_t;

/* The file's bytes for these services, in a malloc'd *buf the caller frees.
 * written_at_ms is wall-clock milliseconds since the epoch.  Refuses
 * (SCOUT_ERROR, reason in err) what the reader would refuse: two services
 * with one name, an endpoint whose meta keys are not strictly ascending, a
 * string over SCOUT_SNAPSHOT_MAX_STR, a count or a size over its limit.
 * NULL strings are written as empty ones.  Output is deterministic:
 * services sorted by name, endpoints by id. */
int scout_snapshot_encode(const char *ensemble, int64_t written_at_ms,
                          const scout_snapshot_service_t *svcs, int n,
                          char **buf, size_t *len, char *err);

/* The same, except that a service the reader would refuse (an endpoint
 * breaking the format's rules, a string or count over its limit, or a list
 * that would take the file past SCOUT_SNAPSHOT_MAX_SIZE) is left out rather
 * than failing the file: one service's data never stops the others from
 * being written.  *left_out counts them; the first reason goes to err (""
 * when none).  Two services with one name still fail the whole file. */
int scout_snapshot_encode_each(const char *ensemble, int64_t written_at_ms,
                               const scout_snapshot_service_t *svcs, int n,
                               char **buf, size_t *len, int *left_out,
                               char *err);

/* One service's record in the file, encoded once and immutable after: the
 * agent keeps it while the service's index and zxids stay the same, so a
 * write costs the loop only the services that changed, and the writer
 * thread assembles the file from the records (scout_snapshot_assemble).
 * The reference count is atomic: a record may be released by any thread.
 * Its bytes may go back to the file they were written to
 * (scout_snapshot_rec_release); scout_snapshot_assemble then refuses it. */
typedef struct scout_snapshot_rec_s scout_snapshot_rec_t;

/* The record of sv (copied: nothing of sv is kept), one reference.  NULL
 * with the reason in err when the reader would refuse it (the same checks
 * as scout_snapshot_encode) or memory ran out. */
scout_snapshot_rec_t *scout_snapshot_rec_new(const scout_snapshot_service_t *sv,
                                             char *err);
scout_snapshot_rec_t *scout_snapshot_rec_ref(scout_snapshot_rec_t *r);
void scout_snapshot_rec_unref(scout_snapshot_rec_t *r);
size_t scout_snapshot_rec_size(const scout_snapshot_rec_t *r);
/* The record's bytes as in the file, or NULL once given back to the file
 * (scout_snapshot_rec_release); the service's name (not NUL-terminated,
 * *len bytes).  For the journal (snapshot_journal.h). */
const void *scout_snapshot_rec_data(const scout_snapshot_rec_t *r);
const void *scout_snapshot_rec_name(const scout_snapshot_rec_t *r,
                                    size_t *len);

/* The file's bytes from records (in any order: they are sorted by name
 * here, unless they come in that order), exactly what
 * scout_snapshot_encode_each gives for the same services.  Touches nothing but its arguments, so it may run in a worker
 * thread.  A record that would take the file past SCOUT_SNAPSHOT_MAX_SIZE
 * is left out and counted in *left_out (first reason in err); two records
 * with one name fail the whole file.  recs is reordered. */
int scout_snapshot_assemble(const char *ensemble, int64_t written_at_ms,
                            scout_snapshot_rec_t **recs, int n, char **buf,
                            size_t *len, int *left_out, char *err);

/* The file the records were last committed to.  A record written there
 * may give its bytes back (scout_snapshot_rec_release): the next commit
 * reads them from this file instead of keeping them in memory for the
 * whole life of the service (at 10,000 x 10 that is the file's 5.5 MB).
 * Owned by the caller, used by one commit at a time; zero-initialise with
 * SCOUT_SNAPSHOT_FILE_INIT, close with scout_snapshot_file_close. */
typedef struct {
    int      fd;        /* the file as this process wrote it; -1: none  */
    uint64_t id;        /* which commit wrote it; changes when it goes  */
    /* What the last commit wrote, known before its rename made it visible:
     * the header's checksum and the file's fstat (device, inode, size,
     * mtime).  Whoever names this file later (the journal, the side file)
     * names these, never what a read by name finds after the rename: an
     * edit made in between would be taken for the agent's own file. */
    uint64_t sum;
    struct stat written;
} scout_snapshot_file_t;

#define SCOUT_SNAPSHOT_FILE_INIT { -1, 0, 0, { 0 } }

/* Forgets the file: every record that gave its bytes back is then stale
 * (scout_snapshot_rec_current says 0) and must be encoded again. */
void scout_snapshot_file_close(scout_snapshot_file_t *f);

/* f is now fd (readable, owned by f), a file of its own (the journal's:
 * snapshot_journal.h): what was written to f before is stale. */
void scout_snapshot_file_adopt(scout_snapshot_file_t *f, int fd);

/* r's bytes are in file at off, as encoded (the journal appended them):
 * r may give them back (scout_snapshot_rec_release(r, file)) and a commit
 * reads them from there. */
void scout_snapshot_rec_written(scout_snapshot_rec_t *r,
                                const scout_snapshot_file_t *file,
                                uint64_t off);

/* scout_snapshot_assemble + scout_snapshot_commit without the file in one
 * buffer: the records are written where they are (writev) and the checksum
 * taken over them in place, so a write copies nothing but into the file.
 * A record whose bytes went back to the file (or to journal, the journal
 * beside it) is read from there (pread, into pages unmapped once written;
 * each record checked against its own XXH64 taken when it was encoded).
 * file and journal may be NULL when no record gave its bytes back to
 * them.  Once written, file is the new file and holds every record kept
 * (journal is left to the caller: snapshot_journal.h rebases it).
 * SCOUT_AGAIN when such a record cannot be read back as it was written
 * (a file changed under the agent, or is not the one the record was
 * written to): nothing is replaced, file and journal are forgotten, and
 * every record must be encoded again.  *len: the file's size once
 * written. */
int scout_snapshot_commit_recs(const char *dir, const char *ensemble,
                               int64_t written_at_ms,
                               scout_snapshot_rec_t **recs, int n,
                               scout_snapshot_file_t *file,
                               scout_snapshot_file_t *journal,
                               size_t *len, int *left_out, char *err);

/* Frees r's bytes when file holds them (r was in the last commit to it);
 * else does nothing.  Not while a commit that uses r is in flight. */
void scout_snapshot_rec_release(scout_snapshot_rec_t *r,
                                const scout_snapshot_file_t *file);

/* 1 while r can be written: its bytes in memory, or in file or journal
 * (either may be NULL) as they were written there; 0 once that file is
 * gone (encode the service again). */
int scout_snapshot_rec_current(const scout_snapshot_rec_t *r,
                               const scout_snapshot_file_t *file,
                               const scout_snapshot_file_t *journal);

/* Put encoded bytes at DIR/scout.snapshot, atomically and durably: write
 * DIR/scout.snapshot.tmp (mode 0600), fsync it, rename it over the old file,
 * fsync DIR.  On any failure before the rename the temp file is removed and
 * the old snapshot is untouched.  DIR must exist.  Blocking. */
int scout_snapshot_commit(const char *dir, const void *buf, size_t len,
                          char *err);

/* encode (stamped with the current wall clock) + commit. */
int scout_snapshot_write(const char *dir, const char *ensemble,
                         const scout_snapshot_service_t *svcs, int n,
                         char *err);

typedef struct scout_snapshot_s scout_snapshot_t;

/* Read and validate a snapshot file, with the journal beside it applied
 * (snapshot_journal.h; read where they are, snapshot_merge.h: the state a
 * fold of the two gives); NULL with the reason in err
 * ("snapshot PATH: checksum mismatch ...") when it is not usable. */
scout_snapshot_t *scout_snapshot_read(const char *path, char *err);
/* The same from memory (buf is not kept); label names it in messages. */
scout_snapshot_t *scout_snapshot_parse(const void *buf, size_t len,
                                       const char *label, char *err);
void scout_snapshot_free(scout_snapshot_t *s);

int         scout_snapshot_count(const scout_snapshot_t *s);
/* Index of the service with this name, or -1. O(log n). */
int         scout_snapshot_find(const scout_snapshot_t *s, const char *name);
/* The i-th service (0 <= i < count), sorted by name; see the type. */
void        scout_snapshot_get(const scout_snapshot_t *s, int i,
                               scout_snapshot_service_t *out);
/* Move the i-th service's endpoints into dst, which must be initialised
 * (its old content is freed); the snapshot keeps an empty set. */
void        scout_snapshot_take(scout_snapshot_t *s, int i,
                                scout_epset_t *dst);
int64_t     scout_snapshot_written_at_ms(const scout_snapshot_t *s);
const char *scout_snapshot_ensemble(const scout_snapshot_t *s);
/* What the journal beside the file did (snapshot_journal.h: records
 * applied, a torn tail or another base's journal ignored), "" for none:
 * for logs. */
const char *scout_snapshot_note(const scout_snapshot_t *s);
/* "scout 0.1.0": who wrote it, for logs. */
const char *scout_snapshot_writer(const scout_snapshot_t *s);

/* SCOUT_OK when the snapshot was written for the same ZooKeeper data as
 * the connect string given: the same chroot and at least one host:port in
 * common (case-insensitive, order ignored), so replacing ensemble members
 * one by one keeps the snapshot but another cluster or namespace does not.
 * SCOUT_ERROR with "snapshot written for ensemble A, not B" otherwise. */
int scout_snapshot_check_ensemble(const scout_snapshot_t *s,
                                  const char *ensemble, char *err);
/* The same for the ensemble a snapshot names (snapshot_lazy.h's). */
int scout_snapshot_same_ensemble(const char *written, const char *ensemble,
                                 char *err);

#endif
