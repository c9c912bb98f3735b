/*
 * snapshot_lazy.c -- the disk snapshot read lazily (snapshot_lazy.h): the
 * file read and its checksum checked, the services indexed by walking the
 * records' lengths, an endpoint decoded only when its service is asked for.
 * With a journal beside the base, the index is of the newest record of each
 * service where it is, in the base's pages or the journal's
 * (snapshot_merge.h): nothing is copied or checksummed again.  It shares
 * every check with the full reader (snapshot_rd.h), so whatever the full
 * reader refuses in a service, decoding it here refuses too.  It must never
 * hand out a service of a file whose checksum failed, nor read past a
 * length the walk did not check.
 */
#include "publish/snapshot_lazy.h"

#include <stdlib.h>
#include <string.h>

#include "publish/snapshot_merge.h"
#include "publish/snapshot_rd.h"

struct scout_snaplazy_s {
    scout_snapmerge_t m;            /* the files' pages, and the merge */
    uint64_t         sum;
    int64_t          written_at_ms;
    char            *ensemble;
    int              n;
    scout_snaprec_t *recs;          /* [n] by name: where each one is */
    const char     **names;         /* [2n]: name, path; in the arena */
    char            *arena;         /* names and paths, NUL-terminated */
    const char      *label;
};

/* The base alone, as a file without a journal is read: its header and
 * checksum, its head, every record checked in order, nothing after. */
static int
read_alone(scout_snaplazy_t *z, const char *path, char *err)
{
    const char *writer, *ens, *prev = NULL;
    size_t wl, el, prevl = 0;
    uint64_t at;
    uint32_t n;
    reader_t r = { .base = z->m.base, .end = z->m.base + z->m.base_len,
                   .label = path, .err = err };

    if (scout_snaprd_check_header(z->m.base, z->m.base_len, path, err)
        != SCOUT_OK)
        return SCOUT_ERROR;
    r.p = r.base + SCOUT_SNAPSHOT_HDR_LEN;
    if (scout_snaprd_span(&r, &writer, &wl, "writer") != SCOUT_OK
        || scout_snaprd_span(&r, &ens, &el, "ensemble") != SCOUT_OK
        || scout_snaprd_int(&r, 8, &at, "written_at") != SCOUT_OK
        || scout_snaprd_count(&r, &n, SCOUT_SNAPSHOT_MAX_SERVICES, SVC_MIN,
                    "service count") != SCOUT_OK)
        return SCOUT_ERROR;
    z->written_at_ms = (int64_t)at;
    if ((z->ensemble = strndup(ens, el)) == NULL
        || (z->recs = malloc((n ? n : 1) * sizeof(*z->recs))) == NULL)
        return scout_seterr(err, "snapshot %s: out of memory", path);
    for (uint32_t i = 0; i < n; i++) {
        if (scout_snaprd_service(&r, &z->recs[i], prev, prevl) != SCOUT_OK)
            return SCOUT_ERROR;
        prev = z->recs[i].name;
        prevl = z->recs[i].name_len;
    }
    if (r.p != r.end)
        return scout_snaprd_fail(&r, "%zu bytes after the last service",
                                 (size_t)(r.end - r.p));
    z->n = (int)n;
    return SCOUT_OK;
}

/* Base + journal merged where they are: every record served checked as
 * the fold's file would have had it checked, at its offset there (a record
 * the merge checked already: only the order of names). */
static int
read_merged(scout_snaplazy_t *z, const char *path, char *err)
{
    scout_snapmerge_t *m = &z->m;
    const char *prev = NULL;
    size_t prevl = 0;

    z->written_at_ms = m->written_at_ms;
    if (m->n > SCOUT_SNAPSHOT_MAX_SERVICES) {
        reader_t r = { .base = m->base, .p = m->base + m->count_at + 4,
                       .end = m->base + m->base_len, .label = path,
                       .err = err };

        return scout_snaprd_fail(&r, "service count %llu over the %u limit",
                                 (unsigned long long)m->n,
                                 SCOUT_SNAPSHOT_MAX_SERVICES);
    }
    if ((z->ensemble = strndup(m->ensemble, m->ensemble_len)) == NULL)
        return scout_seterr(err, "snapshot %s: out of memory", path);
    for (uint32_t i = 0; i < m->n; i++) {
        scout_snaprec_t *rc = &m->recs[i];
        reader_t r = { .base = rc->rec, .p = rc->rec,
                       .end = rc->rec + rc->len, .label = path, .err = err,
                       .at = rc->at };

        if (!rc->checked) {
            size_t at = rc->at;

            if (scout_snaprd_service(&r, rc, prev, prevl) != SCOUT_OK)
                return SCOUT_ERROR;
            rc->at = at;
        } else if (prev != NULL
                   && (memcmp(prev, rc->name, prevl < rc->name_len
                                              ? prevl : rc->name_len) > 0
                       || (memcmp(prev, rc->name, prevl < rc->name_len
                                                  ? prevl : rc->name_len) == 0
                           && prevl >= rc->name_len))) {
            r.p += 4 + rc->name_len;
            return scout_snaprd_fail(&r, "service \"%.*s\" after \"%.*s\": "
                                     "names not ascending (duplicate or "
                                     "unsorted)", (int)rc->name_len,
                                     rc->name, (int)prevl, prev);
        }
        prev = rc->name;
        prevl = rc->name_len;
    }
    z->recs = m->recs;              /* taken */
    m->recs = NULL;
    z->n = (int)m->n;
    return SCOUT_OK;
}

scout_snaplazy_t *
scout_snaplazy_read(const char *path, char *err)
{
    scout_snaplazy_t *z = calloc(1, sizeof(*z));
    size_t strings = 0;
    char *out;

    if (z == NULL) {
        scout_seterr(err, "snapshot %s: out of memory", path);
        return NULL;
    }
    z->label = path;
    /* the base and the journal beside it, merged where they are; z->sum
     * is the base's own checksum, the one the side file vouches for */
    if (scout_snapmerge_open(path, &z->m, err) != SCOUT_OK)
        goto fail;
    z->sum = z->m.base_sum;
    if ((z->m.merged ? read_merged(z, path, err) : read_alone(z, path, err))
        != SCOUT_OK)
        goto fail;
    for (int i = 0; i < z->n; i++)
        strings += z->recs[i].name_len + z->recs[i].path_len + 2;
    if ((z->arena = malloc(strings ? strings : 1)) == NULL
        || (z->names = malloc(2 * (size_t)(z->n ? z->n : 1)
                              * sizeof(*z->names))) == NULL) {
        scout_seterr(err, "snapshot %s: out of memory", path);
        goto fail;
    }
    out = z->arena;
    for (int i = 0; i < z->n; i++) {
        const scout_snaprec_t *rc = &z->recs[i];

        memcpy(out, rc->name, rc->name_len);
        out[rc->name_len] = '\0';
        z->names[2 * i] = out;
        out += rc->name_len + 1;
        memcpy(out, rc->path, rc->path_len);
        out[rc->path_len] = '\0';
        z->names[2 * i + 1] = out;
        out += rc->path_len + 1;
    }
    return z;

fail:
    scout_snaplazy_free(z);
    return NULL;
}

void
scout_snaplazy_free(scout_snaplazy_t *z)
{
    if (z == NULL)
        return;
    scout_snapmerge_close(&z->m);
    free(z->ensemble);
    free(z->recs);
    free(z->names);
    free(z->arena);
    free(z);
}

size_t
scout_snaplazy_release(scout_snaplazy_t *z, size_t max)
{
    return scout_snapmerge_release(&z->m, max);
}

const char *
scout_snaplazy_note(const scout_snaplazy_t *z)
{
    return z->m.note;
}

uint64_t
scout_snaplazy_checksum(const scout_snaplazy_t *z)
{
    return z->sum;
}

int64_t
scout_snaplazy_written_at_ms(const scout_snaplazy_t *z)
{
    return z->written_at_ms;
}

const char *
scout_snaplazy_ensemble(const scout_snaplazy_t *z)
{
    return z->ensemble;
}

int
scout_snaplazy_count(const scout_snaplazy_t *z)
{
    return z->n;
}

int
scout_snaplazy_find(const scout_snaplazy_t *z, const char *name)
{
    int lo = 0, hi = z->n - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, z->names[2 * mid]);

        if (c == 0)
            return mid;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

void
scout_snaplazy_get(const scout_snaplazy_t *z, int i,
                   scout_snaplazy_service_t *out)
{
    out->name = z->names[2 * i];
    out->path = z->names[2 * i + 1];
    out->index = z->recs[i].index;
    out->pzxid = z->recs[i].pzxid;
    out->max_mzxid = z->recs[i].max_mzxid;
    out->nendpoints = z->recs[i].neps;
}

int
scout_snaplazy_decode(const scout_snaplazy_t *z, int i, scout_epset_t *dst,
                      char *err)
{
    const scout_snaprec_t *rc = &z->recs[i];
    const char *prev_id = NULL;
    /* the record where it is (the base or the journal), its offsets said
     * as in the file it stands in */
    reader_t r = { .base = rc->rec, .p = rc->rec + rc->eps,
                   .end = rc->rec + rc->len, .label = z->label, .err = err,
                   .at = rc->at };

    for (uint32_t e = 0; e < rc->neps; e++) {
        if (scout_snaprd_endpoint(&r, dst, &prev_id) != SCOUT_OK) {
            scout_epset_free(dst);
            scout_epset_init(dst);
            return SCOUT_ERROR;
        }
    }
    return SCOUT_OK;
}
