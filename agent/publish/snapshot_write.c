/*
 * snapshot_write.c -- the writer side of the disk snapshot (snapshot.h):
 * encode the published state into the file's bytes, and commit them to
 * disk crash-safely.  It is split from the reader because the two share
 * only the format (snapshot_format.h).  Neither step touches agent state,
 * so the caller may run the blocking commit off the loop.
 *
 * The encoder refuses whatever the reader would refuse, and writes only the
 * canonical form the reader accepts (sorted, no duplicates), so a written
 * snapshot always reads back.
 *
 * A record kept for an unchanged service need not keep its bytes: once a
 * commit has put them in the file, or an append in the journal beside it,
 * they are read back from there by the next commit (checked against the
 * record's own XXH64 first), so the agent holds ~60 bytes a service instead
 * of its whole record.
 *
 * What this file must never do: leave a temp file behind after a failed
 * write, replace a good snapshot with a partial one, or write bytes read
 * back from the old file that are not what was encoded.
 */
#include "publish/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23          /* Linux 5.14 */
#endif

#include "publish/file_replace.h"
#include "publish/snapshot_format.h"
#include "publish/snapshot_journal.h"

#define S(s) ((s) != NULL ? (s) : "")

/* ---- encode ------------------------------------------------------------ */

static unsigned char *
put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + bytes;
}

static unsigned char *
put_str(unsigned char *p, const char *s)
{
    size_t len = strlen(S(s));

    p = put_le(p, len, 4);
    memcpy(p, S(s), len);
    return p + len;
}

/* Adds a string's encoded size to *size; SCOUT_ERROR if it is too long. */
static int
size_str(uint64_t *size, const char *s, const char *svc, const char *ep,
         const char *what, char *err)
{
    size_t len = strlen(S(s));

    if (len > SCOUT_SNAPSHOT_MAX_STR)
        return scout_seterr(err, "snapshot: service \"%s\"%s%s: %s is %zu bytes, over "
                   "the %u limit", S(svc), ep ? " endpoint " : "", S(ep), what,
                   len, SCOUT_SNAPSHOT_MAX_STR);
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

/* First pass: validate against the reader's rules and sum the size, so the
 * buffer is allocated once and exactly. */
static int
size_service(const scout_snapshot_service_t *sv, uint64_t *size, char *err)
{
    scout_endpoint_t *ep;
    unsigned n = sv->eps != NULL ? sv->eps->n : 0;

    if (size_str(size, sv->name, sv->name, NULL, "name", err) != SCOUT_OK
        || size_str(size, sv->path, sv->name, NULL, "path", err) != SCOUT_OK)
        return SCOUT_ERROR;
    if (n > SCOUT_SNAPSHOT_MAX_ENDPOINTS)
        return scout_seterr(err, "snapshot: service \"%s\": %u endpoints, over the %u "
                   "limit", S(sv->name), n, SCOUT_SNAPSHOT_MAX_ENDPOINTS);
    *size += SVC_MIN - 2 * STR_MIN;
    if (sv->eps == NULL)
        return SCOUT_OK;
    for (unsigned i = 0; i < sv->eps->n; i++) {
        ep = sv->eps->eps[i];
        *size += EP_MIN - 3 * STR_MIN;
        if (size_str(size, ep->id, sv->name, ep->id, "id", err) != SCOUT_OK
            || size_str(size, ep->host, sv->name, ep->id, "host", err)
               != SCOUT_OK
            || size_str(size, ep->status, sv->name, ep->id, "status", err)
               != SCOUT_OK)
            return SCOUT_ERROR;
        if (ep->nmeta < 0 || (unsigned)ep->nmeta > SCOUT_SNAPSHOT_MAX_META)
            return scout_seterr(err, "snapshot: service \"%s\" endpoint %s: %d meta "
                       "entries, over the %u limit", S(sv->name), ep->id,
                       ep->nmeta, SCOUT_SNAPSHOT_MAX_META);
        for (int j = 0; j < ep->nmeta; j++) {
            if (j > 0 && strcmp(S(ep->meta[j - 1].key),
                                S(ep->meta[j].key)) >= 0)
                return scout_seterr(err, "snapshot: service \"%s\" endpoint %s: meta "
                           "keys not sorted and unique at \"%s\"", S(sv->name),
                           ep->id, S(ep->meta[j].key));
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
    scout_endpoint_t *ep;
    unsigned n = 0;

    p = put_str(p, sv->name);
    p = put_str(p, sv->path);
    p = put_le(p, sv->index, 8);
    p = put_le(p, (uint64_t)sv->pzxid, 8);
    p = put_le(p, (uint64_t)sv->max_mzxid, 8);
    if (sv->eps != NULL) {
        for (unsigned i = 0; i < sv->eps->n; i++)
            sorted[n++] = sv->eps->eps[i];
    }
    qsort(sorted, n, sizeof(*sorted), by_endpoint_id);
    p = put_le(p, n, 4);
    for (unsigned i = 0; i < n; i++) {
        ep = sorted[i];
        p = put_str(p, ep->id);
        p = put_str(p, ep->host);
        p = put_str(p, ep->status);
        p = put_le(p, (uint32_t)ep->port, 4);
        p = put_le(p, (uint32_t)ep->weight, 4);
        p = put_le(p, (uint64_t)ep->zxid, 8);
        p = put_le(p, (uint32_t)ep->nmeta, 4);
        for (int j = 0; j < ep->nmeta; j++) {
            p = put_str(p, ep->meta[j].key);
            p = put_str(p, ep->meta[j].value);
        }
    }
    return p;
}

/* Whatever the endpoint rule lets through, the format holds. */
_Static_assert(SCOUT_ENDPOINT_MAX_STR <= SCOUT_SNAPSHOT_MAX_STR
               && SCOUT_ENDPOINT_MAX_META <= SCOUT_SNAPSHOT_MAX_META,
               "endpoint.h's limits must fit the snapshot's");

/* left_out == NULL: strict, the first service the reader would refuse fails
 * the whole encoding.  Otherwise such a service (or one that would take the
 * file over its size limit) is left out, counted in *left_out, and the
 * first reason goes to err. */
static int
encode(const char *ensemble, int64_t written_at_ms,
       const scout_snapshot_service_t *svcs, int n, char **buf, size_t *len,
       int *left_out, char *err)
{
    static const char writer[] = "scout " SCOUT_VERSION;
    const scout_snapshot_service_t **order = NULL;
    scout_endpoint_t **sorted = NULL;
    unsigned char *out = NULL, *p;
    uint64_t size = SCOUT_SNAPSHOT_HDR_LEN + 8 + 4;
    unsigned most = 0;
    int kept = 0;

    *buf = NULL;
    *len = 0;
    if (left_out != NULL)
        *left_out = 0;
    if (n < 0 || (unsigned)n > SCOUT_SNAPSHOT_MAX_SERVICES)
        return scout_seterr(err, "snapshot: %d services, over the %u limit", n,
                   SCOUT_SNAPSHOT_MAX_SERVICES);
    if (size_str(&size, writer, "", NULL, "writer", err) != SCOUT_OK
        || size_str(&size, ensemble, "", NULL, "ensemble", err) != SCOUT_OK)
        return SCOUT_ERROR;
    order = malloc((n > 0 ? (size_t)n : 1) * sizeof(*order));
    if (order == NULL)
        goto oom;
    for (int i = 0; i < n; i++)
        order[i] = &svcs[i];
    qsort(order, (size_t)n, sizeof(*order), by_service_name);
    for (int i = 0; i < n; i++) {
        uint64_t before = size;
        char why[SCOUT_ERR_LEN];

        if (i > 0 && strcmp(S(order[i - 1]->name), S(order[i]->name)) == 0) {
            scout_seterr(err, "snapshot: two services named \"%s\"",
                S(order[i]->name));
            goto fail;
        }
        why[0] = '\0';
        if (size_service(order[i], &size, why) == SCOUT_OK
            && size > SCOUT_SNAPSHOT_MAX_SIZE)
            scout_seterr(why, "snapshot: over the %u-byte limit at service "
                         "\"%s\"", SCOUT_SNAPSHOT_MAX_SIZE,
                         S(order[i]->name));
        if (why[0] != '\0') {
            if (left_out == NULL) {
                snprintf(err, SCOUT_ERR_LEN, "%s", why);
                goto fail;
            }
            if ((*left_out)++ == 0)
                snprintf(err, SCOUT_ERR_LEN, "%s", why);
            size = before;      /* as if it were not there */
            continue;
        }
        order[kept++] = order[i];
        if (order[i]->eps != NULL && order[i]->eps->n > most)
            most = order[i]->eps->n;
    }
    n = kept;

    sorted = malloc((most > 0 ? most : 1) * sizeof(*sorted));
    out = malloc((size_t)size);
    if (sorted == NULL || out == NULL)
        goto oom;
    p = out + SCOUT_SNAPSHOT_HDR_LEN;
    p = put_str(p, writer);
    p = put_str(p, ensemble);
    p = put_le(p, (uint64_t)written_at_ms, 8);
    p = put_le(p, (uint32_t)n, 4);
    for (int i = 0; i < n; i++)
        p = put_service(p, order[i], sorted);
    memcpy(out, magic, sizeof(magic));
    put_le(out + 8, SCOUT_SNAPSHOT_VERSION, 4);
    put_le(out + 12, 0, 4);
    put_le(out + 16, size - SCOUT_SNAPSHOT_HDR_LEN, 8);
    put_le(out + 24, XXH64(out + SCOUT_SNAPSHOT_HDR_LEN,
                           (size_t)size - SCOUT_SNAPSHOT_HDR_LEN, 0), 8);
    free(order);
    free(sorted);
    *buf = (char *)out;
    *len = (size_t)size;
    return SCOUT_OK;

oom:
    scout_seterr(err, "snapshot: out of memory");
fail:
    free(order);
    free(sorted);
    free(out);
    return SCOUT_ERROR;
}

int
scout_snapshot_encode(const char *ensemble, int64_t written_at_ms,
                      const scout_snapshot_service_t *svcs, int n,
                      char **buf, size_t *len, char *err)
{
    return encode(ensemble, written_at_ms, svcs, n, buf, len, NULL, err);
}

int
scout_snapshot_encode_each(const char *ensemble, int64_t written_at_ms,
                           const scout_snapshot_service_t *svcs, int n,
                           char **buf, size_t *len, int *left_out,
                           char *err)
{
    return encode(ensemble, written_at_ms, svcs, n, buf, len, left_out, err);
}

/* ---- records, assembled ------------------------------------------------- */

struct scout_snapshot_rec_s {
    int            refs;        /* atomic */
    uint32_t       name_len;
    size_t         len;         /* of the bytes */
    unsigned char *data;        /* the service's bytes as in the file, or
                                 * NULL once given back to the file    */
    uint64_t       hash;        /* XXH64 of the bytes                  */
    uint64_t       file_id;     /* the last file they were written to
                                 * (a commit's or the journal's)...    */
    uint64_t       off;         /* ...and where, in that file          */
    unsigned char  name[];      /* not NUL-terminated                  */
};

scout_snapshot_rec_t *
scout_snapshot_rec_new(const scout_snapshot_service_t *sv, char *err)
{
    scout_endpoint_t **sorted;
    scout_snapshot_rec_t *r;
    unsigned char *data;
    uint64_t size = 0;
    size_t name_len;
    unsigned n = sv->eps != NULL ? sv->eps->n : 0;

    if (size_service(sv, &size, err) != SCOUT_OK)
        return NULL;
    if (size > SCOUT_SNAPSHOT_MAX_SIZE) {
        scout_seterr(err, "snapshot: over the %u-byte limit at service "
                     "\"%s\"", SCOUT_SNAPSHOT_MAX_SIZE, S(sv->name));
        return NULL;
    }
    name_len = strlen(S(sv->name));
    sorted = malloc((n > 0 ? n : 1) * sizeof(*sorted));
    r = malloc(sizeof(*r) + name_len);
    data = malloc((size_t)size > 0 ? (size_t)size : 1);
    if (sorted == NULL || r == NULL || data == NULL) {
        free(sorted);
        free(r);
        free(data);
        scout_seterr(err, "snapshot: out of memory");
        return NULL;
    }
    r->refs = 1;
    r->len = (size_t)size;
    r->data = data;
    put_service(r->data, sv, sorted);
    free(sorted);
    r->hash = XXH64(r->data, r->len, 0);
    r->file_id = 0;             /* in no file yet */
    r->off = 0;
    r->name_len = (uint32_t)name_len;
    memcpy(r->name, S(sv->name), name_len);
    return r;
}

scout_snapshot_rec_t *
scout_snapshot_rec_ref(scout_snapshot_rec_t *r)
{
    if (r != NULL)
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

void
scout_snapshot_rec_unref(scout_snapshot_rec_t *r)
{
    if (r != NULL && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(r->data);
        free(r);
    }
}

/* Every file a record can name has an id of its own, the base's and the
 * journal's alike: a record names one file, and a file closed or replaced
 * never matches what was written to the one before it. */
static uint64_t
fresh_id(void)
{
    static uint64_t ids;

    return __atomic_add_fetch(&ids, 1, __ATOMIC_RELAXED);
}

void
scout_snapshot_file_adopt(scout_snapshot_file_t *f, int fd)
{
    scout_snapshot_file_close(f);   /* a fresh id */
    f->fd = fd;
}

void
scout_snapshot_rec_written(scout_snapshot_rec_t *r,
                           const scout_snapshot_file_t *file, uint64_t off)
{
    r->file_id = file->id;
    r->off = off;
}

/* The file of the two that holds r's bytes as written, or NULL. */
static const scout_snapshot_file_t *
where(const scout_snapshot_rec_t *r, const scout_snapshot_file_t *file,
      const scout_snapshot_file_t *journal)
{
    if (file != NULL && file->fd >= 0 && r->file_id == file->id)
        return file;
    if (journal != NULL && journal->fd >= 0 && r->file_id == journal->id)
        return journal;
    return NULL;
}

void
scout_snapshot_rec_release(scout_snapshot_rec_t *r,
                           const scout_snapshot_file_t *file)
{
    if (r->data != NULL && file != NULL && file->fd >= 0
        && r->file_id == file->id) {
        free(r->data);
        r->data = NULL;
    }
}

int
scout_snapshot_rec_current(const scout_snapshot_rec_t *r,
                           const scout_snapshot_file_t *file,
                           const scout_snapshot_file_t *journal)
{
    return r->data != NULL || where(r, file, journal) != NULL;
}

void
scout_snapshot_file_close(scout_snapshot_file_t *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->id = fresh_id();         /* what was written to it is stale now */
}

size_t
scout_snapshot_rec_size(const scout_snapshot_rec_t *r)
{
    return r->len;
}

const void *
scout_snapshot_rec_data(const scout_snapshot_rec_t *r)
{
    return r->data;
}

const void *
scout_snapshot_rec_name(const scout_snapshot_rec_t *r, size_t *len)
{
    *len = r->name_len;
    return r->name;
}

/* strcmp's order on names that hold no NUL (the encoder's order) */
static int
rec_cmp(const scout_snapshot_rec_t *a, const scout_snapshot_rec_t *b)
{
    size_t m = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, m);

    if (c != 0)
        return c;
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

static int
by_rec_name(const void *a, const void *b)
{
    return rec_cmp(*(scout_snapshot_rec_t *const *)a,
                   *(scout_snapshot_rec_t *const *)b);
}

/* What the file of recs is: the records kept (moved to the front, in name
 * order; *kept of them), its size, and its head -- the header and the
 * fields before the first record -- in a buffer of its own (*head,
 * *head_len: the caller frees it).  The checksum is left to seal(), once
 * the records' bytes are at hand. */
static int
plan(const char *ensemble, int64_t written_at_ms, scout_snapshot_rec_t **recs,
     int n, unsigned char **head, size_t *head_len, int *kept_out,
     uint64_t *size_out, int *left_out, char *err)
{
    static const char writer[] = "scout " SCOUT_VERSION;
    uint64_t size = SCOUT_SNAPSHOT_HDR_LEN + 8 + 4;
    unsigned char *out, *p;
    size_t hlen;
    int kept = 0;

    *head = NULL;
    *left_out = 0;
    if (n < 0 || (unsigned)n > SCOUT_SNAPSHOT_MAX_SERVICES)
        return scout_seterr(err, "snapshot: %d services, over the %u limit", n,
                   SCOUT_SNAPSHOT_MAX_SERVICES);
    if (size_str(&size, writer, "", NULL, "writer", err) != SCOUT_OK
        || size_str(&size, ensemble, "", NULL, "ensemble", err) != SCOUT_OK)
        return SCOUT_ERROR;
    hlen = (size_t)size;
    /* the agent hands them over in name order (it sorts once per service
     * list): one pass tells, instead of a sort of the registry per write */
    for (int i = 1; i < n; i++)
        if (rec_cmp(recs[i - 1], recs[i]) > 0) {
            qsort(recs, (size_t)n, sizeof(*recs), by_rec_name);
            break;
        }
    for (int i = 1; i < n; i++)
        if (rec_cmp(recs[i - 1], recs[i]) == 0)
            return scout_seterr(err, "snapshot: two services named \"%.*s\"",
                                (int)recs[i]->name_len,
                                (const char *)recs[i]->name);
    /* kept records move to the front in name order (the ones left out go
     * behind them, still the caller's to release) */
    for (int i = 0; i < n; i++) {
        scout_snapshot_rec_t *r = recs[i];

        if (size + r->len > SCOUT_SNAPSHOT_MAX_SIZE) {
            if ((*left_out)++ == 0)
                scout_seterr(err, "snapshot: over the %u-byte limit at "
                             "service \"%.*s\"", SCOUT_SNAPSHOT_MAX_SIZE,
                             (int)r->name_len, (const char *)r->name);
            continue;
        }
        size += r->len;
        recs[i] = recs[kept];
        recs[kept++] = r;
    }
    if ((out = malloc(hlen)) == NULL)
        return scout_seterr(err, "snapshot: out of memory");
    p = out + SCOUT_SNAPSHOT_HDR_LEN;
    p = put_str(p, writer);
    p = put_str(p, ensemble);
    p = put_le(p, (uint64_t)written_at_ms, 8);
    put_le(p, (uint32_t)kept, 4);
    memcpy(out, magic, sizeof(magic));
    put_le(out + 8, SCOUT_SNAPSHOT_VERSION, 4);
    put_le(out + 12, 0, 4);
    put_le(out + 16, size - SCOUT_SNAPSHOT_HDR_LEN, 8);
    put_le(out + 24, 0, 8);     /* the checksum: seal() */
    *head = out;
    *head_len = hlen;
    *kept_out = kept;
    *size_out = size;
    return SCOUT_OK;
}

int
scout_snapshot_assemble(const char *ensemble, int64_t written_at_ms,
                        scout_snapshot_rec_t **recs, int n, char **buf,
                        size_t *len, int *left_out, char *err)
{
    unsigned char *head, *out, *p;
    size_t hlen;
    uint64_t size;
    int kept;

    *buf = NULL;
    *len = 0;
    for (int i = 0; i < n; i++)
        if (recs[i]->data == NULL)
            return scout_seterr(err, "snapshot: the record of \"%.*s\" is "
                                "in the file, not in memory",
                                (int)recs[i]->name_len,
                                (const char *)recs[i]->name);
    if (plan(ensemble, written_at_ms, recs, n, &head, &hlen, &kept, &size,
             left_out, err) != SCOUT_OK)
        return SCOUT_ERROR;
    if ((out = malloc((size_t)size)) == NULL) {
        free(head);
        return scout_seterr(err, "snapshot: out of memory");
    }
    memcpy(out, head, hlen);
    p = out + hlen;
    for (int i = 0; i < kept; i++) {
        memcpy(p, recs[i]->data, recs[i]->len);
        p += recs[i]->len;
    }
    put_le(out + 24, XXH64(out + SCOUT_SNAPSHOT_HDR_LEN,
                           (size_t)size - SCOUT_SNAPSHOT_HDR_LEN, 0), 8);
    free(head);
    *buf = (char *)out;
    *len = (size_t)size;
    return SCOUT_OK;
}

/* The checksum over the head's fields and the records where they are
 * (iov[1..kept]), so the file need never be copied into one buffer; put in
 * the header and returned. */
static uint64_t
seal(unsigned char *head, size_t hlen, const struct iovec *iov, int kept)
{
    XXH64_state_t st;
    uint64_t sum;

    XXH64_reset(&st, 0);
    XXH64_update(&st, head + SCOUT_SNAPSHOT_HDR_LEN,
                 hlen - SCOUT_SNAPSHOT_HDR_LEN);
    for (int i = 1; i <= kept; i++)
        XXH64_update(&st, iov[i].iov_base, iov[i].iov_len);
    sum = XXH64_digest(&st);
    put_le(head + 24, sum, 8);
    return sum;
}

static int
pread_all(int fd, unsigned char *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t k = pread(fd, buf, len, (off_t)off);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return SCOUT_ERROR;         /* errno 0: shorter than written */
        buf += k;
        len -= (size_t)k;
        off += (uint64_t)k;
    }
    return SCOUT_OK;
}

/* iov[1 + i] := the bytes of kept record i: in memory, or read back from
 * file or the journal into pages of their own (*map, *map_len: unmapped
 * once written, so a write leaves nothing behind in the heap).  Records
 * that follow each other in one file are read in one pread (an unchanged
 * registry is one read).  SCOUT_AGAIN when one cannot be read back as it
 * was encoded; SCOUT_ERROR when out of memory. */
static int
read_back(const char *dir, scout_snapshot_rec_t **recs, int kept,
          const scout_snapshot_file_t *file,
          const scout_snapshot_file_t *journal, struct iovec *iov,
          unsigned char **map, size_t *map_len, char *err)
{
    size_t total = 0, at = 0;

    *map = NULL;
    *map_len = 0;
    for (int i = 0; i < kept; i++) {
        iov[i + 1].iov_base = recs[i]->data;
        iov[i + 1].iov_len = recs[i]->len;
        if (recs[i]->data == NULL)
            total += recs[i]->len;
    }
    if (total == 0)
        return SCOUT_OK;
    *map = mmap(NULL, total, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (*map == MAP_FAILED) {
        *map = NULL;
        return scout_seterr(err, "snapshot: out of memory");
    }
    *map_len = total;
    /* a few huge pages instead of a fault per 4 KB page, where the kernel
     * has them; then resident in one call (the same as MAP_POPULATE) */
    (void)madvise(*map, total, MADV_HUGEPAGE);
    (void)madvise(*map, total, MADV_POPULATE_WRITE);
    for (int i = 0; i < kept;) {
        scout_snapshot_rec_t *r = recs[i];
        const scout_snapshot_file_t *f = where(r, file, journal);
        const char *name = f == journal ? SCOUT_JOURNAL_FILE
                                        : SCOUT_SNAPSHOT_FILE;
        uint64_t off = r->off;
        size_t run = 0;
        int j = i;

        if (r->data != NULL) {
            i++;
            continue;
        }
        if (f == NULL) {
            scout_seterr(err, "snapshot: the record of \"%.*s\" was in a "
                         "file that is gone", (int)r->name_len,
                         (const char *)r->name);
            return SCOUT_AGAIN;
        }
        while (j < kept && recs[j]->data == NULL
               && recs[j]->file_id == f->id && recs[j]->off == off + run)
            run += recs[j++]->len;
        errno = 0;
        if (pread_all(f->fd, *map + at, run, off) != SCOUT_OK) {
            scout_seterr(err, "snapshot: reading back %s/%s: %s", dir, name,
                         errno ? strerror(errno)
                         : "shorter than it was written");
            return SCOUT_AGAIN;
        }
        for (; i < j; i++) {
            iov[i + 1].iov_base = *map + at;
            at += recs[i]->len;
            if (XXH64(iov[i + 1].iov_base, recs[i]->len, 0)
                != recs[i]->hash) {
                scout_seterr(err, "snapshot: %s/%s changed under the agent "
                             "(the record of \"%.*s\" is not what was "
                             "written)", dir, name,
                             (int)recs[i]->name_len,
                             (const char *)recs[i]->name);
                return SCOUT_AGAIN;
            }
        }
    }
    return SCOUT_OK;
}

/* After the rename: file is the new file, and each record written knows
 * where it is in it.  Opened by name: the checksum of each record read
 * back catches a file that is not what was written. */
static void
now_in(const char *dir, scout_snapshot_file_t *file,
       scout_snapshot_rec_t **recs, int kept, size_t hlen, uint64_t size,
       uint64_t sum, const struct stat *written)
{
    char path[4096];
    struct stat st;
    uint64_t off = hlen, id = fresh_id();
    int fd = -1;

    if (snprintf(path, sizeof(path), "%s/%s", dir, SCOUT_SNAPSHOT_FILE)
        < (int)sizeof(path))
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0 && (fstat(fd, &st) != 0 || (uint64_t)st.st_size != size)) {
        close(fd);
        fd = -1;
    }
    for (int i = 0; i < kept; i++) {
        recs[i]->file_id = id;
        recs[i]->off = off;
        off += recs[i]->len;
    }
    scout_snapshot_file_close(file);
    file->fd = fd;
    file->id = id;
    file->sum = sum;
    file->written = *written;
}

int
scout_snapshot_commit_recs(const char *dir, const char *ensemble,
                           int64_t written_at_ms, scout_snapshot_rec_t **recs,
                           int n, scout_snapshot_file_t *file,
                           scout_snapshot_file_t *journal, size_t *len,
                           int *left_out, char *err)
{
    unsigned char *head, *map = NULL;
    struct iovec *iov;
    struct stat written;
    size_t hlen, map_len = 0;
    uint64_t size, sum = 0;
    int kept, rc;

    *len = 0;
    if (plan(ensemble, written_at_ms, recs, n, &head, &hlen, &kept, &size,
             left_out, err) != SCOUT_OK)
        return SCOUT_ERROR;
    if ((iov = malloc((size_t)(kept + 1) * sizeof(*iov))) == NULL) {
        free(head);
        return scout_seterr(err, "snapshot: out of memory");
    }
    iov[0].iov_base = head;
    iov[0].iov_len = hlen;
    rc = read_back(dir, recs, kept, file, journal, iov, &map, &map_len,
                   err);
    if (rc == SCOUT_OK) {
        sum = seal(head, hlen, iov, kept);
        rc = scout_file_replace_iov(dir, SCOUT_SNAPSHOT_FILE,
                                    SCOUT_SNAPSHOT_TMP, iov, kept + 1, 0600,
                                    &written, err);
    } else if (rc == SCOUT_AGAIN) {
        /* all of it is suspect now, in either file */
        if (file != NULL)
            scout_snapshot_file_close(file);
        if (journal != NULL)
            scout_snapshot_file_close(journal);
    }
    if (map != NULL)
        munmap(map, map_len);
    free(iov);
    free(head);
    if (rc == SCOUT_OK) {
        *len = (size_t)size;
        if (file != NULL)
            now_in(dir, file, recs, kept, hlen, size, sum, &written);
    }
    return rc;
}

/* ---- commit ------------------------------------------------------------ */

int
scout_snapshot_commit(const char *dir, const void *buf, size_t len,
                      char *err)
{
    return scout_file_replace(dir, SCOUT_SNAPSHOT_FILE, SCOUT_SNAPSHOT_TMP,
                              buf, len, 0600, err);
}

int
scout_snapshot_write(const char *dir, const char *ensemble,
                     const scout_snapshot_service_t *svcs, int n, char *err)
{
    char *buf;
    size_t len;
    int rc;

    if (scout_snapshot_encode(ensemble, scout_wall_ms(), svcs, n, &buf, &len,
                              err) != SCOUT_OK)
        return SCOUT_ERROR;
    rc = scout_snapshot_commit(dir, buf, len, err);
    free(buf);
    return rc;
}
