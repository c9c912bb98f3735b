/*
 * test_snapshot.c -- the disk snapshot: every field survives a round trip;
 * records are encoded and written in place, the very bytes of the encoder,
 * also once their bytes went back to the file (and never from a file that
 * changed under the writer);
 * a failed write leaves no temp file and the old snapshot intact.  Also
 * measures encode/commit/read of 10,000 services x 10 endpoints (printed,
 * never asserted).  Files that must be refused are in test_snapshot_refuse.c
 * (fixtures shared through snapshot_fixtures.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_endpoints.h"
#include "testing.h"
#include "scout.h"
#include "publish/snapshot.h"

#include "snapshot_fixtures.h"

static void
test_roundtrip(void)
{
    char err[SCOUT_ERR_LEN] = "";
    scout_snapshot_service_t got;
    scout_snapshot_t *s;
    scout_epset_t taken;
    struct stat st;
    int64_t before = scout_wall_ms(), after;
    int i;

    CHECK(scout_snapshot_write(tmpdir, "zk1:2181,zk2:2181/scout", small, 3,
                               err) == SCOUT_OK);
    after = scout_wall_ms();
    CHECK(!exists(path_in(tmpdir, SCOUT_SNAPSHOT_TMP)));
    CHECK(stat(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), &st) == 0
          && (st.st_mode & 0777) == 0600);
    s = scout_snapshot_read(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), err);
    CHECK(s != NULL);
    if (s == NULL) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK(strcmp(scout_snapshot_ensemble(s), "zk1:2181,zk2:2181/scout") == 0);
    CHECK(strcmp(scout_snapshot_writer(s), "scout " SCOUT_VERSION) == 0);
    /* stamped by the write: between the clock read before and after it */
    CHECK(scout_snapshot_written_at_ms(s) >= before
          && scout_snapshot_written_at_ms(s) <= after, "%lld not in "
          "[%lld, %lld]", (long long)scout_snapshot_written_at_ms(s),
          (long long)before, (long long)after);
    CHECK(scout_snapshot_count(s) == 3);
    CHECK(scout_snapshot_find(s, "nope") == -1);
    for (int k = 0; k < 3; k++) {
        i = scout_snapshot_find(s, small[k].name);
        CHECK(i >= 0);
        if (i < 0)
            continue;
        scout_snapshot_get(s, i, &got);
        CHECK(strcmp(got.name, small[k].name) == 0);
        CHECK(strcmp(got.path, small[k].path) == 0);
        CHECK(got.index == small[k].index);
        CHECK(got.pzxid == small[k].pzxid);
        CHECK(got.max_mzxid == small[k].max_mzxid);
        CHECK(set_equal(got.eps, small[k].eps));
        CHECK(got.eps->json == NULL);
    }
    /* sorted by name */
    scout_snapshot_get(s, 0, &got);
    CHECK(strcmp(got.name, "idle") == 0);

    /* take: moved out, JSON renders, snapshot keeps an empty set; dst's old
     * content is freed (valgrind/ASan see a leak otherwise) */
    scout_epset_init(&taken);
    scout_epset_put(&taken, mk_ep("old", "h", 1, 1, "up", 1, 0));
    i = scout_snapshot_find(s, "orders");
    scout_snapshot_take(s, i, &taken);
    CHECK(set_equal(&taken, &orders));
    {
        size_t len;
        const char *json = scout_epset_json(&taken, &len);
        CHECK(json != NULL && strstr(json, "\"zone\":\"a\xc3\xa9\"") != NULL);
    }
    scout_snapshot_get(s, i, &got);
    CHECK(got.eps->n == 0 && got.eps->eps == NULL);
    scout_epset_free(&taken);
    scout_snapshot_free(s);

    /* zero services is a valid snapshot */
    CHECK(scout_snapshot_write(tmpdir, "", NULL, 0, err) == SCOUT_OK);
    s = scout_snapshot_read(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), err);
    CHECK(s != NULL && scout_snapshot_count(s) == 0);
    CHECK(s != NULL && scout_snapshot_find(s, "x") == -1);
    scout_snapshot_free(s);
}

static void
test_encode(void)
{
    char err[SCOUT_ERR_LEN] = "", *a, *b;
    size_t la, lb;
    scout_snapshot_service_t rev[3] = { small[2], small[0], small[1] }, dup[2];
    scout_epset_t bad;
    char *toolong = malloc(SCOUT_SNAPSHOT_MAX_STR + 2);

    /* deterministic: same state, any order, same bytes */
    CHECK(scout_snapshot_encode("e", 1234, small, 3, &a, &la, err)
          == SCOUT_OK);
    CHECK(scout_snapshot_encode("e", 1234, rev, 3, &b, &lb, err) == SCOUT_OK);
    CHECK(la == lb && memcmp(a, b, la) == 0);
    CHECK(memcmp(a, "SCOUTSNP\x01\0\0\0\0\0\0\0", 16) == 0);
    free(a);
    free(b);

    /* what the reader would refuse is refused here, with a reason */
    dup[0] = small[0];
    dup[1] = small[0];
    CHECK(scout_snapshot_encode("e", 0, dup, 2, &a, &la, err) == SCOUT_ERROR);
    CHECK_ERR(err, "two services named \"users\"");
    CHECK(a == NULL);

    scout_epset_init(&bad);
    scout_epset_put(&bad, mk_ep("x", "h", 1, 1, "up", 1, 2, "b", "1", "a",
                                "2"));
    dup[0] = (scout_snapshot_service_t){ "s", "/s", 0, 0, 0, &bad };
    CHECK(scout_snapshot_encode("e", 0, dup, 1, &a, &la, err) == SCOUT_ERROR);
    CHECK_ERR(err, "meta keys not sorted and unique");
    scout_epset_free(&bad);

    memset(toolong, 'y', SCOUT_SNAPSHOT_MAX_STR + 1);
    toolong[SCOUT_SNAPSHOT_MAX_STR + 1] = '\0';
    scout_epset_put(&bad, mk_ep("x", toolong, 1, 1, "up", 1, 0));
    CHECK(scout_snapshot_encode("e", 0, dup, 1, &a, &la, err) == SCOUT_ERROR);
    CHECK_ERR(err, "host is 65537 bytes, over the 65536 limit");
    scout_epset_free(&bad);
    dup[0].path = toolong;
    CHECK(scout_snapshot_encode("e", 0, dup, 1, &a, &la, err) == SCOUT_ERROR);
    CHECK_ERR(err, "path is 65537 bytes");
    CHECK(scout_snapshot_encode(toolong, 0, small, 3, &a, &la, err)
          == SCOUT_ERROR);
    CHECK_ERR(err, "ensemble is 65537 bytes");
    CHECK(scout_snapshot_encode("e", 0, small, -1, &a, &la, err)
          == SCOUT_ERROR);
    free(toolong);

    /* a service without a set is written as empty */
    dup[0] = (scout_snapshot_service_t){ "s", "/s", 1, 2, 3, NULL };
    CHECK(scout_snapshot_encode("e", 0, dup, 1, &a, &la, err) == SCOUT_OK);
    {
        scout_snapshot_t *s = scout_snapshot_parse(a, la, "mem", err);
        CHECK(s != NULL && scout_snapshot_count(s) == 1);
        scout_snapshot_free(s);
    }
    free(a);
}

/* The agent's path: one record per service, encoded once and assembled by
 * the writer thread, must give the very bytes scout_snapshot_encode_each
 * gives for the same services -- in any order, with a service the format
 * refuses left out -- and a record must not depend on the set it was
 * encoded from (the agent keeps it after the set is gone). */
static void
test_records(void)
{
    char err[SCOUT_ERR_LEN] = "", *a, *b;
    size_t la, lb;
    int left_a, left_b;
    scout_epset_t bad, *copy = malloc(sizeof(*copy));
    scout_snapshot_service_t all[4], rev[3] = { small[2], small[0], small[1] };
    scout_snapshot_rec_t *recs[4];

    scout_epset_init(&bad);
    scout_epset_put(&bad, mk_ep("x", "h", 1, 1, "up", 1, 2, "b", "1", "a",
                                "2"));
    all[0] = small[0];
    all[1] = (scout_snapshot_service_t){ "bad", "/bad", 1, 1, 1, &bad };
    all[2] = small[1];
    all[3] = small[2];
    CHECK(scout_snapshot_encode_each("e", 99, all, 4, &a, &la, &left_a, err)
          == SCOUT_OK);
    CHECK(left_a == 1);
    /* the refused service gets no record, with the encoder's reason */
    CHECK(scout_snapshot_rec_new(&all[1], err) == NULL);
    CHECK_ERR(err, "meta keys not sorted and unique");
    /* encoded from a copy of orders' set that is freed before assembling */
    scout_epset_init(copy);
    {
        for (unsigned k = 0; k < orders.n; k++) {
            const scout_endpoint_t *ep = orders.eps[k];

            scout_epset_put(copy, mk_ep(ep->id, ep->host, ep->port,
                                        ep->weight, ep->status, ep->zxid, 0));
        }
    }
    recs[0] = scout_snapshot_rec_new(&rev[0], err);
    recs[1] = scout_snapshot_rec_new(&rev[1], err);
    recs[2] = scout_snapshot_rec_new(&rev[2], err);
    CHECK(recs[0] != NULL && recs[1] != NULL && recs[2] != NULL);
    if (recs[0] == NULL || recs[1] == NULL || recs[2] == NULL)
        return;
    CHECK(scout_snapshot_assemble("e", 99, recs, 3, &b, &lb, &left_b, err)
          == SCOUT_OK);
    CHECK(left_b == 0);
    CHECK(la == lb && memcmp(a, b, la) == 0, "assembled bytes differ");
    free(b);
    /* written where the records are (writev, the checksum taken over them
     * in place): the very same file, from records out of name order too */
    {
        scout_snapshot_rec_t *mixed[3] = { recs[2], recs[0], recs[1] };
        size_t lw = 0;
        struct stat st;
        FILE *f;

        CHECK(scout_snapshot_commit_recs(tmpdir, "e", 99, mixed, 3, NULL,
                                         NULL, &lw, &left_b, err) == SCOUT_OK,
              "%s", err);
        CHECK(left_b == 0 && lw == la);
        b = malloc(la + 1);
        f = fopen(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), "rb");
        CHECK(f != NULL && stat(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), &st) == 0
              && (size_t)st.st_size == la && fread(b, 1, la, f) == la
              && memcmp(a, b, la) == 0, "written bytes differ");
        CHECK(!exists(path_in(tmpdir, SCOUT_SNAPSHOT_TMP)));
        if (f != NULL)
            fclose(f);
        free(b);
    }
    {
        scout_snapshot_service_t o = small[1];
        scout_snapshot_rec_t *r;

        o.eps = copy;
        r = scout_snapshot_rec_new(&o, err);
        scout_epset_free(copy);
        memset(copy, 0xa5, sizeof(*copy));
        CHECK(r != NULL && scout_snapshot_rec_size(r) > 0);
        scout_snapshot_rec_unref(r);
    }
    free(copy);
    /* two records of one name fail the whole file */
    recs[3] = scout_snapshot_rec_ref(recs[1]);
    CHECK(scout_snapshot_assemble("e", 99, recs, 4, &b, &lb, &left_b, err)
          == SCOUT_ERROR);
    CHECK_ERR(err, "two services named");
    for (int i = 0; i < 4; i++)
        scout_snapshot_rec_unref(recs[i]);
    free(a);
    scout_epset_free(&bad);
}

/* A record whose bytes went back to the file is written again from the
 * file: the next file is byte for byte what the encoder gives, with a
 * changed service among unchanged ones; and bytes that are not what was
 * written (the file edited under the agent) are never copied into a new
 * file: the commit says SCOUT_AGAIN, the file on disk stays as it was,
 * and the records are stale until encoded again. */
static void
test_records_in_file(void)
{
    char err[SCOUT_ERR_LEN] = "", *want, *got, *before;
    size_t lwant, lgot, lbefore, lw;
    int left;
    scout_snapshot_file_t file = SCOUT_SNAPSHOT_FILE_INIT;
    scout_snapshot_service_t now[3] = { small[0], small[1], small[2] };
    scout_snapshot_rec_t *recs[3], *old;
    const char *path = path_in(tmpdir, SCOUT_SNAPSHOT_FILE);

    for (int i = 0; i < 3; i++)
        recs[i] = scout_snapshot_rec_new(&small[i], err);
    CHECK(recs[0] != NULL && recs[1] != NULL && recs[2] != NULL);
    if (recs[0] == NULL || recs[1] == NULL || recs[2] == NULL)
        return;
    CHECK(scout_snapshot_commit_recs(tmpdir, "e", 5, recs, 3, &file, NULL,
                                     &lw, &left, err) == SCOUT_OK, "%s", err);
    CHECK(file.fd >= 0);
    for (int i = 0; i < 3; i++) {
        scout_snapshot_rec_release(recs[i], &file);
        CHECK(scout_snapshot_rec_current(recs[i], &file, NULL));
    }
    /* its bytes are gone from memory: only a commit can have them */
    CHECK(scout_snapshot_assemble("e", 5, recs, 3, &got, &lgot, &left, err)
          == SCOUT_ERROR);
    CHECK_ERR(err, "in the file, not in memory");
    /* "users" changed (a new index): encoded again, the others from disk */
    now[0].index = 8;
    old = recs[2];              /* the commit sorted them: idle, orders, users */
    recs[2] = scout_snapshot_rec_new(&now[0], err);
    scout_snapshot_rec_unref(old);
    CHECK(recs[2] != NULL);
    if (recs[2] == NULL)
        goto out;
    CHECK(scout_snapshot_commit_recs(tmpdir, "e", 6, recs, 3, &file, NULL,
                                     &lw, &left, err) == SCOUT_OK, "%s", err);
    CHECK(scout_snapshot_encode("e", 6, now, 3, &want, &lwant, err)
          == SCOUT_OK);
    got = slurp(path, &lgot);
    CHECK(got != NULL && lgot == lwant && lw == lwant
          && memcmp(got, want, lwant) == 0, "the file from records read "
          "back differs from the encoder's");
    free(got);
    free(want);
    /* every record is in the new file now, the changed one too */
    for (int i = 0; i < 3; i++) {
        scout_snapshot_rec_release(recs[i], &file);
        CHECK(scout_snapshot_rec_current(recs[i], &file, NULL));
    }
    /* one byte of the file changed under the writer: refused, not copied */
    {
        int fd = open(path, O_WRONLY);
        char x = 0x5a;

        CHECK(fd >= 0 && pwrite(fd, &x, 1, (off_t)lw - 1) == 1);
        if (fd >= 0)
            close(fd);
    }
    before = slurp(path, &lbefore);
    CHECK(scout_snapshot_commit_recs(tmpdir, "e", 7, recs, 3, &file, NULL,
                                     &lw, &left, err) == SCOUT_AGAIN);
    CHECK_ERR(err, "changed under the agent");
    got = slurp(path, &lgot);
    CHECK(before != NULL && got != NULL && lgot == lbefore
          && memcmp(got, before, lgot) == 0, "the file was replaced");
    CHECK(!exists(path_in(tmpdir, SCOUT_SNAPSHOT_TMP)));
    free(got);
    free(before);
    for (int i = 0; i < 3; i++)
        CHECK(!scout_snapshot_rec_current(recs[i], &file, NULL));
    CHECK(file.fd < 0);
    /* and a record of a file that is gone is refused the same way */
    CHECK(scout_snapshot_commit_recs(tmpdir, "e", 8, recs, 3, &file, NULL,
                                     &lw, &left, err) == SCOUT_AGAIN);
    CHECK_ERR(err, "in a file that is gone");
out:
    for (int i = 0; i < 3; i++)
        scout_snapshot_rec_unref(recs[i]);
    scout_snapshot_file_close(&file);
}

static void
test_ensemble(void)
{
    char err[SCOUT_ERR_LEN];
    static const struct { const char *file, *conf; int same; } cases[] = {
        { "zk1:2181,zk2:2181/scout", "zk1:2181,zk2:2181/scout", 1 },
        { "zk1:2181,zk2:2181/scout", "zk2:2181, ZK1:2181/scout/", 1 },
        { "zk1:2181,zk2:2181/scout", "zk3:2181,zk2:2181/scout", 1 },
        { "zk1:2181,zk2:2181/scout", "zk1:2181,zk2:2181", 0 },
        { "zk1:2181,zk2:2181/scout", "zk1:2181/other", 0 },
        { "zk1:2181,zk2:2181/scout", "zk3:2181,zk4:2181/scout", 0 },
        { "zk1:2181,zk2:2181/scout", "zk1:2182/scout", 0 },
        { "127.0.0.1:2181", "127.0.0.1:2181/", 1 },
        { "127.0.0.1:2181", "", 0 },
        { "", "", 0 },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *buf;
        size_t len;
        scout_snapshot_t *s;
        int rc;

        scout_snapshot_encode(cases[i].file, 0, NULL, 0, &buf, &len, err);
        s = scout_snapshot_parse(buf, len, "x", err);
        rc = scout_snapshot_check_ensemble(s, cases[i].conf, err);
        CHECK(rc == (cases[i].same ? SCOUT_OK : SCOUT_ERROR));
        if (rc != (cases[i].same ? SCOUT_OK : SCOUT_ERROR))
            fprintf(stderr, "  case %zu: %s vs %s\n", i, cases[i].file,
                    cases[i].conf);
        if (!cases[i].same && i == 5)
            CHECK_ERR(err, "snapshot written for ensemble zk1:2181,zk2:2181/"
                      "scout, not zk3:2181,zk4:2181/scout");
        scout_snapshot_free(s);
        free(buf);
    }
}

/* The snapshot in dir holds exactly the small state. */
static int
holds_small(const char *dir)
{
    char err[SCOUT_ERR_LEN];
    scout_snapshot_t *s = scout_snapshot_read(path_in(dir,
                                                      SCOUT_SNAPSHOT_FILE),
                                              err);
    scout_snapshot_service_t got;
    int ok = s != NULL && scout_snapshot_count(s) == 3;

    for (int k = 0; ok && k < 3; k++) {
        int i = scout_snapshot_find(s, small[k].name);
        ok = i >= 0;
        if (ok) {
            scout_snapshot_get(s, i, &got);
            ok = set_equal(got.eps, small[k].eps);
        }
    }
    scout_snapshot_free(s);
    return ok;
}

static void
test_write_failures(void)
{
    char err[SCOUT_ERR_LEN], dir[600], sub[700], tmp[600];
    scout_snapshot_service_t one[1];
    scout_epset_t many;
    struct rlimit old, lim;
    int rc;

    snprintf(tmp, sizeof(tmp), "%s/%s", tmpdir, SCOUT_SNAPSHOT_TMP);
    /* no such dir / not a dir: refused, nothing created */
    CHECK(scout_snapshot_write(path_in(tmpdir, "nope"), "e", small, 3, err)
          == SCOUT_ERROR);
    CHECK_ERR(err, "No such file or directory");
    put_file(path_in(tmpdir, "plain"), "x", 1);
    CHECK(scout_snapshot_write(path_in(tmpdir, "plain"), "e", small, 3, err)
          == SCOUT_ERROR);
    CHECK_ERR(err, "Not a directory");
    unlink(path_in(tmpdir, "plain"));

    /* the good snapshot every failure below must leave intact */
    CHECK(scout_snapshot_write(tmpdir, "e", small, 3, err) == SCOUT_OK);
    CHECK(holds_small(tmpdir));

    /* a leftover temp file (a crash mid-write), even a symlink, is replaced
     * and never written through */
    symlink(path_in(tmpdir, "victim"), tmp);
    CHECK(scout_snapshot_write(tmpdir, "e", small, 3, err) == SCOUT_OK);
    CHECK(!exists(tmp) && !exists(path_in(tmpdir, "victim")));

    /* the disk fills midway: RLIMIT_FSIZE makes write() fail with EFBIG
     * after a partial write, as ENOSPC would */
    scout_epset_init(&many);
    for (int i = 0; i < 2000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "10.1.%d.%d:8080", i / 256, i % 256);
        scout_epset_put(&many, mk_ep(id, id, 8080, 1, "up", i, 1, "k", "v"));
    }
    one[0] = (scout_snapshot_service_t){ "users", "/u", 1, 1, 1, &many };
    signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    setrlimit(RLIMIT_FSIZE, &lim);
    rc = scout_snapshot_write(tmpdir, "e", one, 1, err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    CHECK(rc == SCOUT_ERROR);
    CHECK_ERR(err, "scout.snapshot.tmp: write: File too large");
    CHECK(!exists(tmp));
    CHECK(holds_small(tmpdir));
    scout_epset_free(&many);

    /* the rename fails (a non-empty directory sits where the file goes):
     * the complete temp file is removed */
    snprintf(dir, sizeof(dir), "%s/blocked", tmpdir);
    snprintf(sub, sizeof(sub), "%s/%s", dir, SCOUT_SNAPSHOT_FILE);
    mkdir(dir, 0700);
    mkdir(sub, 0700);
    put_file(path_in(sub, "x"), "x", 1);
    CHECK(scout_snapshot_write(dir, "e", small, 3, err) == SCOUT_ERROR);
    CHECK_ERR(err, "rename");
    CHECK(!exists(path_in(dir, SCOUT_SNAPSHOT_TMP)));
    unlink(path_in(sub, "x"));
    rmdir(sub);
    rmdir(dir);

    /* a read-only dir: as root permissions do not apply, so a child drops
     * to nobody and tries; as anyone else the directory is made read-only
     * to its owner.  A machine where neither works fails the test. */
    {
        pid_t pid;
        int st = 0;

        chmod(tmpdir, geteuid() == 0 ? 0755 : 0555);
        pid = fork();
        if (pid == 0) {
            char e2[SCOUT_ERR_LEN];
            if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
                _exit(77);
            if (access(tmpdir, W_OK) == 0)
                _exit(78);
            rc = scout_snapshot_write(tmpdir, "e", one, 1, e2);
            _exit(rc == SCOUT_ERROR && strstr(e2, "Permission denied")
                  ? 0 : 1);
        }
        waitpid(pid, &st, 0);
        chmod(tmpdir, 0700);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "read-only dir: child status %d (77: cannot drop to nobody, "
              "78: the dir stayed writable, 1: the write did not fail)",
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        CHECK(!exists(tmp));
        CHECK(holds_small(tmpdir));
    }
}

/* 10,000 services x 10 endpoints with meta: encoded, committed, read back
 * and taken, every set equal to what went in (bench/scale times the same
 * path inside the agent). */
static double
thread_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
test_scale(void)
{
    enum { NSVC = 10000, NEP = 10 };
    char err[SCOUT_ERR_LEN], *buf;
    size_t len;
    scout_epset_t *sets = calloc(NSVC, sizeof(*sets));
    scout_epset_t *got = calloc(NSVC, sizeof(*got));
    scout_snapshot_service_t *svcs = calloc(NSVC, sizeof(*svcs));
    char (*names)[64] = calloc(NSVC, 64), (*paths)[96] = calloc(NSVC, 96);
    scout_snapshot_t *s;
    int ok = 1, rc;

    for (int i = 0; i < NSVC; i++) {
        scout_epset_init(&sets[i]);
        snprintf(names[i], 64, "svc-%05d", i);
        snprintf(paths[i], 96, "/dubbo/com.acme.Service%05d/providers", i);
        for (int j = 0; j < NEP; j++) {
            char id[64], host[32];
            snprintf(host, sizeof(host), "10.%d.%d.%d", i / 256, i % 256, j);
            snprintf(id, sizeof(id), "%s:20880", host);
            scout_epset_put(&sets[i], mk_ep(id, host, 20880, 100, "up",
                                            (int64_t)i * NEP + j, 4,
                                            "application", "acme-app",
                                            "group", "prod", "version",
                                            "1.2.3", "zone", "eu-west-1a"));
        }
        svcs[i] = (scout_snapshot_service_t){ names[i], paths[i], (uint64_t)i,
                                              i, i * NEP + NEP - 1, &sets[i] };
    }
    rc = scout_snapshot_encode("zk1:2181,zk2:2181,zk3:2181", 1, svcs, NSVC,
                               &buf, &len, err);
    CHECK(rc == SCOUT_OK);
    if (rc == SCOUT_OK) {
        /* the agent's way: one record per service, written where they are
         * (10,001 pieces, more than one writev takes): the encoder's bytes */
        scout_snapshot_rec_t **recs = calloc(NSVC, sizeof(*recs));
        scout_snapshot_file_t file = SCOUT_SNAPSHOT_FILE_INIT;
        char *back = malloc(len);
        size_t lw = 0;
        int left = -1;
        double cpu[2];
        FILE *f;

        for (int i = 0; i < NSVC; i++)
            recs[i] = scout_snapshot_rec_new(&svcs[i], err);
        /* then again with every record's bytes back in the file: read back
         * (one pread: they follow each other) into the same bytes */
        for (int round = 0; round < 2; round++) {
            cpu[round] = thread_cpu_ms();
            CHECK(scout_snapshot_commit_recs(tmpdir,
                                             "zk1:2181,zk2:2181,zk3:2181", 1,
                                             recs, NSVC, &file, NULL, &lw,
                                             &left, err) == SCOUT_OK, "%s",
                                             err);
            cpu[round] = thread_cpu_ms() - cpu[round];
            CHECK(lw == len && left == 0);
            f = fopen(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), "rb");
            CHECK(f != NULL && fread(back, 1, len, f) == len
                  && fgetc(f) == EOF && memcmp(back, buf, len) == 0,
                  "written bytes differ (round %d)", round);
            if (f != NULL)
                fclose(f);
            for (int i = 0; i < NSVC; i++)
                scout_snapshot_rec_release(recs[i], &file);
        }
        fprintf(stderr, "  commit of %d x %d (%.1f MB), CPU: %.1f ms from "
                "memory, %.1f ms read back from the file\n", NSVC, NEP,
                (double)len / (1 << 20), cpu[0], cpu[1]);
        scout_snapshot_file_close(&file);
        for (int i = 0; i < NSVC; i++)
            scout_snapshot_rec_unref(recs[i]);
        free(recs);
        free(back);
        free(buf);
    }
    s = scout_snapshot_read(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), err);
    CHECK(s != NULL && scout_snapshot_count(s) == NSVC, "%s", err);
    for (int i = 0; s != NULL && i < NSVC; i++) {
        int k = scout_snapshot_find(s, names[i]);

        scout_epset_init(&got[i]);
        if (k < 0) {
            ok = 0;
            continue;
        }
        scout_snapshot_take(s, k, &got[i]);
        ok &= set_equal(&got[i], &sets[i]);
    }
    scout_snapshot_free(s);
    CHECK(ok);
    for (int i = 0; i < NSVC; i++) {
        scout_epset_free(&got[i]);
        scout_epset_free(&sets[i]);
    }
    free(got);
    free(sets);
    free(svcs);
    free(names);
    free(paths);
}

int
main(void)
{
    if (snapshot_fixtures_start() != 0)
        return 2;
    RUN(test_roundtrip());
    RUN(test_encode());
    RUN(test_records());
    RUN(test_records_in_file());
    RUN(test_ensemble());
    RUN(test_write_failures());
    RUN(test_scale());

    snapshot_fixtures_stop();
    return test_summary();
}
