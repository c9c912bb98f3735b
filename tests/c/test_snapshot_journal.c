/*
 * test_snapshot_journal.c -- the disk snapshot's journal (snapshot_journal.h):
 * base + journal read back byte for byte as the full file a whole write of
 * the same state gives (by the reference fold, snapfold.h, which
 * test_snapshot_merge holds the readers to); a torn or garbage tail loses
 * only the torn record; a journal naming another base is never applied; an
 * append after a torn one writes over it; an append refuses a base
 * replaced or edited under it, even one edited between the commit's rename
 * and the journal's rebase (the writer thread, niced, can be preempted
 * there for seconds on a loaded host).
 */
#include "snapshot_fixtures.h"
#include "publish/snapshot_journal.h"
#include "snapfold.h"

#include <sys/mman.h>

#define ENS "127.0.0.1:2181"
#define NS  5

static scout_epset_t sets[NS + 1];
static scout_snapshot_service_t svcs[NS + 1];
static char names[NS + 1][16], paths[NS + 1][16];

/* Service i's state at version v: v + 1 endpoints. */
static void
set_service(int i, int v)
{
    scout_epset_free(&sets[i]);
    scout_epset_init(&sets[i]);
    for (int e = 0; e <= v; e++) {
        char id[32], host[32];

        snprintf(id, sizeof(id), "10.0.%d.%d:80", i, e);
        snprintf(host, sizeof(host), "10.0.%d.%d", i, e);
        scout_epset_put(&sets[i], mk_ep(id, host, 80, 1 + v, "up",
                                        100 * v + e, 1, "v", "x"));
    }
    snprintf(names[i], sizeof(names[i]), "svc-%d", i);
    snprintf(paths[i], sizeof(paths[i]), "/s/%d", i);
    svcs[i] = (scout_snapshot_service_t){ names[i], paths[i],
                                          (uint64_t)(10 + v), 5 * v, 7 * v,
                                          &sets[i] };
}

static scout_snapshot_rec_t *
rec(int i)
{
    char err[SCOUT_ERR_LEN];
    scout_snapshot_rec_t *r = scout_snapshot_rec_new(&svcs[i], err);

    CHECK(r != NULL, "%s", err);
    return r;
}

/* The bytes a whole write of services [0, n) gives at at_ms. */
static char *
expect(int n, int64_t at_ms, size_t *len)
{
    char err[SCOUT_ERR_LEN], *buf = NULL;

    CHECK(scout_snapshot_encode(ENS, at_ms, svcs, n, &buf, len, err)
          == SCOUT_OK, "%s", err);
    return buf;
}

/* The state the files stand for equals the whole write's bytes. */
static int
loads_as(const char *want, size_t want_len, char *note)
{
    char err[SCOUT_ERR_LEN];
    unsigned char *buf;
    size_t size, got;
    uint64_t base_sum;
    int same;

    if (ref_fold_load(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), &buf,
                               &size, &got, &base_sum, note, err)
        != SCOUT_OK) {
        fprintf(stderr, "load: %s\n", err);
        return 0;
    }
    same = got == want_len && memcmp(buf, want, got) == 0;
    if (!same)
        fprintf(stderr, "loaded %zu bytes, want %zu (note: %s)\n", got,
                want_len, note);
    munmap(buf, size);
    return same;
}

static size_t
file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

static void
test_base_and_journal_read_back_as_the_whole_write(void)
{
    char err[SCOUT_ERR_LEN], note[SCOUT_ERR_LEN], *want1, *want2, *want3;
    char *base_bytes;
    scout_snapshot_file_t file = SCOUT_SNAPSHOT_FILE_INIT;
    scout_journal_t j = SCOUT_JOURNAL_INIT;
    scout_snapshot_rec_t *recs[NS + 1];
    char jpath[512];
    size_t len, wrote, want1_len, want2_len, want3_len, base_len, end1, end2;
    int left_out = 0;
    uint64_t sum;
    FILE *f;

    snprintf(jpath, sizeof(jpath), "%s", path_in(tmpdir, SCOUT_JOURNAL_FILE));
    for (int i = 0; i < NS; i++) {
        set_service(i, 0);
        recs[i] = rec(i);
    }
    CHECK(scout_snapshot_commit_recs(tmpdir, ENS, 1000, recs, NS, &file, NULL,
                                     &len, &left_out, err) == SCOUT_OK,
          "%s", err);
    for (int i = 0; i < NS; i++)
        scout_snapshot_rec_unref(recs[i]);
    base_bytes = expect(NS, 1000, &base_len);
    CHECK(base_len == len);
    sum = 0;
    for (int b = 7; b >= 0; b--)
        sum = sum << 8 | (unsigned char)base_bytes[24 + b];
    scout_journal_rebase(&j, tmpdir, sum, len - SCOUT_SNAPSHOT_HDR_LEN);
    CHECK(loads_as(base_bytes, base_len, note) && note[0] == '\0',
          "no journal: the base alone, nothing said (%s)", note);

    /* record 1: svc-2 changes */
    set_service(2, 1);
    recs[0] = rec(2);
    CHECK(scout_journal_append(&j, tmpdir, 2000, recs, 1, &wrote, err)
          == SCOUT_OK, "%s", err);
    scout_snapshot_rec_unref(recs[0]);
    end1 = file_size(jpath);
    CHECK(wrote == end1 && end1 > SCOUT_JOURNAL_HDR_LEN);
    want1 = expect(NS, 2000, &want1_len);
    CHECK(loads_as(want1, want1_len, note));
    CHECK(strstr(note, "1 record applied") != NULL, "%s", note);

    /* record 2: svc-4 changes, svc-2 again, and a new service (sorted by
     * name in the record whatever the order given) */
    set_service(4, 2);
    set_service(2, 3);
    set_service(NS, 1);
    recs[0] = rec(NS);
    recs[1] = rec(4);
    recs[2] = rec(2);
    CHECK(scout_journal_append(&j, tmpdir, 3000, recs, 3, &wrote, err)
          == SCOUT_OK, "%s", err);
    for (int i = 0; i < 3; i++)
        scout_snapshot_rec_unref(recs[i]);
    end2 = file_size(jpath);
    CHECK(end2 == end1 + wrote);
    want2 = expect(NS + 1, 3000, &want2_len);
    CHECK(loads_as(want2, want2_len, note), "two records: the newest wins");
    CHECK(strstr(note, "2 records applied") != NULL, "%s", note);

    /* the full reader says the same, and says what the journal did */
    {
        scout_snapshot_t *s = scout_snapshot_read(
            path_in(tmpdir, SCOUT_SNAPSHOT_FILE), err);
        scout_snapshot_service_t got;

        CHECK(s != NULL, "%s", err);
        if (s != NULL) {
            CHECK(scout_snapshot_count(s) == NS + 1);
            scout_snapshot_get(s, scout_snapshot_find(s, "svc-2"), &got);
            CHECK(got.index == 13 && set_equal(got.eps, &sets[2]));
            CHECK(scout_snapshot_written_at_ms(s) == 3000);
            CHECK(strstr(scout_snapshot_note(s), "2 records applied"));
            scout_snapshot_free(s);
        }
    }

    /* garbage after the last record: ignored, every record holds */
    f = fopen(jpath, "ab");
    {
        static const char junk[] = "\x30\0\0\0garbage-garbage-garbage";

        fwrite(junk, 1, sizeof(junk) - 1, f);
    }
    fclose(f);
    CHECK(loads_as(want2, want2_len, note));
    CHECK(strstr(note, "2 records applied") && strstr(note, "ignored"),
          "%s", note);

    /* the last record torn: the one before it holds */
    CHECK(truncate(jpath, (off_t)(end2 - 1)) == 0);
    CHECK(loads_as(want1, want1_len, note));
    CHECK(strstr(note, "1 record applied") && strstr(note, "ignored"),
          "%s", note);

    /* the last record whole in length but its last byte zeroed (its meta
     * value "x"): its checksum ends the journal there */
    CHECK(truncate(jpath, (off_t)end2) == 0);
    CHECK(loads_as(want1, want1_len, note), "%s", note);

    /* an append after a torn one starts at the end of the last good
     * record (the writer's own end): the journal is whole again */
    j.end = end1;
    set_service(1, 4);
    recs[0] = rec(1);
    CHECK(scout_journal_append(&j, tmpdir, 4000, recs, 1, &wrote, err)
          == SCOUT_OK, "%s", err);
    scout_snapshot_rec_unref(recs[0]);
    set_service(4, 0);                  /* the torn record never happened */
    set_service(2, 1);
    want3 = expect(NS, 4000, &want3_len);
    CHECK(loads_as(want3, want3_len, note), "%s", note);

    /* a journal naming another base: never applied, and said */
    {
        int fd = open(jpath, O_WRONLY);
        unsigned char other[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

        CHECK(fd >= 0 && pwrite(fd, other, 8, 24) == 8);
        close(fd);
    }
    CHECK(loads_as(base_bytes, base_len, note));
    CHECK(strstr(note, "written for another snapshot") != NULL, "%s", note);

    /* the base replaced under the writer: nothing appended */
    CHECK(scout_snapshot_commit(tmpdir, base_bytes, base_len, err)
          == SCOUT_OK, "%s", err);
    recs[0] = rec(1);
    CHECK(scout_journal_append(&j, tmpdir, 5000, recs, 1, &wrote, err)
          == SCOUT_AGAIN, "%s", err);
    scout_snapshot_rec_unref(recs[0]);

    /* the base edited in place within its mtime's granularity, the size
     * kept and the checksum made to match (here: mtime put back): the
     * header tells, nothing appended */
    scout_journal_rebase(&j, tmpdir, sum, len - SCOUT_SNAPSHOT_HDR_LEN);
    {
        const char *bp = path_in(tmpdir, SCOUT_SNAPSHOT_FILE);
        struct stat st;
        struct timespec ts[2];
        unsigned char other[8] = { 8, 7, 6, 5, 4, 3, 2, 1 };
        int fd = open(bp, O_WRONLY);

        CHECK(stat(bp, &st) == 0 && fd >= 0
              && pwrite(fd, other, 8, 24) == 8);
        close(fd);
        ts[0] = st.st_atim;
        ts[1] = st.st_mtim;
        CHECK(utimensat(AT_FDCWD, bp, ts, 0) == 0);
    }
    recs[0] = rec(1);
    CHECK(scout_journal_append(&j, tmpdir, 6000, recs, 1, &wrote, err)
          == SCOUT_AGAIN, "%s", err);
    scout_snapshot_rec_unref(recs[0]);

    /* a rebase removes the old journal */
    scout_journal_rebase(&j, tmpdir, sum, len - SCOUT_SNAPSHOT_HDR_LEN);
    CHECK(!exists(jpath));

    scout_journal_close(&j);
    scout_snapshot_file_close(&file);
    free(base_bytes);
    free(want1);
    free(want2);
    free(want3);
    for (int i = 0; i <= NS; i++)
        scout_epset_free(&sets[i]);
    unlink(jpath);
    unlink(path_in(tmpdir, SCOUT_JOURNAL_TMP));
}

/* The agent's rebase names the base as its commit wrote it.  An edit that
 * lands after the rename (the file is visible) but before the rebase (here:
 * between the two calls) was taken for the agent's own base when the
 * rebase stat'ed and read the file by name: the appends then extended the
 * edited base, the readers folded them into it, and the disk snapshot
 * stayed off ZooKeeper for good (test_outputs_churn's edited_under test
 * timed out under load). */
static void
test_an_edit_before_the_rebase_is_not_the_base(void)
{
    char err[SCOUT_ERR_LEN], jpath[512];
    scout_snapshot_file_t file = SCOUT_SNAPSHOT_FILE_INIT;
    scout_journal_t j = SCOUT_JOURNAL_INIT;
    scout_snapshot_rec_t *recs[NS + 1];
    size_t len, wrote;
    int left_out = 0;

    snprintf(jpath, sizeof(jpath), "%s", path_in(tmpdir, SCOUT_JOURNAL_FILE));
    for (int i = 0; i < NS; i++)
        set_service(i, 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < NS; i++)
            recs[i] = rec(i);
        CHECK(scout_snapshot_commit_recs(tmpdir, ENS, 1000 + round, recs, NS,
                                         &file, NULL, &len, &left_out, err)
              == SCOUT_OK, "%s", err);
        for (int i = 0; i < NS; i++)
            scout_snapshot_rec_unref(recs[i]);
        if (round == 1) {
            /* in place, the size kept, the header's checksum changed as a
             * fixed-up edit changes it */
            unsigned char other[8] = { 8, 7, 6, 5, 4, 3, 2, 1 };
            int fd = open(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), O_WRONLY);

            CHECK(fd >= 0 && pwrite(fd, other, 8, 24) == 8);
            close(fd);
        }
        scout_journal_rebase_written(&j, tmpdir, &file,
                                     len - SCOUT_SNAPSHOT_HDR_LEN);
        set_service(1, 1 + round);
        recs[0] = rec(1);
        if (round == 0)         /* untouched: the file written is the base */
            CHECK(scout_journal_append(&j, tmpdir, 2000, recs, 1, &wrote,
                                       err) == SCOUT_OK, "%s", err);
        else                    /* edited: not the agent's base, refused */
            CHECK(scout_journal_append(&j, tmpdir, 3000, recs, 1, &wrote,
                                       err) == SCOUT_AGAIN,
                  "appended to a base edited after its rename (%s)", err);
        scout_snapshot_rec_unref(recs[0]);
    }
    scout_journal_close(&j);
    scout_snapshot_file_close(&file);
    unlink(jpath);
    unlink(path_in(tmpdir, SCOUT_JOURNAL_TMP));
    unlink(path_in(tmpdir, SCOUT_SNAPSHOT_FILE));
    for (int i = 0; i <= NS; i++)
        scout_epset_free(&sets[i]);
}

/* A record appended to the journal gives its bytes back as one in the base
 * does: the agent held every record appended since the last full write
 * (at 10,000 x 10, the 1,622 services a sync put in the journal after its
 * last base: 0.9 MB), now the journal holds them.  Released, it has no
 * bytes and is still current; the next base, built from the base's and
 * the journal's records read back where they are, is byte for byte the
 * encoder's; a journal changed under the writer is never copied (both
 * files forgotten, every record stale), and one closed makes its records
 * stale. */
static void
test_journal_records_give_their_bytes_back(void)
{
    char err[SCOUT_ERR_LEN], jpath[512], *want, *got, *before;
    scout_snapshot_file_t file = SCOUT_SNAPSHOT_FILE_INIT;
    scout_journal_t j = SCOUT_JOURNAL_INIT;
    scout_snapshot_rec_t *cur[NS + 1], *recs[NS + 1];
    size_t len, wrote, want_len, got_len, before_len;
    int left_out = 0;
    const char *bp = path_in(tmpdir, SCOUT_SNAPSHOT_FILE);

    snprintf(jpath, sizeof(jpath), "%s", path_in(tmpdir, SCOUT_JOURNAL_FILE));
    for (int i = 0; i < NS; i++) {
        set_service(i, 0);
        cur[i] = recs[i] = rec(i);
    }
    CHECK(scout_snapshot_commit_recs(tmpdir, ENS, 1000, recs, NS, &file,
                                     &j.file, &len, &left_out, err)
          == SCOUT_OK, "%s", err);
    for (int i = 0; i < NS; i++)
        scout_snapshot_rec_release(cur[i], &file);
    scout_journal_rebase_written(&j, tmpdir, &file,
                                 len - SCOUT_SNAPSHOT_HDR_LEN);

    /* two appends: svc-1; then svc-3 and a new service */
    set_service(1, 1);
    scout_snapshot_rec_unref(cur[1]);
    recs[0] = cur[1] = rec(1);
    CHECK(scout_journal_append(&j, tmpdir, 2000, recs, 1, &wrote, err)
          == SCOUT_OK, "%s", err);
    set_service(3, 2);
    set_service(NS, 1);
    scout_snapshot_rec_unref(cur[3]);
    recs[0] = cur[NS] = rec(NS);
    recs[1] = cur[3] = rec(3);
    CHECK(scout_journal_append(&j, tmpdir, 3000, recs, 2, &wrote, err)
          == SCOUT_OK, "%s", err);
    for (int i = 0; i <= NS; i++) {
        scout_snapshot_rec_release(cur[i], &j.file);
        CHECK(scout_snapshot_rec_data(cur[i]) == NULL,
              "record %d keeps its bytes after the append", i);
        CHECK(scout_snapshot_rec_current(cur[i], &file, &j.file));
    }
    /* svc-1, svc-3 and the new one are in the journal, not the base */
    CHECK(!scout_snapshot_rec_current(cur[1], &file, NULL)
          && !scout_snapshot_rec_current(cur[3], &file, NULL)
          && !scout_snapshot_rec_current(cur[NS], &file, NULL));

    /* the next base from both files: what the encoder gives */
    for (int i = 0; i <= NS; i++)
        recs[i] = cur[i];
    CHECK(scout_snapshot_commit_recs(tmpdir, ENS, 4000, recs, NS + 1, &file,
                                     &j.file, &len, &left_out, err)
          == SCOUT_OK, "%s", err);
    want = expect(NS + 1, 4000, &want_len);
    got = slurp(bp, &got_len);
    CHECK(want != NULL && got != NULL && got_len == want_len
          && len == want_len && memcmp(got, want, want_len) == 0,
          "the base from records read back from the journal differs from "
          "the encoder's");
    free(want);
    free(got);
    for (int i = 0; i <= NS; i++)       /* all in the new base now */
        CHECK(scout_snapshot_rec_current(cur[i], &file, NULL));
    scout_journal_rebase_written(&j, tmpdir, &file,
                                 len - SCOUT_SNAPSHOT_HDR_LEN);

    /* a journal closed: its records are stale, the base's are not */
    set_service(2, 1);
    scout_snapshot_rec_unref(cur[2]);
    recs[0] = cur[2] = rec(2);
    CHECK(scout_journal_append(&j, tmpdir, 5000, recs, 1, &wrote, err)
          == SCOUT_OK, "%s", err);
    scout_snapshot_rec_release(cur[2], &j.file);
    {
        scout_snapshot_file_t gone = j.file;

        CHECK(scout_snapshot_rec_current(cur[2], &file, &gone));
        gone.fd = -1;           /* as scout_journal_close leaves it */
        CHECK(!scout_snapshot_rec_current(cur[2], &file, &gone)
              && scout_snapshot_rec_current(cur[0], &file, &gone));
    }

    /* one byte of the journal's record changed under the writer: never
     * copied, nothing replaced, both files forgotten */
    {
        int fd = open(jpath, O_WRONLY);
        char x = 0x5a;

        CHECK(fd >= 0 && pwrite(fd, &x, 1, (off_t)file_size(jpath) - 1)
                         == 1);
        if (fd >= 0)
            close(fd);
    }
    before = slurp(bp, &before_len);
    for (int i = 0; i <= NS; i++)
        recs[i] = cur[i];
    CHECK(scout_snapshot_commit_recs(tmpdir, ENS, 6000, recs, NS + 1, &file,
                                     &j.file, &len, &left_out, err)
          == SCOUT_AGAIN);
    CHECK_ERR(err, SCOUT_JOURNAL_FILE " changed under the agent");
    got = slurp(bp, &got_len);
    CHECK(before != NULL && got != NULL && got_len == before_len
          && memcmp(got, before, got_len) == 0, "the base was replaced");
    free(got);
    free(before);
    CHECK(file.fd < 0 && j.file.fd < 0);
    for (int i = 0; i <= NS; i++)
        CHECK(!scout_snapshot_rec_current(cur[i], &file, &j.file));

    for (int i = 0; i <= NS; i++)
        scout_snapshot_rec_unref(cur[i]);
    scout_journal_close(&j);
    scout_snapshot_file_close(&file);
    unlink(jpath);
    unlink(bp);
    for (int i = 0; i <= NS; i++)
        scout_epset_free(&sets[i]);
}

int
main(void)
{
    if (snapshot_fixtures_start() != 0)
        return 2;
    for (int i = 0; i <= NS; i++)
        scout_epset_init(&sets[i]);
    RUN(test_base_and_journal_read_back_as_the_whole_write());
    RUN(test_an_edit_before_the_rebase_is_not_the_base());
    RUN(test_journal_records_give_their_bytes_back());
    snapshot_fixtures_stop();
    return test_summary();
}
