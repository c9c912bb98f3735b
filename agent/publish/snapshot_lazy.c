/*
 * snapshot_lazy.c -- the disk snapshot read lazily (snapshot_lazy.h): the
 * file read and its checksum checked, the services indexed by walking the
 * records' lengths, an endpoint decoded only when its service is asked for.
 * It shares every check with the full reader (snapshot_rd.h), so whatever
 * the full reader refuses in a service, decoding it here refuses too.  It
 * must never hand out a service of a file whose checksum failed, nor read
 * past a length the walk did not check.
 */
#include "publish/snapshot_lazy.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "publish/snapshot_journal.h"
#include "publish/snapshot_rd.h"

typedef struct {
    const char *name, *path;        /* in the arena */
    uint64_t    index;
    int64_t     pzxid, max_mzxid;
    uint32_t    neps;
    size_t      eps_at;             /* offset of its first endpoint */
} lazy_service_t;

struct scout_snaplazy_s {
    unsigned char  *buf;
    size_t          size, len;
    uint64_t        sum;
    int64_t         written_at_ms;
    char           *ensemble;
    int             n;
    lazy_service_t *svcs;
    char           *arena;          /* names and paths, NUL-terminated */
    const char     *label;
    char            note[SCOUT_ERR_LEN];    /* what the journal did */
};

/* Steps over one endpoint, checking its bounds, strings and counts (what
 * decoding it checks besides: the order of ids and meta keys). */
static int
lazy_skip_endpoint(reader_t *r)
{
    const char *s;
    size_t len;
    uint64_t v;
    uint32_t nmeta = 0;

    if (scout_snaprd_span(r, &s, &len, "endpoint id") != SCOUT_OK
        || scout_snaprd_span(r, &s, &len, "endpoint host") != SCOUT_OK
        || scout_snaprd_span(r, &s, &len, "endpoint status") != SCOUT_OK
        || scout_snaprd_int(r, 8, &v, "endpoint port and weight") != SCOUT_OK
        || scout_snaprd_int(r, 8, &v, "endpoint zxid") != SCOUT_OK
        || scout_snaprd_count(r, &nmeta, SCOUT_SNAPSHOT_MAX_META, META_MIN,
                    "meta count") != SCOUT_OK)
        return SCOUT_ERROR;
    for (uint32_t j = 0; j < nmeta; j++)
        if (scout_snaprd_span(r, &s, &len, "meta key") != SCOUT_OK
            || scout_snaprd_span(r, &s, &len, "meta value") != SCOUT_OK)
            return SCOUT_ERROR;
    return SCOUT_OK;
}

scout_snaplazy_t *
scout_snaplazy_read(const char *path, char *err)
{
    scout_snaplazy_t *z = calloc(1, sizeof(*z));
    const char *writer = NULL, *ens = NULL, *prev = NULL, *nm = NULL, *pa = NULL;
    size_t wl = 0, el = 0, prevl = 0, nl = 0, pl = 0, strings = 0;
    uint64_t at, pzxid, mzxid;
    uint32_t n = 0;
    size_t *spans = NULL;           /* name at, name len, path at, path len */
    char *out;
    reader_t r;

    if (z == NULL) {
        scout_seterr(err, "snapshot %s: out of memory", path);
        return NULL;
    }
    z->label = path;
    /* the base with its journal folded in; z->sum is the base's own
     * checksum, the one the side file vouches for */
    if (scout_snapjournal_load(path, &z->buf, &z->size, &z->len, &z->sum,
                               z->note, err) != SCOUT_OK
        || scout_snaprd_check_header(z->buf, z->len, path, err) != SCOUT_OK)
        goto fail;
    r.base = z->buf;
    r.p = r.base + SCOUT_SNAPSHOT_HDR_LEN;
    r.end = r.base + z->len;
    r.label = path;
    r.err = err;
    if (scout_snaprd_span(&r, &writer, &wl, "writer") != SCOUT_OK
        || scout_snaprd_span(&r, &ens, &el, "ensemble") != SCOUT_OK
        || scout_snaprd_int(&r, 8, &at, "written_at") != SCOUT_OK
        || scout_snaprd_count(&r, &n, SCOUT_SNAPSHOT_MAX_SERVICES, SVC_MIN,
                    "service count") != SCOUT_OK)
        goto fail;
    z->written_at_ms = (int64_t)at;
    if ((z->ensemble = strndup(ens, el)) == NULL
        || (z->svcs = calloc(n ? n : 1, sizeof(*z->svcs))) == NULL
        || (spans = malloc((n ? n : 1) * 4 * sizeof(*spans))) == NULL) {
        scout_seterr(err, "snapshot %s: out of memory", path);
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++) {
        lazy_service_t *sv = &z->svcs[i];

        if (scout_snaprd_span(&r, &nm, &nl, "service name") != SCOUT_OK)
            goto fail;
        if (prev != NULL && (memcmp(prev, nm, prevl < nl ? prevl : nl) > 0
                             || (memcmp(prev, nm, prevl < nl ? prevl : nl)
                                 == 0 && prevl >= nl))) {
            scout_snaprd_fail(&r, "service \"%.*s\" after \"%.*s\": names not "
                    "ascending (duplicate or unsorted)", (int)nl, nm,
                    (int)prevl, prev);
            goto fail;
        }
        prev = nm;
        prevl = nl;
        if (scout_snaprd_span(&r, &pa, &pl, "service path") != SCOUT_OK
            || scout_snaprd_int(&r, 8, &sv->index, "service index") != SCOUT_OK
            || scout_snaprd_int(&r, 8, &pzxid, "service pzxid") != SCOUT_OK
            || scout_snaprd_int(&r, 8, &mzxid, "service max_mzxid") != SCOUT_OK
            || scout_snaprd_count(&r, &sv->neps, SCOUT_SNAPSHOT_MAX_ENDPOINTS, EP_MIN,
                        "endpoint count") != SCOUT_OK)
            goto fail;
        sv->pzxid = (int64_t)pzxid;
        sv->max_mzxid = (int64_t)mzxid;
        sv->eps_at = (size_t)(r.p - r.base);
        for (uint32_t e = 0; e < sv->neps; e++)
            if (lazy_skip_endpoint(&r) != SCOUT_OK)
                goto fail;
        spans[4 * i] = (size_t)((const unsigned char *)nm - r.base);
        spans[4 * i + 1] = nl;
        spans[4 * i + 2] = (size_t)((const unsigned char *)pa - r.base);
        spans[4 * i + 3] = pl;
        strings += nl + pl + 2;
    }
    if (r.p != r.end) {
        scout_snaprd_fail(&r, "%zu bytes after the last service", (size_t)(r.end - r.p));
        goto fail;
    }
    if ((z->arena = malloc(strings ? strings : 1)) == NULL) {
        scout_seterr(err, "snapshot %s: out of memory", path);
        goto fail;
    }
    out = z->arena;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(out, z->buf + spans[4 * i], spans[4 * i + 1]);
        out[spans[4 * i + 1]] = '\0';
        z->svcs[i].name = out;
        out += spans[4 * i + 1] + 1;
        memcpy(out, z->buf + spans[4 * i + 2], spans[4 * i + 3]);
        out[spans[4 * i + 3]] = '\0';
        z->svcs[i].path = out;
        out += spans[4 * i + 3] + 1;
    }
    z->n = (int)n;
    free(spans);
    return z;

fail:
    free(spans);
    scout_snaplazy_free(z);
    return NULL;
}

void
scout_snaplazy_free(scout_snaplazy_t *z)
{
    if (z == NULL)
        return;
    if (z->buf != NULL)
        munmap(z->buf, z->size);
    free(z->ensemble);
    free(z->svcs);
    free(z->arena);
    free(z);
}

size_t
scout_snaplazy_release(scout_snaplazy_t *z, size_t max)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), keep;

    if (z->buf == NULL)
        return 0;
    /* from the end, to a page boundary (the mapping's start stays): at
     * least a page, at most max and a page */
    keep = z->size > max ? z->size - max : 0;
    keep = keep / page * page;
    if (keep >= z->size)
        keep = z->size > page ? (z->size - 1) / page * page : 0;
    if (keep == 0) {
        munmap(z->buf, z->size);
        z->buf = NULL;
    } else {
        munmap(z->buf + keep, z->size - keep);
    }
    z->size = keep;
    z->len = keep < z->len ? keep : z->len;
    return keep;
}

const char *
scout_snaplazy_note(const scout_snaplazy_t *z)
{
    return z->note;
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
        int c = strcmp(name, z->svcs[mid].name);

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
    out->name = z->svcs[i].name;
    out->path = z->svcs[i].path;
    out->index = z->svcs[i].index;
    out->pzxid = z->svcs[i].pzxid;
    out->max_mzxid = z->svcs[i].max_mzxid;
    out->nendpoints = z->svcs[i].neps;
}

int
scout_snaplazy_decode(const scout_snaplazy_t *z, int i, scout_epset_t *dst,
                      char *err)
{
    const char *prev_id = NULL;
    reader_t r;

    r.base = z->buf;
    r.p = z->buf + z->svcs[i].eps_at;
    r.end = z->buf + z->len;
    r.label = z->label;
    r.err = err;
    for (uint32_t e = 0; e < z->svcs[i].neps; e++) {
        if (scout_snaprd_endpoint(&r, dst, &prev_id) != SCOUT_OK) {
            scout_epset_free(dst);
            scout_epset_init(dst);
            return SCOUT_ERROR;
        }
    }
    return SCOUT_OK;
}
