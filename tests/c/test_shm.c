/*
 * test_shm.c -- the shared-memory snapshot: every field survives the writer
 * (agent/publish/shm.c) and the reader (lib/scout_shm_reader.c); empty services and
 * empty snapshots; growth into a new file while a reader holds the old one;
 * generations monotonic and continued by a restarted agent; a second agent
 * refused; foreign, short and lying files refused without a fault; checksum
 * and structure checks.  Readers racing the writer are in test_shm_torn.c;
 * publishing from kept slices, and the 10,000-service scale test, in
 * test_shm_slices.c (fixtures shared through shm_fixtures.h).
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

#include "shm_fixtures.h"

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
    h.version = 1;            /* (version 2 would fail on its table) */
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

/* The slot's checksum made right again for its (edited) body, as the
 * writer would: version 1 the body's, version 2 every chunk's into the
 * table, then the table's. */
static void
reseal(const scout_shm_file_t *h, scout_shm_slot_t *slot)
{
    const uint8_t *body = (const uint8_t *)(slot + 1);
    uint64_t *table = (uint64_t *)((uint8_t *)slot + h->table_off);
    size_t n = slot->len, nchunks;

    if (h->version < 2) {
        slot->checksum = XXH3_64bits(body, n);
        return;
    }
    nchunks = (n + h->chunk_size - 1) / h->chunk_size;
    for (size_t c = 0; c < nchunks; c++) {
        size_t off = c * h->chunk_size;

        table[c] = XXH3_64bits(body + off, n - off < h->chunk_size
                                           ? n - off : h->chunk_size);
    }
    slot->checksum = XXH3_64bits(table, nchunks * 8);
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
    reseal(h, slot);
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "corrupt snapshot");
    svc[2].ep_count--;
    /* a string running off the strings area */
    svc[1].name.len = body->strings_len;
    reseal(h, slot);
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "corrupt snapshot: service 1 strings");
    svc[1].name.len = 4;
    /* order: services must be sorted (the reader binary-searches) */
    {
        scout_shm_str_t t = svc[0].name;
        svc[0].name = svc[1].name;
        svc[1].name = t;
        reseal(h, slot);
        CHECK(scout_shm_reader_read(r, err) == NULL);
        CHECK_ERR(err, "not sorted");
        svc[1].name = svc[0].name;
        svc[0].name = t;
    }
    /* a generation in the body that is not the slot's */
    body->generation++;
    reseal(h, slot);
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "corrupt snapshot: generation");
    body->generation--;
    /* a length past the slot */
    slot->len = h->slot_size;
    CHECK(scout_shm_reader_read(r, err) == NULL);
    CHECK_ERR(err, "corrupt snapshot: length");
    slot->len = body->size;
    reseal(h, slot);
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

/* Version 2 checks the body chunk by chunk: a byte scribbled in any chunk
 * (the first, one in the middle, the last, short one), in the table or in
 * the table's checksum is refused, and put back it reads again.  A version
 * 1 file (an older agent's, or `shm { format = 1 }`) is still read, and
 * checked whole.  A writer of the other version replaces the file instead
 * of adopting it, and the reader follows. */
static void
test_chunks(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("chunks");
    scout_shm_reader_t *r = scout_shm_reader_open(p, err);
    big_t b;

    big_make(&b, 400, 10, 5);
    for (int version = 2; version >= 1; version--) {
        scout_shm_t *w = scout_shm_open_version(p, version, err);
        scout_shm_file_t *h;
        scout_shm_slot_t *slot;
        uint8_t *map, *body;
        uint64_t *table;
        size_t len, n, nchunks, at[4];
        int fd;

        CHECK(w != NULL, "%s", err);
        if (w == NULL || r == NULL)
            break;
        /* another version's file is replaced, not continued */
        CHECK(scout_shm_generation(w) == 0, "v%d", version);
        CHECK(scout_shm_publish(w, b.svcs, b.n, err) == SCOUT_OK, "%s", err);
        CHECK(scout_shm_reader_read(r, err) != NULL, "v%d: %s", version, err);
        fd = open(p, O_RDWR);
        len = scout_shm_file_size(w);
        map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        CHECK(map != MAP_FAILED);
        if (map == MAP_FAILED)
            break;
        h = (scout_shm_file_t *)map;
        slot = (scout_shm_slot_t *)(map + h->header_size
                                    + (h->generation & 1) * h->slot_size);
        body = (uint8_t *)(slot + 1);
        n = slot->len;
        table = (uint64_t *)((uint8_t *)slot + h->table_off);
        CHECK(h->version == (uint32_t)version);
        if (version == 2)
            CHECK(h->chunk_size == SCOUT_SHM_CHUNK && h->table_off > n
                  && h->table_off + 8 * h->table_max <= h->slot_size);
        else
            CHECK(h->chunk_size == 0 && h->table_max == 0
                  && h->table_off == 0);
        nchunks = (n + SCOUT_SHM_CHUNK - 1) / SCOUT_SHM_CHUNK;
        CHECK(nchunks >= 5, "%zu bytes", n);
        at[0] = 40;             /* chunk 0: a service record */
        at[1] = SCOUT_SHM_CHUNK + 100;
        at[2] = (nchunks / 2) * SCOUT_SHM_CHUNK + 7;
        at[3] = n - 2;          /* the last, short chunk's strings */
        for (int i = 0; i < 4; i++) {
            body[at[i]] ^= 0x20;
            CHECK(scout_shm_reader_read(r, err) == NULL, "v%d at %zu",
                  version, at[i]);
            CHECK_ERR(err, "checksum mismatch");
            body[at[i]] ^= 0x20;
            CHECK(scout_shm_reader_read(r, err) != NULL, "%s", err);
        }
        if (version == 2) {
            table[1] ^= 1;      /* an entry that is not its chunk's */
            CHECK(scout_shm_reader_read(r, err) == NULL);
            CHECK_ERR(err, "checksum mismatch");
            table[1] ^= 1;
            slot->checksum ^= 1;    /* a table that is not the slot's */
            CHECK(scout_shm_reader_read(r, err) == NULL);
            CHECK_ERR(err, "checksum mismatch");
            slot->checksum ^= 1;
            CHECK(scout_shm_reader_read(r, err) != NULL, "%s", err);
        }
        munmap(map, len);
        scout_shm_close(w, 0);
    }
    big_free(&b);
    scout_shm_reader_close(r);
    unlink(p);
}

int
main(void)
{
    if (shm_fixtures_start() != 0)
        return 1;
    small_init();
    RUN(test_fresh_and_missing());
    RUN(test_round_trip());
    RUN(test_growth());
    RUN(test_adopt_and_refuse());
    RUN(test_foreign_files());
    RUN(test_checksum_and_structure());
    RUN(test_chunks());

    small_free();
    shm_fixtures_stop();
    return test_summary();
}
