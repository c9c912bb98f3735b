/*
 * snapshot_fixtures.h -- what the disk snapshot's test binaries share: a
 * temp dir and paths in it, endpoint-set equality, the small state (three
 * services, one empty, odd values on purpose) and a small valid file.
 *
 * Why a header: test_snapshot.c (round trips, writes, scale) and
 * test_snapshot_refuse.c (truncated, flipped, foreign and inconsistent files)
 * read and write the same snapshots; one copy keeps them the same.
 * Everything is static, as in testing.h: each binary is one translation unit.
 */
#ifndef SCOUT_TESTS_SNAPSHOT_FIXTURES_H
#define SCOUT_TESTS_SNAPSHOT_FIXTURES_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_endpoints.h"
#include "testing.h"
#include "scout.h"
#include "publish/snapshot.h"

static char tmpdir[] = "/tmp/scout-snap-test-XXXXXX";

static inline char *
path_in(const char *dir, const char *name)
{
    static char buf[4][512];
    static int k;

    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

static inline int
exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static inline int
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

static inline void
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

/* A small valid file in memory. */
static inline char *
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

/* The whole file at path in a malloc'd buffer (*len bytes), or NULL. */
static inline char *
slurp(const char *path, size_t *len)
{
    struct stat st;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");

    if (f != NULL && fstat(fileno(f), &st) == 0
        && (buf = malloc((size_t)st.st_size + 1)) != NULL
        && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(buf);
        buf = NULL;
    }
    if (f != NULL)
        fclose(f);
    *len = buf != NULL ? (size_t)st.st_size : 0;
    return buf;
}

static inline int
put_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int ok = fd >= 0 && write(fd, buf, len) == (ssize_t)len;

    if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

/* tmpdir made and the small state built; 0 or -1. */
static inline int
snapshot_fixtures_start(void)
{
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    small_init();
    return 0;
}

/* The small state freed, tmpdir and the snapshot files a test left go. */
static inline void
snapshot_fixtures_stop(void)
{
    scout_epset_free(&orders);
    scout_epset_free(&users);
    scout_epset_free(&empty);
    unlink(path_in(tmpdir, SCOUT_SNAPSHOT_FILE));
    unlink(path_in(tmpdir, SCOUT_SNAPSHOT_TMP));
    if (rmdir(tmpdir) != 0)
        fprintf(stderr, "leftover in %s: %s\n", tmpdir, strerror(errno));
}

#endif
