/*
 * snapshot_read.c -- the reader side of the disk snapshot (snapshot.h):
 * read and validate a file, hand out its services, and judge whether it was
 * written for the caller's ensemble.  It is split from the writer because
 * the two share only the format (snapshot_format.h), and this is the half
 * that faces untrusted bytes, the one the fuzzer is aimed at.
 *
 * The reader accepts only the canonical form the writer produces (sorted,
 * no duplicates, no trailing bytes), so parse-then-encode is the identity;
 * the fuzzer checks it.
 *
 * What this file must never do: return a half-loaded snapshot, or allocate
 * for counts the file's bytes cannot back.
 */
#include "publish/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heap.h"
#include "publish/snapshot_format.h"
#include "publish/snapshot_merge.h"
#include "publish/snapshot_rd.h"

/* ---- read -------------------------------------------------------------- */

typedef struct {
    char         *name;
    char         *path;
    uint64_t      index;
    int64_t       pzxid;
    int64_t       max_mzxid;
    scout_epset_t eps;
} snap_service_t;

struct scout_snapshot_s {
    char           *writer;
    char           *ensemble;
    int64_t         written_at_ms;
    int             n;
    snap_service_t *svcs;
    char           *note;       /* what the journal did, or NULL */
};

static int
rd_service(reader_t *r, snap_service_t *sv, const char *prev_name)
{
    uint64_t pzxid, max_mzxid;
    uint32_t neps;
    const char *prev_id = NULL;

    if (scout_snaprd_str(r, &sv->name, "service name") != SCOUT_OK)
        return SCOUT_ERROR;
    if (prev_name != NULL && strcmp(prev_name, sv->name) >= 0)
        return scout_snaprd_fail(r, "service \"%s\" after \"%s\": names not ascending "
                       "(duplicate or unsorted)", sv->name, prev_name);
    if (scout_snaprd_str(r, &sv->path, "service path") != SCOUT_OK
        || scout_snaprd_int(r, 8, &sv->index, "service index") != SCOUT_OK
        || scout_snaprd_int(r, 8, &pzxid, "service pzxid") != SCOUT_OK
        || scout_snaprd_int(r, 8, &max_mzxid, "service max_mzxid") != SCOUT_OK
        || scout_snaprd_count(r, &neps, SCOUT_SNAPSHOT_MAX_ENDPOINTS, EP_MIN,
                    "endpoint count") != SCOUT_OK)
        return SCOUT_ERROR;
    sv->pzxid = (int64_t)pzxid;
    sv->max_mzxid = (int64_t)max_mzxid;
    for (uint32_t i = 0; i < neps; i++) {
        if (scout_snaprd_endpoint(r, &sv->eps, &prev_id) != SCOUT_OK)
            return SCOUT_ERROR;
    }
    return SCOUT_OK;
}

scout_snapshot_t *
scout_snapshot_parse(const void *buf, size_t len, const char *label,
                     char *err)
{
    scout_snapshot_t *s;
    reader_t r;
    uint64_t at;
    uint32_t n;

    if (label == NULL)
        label = "(memory)";
    if (scout_snaprd_check_header(buf, len, label, err) != SCOUT_OK)
        return NULL;
    r = (reader_t){ .base = buf, .end = (const unsigned char *)buf + len,
                    .label = label, .err = err };
    r.p = r.base + SCOUT_SNAPSHOT_HDR_LEN;
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        scout_snaprd_fail(&r, "out of memory");
        return NULL;
    }
    if (scout_snaprd_str(&r, &s->writer, "writer") != SCOUT_OK
        || scout_snaprd_str(&r, &s->ensemble, "ensemble") != SCOUT_OK
        || scout_snaprd_int(&r, 8, &at, "written_at") != SCOUT_OK
        || scout_snaprd_count(&r, &n, SCOUT_SNAPSHOT_MAX_SERVICES, SVC_MIN,
                    "service count") != SCOUT_OK)
        goto fail;
    s->written_at_ms = (int64_t)at;
    /* zeroed entries are valid empty services, so free() works at any
     * point of the loop */
    if (n > 0 && (s->svcs = calloc(n, sizeof(*s->svcs))) == NULL) {
        scout_snaprd_fail(&r, "out of memory");
        goto fail;
    }
    s->n = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        if (rd_service(&r, &s->svcs[i], i > 0 ? s->svcs[i - 1].name : NULL)
            != SCOUT_OK)
            goto fail;
        scout_heap_populate_check();    /* at start: see heap.h */
    }
    if (r.p != r.end) {
        scout_snaprd_fail(&r, "%zu bytes after the last service",
                (size_t)(r.end - r.p));
        goto fail;
    }
    return s;

fail:
    scout_snapshot_free(s);
    return NULL;
}

/* Base + journal merged where they are (snapshot_merge.h): every record
 * served parsed where it is, as the full file the fold made was parsed,
 * its offsets said as in that file. */
static scout_snapshot_t *
parse_merged(const scout_snapmerge_t *m, const char *label, char *err)
{
    scout_snapshot_t *s = calloc(1, sizeof(*s));
    reader_t r = { .base = m->base, .p = m->base + m->count_at + 4,
                   .end = m->base + m->base_len, .label = label,
                   .err = err };

    if (s == NULL) {
        scout_snaprd_fail(&r, "out of memory");
        return NULL;
    }
    if ((s->writer = strndup(m->writer, m->writer_len)) == NULL
        || (s->ensemble = strndup(m->ensemble, m->ensemble_len)) == NULL) {
        scout_snaprd_fail(&r, "out of memory");
        goto fail;
    }
    s->written_at_ms = m->written_at_ms;
    if (m->n > SCOUT_SNAPSHOT_MAX_SERVICES) {
        scout_snaprd_fail(&r, "service count %llu over the %u limit",
                          (unsigned long long)m->n,
                          SCOUT_SNAPSHOT_MAX_SERVICES);
        goto fail;
    }
    if (m->n > 0 && (s->svcs = calloc(m->n, sizeof(*s->svcs))) == NULL) {
        scout_snaprd_fail(&r, "out of memory");
        goto fail;
    }
    s->n = (int)m->n;
    for (uint32_t i = 0; i < m->n; i++) {
        const scout_snaprec_t *rc = &m->recs[i];

        r = (reader_t){ .base = rc->rec, .p = rc->rec,
                        .end = rc->rec + rc->len, .label = label,
                        .err = err, .at = rc->at };
        if (rd_service(&r, &s->svcs[i], i > 0 ? s->svcs[i - 1].name : NULL)
            != SCOUT_OK)
            goto fail;
        scout_heap_populate_check();    /* at start: see heap.h */
    }
    return s;

fail:
    scout_snapshot_free(s);
    return NULL;
}

scout_snapshot_t *
scout_snapshot_read(const char *path, char *err)
{
    scout_snapshot_t *s;
    scout_snapmerge_t m;

    /* the base with the journal beside it (snapshot_journal.h) */
    if (scout_snapmerge_open(path, &m, err) != SCOUT_OK)
        return NULL;
    s = m.merged ? parse_merged(&m, path, err)
                 : scout_snapshot_parse(m.base, m.base_len, path, err);
    if (s != NULL && m.note[0] != '\0' && (s->note = strdup(m.note)) == NULL) {
        scout_snapshot_free(s);
        scout_seterr(err, "snapshot %s: out of memory", path);
        s = NULL;
    }
    scout_snapmerge_close(&m);
    return s;
}

void
scout_snapshot_free(scout_snapshot_t *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->n; i++) {
        free(s->svcs[i].name);
        free(s->svcs[i].path);
        scout_epset_free(&s->svcs[i].eps);
    }
    free(s->svcs);
    free(s->writer);
    free(s->ensemble);
    free(s->note);
    free(s);
}

int
scout_snapshot_count(const scout_snapshot_t *s)
{
    return s->n;
}

int
scout_snapshot_find(const scout_snapshot_t *s, const char *name)
{
    int lo = 0, hi = s->n - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(s->svcs[mid].name, name);

        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

void
scout_snapshot_get(const scout_snapshot_t *s, int i,
                   scout_snapshot_service_t *out)
{
    const snap_service_t *sv = &s->svcs[i];

    out->name = sv->name;
    out->path = sv->path;
    out->index = sv->index;
    out->pzxid = sv->pzxid;
    out->max_mzxid = sv->max_mzxid;
    out->eps = &sv->eps;
}

void
scout_snapshot_take(scout_snapshot_t *s, int i, scout_epset_t *dst)
{
    /* uthash keeps its table behind the head element, so moving the head
     * pointer moves the whole set */
    scout_epset_free(dst);
    *dst = s->svcs[i].eps;
    scout_epset_init(&s->svcs[i].eps);
}

int64_t
scout_snapshot_written_at_ms(const scout_snapshot_t *s)
{
    return s->written_at_ms;
}

const char *
scout_snapshot_ensemble(const scout_snapshot_t *s)
{
    return s->ensemble;
}

const char *
scout_snapshot_note(const scout_snapshot_t *s)
{
    return s->note != NULL ? s->note : "";
}

const char *
scout_snapshot_writer(const scout_snapshot_t *s)
{
    return s->writer;
}

/* ---- ensemble ---------------------------------------------------------- */

/* The chroot of a connect string without trailing slashes, as a pointer
 * into it (where the server list ends) and a length; 0 for none. */
static const char *
ensemble_chroot(const char *e, size_t *len)
{
    const char *root = e + strcspn(e, "/");

    *len = strlen(root);
    while (*len > 0 && root[*len - 1] == '/')
        (*len)--;
    return root;
}

/* Next "host:port" of the server list [*cur, stop), spaces trimmed. */
static int
ensemble_next(const char **cur, const char *stop, const char **h, size_t *hl)
{
    while (*cur < stop) {
        const char *a = *cur, *e = memchr(a, ',', (size_t)(stop - a));

        e = e != NULL ? e : stop;
        *cur = e < stop ? e + 1 : stop;
        while (a < e && *a == ' ')
            a++;
        while (e > a && e[-1] == ' ')
            e--;
        if (e > a) {
            *h = a;
            *hl = (size_t)(e - a);
            return 1;
        }
    }
    return 0;
}

int
scout_snapshot_check_ensemble(const scout_snapshot_t *s, const char *ensemble,
                              char *err)
{
    return scout_snapshot_same_ensemble(s->ensemble, ensemble, err);
}

int
scout_snapshot_same_ensemble(const char *written, const char *ensemble,
                             char *err)
{
    const char *ra, *rb, *ca = written, *cb, *ha, *hb;
    size_t la, lb, hla, hlb;

    ra = ensemble_chroot(written, &la);
    rb = ensemble_chroot(ensemble, &lb);
    if (la == lb && memcmp(ra, rb, la) == 0) {
        while (ensemble_next(&ca, ra, &ha, &hla)) {
            cb = ensemble;
            while (ensemble_next(&cb, rb, &hb, &hlb)) {
                if (hla == hlb && strncasecmp(ha, hb, hla) == 0)
                    return SCOUT_OK;
            }
        }
    }
    return scout_seterr(err, "snapshot written for ensemble %s, not %s", written,
               ensemble);
}
