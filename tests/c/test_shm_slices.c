/*
 * test_shm_slices.c -- the agent publishes the shared-memory snapshot from
 * kept per-service slices, rewriting in place only what changed: the body
 * must be the very bytes a whole encode (scout_shm_publish) writes, whatever
 * changed and in whatever order the slices come.  Also a big generation
 * (10,000 services x 10 endpoints) published, read whole and checked by
 * generation (timings are bench/scale's, never asserted here).
 *
 * Why a binary of its own: these are the publish paths the agent takes at
 * scale (issue 14); test_shm.c keeps the format's field-by-field checks.
 * SCOUT_TEST_QUICK=1 shrinks the scale test (valgrind).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_endpoints.h"
#include "testing.h"
#include "scout.h"
#include "publish/shm.h"
#include "scout_shm.h"
#include "shm_fixtures.h"
#include "stats.h"

/* ---- endpoint order ------------------------------------------------------- */

/* Endpoints go into the snapshot in id order (docs/shm.md).  An epset is
 * kept in that order, so the encoder checks it in one pass rather than
 * sorting every changed service; a set handed over in another order (built
 * by hand, not through scout_epset_put) is still sorted, by the slice and
 * by the whole encode alike. */
static void
test_endpoints_out_of_order(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("order");
    scout_endpoint_t *e[3] = {
        mk_ep("c:3", "c", 3, 1, "up", 3, 0),
        mk_ep("a:1", "a", 1, 1, "up", 1, 0),
        mk_ep("b:2", "b", 2, 1, "up", 2, 0),
    };
    scout_epset_t set = { .eps = e, .n = 3, .cap = 3 };
    scout_shm_service_t sv = { .name = "svc", .path = "/svc",
                               .state = "synced", .settings = "",
                               .settings_len = 0, .index = 7,
                               .eps = &set };
    scout_shm_slice_t *sl;
    scout_shm_reader_t *r;
    scout_shm_t *w;

    w = scout_shm_open(p, err);
    r = scout_shm_reader_open(p, err);
    CHECK(w != NULL && r != NULL, "%s", err);
    for (int way = 0; w != NULL && r != NULL && way < 2; way++) {
        const scout_shm_snap_t *sn;
        const scout_shm_ep_t *ep;

        sl = way == 0 ? scout_shm_slice_new(&sv, err) : NULL;
        CHECK(way == 1 || sl != NULL, "%s", err);
        CHECK((way == 0 ? scout_shm_publish_slices(w, &sl, 1, err)
                        : scout_shm_publish(w, &sv, 1, err)) == SCOUT_OK,
              "%s", err);
        scout_shm_slice_unref(sl);
        sn = scout_shm_reader_read(r, err);
        CHECK(sn != NULL && sn->nendpoints == 3, "%s", err);
        if (sn == NULL || sn->nendpoints != 3)
            continue;
        ep = scout_shm_snap_endpoints(sn);
        CHECK(STR_IS(sn, ep[0].id, "a:1") && STR_IS(sn, ep[1].id, "b:2")
              && STR_IS(sn, ep[2].id, "c:3"), "way %d", way);
        CHECK(ep[0].port == 1 && ep[2].port == 3);
    }
    for (int i = 0; i < 3; i++)
        scout_endpoint_free(e[i]);
    if (r != NULL)
        scout_shm_reader_close(r);
    if (w != NULL)
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
    /* services past the slice's stack scratch (64 endpoints, 256 string
     * lengths): the same bytes from its heap scratch */
    {
        scout_shm_slice_t *wide[3] = { NULL, NULL, NULL };
        big_t w;

        big_make(&w, 3, 100, 5);
        CHECK(same_bytes(wa, wb, ra, rb, w.svcs, w.n, wide, -1));
        for (int i = 0; i < 3; i++)
            scout_shm_slice_unref(wide[i]);
        big_free(&w);
    }
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

/* A slice let go parks its buffer and the next slice takes it, unzeroed
 * (the calloc was half a changed service's cost): every byte of the
 * records and strings must be written again, or a reader gets the last
 * service's bytes.  The buffer left behind is a twin of the odd set's
 * "orders" -- the same records, every string 40 bytes longer -- so its
 * strings lie where the new slice's strings and their NULs go; the body
 * must be the bytes a whole encode writes into a fresh file (zeros). */
static void
test_reused_buffer(void)
{
    char err[SCOUT_ERR_LEN] = "", pad[48], id[3][64], host[3][64];
    scout_epset_t twin_set;
    scout_shm_service_t twin = small[1];
    scout_shm_slice_t *sl[1] = { NULL }, *parked;
    const char *pa = path_in("reuse-a"), *pb = path_in("reuse-b");
    scout_shm_t *wa = scout_shm_open(pa, err), *wb = scout_shm_open(pb, err);
    scout_shm_reader_t *ra = scout_shm_reader_open(pa, err);
    scout_shm_reader_t *rb = scout_shm_reader_open(pb, err);

    if (wa == NULL || wb == NULL || ra == NULL || rb == NULL) {
        CHECK(0, "%s", err);
        return;
    }
    memset(pad, 'x', 40);
    pad[40] = '\0';
    scout_epset_init(&twin_set);
    for (int i = 0; i < 3; i++) {
        snprintf(id[i], sizeof(id[i]), "%d%s", i, pad);
        snprintf(host[i], sizeof(host[i]), "h%s", pad);
    }
    /* orders: 3 endpoints, 4 meta */
    scout_epset_put(&twin_set, mk_ep(id[0], host[0], 1, 1, pad, 1, 3,
                                     pad, pad, pad, pad, pad, pad));
    scout_epset_put(&twin_set, mk_ep(id[1], host[1], 2, 1, pad, 2, 1,
                                     pad, pad));
    scout_epset_put(&twin_set, mk_ep(id[2], host[2], 3, 1, pad, 3, 0));
    twin.name = "ordersxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    twin.path = pad;
    twin.state = pad;
    twin.eps = &twin_set;
    scout_shm_slice_spares_free();      /* the twin's is the only spare */
    parked = scout_shm_slice_new(&twin, err);
    CHECK(parked != NULL, "%s", err);
    scout_shm_slice_unref(parked);
    sl[0] = scout_shm_slice_new(&small[1], err);
    CHECK(sl[0] == parked, "the parked buffer was not taken");
    CHECK(same_bytes(wa, wb, ra, rb, &small[1], 1, sl, -1));
    scout_shm_slice_unref(sl[0]);
    /* and every service of the odd set, each in the last one's buffer */
    for (int i = 0; i < 4; i++) {
        sl[0] = NULL;
        CHECK(same_bytes(wa, wb, ra, rb, &small[i], 1, sl, -1), "%d", i);
        scout_shm_slice_unref(sl[0]);
    }
    scout_shm_slice_spares_free();
    scout_epset_free(&twin_set);
    scout_shm_reader_close(ra);
    scout_shm_reader_close(rb);
    scout_shm_close(wa, 1);
    scout_shm_close(wb, 1);
}

/* The chunks [off, off + len) of a body overlaps, marked in set. */
static void
chunks_of(uint8_t *set, size_t off, size_t len)
{
    for (size_t c = off / SCOUT_SHM_CHUNK;
         len > 0 && c <= (off + len - 1) / SCOUT_SHM_CHUNK; c++)
        set[c] = 1;
}

/* Version 2: a publish that rewrites one service in place hashes again
 * exactly the chunks it wrote -- the snap header's (the generation), and
 * those under the service's record, its endpoints, their meta and its
 * strings -- not the body (scout_shm_chunks_hashed_total counts them);
 * one with nothing new hashes chunk 0 alone.  And the reader, which checks
 * every chunk, accepts each of those bodies: the other entries of the
 * slot's table were right for it. */
static void
test_chunks_rehashed(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("rehash");
    scout_shm_t *w = scout_shm_open(p, err);
    scout_shm_reader_t *r = scout_shm_reader_open(p, err);
    scout_shm_slice_t *sl[1000];
    const scout_shm_snap_t *sn;
    uint8_t want[256];
    size_t nchunks = 0, nwant = 0;
    uint64_t before;
    big_t b;
    const int k = 517;

    if (w == NULL || r == NULL) {
        CHECK(0, "%s", err);
        return;
    }
    big_make(&b, 1000, 10, 3);
    for (int i = 0; i < b.n; i++)
        sl[i] = scout_shm_slice_new(&b.svcs[i], err);
    /* a new file, then each slot assembled once: whole bodies */
    for (int g = 0; g < 3; g++)
        CHECK(scout_shm_publish_slices(w, sl, b.n, err) == SCOUT_OK);
    CHECK((sn = scout_shm_reader_read(r, err)) != NULL, "%s", err);
    if (sn == NULL)
        goto out;
    nchunks = (sn->size + SCOUT_SHM_CHUNK - 1) / SCOUT_SHM_CHUNK;
    CHECK(nchunks >= 16 && nchunks <= sizeof(want), "%zu", nchunks);
    /* where service k's bytes lie (the strings' run ends where k + 1's
     * begins) */
    {
        const scout_shm_svc_t *v = scout_shm_snap_services(sn) + k;
        const scout_shm_ep_t *ep = scout_shm_snap_endpoints(sn);
        size_t ep_at = (size_t)((const uint8_t *)ep - (const uint8_t *)sn);
        size_t meta_at = ep_at + sn->nendpoints * sizeof(*ep);
        size_t str_at = meta_at + sn->nmeta * sizeof(scout_shm_meta_t);
        uint32_t mfirst = ep[v->ep_first].meta_first, mcount = 0;

        for (uint32_t e = v->ep_first; e < v->ep_first + v->ep_count; e++)
            mcount += ep[e].meta_count;
        memset(want, 0, sizeof(want));
        chunks_of(want, 0, sizeof(*sn));
        chunks_of(want, (size_t)((const uint8_t *)v - (const uint8_t *)sn),
                  sizeof(*v));
        chunks_of(want, ep_at + v->ep_first * sizeof(*ep),
                  v->ep_count * sizeof(*ep));
        chunks_of(want, meta_at + mfirst * sizeof(scout_shm_meta_t),
                  mcount * sizeof(scout_shm_meta_t));
        chunks_of(want, str_at + v->name.off, v[1].name.off - v->name.off);
        for (size_t c = 0; c < nchunks; c++)
            nwant += want[c];
    }
    /* service k moves: its index and a string of the same length */
    b.svcs[k].index += 1;
    b.svcs[k].state = "stable";
    scout_shm_slice_unref(sl[k]);
    sl[k] = scout_shm_slice_new(&b.svcs[k], err);
    for (int g = 0; g < 2; g++) {   /* each slot patched from its own */
        before = scout_stats.shm_chunks_hashed;
        CHECK(scout_shm_publish_slices(w, sl, b.n, err) == SCOUT_OK);
        CHECK(scout_stats.shm_chunks_hashed - before == nwant,
              "%" PRIu64 " chunks hashed, want %zu of %zu",
              scout_stats.shm_chunks_hashed - before, nwant, nchunks);
        sn = scout_shm_reader_read(r, err);
        CHECK(sn != NULL && STR_IS(sn, scout_shm_snap_services(sn)[k].state,
                                   "stable"), "%s", err);
    }
    CHECK(nwant >= 2 && nwant <= 5, "%zu", nwant);
    /* nothing new: the generation's chunk only */
    before = scout_stats.shm_chunks_hashed;
    CHECK(scout_shm_publish_slices(w, sl, b.n, err) == SCOUT_OK);
    CHECK(scout_stats.shm_chunks_hashed - before == 1);
    CHECK(scout_shm_reader_read(r, err) != NULL, "%s", err);
    /* a changed slice is checked against its neighbours, unchanged or not:
     * service k + 1's bytes (the same sizes) at k are a duplicate name */
    {
        scout_shm_slice_t *was = sl[k];
        uint64_t g = scout_shm_generation(w);

        sl[k] = scout_shm_slice_new(&b.svcs[k + 1], err);
        CHECK(scout_shm_publish_slices(w, sl, b.n, err) == SCOUT_ERROR);
        CHECK_ERR(err, "duplicate service");
        CHECK(scout_shm_generation(w) == g);
        scout_shm_slice_unref(sl[k]);
        sl[k] = was;
        CHECK(scout_shm_publish_slices(w, sl, b.n, err) == SCOUT_OK);
        sn = scout_shm_reader_read(r, err);
        CHECK(sn != NULL && STR_IS(sn, scout_shm_snap_services(sn)[k].state,
                                   "stable"), "%s", err);
    }
out:
    for (int i = 0; i < b.n; i++)
        scout_shm_slice_unref(sl[i]);
    big_free(&b);
    scout_shm_reader_close(r);
    scout_shm_close(w, 1);
}

int
main(void)
{
    if (shm_fixtures_start() != 0)
        return 1;
    small_init();
    RUN(test_slices());
    RUN(test_endpoints_out_of_order());
    RUN(test_reused_buffer());
    RUN(test_chunks_rehashed());
    RUN(test_scale());
    small_free();
    shm_fixtures_stop();
    return test_summary();
}
