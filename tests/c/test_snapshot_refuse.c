/*
 * test_snapshot_refuse.c -- a disk snapshot that is truncated, bit-flipped,
 * foreign or inconsistent (bodies built by hand and sealed with a valid
 * checksum, so only the structure checks can catch them) is refused with a
 * reason and never half-loaded.
 *
 * Why a binary of its own: what the reader refuses is one concern, and the
 * hand-built bodies are most of it; test_snapshot.c keeps what the writer
 * produces and the reader accepts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_endpoints.h"
#include "testing.h"
#include "scout.h"
#include "publish/snapshot.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "snapshot_fixtures.h"

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

int
main(void)
{
    if (snapshot_fixtures_start() != 0)
        return 2;
    RUN(test_truncation_and_flips());
    RUN(test_foreign());
    RUN(test_inconsistent());
    snapshot_fixtures_stop();
    return test_summary();
}
