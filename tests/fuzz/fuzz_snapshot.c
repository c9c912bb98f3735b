/*
 * fuzz_snapshot.c -- libFuzzer target for the disk snapshot reader, which
 * reads a file anyone with access to the cache dir (or a bad disk) may have
 * shaped.  `make fuzz` builds and runs it.
 *
 * Each input is parsed twice: as given (header, length and checksum checks)
 * and resealed, with the body length and XXH64 in the header recomputed so
 * that mutations reach the body parser instead of dying at the checksum.
 * Whatever parses is then used the way the agent would (every service
 * looked up, its endpoints moved out and rendered as JSON) and must survive
 * a round trip: re-encoding it gives the same body bytes after the writer
 * string, since the reader accepts only the canonical form the writer
 * produces.  A difference aborts, which libFuzzer reports as a crash.
 *
 * Built with -DSCOUT_FUZZ_SEEDS it is instead a small program that writes a
 * seed corpus of valid snapshots into the directory given.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"
#include "publish/snapshot.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#ifndef SCOUT_FUZZ_SEEDS

/* Offset of the first byte after the writer string of a valid body. */
static size_t
after_writer(const uint8_t *buf)
{
    const uint8_t *p = buf + SCOUT_SNAPSHOT_HDR_LEN;
    uint32_t len = (uint32_t)p[0] | (uint32_t)p[1] << 8
                   | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;

    return SCOUT_SNAPSHOT_HDR_LEN + 4 + len;
}

static void
exercise(scout_snapshot_t *s, const uint8_t *data, size_t size)
{
    int n = scout_snapshot_count(s);
    scout_snapshot_service_t *svcs = calloc((size_t)(n > 0 ? n : 1),
                                            sizeof(*svcs));
    char err[SCOUT_ERR_LEN], *buf = NULL;
    size_t len = 0, a, b;

    (void)scout_snapshot_check_ensemble(s, "127.0.0.1:2181/x", err);
    (void)scout_snapshot_written_at_ms(s);
    for (int i = 0; i < n; i++) {
        scout_snapshot_get(s, i, &svcs[i]);
        if (scout_snapshot_find(s, svcs[i].name) != i)
            abort();
    }
    if (scout_snapshot_encode(scout_snapshot_ensemble(s),
                              scout_snapshot_written_at_ms(s), svcs, n, &buf,
                              &len, err) != SCOUT_OK) {
        fprintf(stderr, "re-encode refused what was read: %s\n", err);
        abort();
    }
    a = after_writer(data);
    b = after_writer((const uint8_t *)buf);
    if (size - a != len - b || memcmp(data + a, buf + b, len - b) != 0) {
        fprintf(stderr, "round trip changed the body\n");
        abort();
    }
    free(buf);
    free(svcs);

    for (int i = 0; i < n; i++) {
        scout_epset_t set;
        size_t jlen;

        scout_epset_init(&set);
        scout_snapshot_take(s, i, &set);
        (void)scout_epset_json(&set, &jlen);
        scout_epset_free(&set);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[SCOUT_ERR_LEN];
    scout_snapshot_t *s;
    uint8_t *copy;
    uint64_t body, sum;

    err[0] = '\0';
    s = scout_snapshot_parse(data, size, "fuzz", err);
    if (s != NULL) {
        exercise(s, data, size);
        scout_snapshot_free(s);
    } else if (err[0] == '\0') {
        abort();                        /* refused without a reason */
    }

    if (size < SCOUT_SNAPSHOT_HDR_LEN)
        return 0;
    copy = malloc(size);
    memcpy(copy, data, size);
    body = size - SCOUT_SNAPSHOT_HDR_LEN;
    sum = XXH64(copy + SCOUT_SNAPSHOT_HDR_LEN, (size_t)body, 0);
    for (int i = 0; i < 8; i++) {
        copy[16 + i] = (uint8_t)(body >> (8 * i));
        copy[24 + i] = (uint8_t)(sum >> (8 * i));
    }
    s = scout_snapshot_parse(copy, size, "fuzz", err);
    if (s != NULL) {
        exercise(s, copy, size);
        scout_snapshot_free(s);
    }
    free(copy);
    return 0;
}

#else /* SCOUT_FUZZ_SEEDS */

static scout_endpoint_t *
mk_ep(const char *id, const char *host, int port, int nmeta)
{
    static const char *const kv[] = { "application", "demo", "group", "",
                                      "version", "1.0", "zone", "a" };
    scout_endpoint_t *ep = calloc(1, sizeof(*ep));

    ep->id = strdup(id);
    ep->host = strdup(host);
    ep->status = strdup(port % 2 ? "down" : "up");
    ep->port = port;
    ep->weight = port % 7;
    ep->zxid = (int64_t)port << 32 | 5;
    ep->nmeta = nmeta;
    ep->meta = nmeta ? calloc((size_t)nmeta, sizeof(*ep->meta)) : NULL;
    for (int j = 0; j < nmeta; j++) {
        ep->meta[j].key = strdup(kv[2 * j]);
        ep->meta[j].value = strdup(kv[2 * j + 1]);
    }
    return ep;
}

static int
seed(const char *dir, int k, const char *ensemble, int nsvc, int neps)
{
    char err[SCOUT_ERR_LEN], path[512], *buf;
    scout_snapshot_service_t svcs[4];
    scout_epset_t sets[4];
    char names[4][16];
    size_t len;
    FILE *f;

    for (int i = 0; i < nsvc; i++) {
        scout_epset_init(&sets[i]);
        snprintf(names[i], sizeof(names[i]), "svc%d", i);
        for (int j = 0; j < neps; j++) {
            char id[32], host[16];
            snprintf(host, sizeof(host), "10.0.%d.%d", i, j);
            snprintf(id, sizeof(id), "%s:%d", host, 8000 + j);
            scout_epset_put(&sets[i], mk_ep(id, host, 8000 + j, j % 5));
        }
        svcs[i] = (scout_snapshot_service_t){ names[i], "/services/x",
                                              (uint64_t)(i + 1), 100 + i,
                                              200 + i, &sets[i] };
    }
    if (scout_snapshot_encode(ensemble, 1700000000000LL + k, svcs, nsvc,
                              &buf, &len, err) != SCOUT_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/seed-%d", dir, k);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    free(buf);
    for (int i = 0; i < nsvc; i++)
        scout_epset_free(&sets[i]);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    return seed(argv[1], 0, "", 0, 0)
           | seed(argv[1], 1, "127.0.0.1:2181", 1, 0)
           | seed(argv[1], 2, "zk1:2181,zk2:2181/chroot", 1, 1)
           | seed(argv[1], 3, "zk1:2181", 2, 3)
           | seed(argv[1], 4, "zk1:2181,zk2:2181,zk3:2181/scout", 4, 5);
}

#endif
