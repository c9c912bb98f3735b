/*
 * snapshot.c -- the disk snapshot: encode, crash-safe commit, validating
 * read.  The file is a 32-byte header (magic, version, body length, XXH64
 * of the body) and a length-prefixed little-endian binary body; see
 * docs/snapshot.md for the layout.
 *
 * Why binary and not JSON: cold start of 10,000 services x 10 endpoints must
 * take under 100 ms including building the endpoint sets; a binary body is
 * parsed in one pass with every length checked against the bytes left, and
 * is far smaller a surface for the fuzzer than a JSON parser plus a schema.
 *
 * Why XXH64 (libxxhash-dev, inlined from its header so nothing new is
 * linked): packaged, well kept, specified with implementations in most
 * languages, 64 bits, and ~10 GB/s, so verifying a 10 MB file costs about a
 * millisecond.  It guards against torn and corrupted files, not against an
 * attacker: whoever can write the cache dir can write a valid snapshot.
 *
 * What this module must never do: return a half-loaded snapshot, leave a
 * temp file behind after a failed write, replace a good snapshot with a
 * partial one, or allocate more than a small multiple of the file's size
 * whatever the file claims.
 */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scout.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

static const char magic[8] = { 'S', 'C', 'O', 'U', 'T', 'S', 'N', 'P' };

/* Smallest encoding of each record: a count is checked against the bytes
 * left divided by these before anything is allocated for it. */
#define STR_MIN  4u                                 /* u32 length, no bytes */
#define SVC_MIN  (2 * STR_MIN + 8 + 8 + 8 + 4)
#define EP_MIN   (3 * STR_MIN + 4 + 4 + 8 + 4)
#define META_MIN (2 * STR_MIN)

#define S(s) ((s) != NULL ? (s) : "")

/* ---- encode ------------------------------------------------------------ */

static unsigned char *
put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

static unsigned char *
put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

static unsigned char *
put_str(unsigned char *p, const char *s)
{
    size_t len = strlen(S(s));

    p = put_u32(p, (uint32_t)len);
    memcpy(p, S(s), len);
    return p + len;
}

/* Adds a string's encoded size to *size; SCOUT_ERROR if it is too long. */
static int
size_str(uint64_t *size, const char *s, const char *svc, const char *ep,
         const char *what, char *err)
{
    size_t len = strlen(S(s));

    if (len > SCOUT_SNAPSHOT_MAX_STR) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot: service \"%s\"%s%s: %s is "
                 "%zu bytes, over the %u limit", S(svc), ep ? " endpoint " : "",
                 ep ? ep : "", what, len, SCOUT_SNAPSHOT_MAX_STR);
        return SCOUT_ERROR;
    }
    *size += STR_MIN + len;
    return SCOUT_OK;
}

static int
by_service_name(const void *a, const void *b)
{
    return strcmp(S((*(const scout_snapshot_service_t *const *)a)->name),
                  S((*(const scout_snapshot_service_t *const *)b)->name));
}

static int
by_endpoint_id(const void *a, const void *b)
{
    return strcmp((*(scout_endpoint_t *const *)a)->id,
                  (*(scout_endpoint_t *const *)b)->id);
}

/* First pass: validate against the reader's limits and sum the size, so the
 * buffer is allocated once and exactly. */
static int
size_service(const scout_snapshot_service_t *sv, uint64_t *size, char *err)
{
    scout_endpoint_t *ep, *tmp;
    unsigned n = sv->eps != NULL ? sv->eps->n : 0;

    if (size_str(size, sv->name, sv->name, NULL, "name", err) != SCOUT_OK
        || size_str(size, sv->path, sv->name, NULL, "path", err) != SCOUT_OK)
        return SCOUT_ERROR;
    if (n > SCOUT_SNAPSHOT_MAX_ENDPOINTS) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot: service \"%s\": %u endpoints, "
                 "over the %u limit", S(sv->name), n,
                 SCOUT_SNAPSHOT_MAX_ENDPOINTS);
        return SCOUT_ERROR;
    }
    *size += SVC_MIN - 2 * STR_MIN;
    if (sv->eps == NULL)
        return SCOUT_OK;
    HASH_ITER(hh, sv->eps->map, ep, tmp) {
        *size += EP_MIN - 3 * STR_MIN;
        if (size_str(size, ep->id, sv->name, ep->id, "id", err) != SCOUT_OK
            || size_str(size, ep->host, sv->name, ep->id, "host", err)
               != SCOUT_OK
            || size_str(size, ep->status, sv->name, ep->id, "status", err)
               != SCOUT_OK)
            return SCOUT_ERROR;
        if (ep->nmeta < 0 || (unsigned)ep->nmeta > SCOUT_SNAPSHOT_MAX_META) {
            snprintf(err, SCOUT_ERR_LEN, "snapshot: service \"%s\" endpoint "
                     "%s: %d meta entries, over the %u limit", S(sv->name),
                     ep->id, ep->nmeta, SCOUT_SNAPSHOT_MAX_META);
            return SCOUT_ERROR;
        }
        for (int j = 0; j < ep->nmeta; j++) {
            if (j > 0 && strcmp(S(ep->meta[j - 1].key),
                                S(ep->meta[j].key)) >= 0) {
                snprintf(err, SCOUT_ERR_LEN, "snapshot: service \"%s\" "
                         "endpoint %s: meta keys not sorted and unique at "
                         "\"%s\"", S(sv->name), ep->id, S(ep->meta[j].key));
                return SCOUT_ERROR;
            }
            if (size_str(size, ep->meta[j].key, sv->name, ep->id, "a meta key",
                         err) != SCOUT_OK
                || size_str(size, ep->meta[j].value, sv->name, ep->id,
                            "a meta value", err) != SCOUT_OK)
                return SCOUT_ERROR;
        }
        if (*size > SCOUT_SNAPSHOT_MAX_SIZE)
            return SCOUT_OK;    /* the caller reports it */
    }
    return SCOUT_OK;
}

static unsigned char *
put_service(unsigned char *p, const scout_snapshot_service_t *sv,
            scout_endpoint_t **sorted)
{
    scout_endpoint_t *ep, *tmp;
    unsigned n = 0;

    p = put_str(p, sv->name);
    p = put_str(p, sv->path);
    p = put_u64(p, sv->index);
    p = put_u64(p, (uint64_t)sv->pzxid);
    p = put_u64(p, (uint64_t)sv->max_mzxid);
    if (sv->eps != NULL) {
        HASH_ITER(hh, sv->eps->map, ep, tmp) {
            sorted[n++] = ep;
        }
    }
    qsort(sorted, n, sizeof(*sorted), by_endpoint_id);
    p = put_u32(p, n);
    for (unsigned i = 0; i < n; i++) {
        ep = sorted[i];
        p = put_str(p, ep->id);
        p = put_str(p, ep->host);
        p = put_str(p, ep->status);
        p = put_u32(p, (uint32_t)ep->port);
        p = put_u32(p, (uint32_t)ep->weight);
        p = put_u64(p, (uint64_t)ep->zxid);
        p = put_u32(p, (uint32_t)ep->nmeta);
        for (int j = 0; j < ep->nmeta; j++) {
            p = put_str(p, ep->meta[j].key);
            p = put_str(p, ep->meta[j].value);
        }
    }
    return p;
}

int
scout_snapshot_encode(const char *ensemble, int64_t written_at_ms,
                      const scout_snapshot_service_t *svcs, int n,
                      char **buf, size_t *len, char *err)
{
    static const char writer[] = "scout " SCOUT_VERSION;
    const scout_snapshot_service_t **order = NULL;
    scout_endpoint_t **sorted = NULL;
    unsigned char *out = NULL, *p;
    uint64_t size = SCOUT_SNAPSHOT_HDR_LEN + 8 + 4;
    unsigned most = 0;

    *buf = NULL;
    *len = 0;
    if (n < 0 || (unsigned)n > SCOUT_SNAPSHOT_MAX_SERVICES) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot: %d services, over the %u "
                 "limit", n, SCOUT_SNAPSHOT_MAX_SERVICES);
        goto fail;
    }
    if (size_str(&size, writer, "", NULL, "writer", err) != SCOUT_OK
        || size_str(&size, ensemble, "", NULL, "ensemble", err) != SCOUT_OK)
        goto fail;
    order = malloc((n > 0 ? (size_t)n : 1) * sizeof(*order));
    if (order == NULL)
        goto oom;
    for (int i = 0; i < n; i++)
        order[i] = &svcs[i];
    qsort(order, (size_t)n, sizeof(*order), by_service_name);
    for (int i = 0; i < n; i++) {
        if (i > 0 && strcmp(S(order[i - 1]->name), S(order[i]->name)) == 0) {
            snprintf(err, SCOUT_ERR_LEN, "snapshot: two services named "
                     "\"%s\"", S(order[i]->name));
            goto fail;
        }
        if (size_service(order[i], &size, err) != SCOUT_OK)
            goto fail;
        if (size > SCOUT_SNAPSHOT_MAX_SIZE) {
            snprintf(err, SCOUT_ERR_LEN, "snapshot: more than %u bytes "
                     "(the limit) by service \"%s\"", SCOUT_SNAPSHOT_MAX_SIZE,
                     S(order[i]->name));
            goto fail;
        }
        if (order[i]->eps != NULL && order[i]->eps->n > most)
            most = order[i]->eps->n;
    }

    sorted = malloc((most > 0 ? most : 1) * sizeof(*sorted));
    out = malloc((size_t)size);
    if (sorted == NULL || out == NULL)
        goto oom;
    p = out + SCOUT_SNAPSHOT_HDR_LEN;
    p = put_str(p, writer);
    p = put_str(p, ensemble);
    p = put_u64(p, (uint64_t)written_at_ms);
    p = put_u32(p, (uint32_t)n);
    for (int i = 0; i < n; i++)
        p = put_service(p, order[i], sorted);
    if ((uint64_t)(p - out) != size) {          /* the two passes disagree */
        snprintf(err, SCOUT_ERR_LEN, "snapshot: internal error: encoded %zu "
                 "bytes, sized %llu", (size_t)(p - out),
                 (unsigned long long)size);
        goto fail;
    }
    memcpy(out, magic, sizeof(magic));
    put_u32(out + 8, SCOUT_SNAPSHOT_VERSION);
    put_u32(out + 12, 0);
    put_u64(out + 16, size - SCOUT_SNAPSHOT_HDR_LEN);
    put_u64(out + 24, XXH64(out + SCOUT_SNAPSHOT_HDR_LEN,
                            (size_t)size - SCOUT_SNAPSHOT_HDR_LEN, 0));
    free(order);
    free(sorted);
    *buf = (char *)out;
    *len = (size_t)size;
    return SCOUT_OK;

oom:
    snprintf(err, SCOUT_ERR_LEN, "snapshot: out of memory");
fail:
    free(order);
    free(sorted);
    free(out);
    return SCOUT_ERROR;
}

/* ---- commit ------------------------------------------------------------ */

int
scout_snapshot_commit(const char *dir, const void *buf, size_t len,
                      char *err)
{
    const char *p = buf, *what = "open", *name = SCOUT_SNAPSHOT_TMP;
    int dfd, fd = -1, made = 0, rc, e;

    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot dir %s: %s", dir,
                 strerror(errno));
        return SCOUT_ERROR;
    }
    /* A temp file left by a crash is replaced, never written through: it
     * might be a link, and O_EXCL gives us our own file with our mode. */
    (void)unlinkat(dfd, SCOUT_SNAPSHOT_TMP, 0);
    fd = openat(dfd, SCOUT_SNAPSHOT_TMP,
                O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        goto fail;
    made = 1;
    what = "write";
    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            goto fail;
        }
        p += w;
        len -= (size_t)w;
    }
    what = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    what = "close";
    rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail;
    what = "rename";
    name = SCOUT_SNAPSHOT_FILE;
    if (renameat(dfd, SCOUT_SNAPSHOT_TMP, dfd, SCOUT_SNAPSHOT_FILE) != 0)
        goto fail;
    made = 0;
    /* Without this the rename itself may not survive a power cut; the new
     * file is in place either way, so nothing is undone. */
    what = "written, but fsync of the directory failed";
    if (fsync(dfd) != 0)
        goto fail;
    close(dfd);
    return SCOUT_OK;

fail:
    e = errno;
    snprintf(err, SCOUT_ERR_LEN, "snapshot %s/%s: %s: %s", dir, name, what,
             strerror(e));
    if (fd >= 0)
        close(fd);
    if (made)
        (void)unlinkat(dfd, SCOUT_SNAPSHOT_TMP, 0);
    close(dfd);
    return SCOUT_ERROR;
}

int
scout_snapshot_write(const char *dir, const char *ensemble,
                     const scout_snapshot_service_t *svcs, int n, char *err)
{
    struct timespec ts;
    char *buf;
    size_t len;
    int rc;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (scout_snapshot_encode(ensemble,
                              (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                              svcs, n, &buf, &len, err) != SCOUT_OK)
        return SCOUT_ERROR;
    rc = scout_snapshot_commit(dir, buf, len, err);
    free(buf);
    return rc;
}

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

static int
rd_fail(reader_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
rd_fail(reader_t *r, const char *fmt, ...)
{
    char what[SCOUT_ERR_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(r->err, SCOUT_ERR_LEN, "snapshot %s: malformed at byte %zu: %s",
             r->label, (size_t)(r->p - r->base), what);
    return SCOUT_ERROR;
}

static uint32_t
get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16
           | (uint32_t)p[3] << 24;
}

static uint64_t
get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static int
rd_u32(reader_t *r, uint32_t *v, const char *what)
{
    if (r->end - r->p < 4)
        return rd_fail(r, "%s runs past the end of the body", what);
    *v = get_u32(r->p);
    r->p += 4;
    return SCOUT_OK;
}

static int
rd_u64(reader_t *r, uint64_t *v, const char *what)
{
    if (r->end - r->p < 8)
        return rd_fail(r, "%s runs past the end of the body", what);
    *v = get_u64(r->p);
    r->p += 8;
    return SCOUT_OK;
}

/* A count of records of at least min bytes each: bounded by its limit and
 * by what is left, so a lying count cannot make us allocate. */
static int
rd_count(reader_t *r, uint32_t *v, uint32_t limit, size_t min,
         const char *what)
{
    if (rd_u32(r, v, what) != SCOUT_OK)
        return SCOUT_ERROR;
    if (*v > limit)
        return rd_fail(r, "%s %u over the %u limit", what, *v, limit);
    if (*v > (size_t)(r->end - r->p) / min)
        return rd_fail(r, "%s %u needs more bytes than the %zu left", what,
                       *v, (size_t)(r->end - r->p));
    return SCOUT_OK;
}

static int
rd_str(reader_t *r, char **out, const char *what)
{
    uint32_t len;
    char *s;

    if (rd_u32(r, &len, what) != SCOUT_OK)
        return SCOUT_ERROR;
    if (len > SCOUT_SNAPSHOT_MAX_STR)
        return rd_fail(r, "%s is %u bytes, over the %u limit", what, len,
                       SCOUT_SNAPSHOT_MAX_STR);
    if (len > (size_t)(r->end - r->p))
        return rd_fail(r, "%s of %u bytes runs past the end of the body",
                       what, len);
    if (memchr(r->p, '\0', len) != NULL)
        return rd_fail(r, "%s contains a NUL byte", what);
    s = malloc((size_t)len + 1);
    if (s == NULL)
        return rd_fail(r, "out of memory");
    memcpy(s, r->p, len);
    s[len] = '\0';
    r->p += len;
    *out = s;
    return SCOUT_OK;
}

/* Reads one endpoint into set; *prev_id becomes its id (owned by the set). */
static int
rd_endpoint(reader_t *r, scout_epset_t *set, const char **prev_id)
{
    scout_endpoint_t *ep = calloc(1, sizeof(*ep));
    uint32_t port, weight, nmeta;
    uint64_t zxid;

    if (ep == NULL)
        return rd_fail(r, "out of memory");
    if (rd_str(r, &ep->id, "endpoint id") != SCOUT_OK)
        goto fail;
    if (*prev_id != NULL && strcmp(*prev_id, ep->id) >= 0) {
        rd_fail(r, "endpoint \"%s\" after \"%s\": ids not ascending "
                "(duplicate or unsorted)", ep->id, *prev_id);
        goto fail;
    }
    if (rd_str(r, &ep->host, "endpoint host") != SCOUT_OK
        || rd_str(r, &ep->status, "endpoint status") != SCOUT_OK
        || rd_u32(r, &port, "endpoint port") != SCOUT_OK
        || rd_u32(r, &weight, "endpoint weight") != SCOUT_OK
        || rd_u64(r, &zxid, "endpoint zxid") != SCOUT_OK
        || rd_count(r, &nmeta, SCOUT_SNAPSHOT_MAX_META, META_MIN,
                    "meta count") != SCOUT_OK)
        goto fail;
    ep->port = (int32_t)port;
    ep->weight = (int32_t)weight;
    ep->zxid = (int64_t)zxid;
    if (nmeta > 0 && (ep->meta = calloc(nmeta, sizeof(*ep->meta))) == NULL) {
        rd_fail(r, "out of memory");
        goto fail;
    }
    for (uint32_t j = 0; j < nmeta; j++) {
        scout_meta_t *m = &ep->meta[j];

        ep->nmeta = (int)j + 1;         /* what scout_endpoint_free frees */
        if (rd_str(r, &m->key, "meta key") != SCOUT_OK
            || rd_str(r, &m->value, "meta value") != SCOUT_OK)
            goto fail;
        if (j > 0 && strcmp(ep->meta[j - 1].key, m->key) >= 0) {
            rd_fail(r, "endpoint \"%s\": meta key \"%s\" after \"%s\": keys "
                    "not ascending (duplicate or unsorted)", ep->id, m->key,
                    ep->meta[j - 1].key);
            goto fail;
        }
    }
    /* ids ascend, so none is in the set yet: add without the lookup and
     * the JSON invalidation scout_epset_put pays for a replace */
    HASH_ADD_KEYPTR(hh, set->map, ep->id, strlen(ep->id), ep);
    set->n++;
    *prev_id = ep->id;
    return SCOUT_OK;

fail:
    scout_endpoint_free(ep);
    return SCOUT_ERROR;
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
        || rd_u64(r, &sv->index, "service index") != SCOUT_OK
        || rd_u64(r, &pzxid, "service pzxid") != SCOUT_OK
        || rd_u64(r, &max_mzxid, "service max_mzxid") != SCOUT_OK
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
    uint32_t version, flags;
    uint64_t body_len, sum, want;

    if (len == 0) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: empty file", label);
        return SCOUT_ERROR;
    }
    if (memcmp(b, magic, len < sizeof(magic) ? len : sizeof(magic)) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: not a scout snapshot "
                 "(bad magic)", label);
        return SCOUT_ERROR;
    }
    if (len < SCOUT_SNAPSHOT_HDR_LEN) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: truncated at byte %zu "
                 "(the header is %d bytes)", label, len,
                 SCOUT_SNAPSHOT_HDR_LEN);
        return SCOUT_ERROR;
    }
    version = get_u32(b + 8);
    flags = get_u32(b + 12);
    body_len = get_u64(b + 16);
    sum = get_u64(b + 24);
    if (version != SCOUT_SNAPSHOT_VERSION) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: format version %u, this "
                 "build reads %d", label, version, SCOUT_SNAPSHOT_VERSION);
        return SCOUT_ERROR;
    }
    if (flags != 0) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: unknown header flags "
                 "0x%x", label, flags);
        return SCOUT_ERROR;
    }
    if (body_len > SCOUT_SNAPSHOT_MAX_SIZE - SCOUT_SNAPSHOT_HDR_LEN) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: body of %llu bytes, over "
                 "the %u-byte file limit", label,
                 (unsigned long long)body_len, SCOUT_SNAPSHOT_MAX_SIZE);
        return SCOUT_ERROR;
    }
    if (len < SCOUT_SNAPSHOT_HDR_LEN + body_len) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: truncated at byte %zu of "
                 "%llu", label, len,
                 (unsigned long long)(SCOUT_SNAPSHOT_HDR_LEN + body_len));
        return SCOUT_ERROR;
    }
    if (len > SCOUT_SNAPSHOT_HDR_LEN + body_len) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: %llu trailing bytes after "
                 "the body", label,
                 (unsigned long long)(len - SCOUT_SNAPSHOT_HDR_LEN - body_len));
        return SCOUT_ERROR;
    }
    want = XXH64(b + SCOUT_SNAPSHOT_HDR_LEN, (size_t)body_len, 0);
    if (want != sum) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: checksum mismatch (header "
                 "says %016llx, body hashes to %016llx)", label,
                 (unsigned long long)sum, (unsigned long long)want);
        return SCOUT_ERROR;
    }
    return SCOUT_OK;
}

scout_snapshot_t *
scout_snapshot_parse(const void *buf, size_t len, const char *label,
                     char *err)
{
    reader_t r;
    scout_snapshot_t *s = NULL;
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
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        rd_fail(&r, "out of memory");
        return NULL;
    }
    if (rd_str(&r, &s->writer, "writer") != SCOUT_OK
        || rd_str(&r, &s->ensemble, "ensemble") != SCOUT_OK
        || rd_u64(&r, &at, "written_at") != SCOUT_OK
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

scout_snapshot_t *
scout_snapshot_read(const char *path, char *err)
{
    scout_snapshot_t *s = NULL;
    unsigned char *buf = NULL;
    struct stat st;
    size_t got = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: %s", path,
                 strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: not a regular file", path);
        goto done;
    }
    if ((uint64_t)st.st_size > SCOUT_SNAPSHOT_MAX_SIZE) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: %lld bytes, over the %u "
                 "limit", path, (long long)st.st_size,
                 SCOUT_SNAPSHOT_MAX_SIZE);
        goto done;
    }
    buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (buf == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "snapshot %s: out of memory", path);
        goto done;
    }
    /* A file that shrinks under us is parsed as read: it then fails as
     * truncated, which is the truth. */
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);

        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            snprintf(err, SCOUT_ERR_LEN, "snapshot %s: read: %s", path,
                     strerror(errno));
            goto done;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    s = scout_snapshot_parse(buf, got, path, err);

done:
    free(buf);
    close(fd);
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

time_t
scout_snapshot_written_at(const scout_snapshot_t *s)
{
    return (time_t)(s->written_at_ms / 1000);
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

/* The chroot of a connect string, without trailing slashes ("" for none). */
static void
ensemble_chroot(const char *e, const char **root, size_t *len)
{
    const char *slash = strchr(e, '/');

    *root = slash != NULL ? slash : e + strlen(e);
    *len = strlen(*root);
    while (*len > 0 && (*root)[*len - 1] == '/')
        (*len)--;
}

/* Next "host:port" of the server list (spaces trimmed); 0 at the end. */
static int
ensemble_next(const char **cur, const char *stop, const char **h, size_t *hl)
{
    while (*cur < stop) {
        const char *start = *cur, *comma = memchr(start, ',',
                                                  (size_t)(stop - start));
        const char *e = comma != NULL ? comma : stop;

        *cur = comma != NULL ? comma + 1 : stop;
        while (start < e && *start == ' ')
            start++;
        while (e > start && e[-1] == ' ')
            e--;
        if (e > start) {
            *h = start;
            *hl = (size_t)(e - start);
            return 1;
        }
    }
    return 0;
}

int
scout_snapshot_check_ensemble(const scout_snapshot_t *s, const char *ensemble,
                              char *err)
{
    const char *ra, *rb, *ca, *ha, *cb, *hb;
    size_t la, lb, hla, hlb;

    ensemble_chroot(s->ensemble, &ra, &la);
    ensemble_chroot(ensemble, &rb, &lb);
    if (la == lb && memcmp(ra, rb, la) == 0) {
        ca = s->ensemble;
        while (ensemble_next(&ca, ra, &ha, &hla)) {
            cb = ensemble;
            while (ensemble_next(&cb, rb, &hb, &hlb)) {
                if (hla == hlb && strncasecmp(ha, hb, hla) == 0)
                    return SCOUT_OK;
            }
        }
    }
    snprintf(err, SCOUT_ERR_LEN, "snapshot written for ensemble %s, not %s",
             s->ensemble, ensemble);
    return SCOUT_ERROR;
}
