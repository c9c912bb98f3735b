/*
 * test_snapside.c -- the side file that ties the disk snapshot to the
 * policy that wrote it (publish/snapside.h), and the lazy snapshot reader
 * that early serving indexes it with (publish/snapshot_lazy.h).
 *
 * Why these: early serving answers before the policy is loaded, so the only
 * thing between an edited policy and a wrong answer is the fingerprint and
 * the side file's own checks; and the lazy reader must give what the full
 * reader gives, service by service, or the loaded agent's answers differ
 * from the early ones.
 */
#include "snapshot_fixtures.h"

#include "publish/snapshot_lazy.h"
#include "publish/snapside.h"

static const char *const FILES_NONE[1] = { NULL };
static const char *names[] = { "b", "a", "c" };
static const char *paths[] = { "/b", "/a", "/c" };

static scout_snapside_inputs_t
inputs(void)
{
    scout_snapside_inputs_t in = { .zk = NULL, .zk_env = "127.0.0.1:2181",
        .api = "127.0.0.1:8500", .cache_dir = "/var/lib/scout",
        .lua_dir = NULL, .lua_dir_env = NULL, .lua_path_env = NULL,
        .listen = "127.0.0.1:8500" };
    return in;
}

static void
test_round_trip_keeps_the_policy_order(void)
{
    char err[SCOUT_ERR_LEN];
    const char *files[] = { "/p/policy.lua", "/p/mod.lua" };
    size_t len;
    char *buf = scout_snapside_encode(0x1234, 0x5678, "unix:/run/s.sock",
                                      files, 2, names, paths, 3, &len);
    scout_snapside_t *s = scout_snapside_parse(buf, len, err);

    CHECK(s != NULL, "%s", err);
    if (s == NULL)
        goto out;
    CHECK(s->fp == 0x1234 && s->sum == 0x5678);
    CHECK(strcmp(s->listen, "unix:/run/s.sock") == 0);
    CHECK(s->nfiles == 2 && strcmp(s->files[1], "/p/mod.lua") == 0);
    CHECK(s->n == 3);
    for (int i = 0; i < 3 && s->n == 3; i++)
        CHECK(strcmp(s->names[i], names[i]) == 0
              && strcmp(s->paths[i], paths[i]) == 0, "entry %d", i);
    /* another snapshot's checksum: still valid, vouching for that one */
    scout_snapside_set_sum(buf, len, 0x9999);
    scout_snapside_free(s);
    s = scout_snapside_parse(buf, len, err);
    CHECK(s != NULL && s->sum == 0x9999 && s->fp == 0x1234, "%s", err);
out:
    scout_snapside_free(s);
    free(buf);
}

/* The steps after an early start's hand-over add the services in slices:
 * the bytes (and their checksum, hashed as they grow, across the buffer's
 * moves) must be the ones a start makes in one call; and an encoder ended
 * before its n services makes nothing. */
static void
test_made_in_pieces_the_same_bytes(void)
{
    enum { N = 3000 };
    char err[SCOUT_ERR_LEN], nb[N][24], pb[N][64];
    const char *nv[N], *pv[N];
    const char *files[] = { "/p/policy.lua" };
    scout_snapside_enc_t *e;
    scout_snapside_t *s = NULL;
    size_t len = 0, len1 = 0;
    char *buf, *one;

    for (int i = 0; i < N; i++) {
        snprintf(nb[i], sizeof(nb[i]), "svc-%05d", i);
        snprintf(pb[i], sizeof(pb[i]), "/dubbo/com.acme.Service%05d/providers",
                 i);
        nv[i] = nb[i];
        pv[i] = pb[i];
    }
    e = scout_snapside_enc_new(7, 0, "unix:/run/s.sock", files, 1, N);
    CHECK(e != NULL);
    if (e == NULL)
        return;
    for (int i = 0; i < N; i++)
        scout_snapside_enc_add(e, nv[i], pv[i]);
    buf = scout_snapside_enc_end(e, &len);
    one = scout_snapside_encode(7, 0, "unix:/run/s.sock", files, 1, nv, pv, N,
                                &len1);
    CHECK(buf != NULL && one != NULL && len == len1 && len > 100000);
    if (buf == NULL || one == NULL)
        goto out;
    CHECK(memcmp(buf, one, len) == 0);
    s = scout_snapside_parse(buf, len, err);
    CHECK(s != NULL, "%s", err);
    CHECK(s != NULL && s->n == N && strcmp(s->names[N - 1], nv[N - 1]) == 0
          && strcmp(s->paths[N - 1], pv[N - 1]) == 0);
    /* one service short: nothing, not a file that says N */
    e = scout_snapside_enc_new(7, 0, "unix:/run/s.sock", files, 1, 2);
    CHECK(e != NULL);
    if (e != NULL) {
        char *short_buf;

        scout_snapside_enc_add(e, nv[0], pv[0]);
        short_buf = scout_snapside_enc_end(e, &len);
        CHECK(short_buf == NULL);
        free(short_buf);
    }
out:
    scout_snapside_free(s);
    free(buf);
    free(one);
}

static void
test_every_flipped_byte_and_every_cut_is_refused(void)
{
    char err[SCOUT_ERR_LEN];
    size_t len;
    char *buf = scout_snapside_encode(1, 2, "127.0.0.1:1", FILES_NONE, 0,
                                      names, paths, 3, &len);

    for (size_t i = 0; i < len; i++) {
        scout_snapside_t *s;

        buf[i] ^= 0x20;
        s = scout_snapside_parse(buf, len, err);
        CHECK(s == NULL, "byte %zu flipped was accepted", i);
        scout_snapside_free(s);
        buf[i] ^= 0x20;
        s = scout_snapside_parse(buf, i, err);
        CHECK(s == NULL, "cut at %zu was accepted", i);
        scout_snapside_free(s);
    }
    free(buf);
}

static void
test_the_fingerprint_sees_files_and_overrides(void)
{
    char err[SCOUT_ERR_LEN];
    char *f1 = strdup(path_in(tmpdir, "policy.lua"));
    const char *files[] = { f1 };
    scout_snapside_inputs_t in = inputs();
    uint64_t a, b;

    CHECK(put_file(f1, "service \"a\" {}\n", 15) == 0);
    CHECK(scout_snapside_fingerprint(&in, files, 1, &a, err) == SCOUT_OK,
          "%s", err);
    CHECK(scout_snapside_fingerprint(&in, files, 1, &b, err) == SCOUT_OK
          && a == b, "not deterministic");
    /* one byte of the policy */
    CHECK(put_file(f1, "service \"b\" {}\n", 15) == 0);
    CHECK(scout_snapside_fingerprint(&in, files, 1, &b, err) == SCOUT_OK
          && a != b, "an edited file kept the fingerprint");
    CHECK(put_file(f1, "service \"a\" {}\n", 15) == 0);
    /* each override, and "given empty" apart from "not given" */
    in.api = "127.0.0.1:8501";
    CHECK(scout_snapside_fingerprint(&in, files, 1, &b, err) == SCOUT_OK
          && a != b, "--api");
    in = inputs();
    in.zk = "";
    CHECK(scout_snapside_fingerprint(&in, files, 1, &b, err) == SCOUT_OK
          && a != b, "--zk \"\" is not --zk absent");
    in = inputs();
    in.cache_dir = "/var/lib/scout2";
    CHECK(scout_snapside_fingerprint(&in, files, 1, &b, err) == SCOUT_OK
          && a != b, "--cache-dir");
    in = inputs();
    in.lua_path_env = "/x/?.lua";
    CHECK(scout_snapside_fingerprint(&in, files, 1, &b, err) == SCOUT_OK
          && a != b, "LUA_PATH");
    in = inputs();
    in.listen = "127.0.0.1:9";
    CHECK(scout_snapside_fingerprint(&in, files, 1, &b, err) == SCOUT_OK
          && a != b, "the resolved API address");
    /* a file gone is an error, never a match */
    unlink(f1);
    in = inputs();
    CHECK(scout_snapside_fingerprint(&in, files, 1, &b, err) == SCOUT_ERROR);
    free(f1);
}

static void
test_written_atomically_and_read_back(void)
{
    char err[SCOUT_ERR_LEN];
    size_t len;
    char *buf = scout_snapside_encode(7, 8, "127.0.0.1:1", FILES_NONE, 0,
                                      names, paths, 3, &len);
    scout_snapside_t *s;

    CHECK(scout_snapside_write(tmpdir, buf, len, 1, err) == SCOUT_OK, "%s",
          err);
    CHECK(!exists(path_in(tmpdir, SCOUT_SNAPSIDE_TMP)), "temp file left");
    s = scout_snapside_read(tmpdir, err);
    CHECK(s != NULL && s->fp == 7 && s->n == 3, "%s", err);
    scout_snapside_free(s);
    /* torn on disk: refused with a reason naming the file */
    CHECK(put_file(path_in(tmpdir, SCOUT_SNAPSIDE_FILE), buf, len - 1) == 0);
    s = scout_snapside_read(tmpdir, err);
    CHECK(s == NULL && strstr(err, SCOUT_SNAPSIDE_FILE) != NULL, "%s", err);
    scout_snapside_free(s);
    unlink(path_in(tmpdir, SCOUT_SNAPSIDE_FILE));
    free(buf);
}

static void
test_the_snapshot_checksum_is_the_header_s(void)
{
    char err[SCOUT_ERR_LEN], *buf;
    size_t len;
    uint64_t sum = 0;

    buf = small_file(&len);
    CHECK(put_file(path_in(tmpdir, SCOUT_SNAPSHOT_FILE), buf, len) == 0);
    CHECK(scout_snapside_snapshot_sum(path_in(tmpdir, SCOUT_SNAPSHOT_FILE),
                                      &sum, err) == SCOUT_OK, "%s", err);
    CHECK(memcmp(&sum, buf + 24, 8) == 0);
    free(buf);
    unlink(path_in(tmpdir, SCOUT_SNAPSHOT_FILE));
}

/* The lazy reader gives, service by service, what the full reader gives. */
static void
test_lazy_reader_matches_the_full_one(void)
{
    char err[SCOUT_ERR_LEN], *buf;
    const char *file = path_in(tmpdir, SCOUT_SNAPSHOT_FILE);
    scout_snapshot_t *full;
    scout_snaplazy_t *z;
    size_t len;

    CHECK(scout_snapshot_encode("127.0.0.1:2181", 1, small, 3, &buf, &len,
                                err) == SCOUT_OK, "%s", err);
    CHECK(put_file(file, buf, len) == 0);
    full = scout_snapshot_read(file, err);
    z = scout_snaplazy_read(file, err);
    CHECK(full != NULL && z != NULL, "%s", err);
    if (full == NULL || z == NULL)
        goto out;
    CHECK(memcmp(&(uint64_t){ scout_snaplazy_checksum(z) }, buf + 24, 8)
          == 0);
    CHECK(scout_snaplazy_count(z) == scout_snapshot_count(full));
    for (int i = 0; i < scout_snapshot_count(full); i++) {
        scout_snapshot_service_t sv;
        scout_snaplazy_service_t lz;
        scout_epset_t eps;

        scout_snapshot_get(full, i, &sv);
        scout_snaplazy_get(z, i, &lz);
        CHECK(strcmp(sv.name, lz.name) == 0 && strcmp(sv.path, lz.path) == 0
              && sv.index == lz.index && sv.eps->n == lz.nendpoints,
              "service %d", i);
        CHECK(scout_snaplazy_find(z, sv.name) == i);
        scout_epset_init(&eps);
        CHECK(scout_snaplazy_decode(z, i, &eps, err) == SCOUT_OK, "%s", err);
        CHECK(set_equal(&eps, sv.eps), "service %s decoded otherwise",
              sv.name);
        scout_epset_free(&eps);
    }
    CHECK(scout_snaplazy_find(z, "nope") == -1);
    /* given back a page per call (the early server's after a hand-over, in
     * slices): the bytes left shrink every call, the names stay */
    {
        size_t page = (size_t)sysconf(_SC_PAGESIZE), left = len, was;
        int calls = 0;
        scout_snaplazy_service_t lz;

        CHECK(len > 8 * page, "the fixture is %zu bytes", len);
        do {
            was = left;
            left = scout_snaplazy_release(z, page);
            calls++;
        } while (left > 0 && left < was && calls < 1000);
        CHECK(left == 0 && calls >= (int)(len / page), "%d calls", calls);
        scout_snaplazy_get(z, 1, &lz);
        CHECK(strcmp(lz.name, "orders") == 0);
        CHECK(scout_snaplazy_release(z, page) == 0);
    }
    /* a flipped byte anywhere: the checksum refuses the file */
    buf[len / 2] ^= 1;
    CHECK(put_file(file, buf, len) == 0);
    scout_snaplazy_free(z);
    z = scout_snaplazy_read(file, err);
    CHECK(z == NULL && strstr(err, "checksum") != NULL, "%s", err);
out:
    scout_snaplazy_free(z);
    scout_snapshot_free(full);
    free(buf);
    unlink(file);
}

int
main(void)
{
    if (snapshot_fixtures_start() != 0)
        return 1;
    RUN(test_round_trip_keeps_the_policy_order());
    RUN(test_made_in_pieces_the_same_bytes());
    RUN(test_every_flipped_byte_and_every_cut_is_refused());
    RUN(test_the_fingerprint_sees_files_and_overrides());
    RUN(test_written_atomically_and_read_back());
    RUN(test_the_snapshot_checksum_is_the_header_s());
    RUN(test_lazy_reader_matches_the_full_one());
    snapshot_fixtures_stop();
    return test_summary();
}
