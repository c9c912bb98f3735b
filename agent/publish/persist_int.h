/*
 * persist_int.h -- private to persist.c and persist_load.c: the disk
 * snapshot's state as both halves see it.  persist.c writes the snapshot
 * (what is encoded when, the writer thread's job, retries); persist_load.c
 * reads it at a start and says how old what it served is.  Nothing else
 * includes it; persist.h stays the module's whole interface.
 */
#ifndef SCOUT_PERSIST_INT_H
#define SCOUT_PERSIST_INT_H

#include <ev.h>
#include <stdint.h>

#include "scout.h"
#include "service.h"
#include "publish/snapshot.h"
#include "publish/snapshot_journal.h"
#include "publish/svcmap.h"
#include "publish/writer.h"
#include "rcbuf.h"

/* A service's record as last encoded, valid while the service (the same
 * object) has the same index and zxids; rec NULL with a reason when the
 * format cannot hold its list (left out of every write until it changes). */
struct cached {
    const scout_service_t *svc;
    int                    serving;  /* else not in the file at all */
    uint64_t               index;
    int64_t                pzxid, max_mzxid;
    scout_snapshot_rec_t  *rec;
    char                  *why;
};

struct scout_persist_s {
    struct ev_loop   *loop;
    char             *dir;
    char             *file;
    char             *ensemble;
    int64_t           max_age_ms;
    scout_service_t **services;
    int               n;
    struct cached    *cache;       /* [n], slot i: marks.keys[i]     */
    scout_svcmap_marks_t marks;    /* slots named since the last write */
    struct cached    *old_cache;   /* a replaced list's, lent to the  */
    int               old_n;       /*   write in flight               */
    ev_timer          timer;       /* one-shot: the next write       */
    int               dirty;
    double            backoff;     /* after a failed write, seconds  */
    int64_t           loaded_at_ms;/* written_at of what we loaded, or 0 */
    int64_t           written_ms;  /* wall clock of the last good write */
    int64_t           failing_ms;  /* of the first failure since, or 0  */
    scout_snapshot_file_t last;    /* the last written: the writer's while
                                    * a write is out, the loop's between */
    int               read_back_failed; /* the last write's SCOUT_AGAIN */
    char              last_err[SCOUT_ERR_LEN];
    scout_writer_t    writer;
    scout_rcbuf_t    *side;        /* snapside.h, or NULL: none written */
    unsigned          side_gen;    /* bumped when side is replaced...    */
    unsigned          side_done;   /* ...and the one last written        */
    scout_journal_t   journal;     /* like last: the writer's while a
                                    * write is out, the loop's between   */
    int               need_full;   /* the next write is the whole file   */
    int               loaded_clean;/* the start read every service whole */
    uint64_t          loaded_sum;  /*   from the snapshot with this sum  */
};

#endif
