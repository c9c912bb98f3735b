/*
 * persist.c -- when the disk snapshot is written (see persist.h; what a
 * start reads from it is persist_load.c).
 *
 * A write is two halves, and the loop's half does not grow with the
 * registry.  Each service's record in the file is encoded once per index
 * (and zxids) and kept in an array in name order (svcmap.h, sorted once per
 * list, the order the file needs, so no write sorts): a publish
 * names its service (svcmap.h finds its slot), and a write re-encodes only
 * the services named since the last one -- all of them only for a new
 * list.  The writer thread is lent the array itself (the loop leaves it
 * alone while a write is out and only marks what changes meanwhile), so
 * handing it over costs nothing per service.  The writer thread
 * (writer.h) gathers the records and commits the file from them where
 * they are (checksum, writev, fsync, rename, fsync of the directory: no
 * copy of the registry but the file's), taking as long as the disk
 * likes.  Once written, a record's bytes go back to the file, or to the
 * journal it was appended to (snapshot.h): the next write reads an
 * unchanged service from there, so the agent does not hold a second copy
 * of either file between writes; the loop hears back
 * through an ev_async.  At most one write is in
 * flight: a change during a commit is written a second later, from the
 * newest state (coalesced, never queued).  A failed write is tried again
 * (1 s, doubling to a minute) without waiting for another change: the
 * snapshot on disk must catch up once the disk is back.
 *
 * One service's data never stops the file: a service the format cannot
 * hold is left out of it (logged, counted) and the others are written.  A
 * write that fails for any other reason (disk full, permissions) is counted
 * and makes /v1/health fail until a write succeeds.
 */
#include "publish/persist.h"
#include "publish/persist_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"
#include "publish/snapshot.h"
#include "publish/snapshot_journal.h"
#include "publish/snapside.h"
#include "publish/svcmap.h"
#include "publish/writer.h"
#include "rcbuf.h"

/* What the loop hands the writer thread and what comes back. */
struct job {
    int     full;           /* the whole file; else a journal append    */
    scout_snapshot_rec_t **jrecs;   /* the append's: re-encoded since the
                                       last write, a reference each     */
    int     njrecs;
    size_t  jbytes;         /* what the append adds                     */
    char    jerr[SCOUT_ERR_LEN];    /* why an append became a full write */
    unsigned side_gen;      /* of p->side, when full                    */
    const struct cached *lent;  /* p->cache, [nlent]: the loop's, lent  */
    int     nlent;
    scout_snapshot_rec_t **recs;  /* gathered from lent by the thread   */
    int     nrecs;
    int64_t written_at_ms;
    size_t  len;            /* of the file written                      */
    int     nservices;
    int     encoded;        /* records re-encoded on the loop           */
    int     left_out;       /* by the format's rules or its size limit  */
    double  encode_ms;      /* on the loop                              */
    double  commit_ms;      /* in the writer thread                     */
    int     rc;
    char    err[SCOUT_ERR_LEN];
    char    why[SCOUT_ERR_LEN]; /* the first service left out, or ""     */
    scout_rcbuf_t *side;    /* the side file to write after it: a
                               reference taken and dropped on the loop,
                               the bytes copied in the writer thread */
    int     side_rc;
    char    side_err[SCOUT_ERR_LEN];
};

/* Write in s seconds unless a write is due sooner. */
static void
write_in(scout_persist_t *p, double s)
{
    if (ev_is_active(&p->timer))
        return;
    ev_timer_set(&p->timer, s, 0.);
    ev_timer_start(p->loop, &p->timer);
}

/* A write failed (reason logged by the caller): count it, keep the state
 * dirty and try again later, backing off. */
static void
retry_write(scout_persist_t *p, const char *err)
{
    scout_stats.snapshot_write_failures++;
    if (p->failing_ms == 0)
        p->failing_ms = scout_wall_ms();
    snprintf(p->last_err, sizeof(p->last_err), "%s", err);
    p->dirty = 1;
    write_in(p, p->backoff);
    p->backoff = p->backoff < 30 ? p->backoff * 2 : 60;
}

static void
job_free(struct job *j)
{
    if (j == NULL)
        return;
    for (int i = 0; i < j->njrecs; i++)
        scout_snapshot_rec_unref(j->jrecs[i]);
    free(j->jrecs);
    free(j->recs);              /* the records are lent, not its own */
    scout_rcbuf_unref(j->side);
    free(j);
}

static void
cache_free(struct cached *cache, int n)
{
    for (int i = 0; cache != NULL && i < n; i++) {
        scout_snapshot_rec_unref(cache[i].rec);
        free(cache[i].why);
    }
    free(cache);
}

static void
cache_clear(scout_persist_t *p)
{
    cache_free(p->cache, p->n);
    p->cache = NULL;
    scout_svcmap_marks_free(&p->marks);
}

/* The per-service arrays for p->services; SCOUT_ERROR when out of
 * memory. */
static int
cache_make(scout_persist_t *p)
{
    size_t n = (size_t)(p->n ? p->n : 1);

    p->cache = calloc(n, sizeof(*p->cache));
    if (p->cache == NULL
        || scout_svcmap_marks_build(&p->marks, (void *const *)p->services,
                                    p->n, scout_service_by_name)
           != SCOUT_OK) {
        cache_clear(p);
        return SCOUT_ERROR;
    }
    return SCOUT_OK;
}

/* The record of service i as published now: the cached one while its
 * index and zxids hold, else encoded again.  NULL when it is left out
 * (reason in c->why) or out of memory (err). */
static scout_snapshot_rec_t *
record_of(scout_persist_t *p, int i, int *encoded, char *err)
{
    scout_service_t *s = p->marks.keys[i];
    struct cached *c = &p->cache[i];
    scout_snapshot_service_t sv;

    sv.index = scout_service_index(s);
    scout_service_zxids(s, &sv.pzxid, &sv.max_mzxid);
    if (c->svc == s && c->index == sv.index && c->pzxid == sv.pzxid
        && c->max_mzxid == sv.max_mzxid
        && (c->rec != NULL ? scout_snapshot_rec_current(c->rec, &p->last,
                                                        &p->journal.file)
                           : c->why != NULL))
        return c->rec;
    scout_snapshot_rec_unref(c->rec);
    free(c->why);
    memset(c, 0, sizeof(*c));
    c->serving = 1;
    sv.name = scout_service_name(s);
    sv.path = scout_service_path(s);
    sv.eps = scout_service_epset(s);
    (*encoded)++;
    err[0] = '\0';
    if ((c->rec = scout_snapshot_rec_new(&sv, err)) == NULL) {
        if (strstr(err, "out of memory") != NULL)
            return NULL;        /* not cached: tried again next time */
        if ((c->why = strdup(err)) == NULL)
            return NULL;
    }
    c->svc = s;
    c->index = sv.index;
    c->pzxid = sv.pzxid;
    c->max_mzxid = sv.max_mzxid;
    return c->rec;
}

/* A record for the journal append (a reference). */
static int
journal_add(struct job *j, scout_snapshot_rec_t *r, int cap)
{
    if (j->jrecs == NULL
        && (j->jrecs = malloc((size_t)(cap ? cap : 1) * sizeof(*j->jrecs)))
           == NULL)
        return SCOUT_ERROR;
    j->jrecs[j->njrecs++] = scout_snapshot_rec_ref(r);
    j->jbytes += scout_snapshot_rec_size(r);
    return SCOUT_OK;
}

/* Slot i as published now: SCOUT_ERROR only when out of memory.  A
 * service encoded again goes to the job's journal append; one that leaves
 * the file (no longer served, or now left out) makes the write a full
 * one: the journal only adds and replaces services. */
static int
refresh(scout_persist_t *p, int i, struct job *j, char *err)
{
    struct cached *c = &p->cache[i];
    int had = c->serving && c->rec != NULL, encoded = j->encoded;

    if (!scout_service_serving(p->marks.keys[i])) {
        c->serving = 0;
        j->full |= had;
        return SCOUT_OK;
    }
    if (record_of(p, i, &j->encoded, err) == NULL && c->why == NULL)
        return SCOUT_ERROR;
    c->serving = 1;
    if (c->rec == NULL)
        j->full |= had;
    else if (j->encoded != encoded && !j->full
             && journal_add(j, c->rec, p->n) != SCOUT_OK)
        return SCOUT_ERROR;
    return SCOUT_OK;
}

/* The published state: the services named since the last write are
 * encoded again, and the job is lent the per-service array; NULL (logged)
 * on failure. */
static struct job *
encode_now(scout_persist_t *p)
{
    struct job *j = calloc(1, sizeof(*j));
    double t0 = scout_now_ms();
    char err[SCOUT_ERR_LEN];

    if (j == NULL || (p->cache == NULL && cache_make(p) != SCOUT_OK))
        goto oom;
    /* the whole file when the journal cannot say it: a new list, the
     * first write of this process (it has no base of its own), a failure
     * since the last good write (what it named is not on disk), a new
     * side file (written after full writes only) */
    j->full = p->marks.all || p->need_full || p->last.fd < 0
              || p->side_gen != p->side_done;
    if (p->marks.all) {
        for (int i = 0; i < p->n; i++)
            if (refresh(p, i, j, err) != SCOUT_OK)
                goto oom;
        p->marks.all = 0;
    }
    for (int i; (i = scout_svcmap_next(&p->marks)) >= 0;) {
        if (refresh(p, i, j, err) != SCOUT_OK)
            goto oom;
        scout_svcmap_taken(&p->marks);
    }
    /* compaction: the journal stays under a quarter of the base, so a
     * cold start reads at most 1.25 times the state, and an append costs
     * a base rewrite only every (base / 4) bytes of changes */
    if (p->journal.end + SCOUT_JOURNAL_REC_HDR + 12 + j->jbytes
        > p->journal.base_len / 4)
        j->full = 1;
    if (j->full) {
        for (int i = 0; i < j->njrecs; i++)
            scout_snapshot_rec_unref(j->jrecs[i]);
        j->njrecs = 0;
    }
    if (j->full && p->side != NULL) /* no copy on the loop: 330 KB */
        j->side = scout_rcbuf_ref(p->side);
    j->side_gen = p->side_gen;
    j->lent = p->cache;
    j->nlent = p->n;
    j->written_at_ms = scout_wall_ms();
    j->encode_ms = scout_now_ms() - t0;
    return j;

oom:
    scout_log(SCOUT_LOG_WARN, "persist", "writing the snapshot: out of "
              "memory; will retry in %.0f s", p->backoff);
    job_free(j);
    p->need_full = 1;           /* the marks taken are not on disk */
    retry_write(p, "out of memory");
    return NULL;
}

/* In the writer thread: the records of the lent array, in name order;
 * what the format cannot hold is counted, the first reason kept. */
static int
gather(struct job *j)
{
    if ((j->recs = malloc((size_t)(j->nlent ? j->nlent : 1)
                          * sizeof(*j->recs))) == NULL)
        return SCOUT_ERROR;
    for (int i = 0; i < j->nlent; i++) {
        const struct cached *c = &j->lent[i];

        if (!c->serving)
            continue;
        if (c->rec != NULL) {
            j->recs[j->nrecs++] = c->rec;
        } else if (j->left_out++ == 0) {
            snprintf(j->why, sizeof(j->why), "%s", c->why);
        }
    }
    return SCOUT_OK;
}

/* In the writer thread (or on the loop without one): the file from the
 * records, on disk.  Touches only the job, the
 * immutable records and the files. */
static void
commit(void *owner, void *job)
{
    scout_persist_t *p = owner;
    struct job *j = job;
    double t0 = scout_now_ms();
    int more = 0;

    if (!j->full) {
        /* the changed services only, appended to the journal */
        j->rc = scout_journal_append(&p->journal, p->dir, j->written_at_ms,
                                     j->jrecs, j->njrecs, &j->len, j->err);
        if (j->rc == SCOUT_OK) {    /* the journal holds them now */
            for (int i = 0; i < j->njrecs; i++)
                scout_snapshot_rec_release(j->jrecs[i], &p->journal.file);
            j->nservices = j->njrecs;
            j->commit_ms = scout_now_ms() - t0;
            return;
        }
        /* the whole file instead, now: it needs no journal */
        snprintf(j->jerr, sizeof(j->jerr), "%s", j->err);
        j->full = 1;
        j->err[0] = '\0';
    }
    if (gather(j) != SCOUT_OK) {
        j->rc = SCOUT_ERROR;
        snprintf(j->err, sizeof(j->err), "out of memory");
        j->commit_ms = scout_now_ms() - t0;
        return;
    }
    /* written from the records where they are: a write copies the registry
     * only into the file, not into a buffer first */
    j->rc = scout_snapshot_commit_recs(p->dir, p->ensemble, j->written_at_ms,
                                       j->recs, j->nrecs, &p->last,
                                       &p->journal.file, &j->len, &more,
                                       j->err);
    if (j->rc == SCOUT_OK) {    /* the file holds them now */
        for (int i = 0; i < j->nrecs; i++)
            scout_snapshot_rec_release(j->recs[i], &p->last);
        /* the next appends name this base, as written (not as the file
         * is found now: it may have been edited since the rename); the
         * old journal goes */
        scout_journal_rebase_written(&p->journal, p->dir, &p->last,
                                     j->len - SCOUT_SNAPSHOT_HDR_LEN);
    }
    if (more > 0 && j->left_out == 0)
        snprintf(j->why, sizeof(j->why), "%s", j->err);
    j->left_out += more;
    j->nservices = j->nrecs - more;
    /* the side file after the snapshot it vouches for (its checksum): a
     * crash in between leaves the old one, which then vouches for nothing
     * and the next start is a normal one */
    if (j->rc == SCOUT_OK && j->side != NULL) {
        size_t len = j->side->len;
        char *side = malloc(len);

        j->side_rc = side == NULL
            ? scout_seterr(j->side_err, "out of memory") : SCOUT_OK;
        if (j->side_rc == SCOUT_OK) {
            /* the checksum written, not one read back by name (an edit
             * since the rename must not be vouched for) */
            memcpy(side, j->side->data, len);
            scout_snapside_set_sum(side, len, p->last.sum);
            j->side_rc = scout_snapside_write(p->dir, side, len, 1,
                                              j->side_err);
        }
        free(side);
    }
    j->commit_ms = scout_now_ms() - t0;
}

/* On the loop: say how a write went and free it. */
static void
collect(void *owner, void *job)
{
    scout_persist_t *p = owner;
    struct job *j = job;

    cache_free(p->old_cache, p->old_n);     /* the job was their last user */
    p->old_cache = NULL;
    if (j->jerr[0] != '\0')
        scout_log(SCOUT_LOG_WARN, "persist", "appending to the snapshot's "
                  "journal: %s; the whole snapshot written instead",
                  j->jerr);
    /* what this write named is not on disk, or the journal cannot name
     * the base: the next write is the whole file */
    p->need_full = j->rc != SCOUT_OK;
    if (j->rc == SCOUT_OK && j->full)
        p->side_done = j->side_gen;
    if (j->left_out > 0) {
        scout_stats.snapshot_services_left_out += (uint64_t)j->left_out;
        scout_log(SCOUT_LOG_WARN, "persist", "writing the snapshot: %d "
                  "service%s left out, the others written: %s", j->left_out,
                  j->left_out == 1 ? "" : "s", j->why);
    }
    if (j->rc == SCOUT_OK && j->side != NULL && j->side_rc != SCOUT_OK)
        scout_log(SCOUT_LOG_WARN, "persist", "writing the snapshot's side "
                  "file: %s (the next start is a normal one)", j->side_err);
    if (j->rc == SCOUT_AGAIN) {
        /* the last file is not what was written: every service is encoded
         * again for the next write (soon: this is not the disk failing,
         * unless it happens twice in a row) */
        scout_stats.snapshot_read_back_failures++;
        scout_log(SCOUT_LOG_WARN, "persist", "writing the snapshot: %s; "
                  "every service is encoded again", j->err);
        p->marks.all = 1;
        if (p->read_back_failed)
            retry_write(p, j->err);
        else {
            p->dirty = 1;
            write_in(p, 0.);
        }
        p->read_back_failed = 1;
    } else if (j->rc != SCOUT_OK) {
        scout_log(SCOUT_LOG_WARN, "persist", "writing the snapshot: %s; "
                  "will retry in %.0f s", j->err, p->backoff);
        retry_write(p, j->err);
    } else {
        scout_stats.snapshot_writes++;
        if (j->full)
            scout_stats.snapshot_compactions++;
        else
            scout_stats.snapshot_journal_appends++;
        p->read_back_failed = 0;
        if (p->failing_ms != 0)
            scout_log(SCOUT_LOG_INFO, "persist", "the snapshot is written "
                      "again after %.0f s of failures",
                      (double)(scout_wall_ms() - p->failing_ms) / 1000);
        p->failing_ms = 0;
        p->written_ms = scout_wall_ms();
        p->backoff = 1.0;
        if (p->dirty)           /* changed while this one was committed */
            write_in(p, 1.0);
        scout_log(SCOUT_LOG_DEBUG, "persist", "wrote %d services to %s in "
                  "%.1f ms (%.1f MB; encoded in %.1f ms on the loop, %d "
                  "service%s re-encoded, committed in %.1f ms by the writer "
                  "thread)", j->nservices,
                  j->full ? p->file : SCOUT_JOURNAL_FILE " (appended)",
                  j->encode_ms + j->commit_ms, (double)j->len / (1 << 20),
                  j->encode_ms, j->encoded, j->encoded == 1 ? "" : "s",
                  j->commit_ms);
    }
    job_free(j);
}

static void
write_soon(scout_persist_t *p)
{
    struct job *j;

    if (scout_writer_busy(&p->writer))
        return;                 /* dirty stays set: collect() re-arms */
    p->dirty = 0;
    if ((j = encode_now(p)) == NULL)
        return;                 /* retry_write() was called */
    scout_writer_submit(&p->writer, j);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_persist_t *p = t->data;
    (void)loop;
    (void)revents;

    if (p->dirty)
        write_soon(p);
}

scout_persist_t *
scout_persist_new(struct ev_loop *loop, const char *dir, int64_t max_age_ms,
                  const char *ensemble, scout_service_t **services, int n,
                  char *err)
{
    scout_persist_t *p = calloc(1, sizeof(*p));
    size_t len = strlen(dir) + sizeof(SCOUT_SNAPSHOT_FILE) + 2;
    int rc;

    if (p == NULL)
        goto oom;
    p->last = (scout_snapshot_file_t)SCOUT_SNAPSHOT_FILE_INIT;
    p->journal = (scout_journal_t)SCOUT_JOURNAL_INIT;
    p->dir = strdup(dir);
    p->ensemble = strdup(ensemble);
    p->file = malloc(len);
    if (p->dir == NULL || p->ensemble == NULL || p->file == NULL)
        goto oom;
    snprintf(p->file, len, "%s/%s", dir, SCOUT_SNAPSHOT_FILE);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, SCOUT_ERR_LEN, "cache dir %s: %s", dir,
                 strerror(errno));
        scout_persist_free(p);
        return NULL;
    }
    p->loop = loop;
    p->max_age_ms = max_age_ms;
    p->services = services;
    p->n = n;
    ev_timer_init(&p->timer, on_timer, 1.0, 0.);
    p->backoff = 1.0;
    p->timer.data = p;
    if ((rc = scout_writer_start(&p->writer, loop, commit, collect, p)) != 0)
        scout_log(SCOUT_LOG_WARN, "persist", "no writer thread (%s): "
                  "snapshots are written on the loop", strerror(rc));
    return p;

oom:
    snprintf(err, SCOUT_ERR_LEN, "out of memory");
    scout_persist_free(p);
    return NULL;
}

void
scout_persist_changed(scout_persist_t *p, scout_service_t *svc)
{
    scout_svcmap_mark(&p->marks, svc);
    /* (a service not in the map: the arrays are made, every slot
     * refreshed, at the next write) */
    p->dirty = 1;
    write_in(p, 1.0);
}

/* Waits for the write in flight, then writes what changed since, on the
 * loop: at shutdown nothing else is left to do.  The last write is a full
 * one whenever a journal is on disk: a stopped agent leaves the base
 * alone, so the next start reads one file (only a crash leaves a journal
 * beside it). */
void
scout_persist_flush(scout_persist_t *p)
{
    struct job *j;

    if ((j = scout_writer_wait(&p->writer)) != NULL)
        collect(p, j);
    if (!p->dirty && p->journal.file.fd < 0)
        return;
    p->need_full = 1;
    /* once more when the last file was found changed under us: written
     * again from services all encoded again (collect() leaves it dirty) */
    for (int tries = 0; tries < 2; tries++) {
        p->dirty = 0;
        if ((j = encode_now(p)) == NULL)
            return;
        commit(p, j);
        collect(p, j);
        if (!p->read_back_failed || !p->dirty)
            return;
    }
}

int
scout_persist_write_failing(const scout_persist_t *p, char *reason,
                            size_t len)
{
    if (p->failing_ms == 0)
        return 0;
    snprintf(reason, len, "the disk snapshot %s has not been written for "
             "%.0f s: %s", p->file,
             (double)(scout_wall_ms() - p->failing_ms) / 1000, p->last_err);
    return 1;
}

int64_t
scout_persist_written_ms(const scout_persist_t *p)
{
    return p->written_ms;
}

void
scout_persist_set_services(scout_persist_t *p, scout_service_t **services, int n)
{
    if (scout_writer_busy(&p->writer) && p->old_cache == NULL
        && p->cache != NULL) {
        /* the write in flight reads it: freed when it is collected */
        p->old_cache = p->cache;
        p->old_n = p->n;
        p->cache = NULL;
    }
    cache_clear(p);             /* encoded again once, for the new list */
    p->services = services;
    p->n = n;
}

void
scout_persist_set_side(scout_persist_t *p, const char *buf, size_t len)
{
    scout_rcbuf_unref(p->side);     /* a write in flight keeps its own */
    p->side = buf != NULL ? scout_rcbuf_copy(buf, len) : NULL;
    p->side_gen++;
}

void
scout_persist_adopt_side(scout_persist_t *p, char *buf, size_t len)
{
    scout_rcbuf_unref(p->side);
    p->side = buf != NULL ? scout_rcbuf_adopt(buf, len) : NULL;
    if (p->side == NULL)
        free(buf);              /* (out of memory: none, as a NULL) */
    p->side_gen++;
}

void
scout_persist_free(scout_persist_t *p)
{
    if (p == NULL)
        return;
    job_free(scout_writer_stop(&p->writer));    /* after any write in flight */
    if (p->loop != NULL)
        ev_timer_stop(p->loop, &p->timer);
    cache_clear(p);
    cache_free(p->old_cache, p->old_n);
    scout_snapshot_file_close(&p->last);
    scout_journal_close(&p->journal);
    free(p->dir);
    free(p->file);
    free(p->ensemble);
    scout_rcbuf_unref(p->side);
    free(p);
}
