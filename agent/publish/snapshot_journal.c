/*
 * snapshot_journal.c -- the disk snapshot's journal (snapshot_journal.h):
 * records appended after a full snapshot.  The readers' side is
 * snapshot_merge.c, which indexes base and journal where they are.
 *
 * What this file must never do: leave a journal on disk whose records
 * before the last good one are not all there, or append to a base that is
 * not the file the agent wrote.
 */
#include "publish/snapshot_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "publish/file_replace.h"
#include "publish/snapshot_rd.h"

static const char jmagic[8] = { 'S', 'C', 'O', 'U', 'T', 'J', 'N', 'L' };

static void
put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- write -------------------------------------------------------------- */

static int
name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);

    return c != 0 ? c : (al > bl) - (al < bl);
}

static int
by_rec_name(const void *x, const void *y)
{
    size_t al, bl;
    const char *a = scout_snapshot_rec_name(*(scout_snapshot_rec_t *const *)x,
                                            &al);
    const char *b = scout_snapshot_rec_name(*(scout_snapshot_rec_t *const *)y,
                                            &bl);

    return name_cmp(a, al, b, bl);
}

void
scout_journal_close(scout_journal_t *j)
{
    scout_snapshot_file_close(&j->file);    /* its records are stale */
    j->end = 0;
}

/* A file's identity: device, inode, size, mtime. */
static void
id_of(const struct stat *st, uint64_t id[4])
{
    id[0] = (uint64_t)st->st_dev;
    id[1] = (uint64_t)st->st_ino;
    id[2] = (uint64_t)st->st_size;
    id[3] = (uint64_t)st->st_mtim.tv_sec * 1000000000u
            + (uint64_t)st->st_mtim.tv_nsec;
}

/* The base file's identity now, or 0s. */
static void
base_id(const char *dir, uint64_t id[4])
{
    char path[4096];
    struct stat st;

    memset(id, 0, 4 * sizeof(*id));
    if (snprintf(path, sizeof(path), "%s/%s", dir, SCOUT_SNAPSHOT_FILE)
        < (int)sizeof(path) && lstat(path, &st) == 0)
        id_of(&st, id);
}

/* 1 when the base's header still says the body length and checksum the
 * journal names: an edit within the mtime's granularity (a few ms) that
 * kept the size is still seen once its checksum was made to match. */
static int
base_header_is(const char *dir, uint64_t len, uint64_t sum)
{
    char path[4096];
    unsigned char h[SCOUT_SNAPSHOT_HDR_LEN];
    int fd, ok = 0;

    if (snprintf(path, sizeof(path), "%s/%s", dir, SCOUT_SNAPSHOT_FILE)
        >= (int)sizeof(path)
        || (fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW))
           < 0)
        return 0;
    if (pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h))
        ok = memcmp(h, "SCOUTSNP", 8) == 0
             && scout_snaprd_le(h + 16, 8) == len
             && scout_snaprd_le(h + 24, 8) == sum;
    close(fd);
    return ok;
}

static void
rebase(scout_journal_t *j, const char *dir, uint64_t base_sum,
       uint64_t base_len, const uint64_t id[4])
{
    char path[4096];

    scout_journal_close(j);
    j->base_sum = base_sum;
    j->base_len = base_len;
    memcpy(j->base_id, id, sizeof(j->base_id));
    if (snprintf(path, sizeof(path), "%s/%s", dir, SCOUT_JOURNAL_FILE)
        < (int)sizeof(path))
        (void)unlink(path);
}

void
scout_journal_rebase(scout_journal_t *j, const char *dir, uint64_t base_sum,
                     uint64_t base_len)
{
    uint64_t id[4];

    base_id(dir, id);
    rebase(j, dir, base_sum, base_len, id);
}

/* The agent's own writes: the identity and checksum its commit knew before
 * the rename.  Taken from the file by name afterwards (as it was), an edit
 * landing between the rename and that stat was adopted as the agent's own
 * base -- its mtime, its fixed checksum -- and every later append extended
 * it: the readers folded the journal into the edited base, and the disk
 * snapshot never came back to what ZooKeeper holds. */
void
scout_journal_rebase_written(scout_journal_t *j, const char *dir,
                             const scout_snapshot_file_t *written,
                             uint64_t base_len)
{
    uint64_t id[4];

    id_of(&written->written, id);
    rebase(j, dir, written->sum, base_len, id);
}

static int
write_all_at(int fd, struct iovec *iov, int cnt, uint64_t off)
{
    while (cnt > 0) {
        ssize_t k = pwritev(fd, iov, cnt, (off_t)off);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return SCOUT_ERROR;
        off += (uint64_t)k;
        while (cnt > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return SCOUT_OK;
}

int
scout_journal_append(scout_journal_t *j, const char *dir,
                     int64_t written_at_ms, scout_snapshot_rec_t **recs,
                     int n, size_t *wrote, char *err)
{
    unsigned char fh[SCOUT_JOURNAL_HDR_LEN], rh[SCOUT_JOURNAL_REC_HDR + 12];
    struct iovec *iov;
    XXH64_state_t st;
    uint64_t len = 12;
    char path[4096];
    int rc = SCOUT_ERROR, first = j->file.fd < 0, k = 0, fd;
    uint64_t id[4], at;

    *wrote = 0;
    base_id(dir, id);
    if (id[1] == 0 || memcmp(id, j->base_id, sizeof(id)) != 0
        || !base_header_is(dir, j->base_len, j->base_sum)) {
        scout_seterr(err, "journal: %s/%s is not the file the agent wrote "
                     "(replaced or changed under it)", dir,
                     SCOUT_SNAPSHOT_FILE);
        return SCOUT_AGAIN;
    }
    qsort(recs, (size_t)n, sizeof(*recs), by_rec_name);
    for (int i = 0; i < n; i++) {
        if (scout_snapshot_rec_data(recs[i]) == NULL)
            return scout_seterr(err, "journal: a record is in the base, "
                                "not in memory");
        if (i > 0 && by_rec_name(&recs[i - 1], &recs[i]) == 0)
            return scout_seterr(err, "journal: two records of one "
                                "service");
        len += scout_snapshot_rec_size(recs[i]);
    }
    if (len > SCOUT_SNAPSHOT_MAX_SIZE)
        return scout_seterr(err, "journal: a record over the size limit");
    if ((iov = malloc((size_t)(n + 2) * sizeof(*iov))) == NULL)
        return scout_seterr(err, "journal: out of memory");
    memcpy(fh, jmagic, 8);
    put_le(fh + 8, SCOUT_JOURNAL_VERSION, 4);
    put_le(fh + 12, 0, 4);
    put_le(fh + 16, j->base_len, 8);
    put_le(fh + 24, j->base_sum, 8);
    if (first) {
        iov[k].iov_base = fh;
        iov[k++].iov_len = sizeof(fh);
    }
    put_le(rh, len, 4);
    put_le(rh + 12, (uint64_t)written_at_ms, 8);
    put_le(rh + 20, (uint32_t)n, 4);
    iov[k].iov_base = rh;
    iov[k++].iov_len = sizeof(rh);
    XXH64_reset(&st, 0);
    XXH64_update(&st, rh + SCOUT_JOURNAL_REC_HDR, 12);
    for (int i = 0; i < n; i++) {
        iov[k].iov_base = (void *)scout_snapshot_rec_data(recs[i]);
        iov[k].iov_len = scout_snapshot_rec_size(recs[i]);
        XXH64_update(&st, iov[k].iov_base, iov[k].iov_len);
        k++;
    }
    put_le(rh + 4, XXH64_digest(&st), 8);
    if (first) {
        /* a new journal appears whole, naming its base, or not at all */
        if (scout_file_replace_iov(dir, SCOUT_JOURNAL_FILE, SCOUT_JOURNAL_TMP,
                                   iov, k, 0600, NULL, err) != SCOUT_OK)
            goto done;
        /* read and written: the records appended are read back from it
         * (each against its own XXH64: a file swapped in is caught) */
        if (snprintf(path, sizeof(path), "%s/%s", dir, SCOUT_JOURNAL_FILE)
            >= (int)sizeof(path)
            || (fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
            scout_seterr(err, "journal %s/%s: open: %s", dir,
                         SCOUT_JOURNAL_FILE, strerror(errno));
            goto done;
        }
        scout_snapshot_file_adopt(&j->file, fd);
        at = sizeof(fh);
        j->end = sizeof(fh) + SCOUT_JOURNAL_REC_HDR + len;
        *wrote = (size_t)j->end;
    } else {
        /* at the end of the last good record: a torn append before this
         * one is written over */
        if (write_all_at(j->file.fd, iov, k, j->end) != SCOUT_OK
            || fdatasync(j->file.fd) != 0) {
            scout_seterr(err, "journal %s/%s: append: %s", dir,
                         SCOUT_JOURNAL_FILE, strerror(errno));
            goto done;
        }
        at = j->end;
        j->end += SCOUT_JOURNAL_REC_HDR + len;
        *wrote = SCOUT_JOURNAL_REC_HDR + (size_t)len;
    }
    /* where each service's bytes are now: after the record's header and
     * its written_at and count, in the order written */
    at += sizeof(rh);
    for (int i = 0; i < n; i++) {
        scout_snapshot_rec_written(recs[i], &j->file, at);
        at += scout_snapshot_rec_size(recs[i]);
    }
    rc = SCOUT_OK;

done:
    free(iov);
    return rc;
}
