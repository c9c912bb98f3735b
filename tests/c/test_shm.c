/*
 * test_shm.c -- the shared-memory snapshot: every field survives the writer
 * (agent/publish/shm.c) and the reader (lib/scout_shm_reader.c); empty services and
 * empty snapshots; growth into a new file while a reader holds the old one;
 * generations monotonic and continued by a restarted agent; a second agent
 * refused; foreign, short and lying files refused without a fault; checksum
 * and structure checks.  The torn-read test forks readers that hammer the
 * file while the writer publishes thousands of snapshots of varying size,
 * each of which encodes its own generation everywhere: every accepted read
 * must be internally consistent.  Also measures publish, generation check
 * and full read of 10,000 services x 10 endpoints (printed, never asserted).
 *
 * SCOUT_TEST_QUICK=1 shrinks the torn-read run and the scale test (valgrind).
 */
#define _GNU_SOURCE     /* sched_setaffinity */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_endpoints.h"
#include "testing.h"
#include "scout.h"
#include "publish/shm.h"
#include "scout_shm.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

static int quick;



static char dir[] = "/dev/shm/scout-shm-test-XXXXXX";

static const char *
path_in(const char *name)
{
    static char buf[4][512];
    static int k;

    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

/* The string s in snapshot sn equals want (want_len bytes). */
static int
str_is(const scout_shm_snap_t *sn, scout_shm_str_t s, const char *want,
       size_t want_len)
{
    return s.len == want_len
           && memcmp(scout_shm_str(sn, s), want, want_len) == 0
           && scout_shm_str(sn, s)[s.len] == '\0';
}

#define STR_IS(sn, s, lit) str_is((sn), (s), (lit), strlen(lit))

/* ---- round trip -------------------------------------------------------- */

static void
test_fresh_and_missing(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("fresh");
    scout_shm_reader_t *r;
    scout_shm_t *w;
    struct stat st;

    /* a reader may start before the agent */
    r = scout_shm_reader_open(p, err);
    CHECK(r != NULL);
    CHECK(scout_shm_reader_generation(r) == 0);
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "no snapshot");
    CHECK(scout_shm_reader_moved(r) == 0);      /* nothing there yet */

    w = scout_shm_open(p, err);
    CHECK(w != NULL);
    if (w == NULL) {
        fprintf(stderr, "  %s\n", err);
        scout_shm_reader_close(r);
        return;
    }
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK(scout_shm_generation(w) == 0);
    CHECK(scout_shm_reader_moved(r) == 1);      /* now there is */
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "no snapshot");
    CHECK(scout_shm_reader_moved(r) == 0);      /* attached */

    /* zero services is a snapshot, not "no snapshot" */
    CHECK(scout_shm_publish(w, NULL, 0, err) == SCOUT_OK);
    CHECK(scout_shm_generation(w) == 1);
    CHECK(scout_shm_reader_generation(r) == 1);
    {
        const scout_shm_snap_t *sn = scout_shm_reader_read(r, err);
        CHECK(sn != NULL && sn->generation == 1 && sn->nservices == 0
              && sn->nendpoints == 0 && sn->nmeta == 0);
        CHECK(sn != NULL && scout_shm_snap_find(sn, "x", 1) == NULL);
    }
    /* a bad path is the caller's mistake, said at once */
    CHECK(scout_shm_reader_open("", err) == NULL);
    CHECK(scout_shm_open("", err) == NULL);
    CHECK(scout_shm_open("/nonexistent-dir/x/scout", err) == NULL);
    CHECK_ERR(err, "No such file or directory");

    scout_shm_close(w, 1);
    CHECK(access(p, F_OK) != 0);
    scout_shm_reader_close(r);
}

static scout_epset_t orders, users, empty;
static scout_shm_service_t small[4];
static const char settings[] = "{\"selector\":\"swrr\"}\0tail";

static void
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

static void
check_small(const scout_shm_snap_t *sn, uint64_t gen)
{
    const scout_shm_svc_t *svc = scout_shm_snap_services(sn), *o;
    const scout_shm_ep_t *ep = scout_shm_snap_endpoints(sn);
    const scout_shm_meta_t *m = scout_shm_snap_meta(sn);

    CHECK(sn->generation == gen);
    CHECK(sn->nservices == 4 && sn->nendpoints == 4 && sn->nmeta == 5);
    /* sorted by name */
    CHECK(STR_IS(sn, svc[0].name, "bare"));
    CHECK(STR_IS(sn, svc[1].name, "idle"));
    CHECK(STR_IS(sn, svc[2].name, "orders"));
    CHECK(STR_IS(sn, svc[3].name, "users"));
    /* NULL strings and eps publish as empty */
    CHECK(STR_IS(sn, svc[0].path, "") && STR_IS(sn, svc[0].state, "")
          && STR_IS(sn, svc[0].settings, "") && svc[0].index == 3
          && svc[0].ep_count == 0);
    CHECK(STR_IS(sn, svc[1].path, "/idle")
          && STR_IS(sn, svc[1].state, "syncing") && svc[1].index == 0
          && svc[1].ep_count == 0);

    o = scout_shm_snap_find(sn, "orders", 6);
    CHECK(o == &svc[2]);
    CHECK(scout_shm_snap_find(sn, "order", 5) == NULL);
    CHECK(scout_shm_snap_find(sn, "ordersx", 7) == NULL);
    CHECK(scout_shm_snap_find(sn, "bare", 4) == &svc[0]);
    CHECK(scout_shm_snap_find(sn, "users", 5) == &svc[3]);
    CHECK(STR_IS(sn, o->path, "/dubbo/com.acme.OrderService/providers"));
    CHECK(STR_IS(sn, o->state, "protected"));
    CHECK(o->index == UINT64_MAX);
    /* settings is opaque bytes, NUL and all */
    CHECK(str_is(sn, o->settings, settings, sizeof(settings) - 1));
    CHECK(o->ep_first == 0 && o->ep_count == 3);
    /* endpoints sorted by id, byte order */
    CHECK(STR_IS(sn, ep[0].id, "") && STR_IS(sn, ep[0].host, "")
          && STR_IS(sn, ep[0].status, "") && ep[0].port == 65535
          && ep[0].weight == -7 && ep[0].zxid == INT64_MIN
          && ep[0].meta_first == 0 && ep[0].meta_count == 1
          && STR_IS(sn, m[0].key, "") && STR_IS(sn, m[0].value, ""));
    CHECK(STR_IS(sn, ep[1].id, "10.0.0.1:20880")
          && STR_IS(sn, ep[1].host, "10.0.0.1")
          && STR_IS(sn, ep[1].status, "up") && ep[1].port == 20880
          && ep[1].weight == 100 && ep[1].zxid == 0x100000002LL
          && ep[1].meta_first == 1 && ep[1].meta_count == 3);
    CHECK(STR_IS(sn, m[1].key, "group") && STR_IS(sn, m[1].value, "")
          && STR_IS(sn, m[2].key, "version")
          && STR_IS(sn, m[2].value, "1.0.0")
          && STR_IS(sn, m[3].key, "zone")
          && STR_IS(sn, m[3].value, "a\xc3\xa9"));
    CHECK(STR_IS(sn, ep[2].id, "10.0.0.2:20880") && ep[2].port == -1
          && ep[2].weight == 0 && ep[2].zxid == INT64_MAX
          && STR_IS(sn, ep[2].status, "down") && ep[2].meta_count == 0
          && ep[2].meta_first == 4);
    CHECK(svc[3].ep_first == 3 && svc[3].ep_count == 1
          && STR_IS(sn, svc[3].settings, "{}") && svc[3].index == 7);
    CHECK(STR_IS(sn, ep[3].id, "member_0000000007") && ep[3].port == 8080
          && ep[3].zxid == 42 && STR_IS(sn, m[4].key, "k")
          && STR_IS(sn, m[4].value, "v"));
}

static void
test_round_trip(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("rt");
    scout_shm_reader_t *r;
    scout_shm_t *w;
    const scout_shm_snap_t *sn;
    scout_shm_stats_t st;
    uint64_t buf[512];
    size_t len;
    scout_shm_service_t bad[2];

    w = scout_shm_open(p, err);
    r = scout_shm_reader_open(p, err);
    CHECK(w != NULL && r != NULL);
    if (w == NULL || r == NULL)
        return;
    CHECK(scout_shm_publish(w, small, 4, err) == SCOUT_OK);
    CHECK(scout_shm_generation(w) == 1);
    CHECK(scout_shm_reader_generation(r) == 0);  /* not attached yet */
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL);
    if (sn != NULL)
        check_small(sn, 1);
    CHECK(scout_shm_reader_generation(r) == 1);
    CHECK(scout_shm_snapshot_size(w) > sizeof(scout_shm_snap_t));

    /* the caller's buffer: too small says how much; then fills it */
    CHECK(scout_shm_reader_copy(r, buf, 16, &len, err) == SCOUT_SHM_SHORT);
    CHECK(len == scout_shm_snapshot_size(w));
    CHECK(scout_shm_reader_copy(r, (char *)buf + 1, sizeof(buf), &len, err)
          == SCOUT_SHM_ERROR);
    CHECK_ERR(err, "aligned");
    CHECK(scout_shm_reader_copy(r, buf, sizeof(buf), &len, err)
          == SCOUT_SHM_OK);
    check_small((const scout_shm_snap_t *)buf, 1);

    /* a refused publish changes nothing */
    bad[0] = small[0];
    bad[1] = small[0];
    CHECK(scout_shm_publish(w, bad, 2, err) == SCOUT_ERROR);
    CHECK_ERR(err, "duplicate service \"users\"");
    bad[1].name = "";
    CHECK(scout_shm_publish(w, bad, 2, err) == SCOUT_ERROR);
    CHECK_ERR(err, "no name");
    bad[1] = small[1];
    bad[1].settings = NULL;
    CHECK(scout_shm_publish(w, bad, 2, err) == SCOUT_ERROR);
    CHECK_ERR(err, "settings is NULL");
    CHECK(scout_shm_publish(w, NULL, 1, err) == SCOUT_ERROR);
    CHECK(scout_shm_generation(w) == 1);
    CHECK(scout_shm_reader_generation(r) == 1);
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL);
    if (sn != NULL)
        check_small(sn, 1);

    /* generations move by one, in both slots */
    for (uint64_t g = 2; g <= 50; g++) {
        small[0].index = g;
        CHECK(scout_shm_publish(w, small, 4, err) == SCOUT_OK);
        CHECK(scout_shm_generation(w) == g);
        CHECK(scout_shm_reader_generation(r) == g);
        sn = scout_shm_reader_read(r, err);
        CHECK(sn != NULL && sn->generation == g
              && scout_shm_snap_find(sn, "users", 5)->index == g);
    }
    small[0].index = 7;
    scout_shm_reader_stats(r, &st);
    CHECK(st.remaps == 1 && st.retries == 0 && st.checksum_failures == 0);
    CHECK(st.reads >= 50);
    scout_shm_reader_close(r);
    scout_shm_close(w, 1);
}

/* ---- growth -------------------------------------------------------------- */

typedef struct {
    scout_shm_service_t *svcs;
    scout_epset_t       *sets;
    char               **names;
    int                  n;
} big_t;

/* n services of eps endpoints with 2 meta each; every value carries tag. */
static void
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

static void
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

static void
test_growth(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("grow");
    scout_shm_reader_t *r;
    scout_shm_t *w;
    const scout_shm_snap_t *sn;
    scout_shm_stats_t st;
    struct stat s1, s2;
    size_t size1;
    big_t b;

    w = scout_shm_open(p, err);
    r = scout_shm_reader_open(p, err);
    if (w == NULL || r == NULL) {
        CHECK(0);
        return;
    }
    CHECK(scout_shm_publish(w, small, 4, err) == SCOUT_OK);
    CHECK(scout_shm_reader_read(r, err) != NULL);
    stat(p, &s1);
    size1 = scout_shm_file_size(w);

    /* 2,000 x 20 does not fit a 64 KiB slot: a new file, renamed in */
    big_make(&b, 2000, 20, 2);
    CHECK(scout_shm_publish(w, b.svcs, b.n, err) == SCOUT_OK);
    stat(p, &s2);
    CHECK(s2.st_ino != s1.st_ino);
    CHECK(scout_shm_file_size(w) > size1);
    CHECK((uint64_t)s2.st_size == scout_shm_file_size(w));
    CHECK((s2.st_mode & 0777) == 0644);
    /* the reader's cheap check fires on the old, retired mapping */
    CHECK(scout_shm_reader_generation(r) == 2);
    CHECK(scout_shm_reader_moved(r) == 1);
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL && sn->generation == 2 && sn->nservices == 2000
          && sn->nendpoints == 40000 && sn->nmeta == 80000);
    if (sn != NULL) {
        const scout_shm_svc_t *v = scout_shm_snap_find(sn,
                                       "com.acme.Service01999", 21);
        const scout_shm_ep_t *ep = scout_shm_snap_endpoints(sn);
        CHECK(v != NULL && v->ep_count == 20 && v->index == 2);
        CHECK(v != NULL && STR_IS(sn, ep[v->ep_first].id, "10.7.249.0:20880"));
        CHECK(v != NULL && STR_IS(sn, ep[v->ep_first + 19].id,
                                  "10.7.249.9:20880"));   /* byte order */
        CHECK(v != NULL && STR_IS(sn, ep[v->ep_first].host, "h2"));
    }
    scout_shm_reader_stats(r, &st);
    CHECK(st.remaps == 2);
    CHECK(scout_shm_reader_moved(r) == 0);

    /* same size again: in place, no new file */
    CHECK(scout_shm_publish(w, b.svcs, b.n, err) == SCOUT_OK);
    stat(p, &s1);
    CHECK(s1.st_ino == s2.st_ino);
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL && sn->generation == 3);
    big_free(&b);

    /* much bigger (~11 MB), then tiny: shrinks into a new file */
    big_make(&b, 3000, 30, 4);
    CHECK(scout_shm_publish(w, b.svcs, b.n, err) == SCOUT_OK);
    size1 = scout_shm_file_size(w);
    CHECK(size1 > 8 * 1024 * 1024);
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL && sn->generation == 4 && sn->nendpoints == 90000);
    CHECK(scout_shm_publish(w, small, 4, err) == SCOUT_OK);
    CHECK(scout_shm_file_size(w) < size1 / 8);
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL);
    if (sn != NULL)
        check_small(sn, 5);
    scout_shm_reader_stats(r, &st);
    CHECK(st.remaps == 4);
    big_free(&b);

    /* no other files left next to it */
    {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "test $(ls %s | grep -c '^grow') = 1",
                 dir);
        CHECK(system(cmd) == 0);
    }
    scout_shm_reader_close(r);
    scout_shm_close(w, 1);
}

/* ---- restart, second agent, foreign files ------------------------------- */

static void
test_adopt_and_refuse(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("adopt");
    scout_shm_reader_t *r;
    scout_shm_t *w, *w2;
    const scout_shm_snap_t *sn;
    scout_shm_stats_t st;
    struct stat s1, s2;

    w = scout_shm_open(p, err);
    r = scout_shm_reader_open(p, err);
    if (w == NULL || r == NULL) {
        CHECK(0);
        return;
    }
    for (int i = 0; i < 7; i++)
        CHECK(scout_shm_publish(w, small, 4, err) == SCOUT_OK);
    CHECK(scout_shm_reader_read(r, err) != NULL);

    /* a second agent on the same path is refused while the first lives */
    w2 = scout_shm_open(p, err);
    CHECK(w2 == NULL);
    CHECK_ERR(err, "another agent");
    scout_shm_close(w2, 0);

    /* the agent stops (file kept); readers keep reading the last snapshot */
    stat(p, &s1);
    scout_shm_close(w, 0);
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL && sn->generation == 7);

    /* a restarted agent adopts it: same file, generations continue */
    w = scout_shm_open(p, err);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    stat(p, &s2);
    CHECK(s1.st_ino == s2.st_ino);
    CHECK(scout_shm_generation(w) == 7);
    CHECK(scout_shm_publish(w, small, 3, err) == SCOUT_OK);
    CHECK(scout_shm_reader_generation(r) == 8);
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL && sn->generation == 8 && sn->nservices == 3);
    scout_shm_reader_stats(r, &st);
    CHECK(st.remaps == 1);

    /* the agent stops and removes the file: readers keep the last one */
    scout_shm_close(w, 1);
    CHECK(access(p, F_OK) != 0);
    CHECK(scout_shm_reader_moved(r) == 0);
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL && sn->generation == 8);
    /* and a new agent's file is picked up by moved() + read() */
    w = scout_shm_open(p, err);
    CHECK(w != NULL && scout_shm_generation(w) == 0);
    CHECK(scout_shm_publish(w, small, 4, err) == SCOUT_OK);
    CHECK(scout_shm_reader_moved(r) == 1);
    sn = scout_shm_reader_read(r, err);
    CHECK(sn != NULL && sn->generation == 1);
    if (sn != NULL)
        check_small(sn, 1);
    scout_shm_close(w, 1);
    scout_shm_reader_close(r);
}

static void
write_file(const char *p, const void *data, size_t len)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, data, len) == (ssize_t)len);
    close(fd);
}

static void
test_foreign_files(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("foreign");
    scout_shm_reader_t *r;
    scout_shm_t *w;
    scout_shm_file_t h;
    static char page[8192];

    r = scout_shm_reader_open(p, err);
    /* not ours at all */
    write_file(p, "hello", 5);
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "not a scout snapshot");
    /* a header that claims more than the file holds: mapping it would
     * fault past the end, so it is refused before mmap */
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, SCOUT_SHM_MAGIC, 8);
    h.version = SCOUT_SHM_VERSION;
    h.header_size = SCOUT_SHM_HDR_SIZE;
    h.generation = 1;
    h.slot_size = 1 << 20;
    h.file_size = SCOUT_SHM_HDR_SIZE + 2 * h.slot_size;
    memcpy(page, &h, sizeof(h));
    write_file(p, page, sizeof(page));
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "corrupt snapshot header");
    h.version = 99;
    memcpy(page, &h, sizeof(h));
    write_file(p, page, sizeof(page));
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "version 99");

    /* the agent replaces what it cannot adopt */
    w = scout_shm_open(p, err);
    CHECK(w != NULL && scout_shm_generation(w) == 0);
    if (w != NULL) {
        CHECK(scout_shm_publish(w, small, 4, err) == SCOUT_OK);
        const scout_shm_snap_t *sn = scout_shm_reader_read(r, err);
        CHECK(sn != NULL);
        if (sn != NULL)
            check_small(sn, 1);
        scout_shm_close(w, 1);
    }
    scout_shm_reader_close(r);
}

/* Flip bytes in the live slot with a second, writable mapping. */
static void
test_checksum_and_structure(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("sum");
    scout_shm_reader_t *r;
    scout_shm_t *w;
    scout_shm_stats_t st;
    scout_shm_file_t *h;
    scout_shm_slot_t *slot;
    scout_shm_snap_t *body;
    scout_shm_svc_t *svc;
    uint8_t *map;
    size_t len;
    int fd;

    w = scout_shm_open(p, err);
    r = scout_shm_reader_open(p, err);
    if (w == NULL || r == NULL) {
        CHECK(0);
        return;
    }
    CHECK(scout_shm_publish(w, small, 4, err) == SCOUT_OK);
    fd = open(p, O_RDWR);
    len = scout_shm_file_size(w);
    map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    CHECK(map != MAP_FAILED);
    if (map == MAP_FAILED)
        return;
    h = (scout_shm_file_t *)map;
    slot = (scout_shm_slot_t *)(map + h->header_size
                                + (h->generation & 1) * h->slot_size);
    body = (scout_shm_snap_t *)(slot + 1);

    /* a scribbled byte: sequence fine, checksum not */
    ((uint8_t *)body)[body->size - 2] ^= 0x20;
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "checksum mismatch");
    scout_shm_reader_stats(r, &st);
    CHECK(st.checksum_failures == 16 && st.reads == 0);
    ((uint8_t *)body)[body->size - 2] ^= 0x20;
    CHECK(scout_shm_reader_read(r, err) != NULL);

    /* a checksummed but inconsistent body is still refused: counts */
    svc = (scout_shm_svc_t *)(body + 1);
    svc[2].ep_count++;
    slot->checksum = XXH3_64bits(body, slot->len);
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "corrupt snapshot");
    svc[2].ep_count--;
    /* a string running off the strings area */
    svc[1].name.len = body->strings_len;
    slot->checksum = XXH3_64bits(body, slot->len);
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "corrupt snapshot: service 1 strings");
    svc[1].name.len = 4;
    /* order: services must be sorted (the reader binary-searches) */
    {
        scout_shm_str_t t = svc[0].name;
        svc[0].name = svc[1].name;
        svc[1].name = t;
        slot->checksum = XXH3_64bits(body, slot->len);
        CHECK(scout_shm_reader_read(r, err) == NULL);
        CHECK_ERR(err, "not sorted");
        svc[1].name = svc[0].name;
        svc[0].name = t;
    }
    /* a generation in the body that is not the slot's */
    body->generation++;
    slot->checksum = XXH3_64bits(body, slot->len);
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "corrupt snapshot: generation");
    body->generation--;
    /* a length past the slot */
    slot->len = h->slot_size;
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "corrupt snapshot: length");
    slot->len = body->size;
    slot->checksum = XXH3_64bits(body, slot->len);
    CHECK(scout_shm_reader_read(r, err) != NULL);

    /* a slot whose sequence is not the generation is "torn" */
    slot->seq = 0;
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "torn, retry");
    slot->seq = h->generation;
    CHECK(scout_shm_reader_read(r, err) != NULL);

    munmap(map, len);
    scout_shm_reader_close(r);
    scout_shm_close(w, 1);
}

/* ---- torn reads ---------------------------------------------------------- */

/*
 * What generation g publishes: a shape that changes every time (so lengths
 * and offsets move): four small ones; five medium ones, 3 services of 20
 * endpoints whose settings are 63-315 KB of g written out over and over
 * (copies the writer makes nearly as fast as a reader does, so it laps
 * readers often); and at seven points a big one, bigger each time, that
 * forces the file to grow while readers hold it.  Every value that can
 * carry g does.  Shapes are built once and their values rewritten in place
 * (fixed width), so the writer does little but publish.  With the writer's
 * "seq = 0" store removed this test sees checksum failures, and with the
 * reader's checksum check removed too it accepts torn reads; intact, it
 * must see neither.
 */
#define SHAPES 9
#define BIGS   7

typedef struct {
    int                  n;
    scout_shm_service_t *svcs;
    scout_epset_t       *sets;
    char               (*names)[32];
} shape_t;

static shape_t shapes[SHAPES + BIGS];
static uint64_t torn_final;

static int
torn_shape(uint64_t g)
{
    uint64_t step = torn_final / (BIGS + 1);

    if (g % step == 0 && g / step >= 1 && g / step <= BIGS)
        return SHAPES + (int)(g / step) - 1;
    return (int)(g % SHAPES);
}

static int
torn_nsvc(uint64_t g)
{
    int k = torn_shape(g);

    return k >= SHAPES ? 300 * (k - SHAPES + 1) : k >= 4 ? 3 : 1 + k;
}

/* Bytes of settings in generation g: 0 means the small JSON form. */
static size_t
torn_blob(uint64_t g)
{
    int k = torn_shape(g);

    return k >= 4 && k < SHAPES ? (size_t)21 * 3000 * (size_t)(k - 3) : 0;
}

/* g as 20 digits and a comma, over and over, len bytes. */
static void
blob_fill(char *blob, size_t len, const char *gs)
{
    for (size_t o = 0; o + 21 <= len; o += 21) {
        memcpy(blob + o, gs, 20);
        blob[o + 20] = ',';
    }
}

static int
torn_neps(uint64_t g, int i)
{
    int k = torn_shape(g);

    return k >= 4 ? 20 : (k * 7 + i) % 9;
}

static void
shape_build(shape_t *sh, uint64_t g)
{
    char id[32];

    sh->n = torn_nsvc(g);
    sh->svcs = calloc((size_t)sh->n, sizeof(*sh->svcs));
    sh->sets = calloc((size_t)sh->n, sizeof(*sh->sets));
    sh->names = calloc((size_t)sh->n, sizeof(*sh->names));
    for (int i = 0; i < sh->n; i++) {
        snprintf(sh->names[i], sizeof(sh->names[i]), "svc-%05d", i);
        scout_epset_init(&sh->sets[i]);
        for (int e = 0; e < torn_neps(g, i); e++) {
            snprintf(id, sizeof(id), "ep-%03d", e);
            scout_epset_put(&sh->sets[i],
                            mk_ep(id, "00000000000000000000", 0, i, "up", 0,
                                  1, "gen", "00000000000000000000"));
        }
        sh->svcs[i] = (scout_shm_service_t){ sh->names[i], NULL, "synced", 0,
                                             NULL, 0, &sh->sets[i] };
    }
}

static void
shape_free(shape_t *sh)
{
    for (int i = 0; i < sh->n; i++)
        scout_epset_free(&sh->sets[i]);
    free(sh->svcs);
    free(sh->sets);
    free(sh->names);
    memset(sh, 0, sizeof(*sh));
}

static void
torn_publish(scout_shm_t *w, uint64_t g, char *err)
{
    static char settings_buf[48], path[48], blob[21 * 3000 * 5];
    char gs[32];
    size_t blen = torn_blob(g);
    int k = torn_shape(g), ok;
    shape_t *sh = &shapes[k];
    scout_endpoint_t *ep;

    if (sh->svcs == NULL)
        shape_build(sh, g);
    snprintf(settings_buf, sizeof(settings_buf), "{\"gen\":%" PRIu64 "}", g);
    snprintf(path, sizeof(path), "/p/%" PRIu64, g);
    snprintf(gs, sizeof(gs), "%020" PRIu64, g);
    blob_fill(blob, blen, gs);
    for (int i = 0; i < sh->n; i++) {
        sh->svcs[i].index = g;
        sh->svcs[i].path = path;
        sh->svcs[i].settings = blen ? blob : settings_buf;
        sh->svcs[i].settings_len = blen ? blen : strlen(settings_buf);
        for (unsigned k = 0; k < sh->sets[i].n; k++) {
            ep = sh->sets[i].eps[k];
            memcpy(ep->host, gs, 20);
            memcpy(ep->meta[0].value, gs, 20);
            ep->zxid = (int64_t)g;
            ep->port = (int)(g % 65536);
        }
    }
    ok = scout_shm_publish(w, sh->svcs, sh->n, err) == SCOUT_OK;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  publish %" PRIu64 ": %s\n", g, err);
}

/* 1 if sn is exactly what torn_publish(sn->generation) wrote. */
static int
torn_valid(const scout_shm_snap_t *sn)
{
    uint64_t g = sn->generation;
    const scout_shm_svc_t *svc = scout_shm_snap_services(sn);
    const scout_shm_ep_t *ep = scout_shm_snap_endpoints(sn);
    const scout_shm_meta_t *m = scout_shm_snap_meta(sn);
    char gs[32], want[48];

    snprintf(gs, sizeof(gs), "%020" PRIu64, g);
    if ((int)sn->nservices != torn_nsvc(g))
        return 0;
    for (uint32_t i = 0; i < sn->nservices; i++) {
        const scout_shm_svc_t *v = &svc[i];

        snprintf(want, sizeof(want), "svc-%05u", i);
        if (!STR_IS(sn, v->name, want) || v->index != g
            || (int)v->ep_count != torn_neps(g, (int)i)
            || !STR_IS(sn, v->state, "synced"))
            return 0;
        if (torn_blob(g) > 0) {
            const char *b = scout_shm_str(sn, v->settings);

            if (v->settings.len != torn_blob(g))
                return 0;
            for (size_t o = 0; o < v->settings.len; o += 21)
                if (memcmp(b + o, gs, 20) != 0 || b[o + 20] != ',')
                    return 0;
        } else {
            snprintf(want, sizeof(want), "{\"gen\":%" PRIu64 "}", g);
            if (!STR_IS(sn, v->settings, want))
                return 0;
        }
        snprintf(want, sizeof(want), "/p/%" PRIu64, g);
        if (!STR_IS(sn, v->path, want))
            return 0;
        for (uint32_t e = 0; e < v->ep_count; e++) {
            const scout_shm_ep_t *p = &ep[v->ep_first + e];

            memcpy(want, "ep-000", 7);
            want[3] = (char)('0' + e / 100);
            want[4] = (char)('0' + e / 10 % 10);
            want[5] = (char)('0' + e % 10);
            if (!str_is(sn, p->id, want, 6) || !str_is(sn, p->host, gs, 20)
                || !STR_IS(sn, p->status, "up")
                || p->zxid != (int64_t)g || p->port != (int)(g % 65536)
                || p->weight != (int)i || p->meta_count != 1
                || !STR_IS(sn, m[p->meta_first].key, "gen")
                || !str_is(sn, m[p->meta_first].value, gs, 20))
                return 0;
        }
    }
    return 1;
}

typedef struct {
    uint64_t reads, invalid, errors, backwards, last_gen;
    scout_shm_stats_t st;
} torn_report_t;

/* The child: read until the final generation is seen (or 120 s pass). */
static void
torn_reader(const char *p, uint64_t final, int own_buffer, int fd)
{
    char err[SCOUT_ERR_LEN];
    scout_shm_reader_t *r = scout_shm_reader_open(p, err);
    torn_report_t rep;
    size_t cap = 1 << 16, len;
    uint64_t *buf = malloc(cap);
    int64_t deadline = scout_now_ns() + 120 * (int64_t)1000000000;

    memset(&rep, 0, sizeof(rep));
    while (rep.last_gen < final && scout_now_ns() < deadline) {
        const scout_shm_snap_t *sn = NULL;

        if (own_buffer) {
            sn = scout_shm_reader_read(r, err);
            if (sn == NULL && strstr(err, "torn") == NULL
                && strstr(err, "no snapshot") == NULL)
                rep.errors++;
        } else {
            int rc = scout_shm_reader_copy(r, buf, cap, &len, err);
            if (rc == SCOUT_SHM_SHORT) {
                free(buf);
                cap = len * 2;
                buf = malloc(cap);
                continue;
            }
            if (rc == SCOUT_SHM_OK)
                sn = (const scout_shm_snap_t *)buf;
            else if (rc == SCOUT_SHM_ERROR && strstr(err, "no snapshot")
                     == NULL)
                rep.errors++;
        }
        if (sn == NULL)
            continue;
        rep.reads++;
        if (!torn_valid(sn))
            rep.invalid++;
        if (sn->generation < rep.last_gen)
            rep.backwards++;
        rep.last_gen = sn->generation;
    }
    scout_shm_reader_stats(r, &rep.st);
    if (write(fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(2);
    free(buf);
    scout_shm_reader_close(r);
    _exit(0);
}

#define NREADERS 3

static void
test_torn_reads(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("torn");
    uint64_t final = quick ? 2000 : 20000;
    pid_t pid[NREADERS];
    int fds[NREADERS][2];
    scout_shm_t *w;
    int64_t t0;
    cpu_set_t all, one;
    int pinned;

    /* The writer and reader 0 share one CPU, so the scheduler preempts
     * either in the middle of a copy and the other runs: the writer laps a
     * reader stopped mid-copy, a reader checks a slot the writer was stopped
     * in the middle of.  Readers 1 and 2 run free on any CPU, racing the
     * writer in parallel (memory ordering across cores). */
    pinned = sched_getaffinity(0, sizeof(all), &all) == 0;
    if (pinned) {
        CPU_ZERO(&one);
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &all)) {
                CPU_SET(c, &one);
                break;
            }
        pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
    }
    torn_final = final;
    fflush(NULL);
    for (int k = 0; k < NREADERS; k++) {
        CHECK(pipe(fds[k]) == 0);
        pid[k] = fork();
        if (pid[k] == 0) {
            close(fds[k][0]);
            if (k > 0 && pinned)
                sched_setaffinity(0, sizeof(all), &all);
            torn_reader(p, final, k == 1, fds[k][1]);
        }
        close(fds[k][1]);
    }
    /* Opened after the fork so that the readers own nothing of the
     * writer's; they wait for the file ("no snapshot") meanwhile. */
    w = scout_shm_open(p, err);
    CHECK(w != NULL);
    if (w == NULL)
        _exit(1);
    t0 = scout_now_ns();
    for (uint64_t g = 1; g <= final; g++)
        torn_publish(w, g, err);
    for (int k = 0; k < SHAPES + BIGS; k++)
        shape_free(&shapes[k]);
    double ms = (double)(scout_now_ns() - t0) / 1e6;
    for (int k = 0; k < NREADERS; k++) {
        torn_report_t rep;
        int status;

        memset(&rep, 0, sizeof(rep));
        CHECK(read(fds[k][0], &rep, sizeof(rep)) == (ssize_t)sizeof(rep));
        close(fds[k][0]);
        CHECK(waitpid(pid[k], &status, 0) == pid[k] && WIFEXITED(status)
              && WEXITSTATUS(status) == 0);
        CHECK(rep.invalid == 0);
        CHECK(rep.errors == 0);
        CHECK(rep.backwards == 0);
        CHECK(rep.st.checksum_failures == 0);
        CHECK(rep.last_gen == final);
        CHECK(rep.reads > 0);
        printf("torn-read %s: %" PRIu64 " publishes in %.0f ms; %" PRIu64
               " reads accepted, %" PRIu64 " invalid, %" PRIu64
               " retries (torn), %" PRIu64 " checksum failures, %" PRIu64
               " re-maps (file grew)\n",
               k == 0 ? "copy(), writer's CPU" : k == 1 ? "read(), any CPU"
                      : "copy(), any CPU", final, ms,
               rep.reads, rep.invalid,
               rep.st.retries, rep.st.checksum_failures, rep.st.remaps);
    }
    if (pinned)
        sched_setaffinity(0, sizeof(all), &all);
    scout_shm_close(w, 1);
}

/* ---- scale ----------------------------------------------------------------- */

/* A big generation (10,000 services x 10 endpoints, 2 meta each; 1,000
 * under valgrind): published twice, read whole by a reader, and the cheap
 * generation check agrees with the writer (bench/scale and bench/nginx time
 * the agent's and nginx's use of this). */
static void
test_scale(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("scale");
    int nsvc = quick ? 1000 : 10000;
    const scout_shm_snap_t *sn = NULL;
    scout_shm_reader_t *r;
    scout_shm_t *w;
    big_t b;
    uint64_t sink = 0;

    w = scout_shm_open(p, err);
    r = scout_shm_reader_open(p, err);
    if (w == NULL || r == NULL) {
        CHECK(0, "%s", err);
        return;
    }
    big_make(&b, nsvc, 10, 1);
    for (int i = 0; i < 2; i++) {
        CHECK(scout_shm_publish(w, b.svcs, b.n, err) == SCOUT_OK);
        sn = scout_shm_reader_read(r, err);
        CHECK(sn != NULL && sn->nendpoints == (uint32_t)nsvc * 10);
    }
    for (int i = 0; i < 1000; i++)
        sink += scout_shm_reader_generation(r);
    CHECK(sink == 1000 * scout_shm_generation(w));
    big_free(&b);
    scout_shm_reader_close(r);
    scout_shm_close(w, 1);
}

/* Slices handed to scout_shm_publish_slices last first (the agent hands
 * them in name order, which is then not sorted again). */
static int slices_reversed;

/* Publish svcs on wa with scout_shm_publish and on wb from slices (made
 * fresh for the services in `fresh`, kept in slices[] otherwise), then
 * compare the two bodies byte for byte. */
static int
same_bytes(scout_shm_t *wa, scout_shm_t *wb, scout_shm_reader_t *ra,
           scout_shm_reader_t *rb, const scout_shm_service_t *svcs, int n,
           scout_shm_slice_t **slices, int fresh)
{
    char err[SCOUT_ERR_LEN] = "";
    scout_shm_slice_t **order = malloc((n ? n : 1) * sizeof(*order));
    const scout_shm_snap_t *a, *b;
    int ok;

    for (int i = 0; i < n; i++) {
        if (i == fresh || slices[i] == NULL) {
            scout_shm_slice_unref(slices[i]);
            slices[i] = scout_shm_slice_new(&svcs[i], err);
        }
        order[slices_reversed ? n - 1 - i : i] = slices[i];
    }
    ok = scout_shm_publish(wa, svcs, n, err) == SCOUT_OK
         && scout_shm_publish_slices(wb, order, n, err) == SCOUT_OK;
    free(order);
    a = ok ? scout_shm_reader_read(ra, err) : NULL;
    b = ok ? scout_shm_reader_read(rb, err) : NULL;
    CHECK(a != NULL && b != NULL, "%s", err);
    return a != NULL && b != NULL && a->size == b->size
           && memcmp(a, b, a->size) == 0;
}

/* The agent publishes from kept per-service slices: the body must be the
 * very bytes scout_shm_publish writes (readers in lib/ and resty.scout read
 * it), for the small odd set (NULL strings, settings with a NUL, empty
 * services) and for 1,000 services after one of them changed. */
static void
test_slices(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *pa = path_in("slices-a"), *pb = path_in("slices-b");
    scout_shm_t *wa = scout_shm_open(pa, err), *wb = scout_shm_open(pb, err);
    scout_shm_reader_t *ra = scout_shm_reader_open(pa, err);
    scout_shm_reader_t *rb = scout_shm_reader_open(pb, err);
    scout_shm_slice_t *sl[1000] = { NULL }, *dup[2];
    big_t b;

    if (wa == NULL || wb == NULL || ra == NULL || rb == NULL) {
        CHECK(0, "%s", err);
        return;
    }
    CHECK(same_bytes(wa, wb, ra, rb, small, 4, sl, -1));
    for (int i = 0; i < 4; i++) {
        scout_shm_slice_unref(sl[i]);
        sl[i] = NULL;
    }
    big_make(&b, 1000, 10, 3);
    CHECK(same_bytes(wa, wb, ra, rb, b.svcs, b.n, sl, -1));
    /* one service changes: only its slice is made again */
    b.svcs[517].index += 9;
    b.svcs[517].state = "stale";
    CHECK(same_bytes(wa, wb, ra, rb, b.svcs, b.n, sl, 517));
    /* the slot a publish reuses holds g - 1: rewriting it in place (every
     * slice the same size) must bring both publishes' changes, the very
     * bytes of a full encode, slot after slot */
    for (int k = 0; k < 8; k++) {
        int i = (k * 389 + 11) % 1000;

        b.svcs[i].index += 1 + (uint64_t)k;
        if (k == 4)             /* longer: every offset after it moves */
            b.svcs[i].state = "protected";
        slices_reversed = k == 6;   /* not in name order: sorted */
        CHECK(same_bytes(wa, wb, ra, rb, b.svcs, b.n, sl, i), "step %d", k);
    }
    slices_reversed = 0;
    /* a kept slice does not read the set it was made from */
    scout_epset_free(&b.sets[3]);
    scout_epset_init(&b.sets[3]);
    b.svcs[3].eps = NULL;
    CHECK(!same_bytes(wa, wb, ra, rb, b.svcs, b.n, sl, -1));
    /* two slices of one name are refused; the last snapshot stands */
    dup[0] = sl[0];
    dup[1] = sl[0];
    CHECK(scout_shm_publish_slices(wb, dup, 2, err) == SCOUT_ERROR);
    CHECK_ERR(err, "duplicate service");
    for (int i = 0; i < 1000; i++)
        scout_shm_slice_unref(sl[i]);
    big_free(&b);
    scout_shm_reader_close(ra);
    scout_shm_reader_close(rb);
    scout_shm_close(wa, 1);
    scout_shm_close(wb, 1);
}

int
main(void)
{
    const char *q = getenv("SCOUT_TEST_QUICK");

    quick = q != NULL && q[0] != '\0' && strcmp(q, "0") != 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp /dev/shm");
        return 1;
    }
    small_init();
    RUN(test_fresh_and_missing());
    RUN(test_round_trip());
    RUN(test_growth());
    RUN(test_adopt_and_refuse());
    RUN(test_foreign_files());
    RUN(test_checksum_and_structure());
    RUN(test_torn_reads());
    RUN(test_slices());
    RUN(test_scale());

    scout_epset_free(&orders);
    scout_epset_free(&users);
    scout_epset_free(&empty);
    {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return test_summary();
}
