/*
 * snapshot_rd.c -- the checks every reader of the disk snapshot makes on
 * untrusted bytes (see snapshot_rd.h): one definition for the full reader
 * and the lazy one.
 */
#include "publish/snapshot_rd.h"

#include <endian.h>

/* "snapshot LABEL: malformed at byte N: ..." with N the offset reached. */
int
scout_snaprd_fail(reader_t *r, const char *fmt, ...)
{
    char what[SCOUT_ERR_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return scout_seterr(r->err, "snapshot %s: malformed at byte %zu: %s", r->label,
               r->at + (size_t)(r->p - r->base), what);
}

/* (Every string and count of the file goes through here: its 4 and 8
 * bytes are one load each, not a loop of shifts, which was a fifth of the
 * instructions of indexing a 10,000-service snapshot.) */
uint64_t
scout_snaprd_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    uint32_t w;

    if (bytes == 8) {
        memcpy(&v, p, 8);
        return le64toh(v);
    }
    if (bytes == 4) {
        memcpy(&w, p, 4);
        return le32toh(w);
    }
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int
scout_snaprd_int(reader_t *r, int bytes, uint64_t *v, const char *what)
{
    *v = 0;
    if (r->end - r->p < bytes)
        return scout_snaprd_fail(r, "%s runs past the end of the body", what);
    *v = scout_snaprd_le(r->p, bytes);
    r->p += bytes;
    return SCOUT_OK;
}

/* A count of records of at least min bytes each: bounded by its limit and
 * by what is left, so a lying count cannot make us allocate. */
int
scout_snaprd_count(reader_t *r, uint32_t *n, uint32_t limit, size_t min,
         const char *what)
{
    uint64_t v;

    if (scout_snaprd_int(r, 4, &v, what) != SCOUT_OK)
        return SCOUT_ERROR;
    if (v > limit)
        return scout_snaprd_fail(r, "%s %llu over the %u limit", what,
                       (unsigned long long)v, limit);
    if (v > (size_t)(r->end - r->p) / min)
        return scout_snaprd_fail(r, "%s %llu needs more bytes than the %zu left", what,
                       (unsigned long long)v, (size_t)(r->end - r->p));
    *n = (uint32_t)v;
    return SCOUT_OK;
}

/* A string in place: validated, not copied (*s is not NUL-terminated). */
int
scout_snaprd_span(reader_t *r, const char **s, size_t *len, const char *what)
{
    uint64_t n;

    if (scout_snaprd_int(r, 4, &n, what) != SCOUT_OK)
        return SCOUT_ERROR;
    if (n > SCOUT_SNAPSHOT_MAX_STR)
        return scout_snaprd_fail(r, "%s is %llu bytes, over the %u limit", what,
                       (unsigned long long)n, SCOUT_SNAPSHOT_MAX_STR);
    if (n > (size_t)(r->end - r->p))
        return scout_snaprd_fail(r, "%s of %llu bytes runs past the end of the body",
                       what, (unsigned long long)n);
    if (memchr(r->p, '\0', n) != NULL)
        return scout_snaprd_fail(r, "%s contains a NUL byte", what);
    *s = (const char *)r->p;
    *len = (size_t)n;
    r->p += n;
    return SCOUT_OK;
}

int
scout_snaprd_str(reader_t *r, char **out, const char *what)
{
    const char *span;
    size_t len;
    char *s;

    if (scout_snaprd_span(r, &span, &len, what) != SCOUT_OK)
        return SCOUT_ERROR;
    if ((s = malloc(len + 1)) == NULL)
        return scout_snaprd_fail(r, "out of memory");
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
int
scout_snaprd_meta_apart(reader_t *r, scout_endpoint_t *ep, uint32_t nmeta)
{
    if ((ep->meta = calloc(nmeta, sizeof(*ep->meta))) == NULL)
        return scout_snaprd_fail(r, "out of memory");
    for (uint32_t j = 0; j < nmeta; j++) {
        scout_meta_t *m = &ep->meta[j];

        ep->nmeta = (int)j + 1;         /* what scout_endpoint_free frees */
        if (scout_snaprd_str(r, &m->key, "meta key") != SCOUT_OK
            || scout_snaprd_str(r, &m->value, "meta value") != SCOUT_OK)
            return SCOUT_ERROR;
        if (j > 0 && strcmp(ep->meta[j - 1].key, m->key) >= 0)
            return scout_snaprd_fail(r, "endpoint \"%s\": meta key \"%s\" after \"%s\": "
                           "keys not ascending (duplicate or unsorted)",
                           ep->id, m->key, ep->meta[j - 1].key);
    }
    return SCOUT_OK;
}

/* Reads one endpoint into set; *prev_id becomes its id (owned by the set).
 * The endpoint and its meta are one allocation (endpoint.h): the meta is
 * validated in a first pass over the bytes, which sizes it, and copied in
 * a second; a dubbo endpoint's twenty parameters were 41 mallocs each. */
int
scout_snaprd_endpoint(reader_t *r, scout_epset_t *set, const char **prev_id)
{
    scout_endpoint_t *ep;
    const char *id, *host, *status, *k, *v, *pk = NULL;
    size_t id_len, host_len, status_len, kl, vl, pkl = 0, meta_bytes = 0;
    const unsigned char *meta_at;
    uint64_t port, weight, zxid;
    uint32_t nmeta;

    if (scout_snaprd_span(r, &id, &id_len, "endpoint id") != SCOUT_OK
        || scout_snaprd_span(r, &host, &host_len, "endpoint host") != SCOUT_OK
        || scout_snaprd_span(r, &status, &status_len, "endpoint status") != SCOUT_OK)
        return SCOUT_ERROR;
    if (*prev_id != NULL && span_cmp(*prev_id, id, id_len) >= 0)
        return scout_snaprd_fail(r, "endpoint \"%.*s\" after \"%s\": ids not ascending "
                       "(duplicate or unsorted)", (int)id_len, id, *prev_id);
    if (scout_snaprd_int(r, 4, &port, "endpoint port") != SCOUT_OK
        || scout_snaprd_int(r, 4, &weight, "endpoint weight") != SCOUT_OK
        || scout_snaprd_int(r, 8, &zxid, "endpoint zxid") != SCOUT_OK
        || scout_snaprd_count(r, &nmeta, SCOUT_SNAPSHOT_MAX_META, META_MIN,
                    "meta count") != SCOUT_OK)
        return SCOUT_ERROR;
    meta_at = r->p;
    for (uint32_t j = 0; j < nmeta; j++) {
        if (scout_snaprd_span(r, &k, &kl, "meta key") != SCOUT_OK
            || scout_snaprd_span(r, &v, &vl, "meta value") != SCOUT_OK)
            return SCOUT_ERROR;
        if (j > 0 && (memcmp(pk, k, pkl < kl ? pkl : kl) > 0
                      || (memcmp(pk, k, pkl < kl ? pkl : kl) == 0
                          && pkl >= kl)))
            return scout_snaprd_fail(r, "endpoint \"%.*s\": meta key \"%.*s\" after "
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
            return scout_snaprd_fail(r, "out of memory");
        r->p = meta_at;                 /* the second pass: validated */
        for (uint32_t j = 0; j < nmeta; j++) {
            kl = (size_t)scout_snaprd_le(r->p, 4);
            k = (const char *)r->p + 4;
            vl = (size_t)scout_snaprd_le(r->p + 4 + kl, 4);
            v = (const char *)r->p + 8 + kl;
            scout_endpoint_add_meta(ep, k, kl, v, vl);
            r->p += 8 + kl + vl;
        }
    } else {
        ep = scout_endpoint_new(id, id_len, host, host_len, status,
                                status_len);
        if (ep == NULL)
            return scout_snaprd_fail(r, "out of memory");
        r->p = meta_at;
        if (scout_snaprd_meta_apart(r, ep, nmeta) != SCOUT_OK) {
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
        scout_snaprd_fail(r, "out of memory");
        return SCOUT_ERROR;
    }
    *prev_id = ep->id;
    return SCOUT_OK;
}

/* Steps over one endpoint, checking its bounds, strings and counts (what
 * decoding it checks besides: the order of ids and meta keys). */
static int
skip_endpoint(reader_t *r)
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

int
scout_snaprd_service(reader_t *r, scout_snaprec_t *rec, const char *prev,
                     size_t prevl)
{
    const char *nm, *pa;
    size_t nl, pl;
    uint64_t pzxid, mzxid;

    rec->rec = r->p;
    rec->at = r->at + (size_t)(r->p - r->base);
    if (scout_snaprd_span(r, &nm, &nl, "service name") != SCOUT_OK)
        return SCOUT_ERROR;
    if (prev != NULL && (memcmp(prev, nm, prevl < nl ? prevl : nl) > 0
                         || (memcmp(prev, nm, prevl < nl ? prevl : nl) == 0
                             && prevl >= nl)))
        return scout_snaprd_fail(r, "service \"%.*s\" after \"%.*s\": names not "
                       "ascending (duplicate or unsorted)", (int)nl, nm,
                       (int)prevl, prev);
    if (scout_snaprd_span(r, &pa, &pl, "service path") != SCOUT_OK
        || scout_snaprd_int(r, 8, &rec->index, "service index") != SCOUT_OK
        || scout_snaprd_int(r, 8, &pzxid, "service pzxid") != SCOUT_OK
        || scout_snaprd_int(r, 8, &mzxid, "service max_mzxid") != SCOUT_OK
        || scout_snaprd_count(r, &rec->neps, SCOUT_SNAPSHOT_MAX_ENDPOINTS,
                              EP_MIN, "endpoint count") != SCOUT_OK)
        return SCOUT_ERROR;
    rec->name = nm;
    rec->name_len = nl;
    rec->path = pa;
    rec->path_len = pl;
    rec->pzxid = (int64_t)pzxid;
    rec->max_mzxid = (int64_t)mzxid;
    rec->eps = (size_t)(r->p - rec->rec);
    for (uint32_t e = 0; e < rec->neps; e++)
        if (skip_endpoint(r) != SCOUT_OK)
            return SCOUT_ERROR;
    rec->len = (size_t)(r->p - rec->rec);
    rec->checked = 1;
    return SCOUT_OK;
}

int
scout_snaprd_check_header(const unsigned char *b, size_t len, const char *label,
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
    version = scout_snaprd_le(b + 8, 4);
    flags = scout_snaprd_le(b + 12, 4);
    body_len = scout_snaprd_le(b + 16, 8);
    sum = scout_snaprd_le(b + 24, 8);
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

/* The file at path in pages populated in one call (*buf, *size mapped,
 * *got read), or SCOUT_ERROR with the reason in err. */
int
scout_snaprd_load_file(const char *path, unsigned char **buf, size_t *size, size_t *got,
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
