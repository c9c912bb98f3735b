/*
 * test_snapshot.c -- the disk snapshot: every field survives a round trip;
 * a truncated, bit-flipped, foreign or inconsistent file is refused with a
 * reason and never half-loaded; a failed write leaves no temp file and the
 * old snapshot intact.  Also measures encode/commit/read of 10,000 services
 * x 10 endpoints (printed, never asserted).
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
#include <unistd.h>

#include "test_endpoints.h"
#include "testing.h"
#include "scout.h"
#include "publish/snapshot.h"

#define XXH_INLINE_ALL
#include <xxhash.h>




static char tmpdir[] = "/tmp/scout-snap-test-XXXXXX";

static char *
path_in(const char *dir, const char *name)
{
    static char buf[4][512];
    static int k;

    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

static int
exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int
ep_equal(const scout_endpoint_t *a, const scout_endpoint_t *b)
{
    if (strcmp(a->id, b->id) || strcmp(a->host, b->host)
        || strcmp(a->status, b->status) || a->port != b->port
        || a->weight != b->weight || a->zxid != b->zxid
        || a->nmeta != b->nmeta)
        return 0;
    for (int j = 0; j < a->nmeta; j++)
        if (strcmp(a->meta[j].key, b->meta[j].key)
            || strcmp(a->meta[j].value, b->meta[j].value))
            return 0;
    return 1;
}

static int
set_equal(const scout_epset_t *a, const scout_epset_t *b)
{
    if (a->n != b->n)
        return 0;
    for (unsigned i = 0; i < a->n; i++) {
        const scout_endpoint_t *other = scout_epset_find(b, a->eps[i]->id);

        if (other == NULL || !ep_equal(a->eps[i], other))
            return 0;
    }
    return 1;
}

/* A small state: three services, one of them empty, odd values on purpose. */
static scout_epset_t orders, users, empty;
static scout_snapshot_service_t small[3];

static void
small_init(void)
{
    static char big[SCOUT_SNAPSHOT_MAX_STR + 1];

    memset(big, 'x', SCOUT_SNAPSHOT_MAX_STR);   /* exactly at the limit */
    scout_epset_init(&orders);
    scout_epset_init(&users);
    scout_epset_init(&empty);
    scout_epset_put(&orders, mk_ep("10.0.0.1:20880", "10.0.0.1", 20880, 100,
                                   "up", 0x100000002LL, 3, "group", "",
                                   "version", "1.0.0", "zone", "a\xc3\xa9"));
    scout_epset_put(&orders, mk_ep("10.0.0.2:20880", "10.0.0.2", -1, 0,
                                   "down", INT64_MAX, 0));
    scout_epset_put(&orders, mk_ep("", "", 65535, -7, "", 0, 1, "", ""));
    scout_epset_put(&users, mk_ep("member_0000000007", "u1.example", 8080, 1,
                                  "up", 42, 1, "long", big));
    small[0] = (scout_snapshot_service_t){ "users", "/services/users", 7,
                                           40, 42, &users };
    small[1] = (scout_snapshot_service_t){ "orders",
        "/dubbo/com.acme.OrderService/providers", UINT64_MAX, -1,
        0x100000002LL, &orders };
    small[2] = (scout_snapshot_service_t){ "idle", "/idle", 0, 0, 0, &empty };
}

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

        CHECK(scout_snapshot_commit_recs(tmpdir, "e", 99, mixed, 3, &lw,
                                         &left_b, err) == SCOUT_OK, "%s", err);
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

/* A small valid file in memory. */
static char *
small_file(size_t *len)
{
    char err[SCOUT_ERR_LEN], *buf;
    scout_epset_t *tiny = malloc(sizeof(*tiny));
    scout_snapshot_service_t sv[2];

    scout_epset_init(tiny);
    scout_epset_put(tiny, mk_ep("a:1", "a", 1, 1, "up", 5, 2, "k", "v",
                                "z", ""));
    scout_epset_put(tiny, mk_ep("b:2", "b", 2, 3, "up", 6, 0));
    sv[0] = (scout_snapshot_service_t){ "svc", "/svc", 3, 6, 6, tiny };
    sv[1] = (scout_snapshot_service_t){ "empty", "/e", 0, 0, 0, &empty };
    if (scout_snapshot_encode("127.0.0.1:2181", 1700000000000LL, sv, 2, &buf,
                              len, err) != SCOUT_OK)
        abort();
    scout_epset_free(tiny);
    free(tiny);
    return buf;
}

static int
put_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int ok = fd >= 0 && write(fd, buf, len) == (ssize_t)len;

    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

static void
test_truncation_and_flips(void)
{
    char err[SCOUT_ERR_LEN], *buf, *copy;
    const char *path = path_in(tmpdir, "trunc.snapshot");
    size_t len;
    int refused = 0, file_refused = 0, flips = 0, flip_refused = 0;
    int reasons = 1;
    scout_snapshot_t *s;

    buf = small_file(&len);
    s = scout_snapshot_parse(buf, len, "mem", err);
    CHECK(s != NULL);
    scout_snapshot_free(s);
    printf("small file: %zu bytes\n", len);

    for (size_t k = 0; k < len; k++) {
        err[0] = '\0';
        s = scout_snapshot_parse(buf, k, "mem", err);
        refused += s == NULL;
        reasons &= err[0] != '\0';
        scout_snapshot_free(s);
        put_file(path, buf, k);
        s = scout_snapshot_read(path, err);
        file_refused += s == NULL;
        scout_snapshot_free(s);
    }
    CHECK(refused == (int)len);
    CHECK(file_refused == (int)len);
    CHECK(reasons);
    s = scout_snapshot_parse(buf, 0, "x", err);
    CHECK_ERR(err, "snapshot x: empty file");
    s = scout_snapshot_parse(buf, 20, "x", err);
    CHECK_ERR(err, "truncated at byte 20");
    s = scout_snapshot_parse(buf, len - 1, "x", err);
    CHECK_ERR(err, "truncated at byte");

    copy = malloc(len);
    for (size_t k = 0; k < len; k++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, buf, len);
            copy[k] ^= (char)(1 << bit);
            s = scout_snapshot_parse(copy, len, "mem", err);
            flips++;
            flip_refused += s == NULL;
            scout_snapshot_free(s);
        }
    }
    CHECK(flip_refused == flips);
    memcpy(copy, buf, len);
    copy[len - 3] ^= 0x10;
    CHECK(scout_snapshot_parse(copy, len, "x", err) == NULL);
    CHECK_ERR(err, "snapshot x: checksum mismatch");
    free(copy);
    free(buf);
    unlink(path);
}

static void
test_foreign(void)
{
    char err[SCOUT_ERR_LEN], *buf, *copy;
    size_t len;
    const char *path = path_in(tmpdir, "foreign.snapshot");
    static const char json[] = "{\"services\": []}\n";

    buf = small_file(&len);
    copy = malloc(len + 1);

    memcpy(copy, buf, len);
    copy[7] = 'Q';
    CHECK(scout_snapshot_parse(copy, len, "x", err) == NULL);
    CHECK_ERR(err, "not a scout snapshot (bad magic)");
    CHECK(scout_snapshot_parse(json, sizeof(json) - 1, "x", err) == NULL);
    CHECK_ERR(err, "bad magic");
    CHECK(scout_snapshot_parse("SCOUT", 5, "x", err) == NULL);
    CHECK_ERR(err, "truncated at byte 5");

    memcpy(copy, buf, len);
    copy[8] = 2;
    CHECK(scout_snapshot_parse(copy, len, "x", err) == NULL);
    CHECK_ERR(err, "format version 2, this build reads 1");
    memcpy(copy, buf, len);
    copy[12] = 1;
    CHECK(scout_snapshot_parse(copy, len, "x", err) == NULL);
    CHECK_ERR(err, "unknown header flags");
    memcpy(copy, buf, len);
    copy[23] = 0x7f;                            /* body length ~ 2^63 */
    CHECK(scout_snapshot_parse(copy, len, "x", err) == NULL);
    CHECK_ERR(err, "over the 268435456-byte file limit");
    memcpy(copy, buf, len);
    copy[len] = 0;
    CHECK(scout_snapshot_parse(copy, len + 1, "x", err) == NULL);
    CHECK_ERR(err, "1 trailing bytes after the body");

    CHECK(scout_snapshot_read(path_in(tmpdir, "missing"), err) == NULL);
    CHECK_ERR(err, "No such file or directory");
    CHECK(scout_snapshot_read(tmpdir, err) == NULL);
    CHECK_ERR(err, "not a regular file");
    put_file(path, "", 0);
    CHECK(scout_snapshot_read(path, err) == NULL);
    CHECK_ERR(err, "empty file");
    /* oversize is refused from the file's size, before reading it */
    CHECK(truncate(path, (off_t)SCOUT_SNAPSHOT_MAX_SIZE + 1) == 0);
    CHECK(scout_snapshot_read(path, err) == NULL);
    CHECK_ERR(err, "268435457 bytes, over the 268435456 limit");
    unlink(path);
    free(copy);
    free(buf);
}

/* ---- hand-built bodies, sealed with a valid checksum ---- */

typedef struct {
    unsigned char b[4096];
    size_t        n;
} body_t;

static void
b_u32(body_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b->b[b->n++] = (unsigned char)(v >> (8 * i));
}

static void
b_u64(body_t *b, uint64_t v)
{
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}

static void
b_strn(body_t *b, const char *s, size_t len)
{
    b_u32(b, (uint32_t)len);
    memcpy(b->b + b->n, s, len);
    b->n += len;
}

static void
b_str(body_t *b, const char *s)
{
    b_strn(b, s, strlen(s));
}

/* Room for the counts to pass, so the check under test is the one that
 * fires. */
static void
b_pad(body_t *b)
{
    memset(b->b + b->n, 0, 200);
    b->n += 200;
}

static void
b_start(body_t *b, uint32_t nsvc)
{
    b->n = SCOUT_SNAPSHOT_HDR_LEN;
    b_str(b, "test");
    b_str(b, "zk:2181");
    b_u64(b, 1);
    b_u32(b, nsvc);
}

static void
b_service(body_t *b, const char *name, uint32_t neps)
{
    b_str(b, name);
    b_str(b, "/p");
    b_u64(b, 1);
    b_u64(b, 2);
    b_u64(b, 3);
    b_u32(b, neps);
}

static void
b_endpoint(body_t *b, const char *id, uint32_t nmeta)
{
    b_str(b, id);
    b_str(b, "h");
    b_str(b, "up");
    b_u32(b, 80);
    b_u32(b, 1);
    b_u64(b, 9);
    b_u32(b, nmeta);
}

static scout_snapshot_t *
b_parse(body_t *b, char *err)
{
    memcpy(b->b, "SCOUTSNP", 8);
    memset(b->b + 8, 0, 24);
    b->b[8] = 1;
    for (int i = 0; i < 8; i++) {
        uint64_t body = b->n - SCOUT_SNAPSHOT_HDR_LEN;
        uint64_t h = XXH64(b->b + SCOUT_SNAPSHOT_HDR_LEN, (size_t)body, 0);
        b->b[16 + i] = (unsigned char)(body >> (8 * i));
        b->b[24 + i] = (unsigned char)(h >> (8 * i));
    }
    return scout_snapshot_parse(b->b, b->n, "x", err);
}

static void
test_inconsistent(void)
{
    char err[SCOUT_ERR_LEN];
    body_t b;
    scout_snapshot_t *s;

    /* the builder itself makes valid files */
    b_start(&b, 2);
    b_service(&b, "a", 1);
    b_endpoint(&b, "e1", 1);
    b_str(&b, "k");
    b_str(&b, "v");
    b_service(&b, "b", 0);
    s = b_parse(&b, err);
    CHECK(s != NULL && scout_snapshot_count(s) == 2);
    scout_snapshot_free(s);

    b_start(&b, 2);
    b_service(&b, "a", 0);
    b_service(&b, "a", 0);
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "service \"a\" after \"a\": names not ascending");

    b_start(&b, 2);
    b_service(&b, "b", 0);
    b_service(&b, "a", 0);
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "names not ascending");

    b_start(&b, 1);
    b_service(&b, "a", 2);
    b_endpoint(&b, "e1", 0);
    b_endpoint(&b, "e1", 0);
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "endpoint \"e1\" after \"e1\": ids not ascending");

    b_start(&b, 1);
    b_service(&b, "a", 1);
    b_endpoint(&b, "e1", 2);
    b_str(&b, "k");
    b_str(&b, "1");
    b_str(&b, "k");
    b_str(&b, "2");
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "meta key \"k\" after \"k\"");

    b_start(&b, 1);
    b_strn(&b, "a\0b", 3);
    b_pad(&b);
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "service name contains a NUL byte");

    b_start(&b, 1);
    b_u32(&b, SCOUT_SNAPSHOT_MAX_STR + 1);
    b_pad(&b);
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "service name is 65537 bytes, over the 65536 limit");

    b_start(&b, 1);
    b_u32(&b, 300);                 /* a string longer than what is left */
    b_pad(&b);
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "runs past the end of the body");

    b_start(&b, 3);                 /* more services than bytes for them */
    b_service(&b, "a", 0);
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "service count 3 needs more bytes than");

    b_start(&b, 1);
    b_service(&b, "a", 0xffffffffu);
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "endpoint count 4294967295 over the 1000000 limit");

    b_start(&b, 1);
    b_service(&b, "a", 1);
    b_endpoint(&b, "e", 70000);
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "meta count 70000 over the 65536 limit");

    b_start(&b, 1);
    b_service(&b, "a", 1);
    b_endpoint(&b, "e", 0);
    b_u32(&b, 0);                   /* junk after the last service */
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "4 bytes after the last service");

    b_start(&b, 1);
    b_service(&b, "a", 1);
    b.n -= 2;                       /* endpoint count cut short */
    CHECK(b_parse(&b, err) == NULL);
    CHECK_ERR(err, "endpoint count runs past the end of the body");

    /* the message names the offset */
    b_start(&b, 1);
    b_service(&b, "a", 1);
    b_endpoint(&b, "e", 1);
    b_str(&b, "k");
    b_u32(&b, 5);
    {
        char want[64];

        snprintf(want, sizeof(want), "snapshot x: malformed at byte %zu: ",
                 b.n);
        memcpy(b.b + b.n, "vv", 2);
        b.n += 2;
        CHECK(b_parse(&b, err) == NULL);
        CHECK_ERR(err, want);
        CHECK_ERR(err, "meta value of 5 bytes runs past the end");
    }
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
        char *back = malloc(len);
        size_t lw = 0;
        int left = -1;
        FILE *f;

        for (int i = 0; i < NSVC; i++)
            recs[i] = scout_snapshot_rec_new(&svcs[i], err);
        CHECK(scout_snapshot_commit_recs(tmpdir, "zk1:2181,zk2:2181,zk3:2181",
                                         1, recs, NSVC, &lw, &left, err)
              == SCOUT_OK, "%s", err);
        CHECK(lw == len && left == 0);
        f = fopen(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), "rb");
        CHECK(f != NULL && fread(back, 1, len, f) == len && fgetc(f) == EOF
              && memcmp(back, buf, len) == 0, "written bytes differ");
        if (f != NULL)
            fclose(f);
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
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    small_init();
    RUN(test_roundtrip());
    RUN(test_encode());
    RUN(test_records());
    RUN(test_truncation_and_flips());
    RUN(test_foreign());
    RUN(test_inconsistent());
    RUN(test_ensemble());
    RUN(test_write_failures());
    RUN(test_scale());

    scout_epset_free(&orders);
    scout_epset_free(&users);
    scout_epset_free(&empty);
    unlink(path_in(tmpdir, SCOUT_SNAPSHOT_FILE));
    unlink(path_in(tmpdir, SCOUT_SNAPSHOT_TMP));
    if (rmdir(tmpdir) != 0)
        fprintf(stderr, "leftover in %s: %s\n", tmpdir, strerror(errno));
    return test_summary();
}
