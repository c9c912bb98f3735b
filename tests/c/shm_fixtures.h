/*
 * shm_fixtures.h -- what the shared-memory snapshot's test binaries share:
 * a temp dir in /dev/shm and paths in it, string checks on a snapshot, the
 * small odd set of services (NULL strings, settings with a NUL, an empty
 * service) and big sets of n services x eps endpoints.
 *
 * Why a header: test_shm.c (the format and its files), test_shm_torn.c
 * (readers racing the writer) and test_shm_slices.c (publishing from kept
 * slices, and scale) build the same snapshots; one copy keeps them the same.
 * Everything is static, as in testing.h: each binary is one translation unit.
 */
#ifndef SCOUT_TESTS_SHM_FIXTURES_H
#define SCOUT_TESTS_SHM_FIXTURES_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_endpoints.h"
#include "testing.h"
#include "scout.h"
#include "publish/shm.h"
#include "scout_shm.h"

static int quick;



static char dir[] = "/dev/shm/scout-shm-test-XXXXXX";

static inline const char *
path_in(const char *name)
{
    static char buf[4][512];
    static int k;

    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

/* The string s in snapshot sn equals want (want_len bytes). */
static inline int
str_is(const scout_shm_snap_t *sn, scout_shm_str_t s, const char *want,
       size_t want_len)
{
    return s.len == want_len
           && memcmp(scout_shm_str(sn, s), want, want_len) == 0
           && scout_shm_str(sn, s)[s.len] == '\0';
}

#define STR_IS(sn, s, lit) str_is((sn), (s), (lit), strlen(lit))

static scout_epset_t orders, users, empty;
static scout_shm_service_t small[4];
static const char settings[] = "{\"selector\":\"swrr\"}\0tail";

static inline void
small_init(void)
{
    scout_epset_init(&orders);
    scout_epset_init(&users);
    scout_epset_init(&empty);
    scout_epset_put(&orders, mk_ep("10.0.0.2:20880", "10.0.0.2", -1, 0,
                                   "down", INT64_MAX, 0));
    scout_epset_put(&orders, mk_ep("10.0.0.1:20880", "10.0.0.1", 20880, 100,
                                   "up", 0x100000002LL, 3, "group", "",
                                   "version", "1.0.0", "zone", "a\xc3\xa9"));
    scout_epset_put(&orders, mk_ep("", "", 65535, -7, "", INT64_MIN, 1, "",
                                   ""));
    scout_epset_put(&users, mk_ep("member_0000000007", "u1.example", 8080,
                                  1, "up", 42, 1, "k", "v"));
    small[0] = (scout_shm_service_t){ "users", "/services/users", "synced",
                                      7, "{}", 2, &users };
    small[1] = (scout_shm_service_t){ "orders",
        "/dubbo/com.acme.OrderService/providers", "protected", UINT64_MAX,
        settings, sizeof(settings) - 1, &orders };
    small[2] = (scout_shm_service_t){ "idle", "/idle", "syncing", 0, NULL, 0,
                                      &empty };
    small[3] = (scout_shm_service_t){ "bare", NULL, NULL, 3, NULL, 0, NULL };
}

typedef struct {
    scout_shm_service_t *svcs;
    scout_epset_t       *sets;
    char               **names;
    int                  n;
} big_t;

/* n services of eps endpoints with 2 meta each; every value carries tag. */
static inline void
big_make(big_t *b, int n, int eps, uint64_t tag)
{
    char s[64], h[64];

    b->n = n;
    b->svcs = calloc((size_t)n, sizeof(*b->svcs));
    b->sets = calloc((size_t)n, sizeof(*b->sets));
    b->names = calloc((size_t)n, sizeof(*b->names));
    for (int i = 0; i < n; i++) {
        snprintf(s, sizeof(s), "com.acme.Service%05d", i);
        b->names[i] = strdup(s);
        scout_epset_init(&b->sets[i]);
        for (int e = 0; e < eps; e++) {
            snprintf(s, sizeof(s), "10.%d.%d.%d:20880", i / 250, i % 250, e);
            snprintf(h, sizeof(h), "h%" PRIu64, tag);
            scout_epset_put(&b->sets[i],
                            mk_ep(s, h, 20880, 100, "up", (int64_t)tag, 2,
                                  "gen", h, "zone", "a"));
        }
        b->svcs[i] = (scout_shm_service_t){ b->names[i], "/dubbo/x/providers",
                                            "synced", tag, "{}", 2,
                                            &b->sets[i] };
    }
}

static inline void
big_free(big_t *b)
{
    for (int i = 0; i < b->n; i++) {
        scout_epset_free(&b->sets[i]);
        free(b->names[i]);
    }
    free(b->svcs);
    free(b->sets);
    free(b->names);
}

/* The small set's endpoints go (after small_init). */
static inline void
small_free(void)
{
    scout_epset_free(&orders);
    scout_epset_free(&users);
    scout_epset_free(&empty);
}

/* SCOUT_TEST_QUICK read, stdout line-buffered, dir made; 0 or -1. */
static inline int
shm_fixtures_start(void)
{
    const char *q = getenv("SCOUT_TEST_QUICK");

    quick = q != NULL && q[0] != '\0' && strcmp(q, "0") != 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp /dev/shm");
        return -1;
    }
    return 0;
}

/* dir and everything a test left in it go. */
static inline void
shm_fixtures_stop(void)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

#endif
