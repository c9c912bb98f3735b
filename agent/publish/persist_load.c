/*
 * persist_load.c -- what a start reads from the disk snapshot, and how old
 * what it serves from it is (see persist.h; persist.c writes the file).
 *
 * Why a file of its own: reading is a different concern from writing.  A
 * start reads the file once (or takes what the early start already read
 * and checked, persist_stage.c), seeds each service whose name and path
 * still match, and then only answers questions about it: whether a
 * service still served from it is older than max_age (/v1/health), and
 * whether every service was read whole (the shm's and the side file's
 * hand-over).  What is read back is trusted no more than ZooKeeper: every
 * endpoint passes endpoint.h's rule or is dropped and counted.
 */
#include "publish/persist.h"
#include "publish/persist_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "heap.h"
#include "log.h"
#include "scout.h"
#include "publish/snapshot.h"
#include "publish/snapshot_lazy.h"
#include "publish/snapside.h"

void
scout_persist_load(scout_persist_t *p)
{
    char err[SCOUT_ERR_LEN];
    scout_snapshot_t *snap;
    int seeded = 0, clean = 1;
    struct stat st;

    if (lstat(p->file, &st) != 0) {
        scout_log(SCOUT_LOG_INFO, "persist", "no snapshot at %s: a first "
                  "start", p->file);
        return;
    }
    snap = scout_snapshot_read(p->file, err);
    if (snap == NULL) {
        scout_log(SCOUT_LOG_WARN, "persist", "ignoring the snapshot: %s",
                  err);
        return;
    }
    if (scout_snapshot_note(snap)[0] != '\0')
        scout_log(SCOUT_LOG_INFO, "persist", "%s",
                  scout_snapshot_note(snap));
    if (scout_snapshot_check_ensemble(snap, p->ensemble, err) != SCOUT_OK) {
        scout_log(SCOUT_LOG_WARN, "persist", "ignoring the snapshot: %s",
                  err);
        scout_snapshot_free(snap);
        return;
    }
    for (int i = 0; i < p->n; i++) {
        scout_service_t *s = p->services[i];
        int k = scout_snapshot_find(snap, scout_service_name(s));
        scout_snapshot_service_t ss;
        scout_epset_t eps;
        unsigned bad;

        if (k < 0)
            continue;
        scout_snapshot_get(snap, k, &ss);
        if (strcmp(ss.path, scout_service_path(s)) != 0)
            continue;           /* the policy moved it: not the same list */
        scout_epset_init(&eps);
        scout_snapshot_take(snap, k, &eps);
        /* checksummed is not trusted: a hand-edited or foreign file gets
         * the codecs' rule like any znode */
        bad = scout_epset_drop_invalid(&eps, err, SCOUT_ERR_LEN);
        clean &= bad == 0;
        if (bad > 0)
            scout_log(SCOUT_LOG_WARN, "persist", "snapshot %s: service %s: "
                      "dropped %u invalid endpoint%s, serving the other %u "
                      "(first: %s)", p->file, scout_service_name(s), bad,
                      bad == 1 ? "" : "s", eps.n, err);
        scout_service_seed(s, &eps, ss.index, ss.pzxid, ss.max_mzxid, bad);
        seeded++;
        scout_heap_populate_check();    /* at start: see heap.h */
    }
    p->loaded_at_ms = scout_snapshot_written_at_ms(snap);
    p->loaded_clean = clean
        && scout_snapside_snapshot_sum(p->file, &p->loaded_sum, err)
           == SCOUT_OK;
    scout_log(SCOUT_LOG_INFO, "persist", "serving %d services from %s "
              "(written %lld s ago) until ZooKeeper confirms them", seeded,
              p->file, (long long)((scout_wall_ms() - p->loaded_at_ms) / 1000));
    scout_snapshot_free(snap);
}

/* scout_persist_load's record, for services seeded from what the early
 * start read and checked (persist_stage.c): no second read of the file,
 * no second checksum. */
void
scout_persist_load_staged(scout_persist_t *p, const scout_persist_stage_t *st)
{
    const scout_snaplazy_t *z = scout_persist_stage_snapshot(st);

    p->loaded_at_ms = scout_snaplazy_written_at_ms(z);
    p->loaded_clean = scout_persist_stage_clean(st);
    p->loaded_sum = scout_snaplazy_checksum(z);
    scout_log(SCOUT_LOG_INFO, "persist", "serving %d services from %s "
              "(written %lld s ago, as the early start read it) until "
              "ZooKeeper confirms them", scout_persist_stage_seeded(st),
              p->file,
              (long long)((scout_wall_ms() - p->loaded_at_ms) / 1000));
}

int
scout_persist_too_old(const scout_persist_t *p, char *reason, size_t len)
{
    int64_t age_ms;

    if (p->loaded_at_ms == 0)
        return 0;
    /* in ms: whole seconds on both sides made max_age up to 1 s longer */
    age_ms = scout_wall_ms() - p->loaded_at_ms;
    if (age_ms <= p->max_age_ms)
        return 0;
    for (int i = 0; i < p->n; i++) {
        if (scout_service_from_snapshot(p->services[i])) {
            snprintf(reason, len, "service %s is served from a snapshot "
                     "%.1f s old (max_age %.1f s)",
                     scout_service_name(p->services[i]),
                     (double)age_ms / 1000,
                     (double)p->max_age_ms / 1000);
            return 1;
        }
    }
    return 0;
}

int
scout_persist_loaded(const scout_persist_t *p, uint64_t *sum)
{
    *sum = p->loaded_sum;
    return p->loaded_clean;
}
