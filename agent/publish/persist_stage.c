/*
 * persist_stage.c -- the services' lists decoded from what the early start
 * already read and checked (snapshot_lazy.h), for the hand-over to seed the
 * services with (scout_persist_stage_seed; scout_persist_load_staged
 * records it in persist.c).
 *
 * Why: the early start (api/early.h) has the snapshot in memory, its
 * checksum checked and its services indexed; reading the file again and
 * checking it again when the policy is loaded cost the loop ~80 ms at
 * 10,000 x 10 while the early clients waited.  Decoding every list costs
 * most of that still, so it is done in slices (scout_persist_stage_step,
 * a deadline and a count each), on the loop's thread, before the agent's
 * services exist: the loop answers the early clients between slices, and
 * no ZooKeeper session exists yet, so nothing ZooKeeper says can be
 * overwritten by a seed and nothing is published half-seeded.  Each seed
 * is then moved into its service as the service is built (a pointer move,
 * before its session may read it: agent_early.c).  Every rule of
 * scout_persist_load holds: the same name and path (a moved path is not
 * the same list), endpoint.h's rule on every endpoint
 * (scout_epset_drop_invalid: checksummed is not trusted), a list the
 * format refuses refuses the file, the ensemble (scout_persist_stage_check,
 * against the policy's connect string, before any seed).
 *
 * Nothing here is done once per service outside a slice: the stage is
 * made in O(1) (the policy's names and paths borrowed, each seed set up by
 * the slice that decodes it), and freed in O(1) once every seed was taken
 * (the count of seeds still held), so the iteration that makes it and the
 * hand-over's last one do not grow with the registry (issue 14).
 */
#include "publish/persist.h"

#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "log.h"
#include "publish/snapshot.h"
#include "publish/snapshot_lazy.h"
#include "scout.h"

struct seed {
    int           k;            /* in the snapshot, -1: not seeded (set
                                   by stage_one: [next, n) are not) */
    unsigned      bad;          /* endpoints dropped by endpoint.h's rule */
    scout_epset_t eps;
};

struct taken {
    scout_epset_t eps;              /* the caller's now */
    uint64_t      index;
    int64_t       pzxid, max_mzxid;
    unsigned      bad;              /* endpoints dropped */
};

struct scout_persist_stage_s {
    const scout_snaplazy_t *z;  /* borrowed: the early server's */
    const char *label;          /* the file, for the log */
    struct seed *seeds;         /* [n], the policy's order */
    const char *const *names;   /* borrowed, strings and arrays: the */
    const char *const *paths;   /*   policy's conf, fixed until free */
    int          n, next;
    int          held;          /* seeds decoded and not taken yet */
    int          clean;         /* no endpoint dropped so far */
    int          seeded;        /* services seeded from it */
    char        *broken;        /* a list the format refuses: the full
                                   reader refuses the file, and so do we */
    int          slices;
    double       longest_ms, total_ms;
};

scout_persist_stage_t *
scout_persist_stage_new(const scout_snaplazy_t *z, const char *label,
                        const char *const *names, const char *const *paths,
                        int n)
{
    scout_persist_stage_t *st = calloc(1, sizeof(*st));
    size_t m = (size_t)(n > 0 ? n : 1);

    if (st == NULL)
        return NULL;
    st->z = z;
    st->label = label;
    st->n = n;
    st->clean = 1;
    st->names = names;
    st->paths = paths;
    /* (no loop over the services: stage_one sets each seed up) */
    if ((st->seeds = malloc(m * sizeof(*st->seeds))) == NULL) {
        free(st);
        return NULL;
    }
    return st;
}

/* One service: what scout_persist_load does with it, from the index. */
static void
stage_one(scout_persist_stage_t *st, int i)
{
    char err[SCOUT_ERR_LEN];
    struct seed *sd = &st->seeds[i];
    scout_snaplazy_service_t sv;
    int k = scout_snaplazy_find(st->z, st->names[i]);

    sd->k = -1;
    sd->bad = 0;
    scout_epset_init(&sd->eps);
    if (k < 0 || st->broken != NULL)
        return;
    scout_snaplazy_get(st->z, k, &sv);
    if (strcmp(sv.path, st->paths[i]) != 0)
        return;                 /* the policy moved it: not the same list */
    if (scout_snaplazy_decode(st->z, k, &sd->eps, err) != SCOUT_OK) {
        st->clean = 0;
        if (st->broken == NULL)
            st->broken = strdup(err);
        return;
    }
    sd->bad = scout_epset_drop_invalid(&sd->eps, err, SCOUT_ERR_LEN);
    st->clean &= sd->bad == 0;
    if (sd->bad > 0)
        scout_log(SCOUT_LOG_WARN, "persist", "snapshot %s: service %s: "
                  "dropped %u invalid endpoint%s, serving the other %u "
                  "(first: %s)", st->label, st->names[i], sd->bad,
                  sd->bad == 1 ? "" : "s", sd->eps.n, err);
    sd->k = k;
    st->held++;
    scout_heap_populate_check();    /* at start: see heap.h */
}

int
scout_persist_stage_step(scout_persist_stage_t *st, int64_t deadline_ns,
                         int max)
{
    int64_t t0 = scout_now_ns();
    double ms;

    for (int done = 0; st->next < st->n; done++) {
        if (done >= max || (done > 0 && scout_now_ns() >= deadline_ns))
            break;
        stage_one(st, st->next++);
    }
    ms = (double)(scout_now_ns() - t0) / 1e6;
    st->slices++;
    st->total_ms += ms;
    if (ms > st->longest_ms)
        st->longest_ms = ms;
    return st->next < st->n ? SCOUT_AGAIN : SCOUT_OK;
}

void
scout_persist_stage_stats(const scout_persist_stage_t *st, int *slices,
                          double *longest_ms, double *total_ms)
{
    *slices = st->slices;
    *longest_ms = st->longest_ms;
    *total_ms = st->total_ms;
}

/* Service i (named name) moved to out: SCOUT_ERROR when it is not seeded
 * (absent, moved, not decoded yet, or another name at i). */
static int
stage_take(scout_persist_stage_t *st, int i, const char *name,
           struct taken *out)
{
    struct seed *sd;
    scout_snaplazy_service_t sv;

    if (i < 0 || i >= st->next || strcmp(st->names[i], name) != 0)
        return SCOUT_ERROR;
    sd = &st->seeds[i];
    if (sd->k < 0)
        return SCOUT_ERROR;
    scout_snaplazy_get(st->z, sd->k, &sv);
    out->eps = sd->eps;         /* moved */
    scout_epset_init(&sd->eps);
    out->index = sv.index;
    out->pzxid = sv.pzxid;
    out->max_mzxid = sv.max_mzxid;
    out->bad = sd->bad;
    sd->k = -1;
    st->held--;
    return SCOUT_OK;
}

int
scout_persist_stage_check(const scout_persist_stage_t *st,
                          const char *ensemble, char *err)
{
    if (st->next < st->n)
        return scout_seterr(err, "the snapshot's lists are not all decoded");
    if (st->broken != NULL)
        return scout_seterr(err, "%s", st->broken);
    return scout_snapshot_same_ensemble(scout_snaplazy_ensemble(st->z),
                                        ensemble, err);
}

int
scout_persist_stage_seed(scout_persist_stage_t *st, int i,
                         scout_service_t *s)
{
    struct taken sd;

    if (stage_take(st, i, scout_service_name(s), &sd)
        != SCOUT_OK)
        return 0;
    scout_service_seed(s, &sd.eps, sd.index, sd.pzxid, sd.max_mzxid, sd.bad);
    st->seeded++;
    return 1;
}

int
scout_persist_stage_seeded(const scout_persist_stage_t *st)
{
    return st->seeded;
}

int
scout_persist_stage_clean(const scout_persist_stage_t *st)
{
    return st->clean;
}

const scout_snaplazy_t *
scout_persist_stage_snapshot(const scout_persist_stage_t *st)
{
    return st->z;
}

void
scout_persist_stage_free(scout_persist_stage_t *st)
{
    if (st == NULL)
        return;
    /* every seed taken (the hand-over's end): nothing to walk */
    for (int i = 0; st->held > 0 && i < st->next; i++)
        if (st->seeds[i].k >= 0)
            scout_epset_free(&st->seeds[i].eps);
    free(st->broken);
    free(st->seeds);
    free(st);
}
