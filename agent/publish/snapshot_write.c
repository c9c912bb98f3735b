/*
 * snapshot_write.c -- the writer side of the disk snapshot (snapshot.h):
 * services' records (snapshot_encode.c makes them) assembled into a file,
 * and the file committed to disk crash-safely.  It touches no agent state,
 * so the caller may run the blocking commit off the loop.
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
#include "publish/snapshot_rec.h"

/* ---- records ---------------------------------------------------------- */

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
    uint64_t size;
    unsigned char *out;
    size_t hlen;
    int kept = 0;

    *head = NULL;
    *left_out = 0;
    if (n < 0 || (unsigned)n > SCOUT_SNAPSHOT_MAX_SERVICES)
        return scout_seterr(err, "snapshot: %d services, over the %u limit", n,
                   SCOUT_SNAPSHOT_MAX_SERVICES);
    if (scout_snapshot_head_size(ensemble, &size, err) != SCOUT_OK)
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
    scout_snapshot_put_head(out, ensemble, written_at_ms, (uint32_t)kept,
                            size);     /* the checksum: seal() */
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
    scout_snapshot_put_sum(out, XXH64(out + SCOUT_SNAPSHOT_HDR_LEN,
                           (size_t)size - SCOUT_SNAPSHOT_HDR_LEN, 0));
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
    scout_snapshot_put_sum(head, sum);
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
