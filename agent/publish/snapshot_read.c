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
};

typedef struct {
    const unsigned char *base, *p, *end;
    const char          *label;
    char                *err;
} reader_t;

static int rd_fail(reader_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "snapshot LABEL: malformed at byte N: ..." with N the offset reached. */
static int
rd_fail(reader_t *r, const char *fmt, ...)
{
    char what[SCOUT_ERR_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return scout_seterr(r->err, "snapshot %s: malformed at byte %zu: %s", r->label,
               (size_t)(r->p - r->base), what);
}

static uint64_t
get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;

    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int
rd_int(reader_t *r, int bytes, uint64_t *v, const char *what)
{
    *v = 0;
    if (r->end - r->p < bytes)
        return rd_fail(r, "%s runs past the end of the body", what);
    *v = get_le(r->p, bytes);
    r->p += bytes;
    return SCOUT_OK;
}

/* A count of records of at least min bytes each: bounded by its limit and
 * by what is left, so a lying count cannot make us allocate. */
static int
rd_count(reader_t *r, uint32_t *n, uint32_t limit, size_t min,
         const char *what)
{
    uint64_t v;

    if (rd_int(r, 4, &v, what) != SCOUT_OK)
        return SCOUT_ERROR;
    if (v > limit)
        return rd_fail(r, "%s %llu over the %u limit", what,
                       (unsigned long long)v, limit);
    if (v > (size_t)(r->end - r->p) / min)
        return rd_fail(r, "%s %llu needs more bytes than the %zu left", what,
                       (unsigned long long)v, (size_t)(r->end - r->p));
    *n = (uint32_t)v;
    return SCOUT_OK;
}

/* A string in place: validated, not copied (*s is not NUL-terminated). */
static int
rd_span(reader_t *r, const char **s, size_t *len, const char *what)
{
    uint64_t n;

    if (rd_int(r, 4, &n, what) != SCOUT_OK)
        return SCOUT_ERROR;
    if (n > SCOUT_SNAPSHOT_MAX_STR)
        return rd_fail(r, "%s is %llu bytes, over the %u limit", what,
                       (unsigned long long)n, SCOUT_SNAPSHOT_MAX_STR);
    if (n > (size_t)(r->end - r->p))
        return rd_fail(r, "%s of %llu bytes runs past the end of the body",
                       what, (unsigned long long)n);
    if (memchr(r->p, '\0', n) != NULL)
        return rd_fail(r, "%s contains a NUL byte", what);
    *s = (const char *)r->p;
    *len = (size_t)n;
    r->p += n;
    return SCOUT_OK;
}

static int
rd_str(reader_t *r, char **out, const char *what)
{
    const char *span;
    size_t len;
    char *s;

    if (rd_span(r, &span, &len, what) != SCOUT_OK)
        return SCOUT_ERROR;
    if ((s = malloc(len + 1)) == NULL)
        return rd_fail(r, "out of memory");
    memcpy(s, span, len);
    s[len] = '\0';
    *out = s;
    return SCOUT_OK;
}

/* strcmp() of two strings of which b is counted (no NUL inside). */
static int
span_cmp(const char *a, const char *b, size_t bl)
{
    size_t al = strlen(a);
    int c = memcmp(a, b, al < bl ? al : bl);

    return c != 0 ? c : al < bl ? -1 : al > bl;
}

/* Meta the old way, an allocation per string: only for an endpoint whose
 * meta does not fit in one (endpoint.h's limits are tighter than the
 * file's; the endpoint rule then drops it, the file still loads). */
static int
rd_meta_apart(reader_t *r, scout_endpoint_t *ep, uint32_t nmeta)
{
    if ((ep->meta = calloc(nmeta, sizeof(*ep->meta))) == NULL)
        return rd_fail(r, "out of memory");
    for (uint32_t j = 0; j < nmeta; j++) {
        scout_meta_t *m = &ep->meta[j];

        ep->nmeta = (int)j + 1;         /* what scout_endpoint_free frees */
        if (rd_str(r, &m->key, "meta key") != SCOUT_OK
            || rd_str(r, &m->value, "meta value") != SCOUT_OK)
            return SCOUT_ERROR;
        if (j > 0 && strcmp(ep->meta[j - 1].key, m->key) >= 0)
            return rd_fail(r, "endpoint \"%s\": meta key \"%s\" after \"%s\": "
                           "keys not ascending (duplicate or unsorted)",
                           ep->id, m->key, ep->meta[j - 1].key);
    }
    return SCOUT_OK;
}

/* Reads one endpoint into set; *prev_id becomes its id (owned by the set).
 * The endpoint and its meta are one allocation (endpoint.h): the meta is
 * validated in a first pass over the bytes, which sizes it, and copied in
 * a second; a dubbo endpoint's twenty parameters were 41 mallocs each. */
static int
rd_endpoint(reader_t *r, scout_epset_t *set, const char **prev_id)
{
    scout_endpoint_t *ep;
    const char *id, *host, *status, *k, *v, *pk = NULL;
    size_t id_len, host_len, status_len, kl, vl, pkl = 0, meta_bytes = 0;
    const unsigned char *meta_at;
    uint64_t port, weight, zxid;
    uint32_t nmeta;

    if (rd_span(r, &id, &id_len, "endpoint id") != SCOUT_OK
        || rd_span(r, &host, &host_len, "endpoint host") != SCOUT_OK
        || rd_span(r, &status, &status_len, "endpoint status") != SCOUT_OK)
        return SCOUT_ERROR;
    if (*prev_id != NULL && span_cmp(*prev_id, id, id_len) >= 0)
        return rd_fail(r, "endpoint \"%.*s\" after \"%s\": ids not ascending "
                       "(duplicate or unsorted)", (int)id_len, id, *prev_id);
    if (rd_int(r, 4, &port, "endpoint port") != SCOUT_OK
        || rd_int(r, 4, &weight, "endpoint weight") != SCOUT_OK
        || rd_int(r, 8, &zxid, "endpoint zxid") != SCOUT_OK
        || rd_count(r, &nmeta, SCOUT_SNAPSHOT_MAX_META, META_MIN,
                    "meta count") != SCOUT_OK)
        return SCOUT_ERROR;
    meta_at = r->p;
    for (uint32_t j = 0; j < nmeta; j++) {
        if (rd_span(r, &k, &kl, "meta key") != SCOUT_OK
            || rd_span(r, &v, &vl, "meta value") != SCOUT_OK)
            return SCOUT_ERROR;
        if (j > 0 && (memcmp(pk, k, pkl < kl ? pkl : kl) > 0
                      || (memcmp(pk, k, pkl < kl ? pkl : kl) == 0
                          && pkl >= kl)))
            return rd_fail(r, "endpoint \"%.*s\": meta key \"%.*s\" after "
                           "\"%.*s\": keys not ascending (duplicate or "
                           "unsorted)", (int)id_len, id, (int)kl, k,
                           (int)pkl, pk);
        pk = k;
        pkl = kl;
        meta_bytes += kl + vl;
    }
    if (nmeta <= SCOUT_ENDPOINT_MAX_META
        && meta_bytes <= SCOUT_ENDPOINT_MAX_BYTES) {
        ep = scout_endpoint_new_meta(id, id_len, host, host_len, status,
                                     status_len, nmeta, meta_bytes);
        if (ep == NULL)
            return rd_fail(r, "out of memory");
        r->p = meta_at;                 /* the second pass: validated */
        for (uint32_t j = 0; j < nmeta; j++) {
            kl = (size_t)get_le(r->p, 4);
            k = (const char *)r->p + 4;
            vl = (size_t)get_le(r->p + 4 + kl, 4);
            v = (const char *)r->p + 8 + kl;
            scout_endpoint_add_meta(ep, k, kl, v, vl);
            r->p += 8 + kl + vl;
        }
    } else {
        ep = scout_endpoint_new(id, id_len, host, host_len, status,
                                status_len);
        if (ep == NULL)
            return rd_fail(r, "out of memory");
        r->p = meta_at;
        if (rd_meta_apart(r, ep, nmeta) != SCOUT_OK) {
            scout_endpoint_free(ep);
            return SCOUT_ERROR;
        }
    }
    ep->port = (int32_t)(uint32_t)port;
    ep->weight = (int32_t)(uint32_t)weight;
    ep->zxid = (int64_t)zxid;
    /* ids ascend, so none is in the set yet: added at the end, without
     * the lookup scout_epset_put pays for */
    if (scout_epset_append(set, ep) != SCOUT_OK) {   /* it freed ep */
        rd_fail(r, "out of memory");
        return SCOUT_ERROR;
    }
    *prev_id = ep->id;
    return SCOUT_OK;
}

static int
rd_service(reader_t *r, snap_service_t *sv, const char *prev_name)
{
    uint64_t pzxid, max_mzxid;
    uint32_t neps;
    const char *prev_id = NULL;

    if (rd_str(r, &sv->name, "service name") != SCOUT_OK)
        return SCOUT_ERROR;
    if (prev_name != NULL && strcmp(prev_name, sv->name) >= 0)
        return rd_fail(r, "service \"%s\" after \"%s\": names not ascending "
                       "(duplicate or unsorted)", sv->name, prev_name);
    if (rd_str(r, &sv->path, "service path") != SCOUT_OK
        || rd_int(r, 8, &sv->index, "service index") != SCOUT_OK
        || rd_int(r, 8, &pzxid, "service pzxid") != SCOUT_OK
        || rd_int(r, 8, &max_mzxid, "service max_mzxid") != SCOUT_OK
        || rd_count(r, &neps, SCOUT_SNAPSHOT_MAX_ENDPOINTS, EP_MIN,
                    "endpoint count") != SCOUT_OK)
        return SCOUT_ERROR;
    sv->pzxid = (int64_t)pzxid;
    sv->max_mzxid = (int64_t)max_mzxid;
    for (uint32_t i = 0; i < neps; i++) {
        if (rd_endpoint(r, &sv->eps, &prev_id) != SCOUT_OK)
            return SCOUT_ERROR;
    }
    return SCOUT_OK;
}

static int
check_header(const unsigned char *b, size_t len, const char *label,
             char *err)
{
    uint64_t version, flags, body_len, sum, want;

    if (len == 0)
        return scout_seterr(err, "snapshot %s: empty file", label);
    if (memcmp(b, magic, len < sizeof(magic) ? len : sizeof(magic)) != 0)
        return scout_seterr(err, "snapshot %s: not a scout snapshot (bad magic)",
                   label);
    if (len < SCOUT_SNAPSHOT_HDR_LEN)
        return scout_seterr(err, "snapshot %s: truncated at byte %zu (the header is "
                   "%d bytes)", label, len, SCOUT_SNAPSHOT_HDR_LEN);
    version = get_le(b + 8, 4);
    flags = get_le(b + 12, 4);
    body_len = get_le(b + 16, 8);
    sum = get_le(b + 24, 8);
    if (version != SCOUT_SNAPSHOT_VERSION)
        return scout_seterr(err, "snapshot %s: format version %llu, this build reads "
                   "%d", label, (unsigned long long)version,
                   SCOUT_SNAPSHOT_VERSION);
    if (flags != 0)
        return scout_seterr(err, "snapshot %s: unknown header flags 0x%llx", label,
                   (unsigned long long)flags);
    if (body_len > SCOUT_SNAPSHOT_MAX_SIZE - SCOUT_SNAPSHOT_HDR_LEN)
        return scout_seterr(err, "snapshot %s: body of %llu bytes, over the %u-byte "
                   "file limit", label, (unsigned long long)body_len,
                   SCOUT_SNAPSHOT_MAX_SIZE);
    if (len < SCOUT_SNAPSHOT_HDR_LEN + body_len)
        return scout_seterr(err, "snapshot %s: truncated at byte %zu of %llu", label,
                   len, (unsigned long long)(SCOUT_SNAPSHOT_HDR_LEN
                                             + body_len));
    if (len > SCOUT_SNAPSHOT_HDR_LEN + body_len)
        return scout_seterr(err, "snapshot %s: %llu trailing bytes after the body",
                   label, (unsigned long long)(len - SCOUT_SNAPSHOT_HDR_LEN
                                               - body_len));
    want = XXH64(b + SCOUT_SNAPSHOT_HDR_LEN, (size_t)body_len, 0);
    if (want != sum)
        return scout_seterr(err, "snapshot %s: checksum mismatch (header says %016llx, "
                   "body hashes to %016llx)", label, (unsigned long long)sum,
                   (unsigned long long)want);
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
    if (check_header(buf, len, label, err) != SCOUT_OK)
        return NULL;
    r.base = buf;
    r.p = r.base + SCOUT_SNAPSHOT_HDR_LEN;
    r.end = r.base + len;
    r.label = label;
    r.err = err;
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        rd_fail(&r, "out of memory");
        return NULL;
    }
    if (rd_str(&r, &s->writer, "writer") != SCOUT_OK
        || rd_str(&r, &s->ensemble, "ensemble") != SCOUT_OK
        || rd_int(&r, 8, &at, "written_at") != SCOUT_OK
        || rd_count(&r, &n, SCOUT_SNAPSHOT_MAX_SERVICES, SVC_MIN,
                    "service count") != SCOUT_OK)
        goto fail;
    s->written_at_ms = (int64_t)at;
    /* zeroed entries are valid empty services, so free() works at any
     * point of the loop */
    if (n > 0 && (s->svcs = calloc(n, sizeof(*s->svcs))) == NULL) {
        rd_fail(&r, "out of memory");
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
        rd_fail(&r, "%zu bytes after the last service",
                (size_t)(r.end - r.p));
        goto fail;
    }
    return s;

fail:
    scout_snapshot_free(s);
    return NULL;
}

/* The file at path in pages populated in one call (*buf, *size mapped,
 * *got read), or SCOUT_ERROR with the reason in err. */
static int
load_file(const char *path, unsigned char **buf, size_t *size, size_t *got,
          char *err)
{
    struct stat st;
    int fd, rc = SCOUT_ERROR;

    *buf = NULL;
    *got = 0;
    /* Nothing but a regular file is ever read: O_NONBLOCK so that opening
     * a FIFO does not wait for a writer (start-up would hang before the
     * API opens), O_NOFOLLOW so that a link never points us elsewhere. */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW))
        < 0) {
        if (errno == ELOOP)
            scout_seterr(err, "snapshot %s: is a symbolic link; not followed",
                         path);
        else
            scout_seterr(err, "snapshot %s: %s", path, strerror(errno));
        return SCOUT_ERROR;
    }
    if (fstat(fd, &st) != 0) {
        scout_seterr(err, "snapshot %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        scout_seterr(err, "snapshot %s: not a regular file (%s); not read",
                     path, S_ISFIFO(st.st_mode) ? "a FIFO"
                           : S_ISDIR(st.st_mode) ? "a directory"
                           : S_ISSOCK(st.st_mode) ? "a socket"
                           : "a device");
        goto done;
    }
    if ((uint64_t)st.st_size > SCOUT_SNAPSHOT_MAX_SIZE) {
        scout_seterr(err, "snapshot %s: %lld bytes, over the %u limit", path,
            (long long)st.st_size, SCOUT_SNAPSHOT_MAX_SIZE);
        goto done;
    }
    /* Read into pages populated in one call, not into malloc's: a fresh
     * buffer is faulted in a page at a time as read() fills it, and a page
     * fault costs ~14 us on a VM, ~20 ms for a 10,000-service snapshot, a
     * fifth of reading it (mapping the file would skip the copy too, but a
     * file truncated in place under the map kills the process). */
    *size = st.st_size > 0 ? (size_t)st.st_size : 1;
    if ((*buf = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_PRIVATE
                     | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)) == MAP_FAILED) {
        *buf = NULL;
        scout_seterr(err, "snapshot %s: out of memory", path);
        goto done;
    }
    /* A file that shrinks under us is parsed as read: it then fails as
     * truncated, which is the truth. */
    while (*got < (size_t)st.st_size) {
        ssize_t k = read(fd, *buf + *got, (size_t)st.st_size - *got);

        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            scout_seterr(err, "snapshot %s: read: %s", path, strerror(errno));
            munmap(*buf, *size);
            *buf = NULL;
            goto done;
        }
        if (k == 0)
            break;
        *got += (size_t)k;
    }
    rc = SCOUT_OK;

done:
    close(fd);
    return rc;
}

scout_snapshot_t *
scout_snapshot_read(const char *path, char *err)
{
    scout_snapshot_t *s;
    unsigned char *buf;
    size_t size, got;

    if (load_file(path, &buf, &size, &got, err) != SCOUT_OK)
        return NULL;
    s = scout_snapshot_parse(buf, got, path, err);
    munmap(buf, size);
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
    const char *ra, *rb, *ca = s->ensemble, *cb, *ha, *hb;
    size_t la, lb, hla, hlb;

    ra = ensemble_chroot(s->ensemble, &la);
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
    return scout_seterr(err, "snapshot written for ensemble %s, not %s", s->ensemble,
               ensemble);
}

/* ---- lazy: an index now, a service's endpoints when asked -------------- */

#include "publish/snapshot_lazy.h"

typedef struct {
    const char *name, *path;        /* in the arena */
    uint64_t    index;
    uint32_t    neps;
    size_t      eps_at;             /* offset of its first endpoint */
} lazy_service_t;

struct scout_snaplazy_s {
    unsigned char  *buf;
    size_t          size, len;
    uint64_t        sum;
    char           *ensemble;
    int             n;
    lazy_service_t *svcs;
    char           *arena;          /* names and paths, NUL-terminated */
    const char     *label;
};

/* Steps over one endpoint, checking its bounds, strings and counts (what
 * decoding it checks besides: the order of ids and meta keys). */
static int
lazy_skip_endpoint(reader_t *r)
{
    const char *s;
    size_t len;
    uint64_t v;
    uint32_t nmeta;

    if (rd_span(r, &s, &len, "endpoint id") != SCOUT_OK
        || rd_span(r, &s, &len, "endpoint host") != SCOUT_OK
        || rd_span(r, &s, &len, "endpoint status") != SCOUT_OK
        || rd_int(r, 8, &v, "endpoint port and weight") != SCOUT_OK
        || rd_int(r, 8, &v, "endpoint zxid") != SCOUT_OK
        || rd_count(r, &nmeta, SCOUT_SNAPSHOT_MAX_META, META_MIN,
                    "meta count") != SCOUT_OK)
        return SCOUT_ERROR;
    for (uint32_t j = 0; j < nmeta; j++)
        if (rd_span(r, &s, &len, "meta key") != SCOUT_OK
            || rd_span(r, &s, &len, "meta value") != SCOUT_OK)
            return SCOUT_ERROR;
    return SCOUT_OK;
}

scout_snaplazy_t *
scout_snaplazy_read(const char *path, char *err)
{
    scout_snaplazy_t *z = calloc(1, sizeof(*z));
    const char *writer, *ens, *prev = NULL, *nm, *pa;
    size_t wl, el, prevl = 0, nl, pl, strings = 0;
    uint64_t at, pzxid, mzxid;
    uint32_t n;
    size_t *spans = NULL;           /* name at, name len, path at, path len */
    char *out;
    reader_t r;

    if (z == NULL) {
        scout_seterr(err, "snapshot %s: out of memory", path);
        return NULL;
    }
    z->label = path;
    if (load_file(path, &z->buf, &z->size, &z->len, err) != SCOUT_OK
        || check_header(z->buf, z->len, path, err) != SCOUT_OK)
        goto fail;
    z->sum = get_le(z->buf + 24, 8);
    r.base = z->buf;
    r.p = r.base + SCOUT_SNAPSHOT_HDR_LEN;
    r.end = r.base + z->len;
    r.label = path;
    r.err = err;
    if (rd_span(&r, &writer, &wl, "writer") != SCOUT_OK
        || rd_span(&r, &ens, &el, "ensemble") != SCOUT_OK
        || rd_int(&r, 8, &at, "written_at") != SCOUT_OK
        || rd_count(&r, &n, SCOUT_SNAPSHOT_MAX_SERVICES, SVC_MIN,
                    "service count") != SCOUT_OK)
        goto fail;
    if ((z->ensemble = strndup(ens, el)) == NULL
        || (z->svcs = calloc(n ? n : 1, sizeof(*z->svcs))) == NULL
        || (spans = malloc((n ? n : 1) * 4 * sizeof(*spans))) == NULL) {
        scout_seterr(err, "snapshot %s: out of memory", path);
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++) {
        lazy_service_t *sv = &z->svcs[i];

        if (rd_span(&r, &nm, &nl, "service name") != SCOUT_OK)
            goto fail;
        if (prev != NULL && (memcmp(prev, nm, prevl < nl ? prevl : nl) > 0
                             || (memcmp(prev, nm, prevl < nl ? prevl : nl)
                                 == 0 && prevl >= nl))) {
            rd_fail(&r, "service \"%.*s\" after \"%.*s\": names not "
                    "ascending (duplicate or unsorted)", (int)nl, nm,
                    (int)prevl, prev);
            goto fail;
        }
        prev = nm;
        prevl = nl;
        if (rd_span(&r, &pa, &pl, "service path") != SCOUT_OK
            || rd_int(&r, 8, &sv->index, "service index") != SCOUT_OK
            || rd_int(&r, 8, &pzxid, "service pzxid") != SCOUT_OK
            || rd_int(&r, 8, &mzxid, "service max_mzxid") != SCOUT_OK
            || rd_count(&r, &sv->neps, SCOUT_SNAPSHOT_MAX_ENDPOINTS, EP_MIN,
                        "endpoint count") != SCOUT_OK)
            goto fail;
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
        rd_fail(&r, "%zu bytes after the last service", (size_t)(r.end - r.p));
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

uint64_t
scout_snaplazy_checksum(const scout_snaplazy_t *z)
{
    return z->sum;
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
        if (rd_endpoint(&r, dst, &prev_id) != SCOUT_OK) {
            scout_epset_free(dst);
            scout_epset_init(dst);
            return SCOUT_ERROR;
        }
    }
    return SCOUT_OK;
}
