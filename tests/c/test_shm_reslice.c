/*
 * test_shm_reslice.c -- a changed service's shm slice is made from its last
 * one (scout_shm_slice_next, agent/publish/shm_reslice.c): the endpoints
 * that did not change are copied, the others encoded.  Whatever the
 * changes, the slice must be byte for byte the one a fresh encode
 * (scout_shm_slice_new) writes, and so must the body readers map.
 *
 * The property test drives random sequences of changes through a real
 * epset (scout_epset_put / scout_epset_del, which free what they replace):
 * adds, removes, data changes of every field, the same id re-added with
 * other data, an endpoint replaced by an equal copy, and an endpoint freed
 * and a new one of the same id allocated at once -- with glibc's caches,
 * most often at the freed one's address, the trap of deciding "unchanged"
 * by address.  Several changes may land between two slices (coalesced
 * generations), the service's own fields move too, and now and then the
 * last slice is another service's, or the set is handed over out of order.
 * Every slice is compared with a fresh one field by field and byte by
 * byte, and every few steps both are published and read back.
 *
 * Why a binary of its own: test_shm_slices holds the publish paths (whole
 * bodies, patches); this holds how one service's slice is made.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_endpoints.h"
#include "testing.h"
#include "scout.h"
#include "stats.h"
#include "publish/shm_int.h"
#include "scout_shm.h"
#include "shm_fixtures.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t
rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Ids of several lengths, so a change moves the offsets after it. */
static void
id_of(int k, char *buf, size_t len)
{
    snprintf(buf, len, "10.%d.0.%d:%d", k % 3, k, 8000 + k * 37);
}

static const char *hosts[] = { "a", "host-b.example", "10.0.0.1", "" };
static const char *statuses[] = { "up", "down", "starting" };
static const char *keys[] = { "app", "group", "side", "version", "zone" };
static const char *values[] = { "", "1", "canary", "orders-service-v2" };

/* An endpoint with id k and random data (meta: a random subset of keys,
 * in order, built inline as the agent's codecs build them). */
static scout_endpoint_t *
random_ep(int k)
{
    char id[64];
    unsigned nmeta = 0;
    int pick[5];
    size_t bytes = 0;
    scout_endpoint_t *ep;
    const char *host = hosts[rnd(4)], *status = statuses[rnd(3)];
    const char *val[5];

    id_of(k, id, sizeof(id));
    for (int j = 0; j < 5; j++)
        if ((pick[j] = rnd(3) == 0)) {
            val[j] = values[rnd(4)];
            bytes += strlen(keys[j]) + strlen(val[j]);
            nmeta++;
        }
    ep = scout_endpoint_new_meta(id, strlen(id), host, strlen(host), status,
                                 strlen(status), nmeta, bytes);
    for (int j = 0; j < 5; j++)
        if (pick[j])
            scout_endpoint_add_meta(ep, keys[j], strlen(keys[j]), val[j],
                                    strlen(val[j]));
    ep->port = 1 + (int)rnd(3);
    ep->weight = (int)rnd(3);
    ep->zxid = (int64_t)rnd(4);
    return ep;
}

/* A copy of ep, then one field of it changed (what: 0-7), or none (8). */
static scout_endpoint_t *
changed_ep(const scout_endpoint_t *ep, int what)
{
    size_t bytes = 0;
    scout_endpoint_t *c;
    const char *host = ep->host, *status = ep->status;
    int nmeta = ep->nmeta;

    if (what == 0)
        host = strcmp(host, "a") == 0 ? "b" : "a";   /* same length */
    if (what == 1)
        host = strcmp(host, "host-b.example") == 0 ? "" : "host-b.example";
    if (what == 2)
        status = strcmp(status, "up") == 0 ? "down" : "up";
    if (what == 6 && nmeta > 0)
        nmeta--;                                     /* one meta fewer */
    for (int j = 0; j < nmeta; j++)
        bytes += strlen(ep->meta[j].key) + strlen(ep->meta[j].value);
    bytes += 8;         /* room for "zz" = "value", or a value of 1 */
    c = scout_endpoint_new_meta(ep->id, strlen(ep->id), host, strlen(host),
                                status, strlen(status),
                                (unsigned)nmeta + (what == 7), bytes);
    for (int j = 0; j < nmeta; j++) {
        const char *v = ep->meta[j].value;

        if (what == 5 && j == 0)
            v = strcmp(v, "1") == 0 ? "2" : "1";     /* a value */
        scout_endpoint_add_meta(c, ep->meta[j].key, strlen(ep->meta[j].key),
                                v, strlen(v));
    }
    if (what == 7)
        scout_endpoint_add_meta(c, "zz", 2, "value", 5);
    c->port = ep->port + (what == 3);
    c->weight = ep->weight + (what == 4 && nmeta == ep->nmeta);
    c->zxid = ep->zxid + (what == 6 && nmeta == ep->nmeta);
    return c;
}

/* Two slices the same, every field and byte readers get from them. */
static int
same_slice(const scout_shm_slice_t *a, const scout_shm_slice_t *b)
{
    return a->neps == b->neps && a->nmeta == b->nmeta && a->nstr == b->nstr
           && strcmp(a->name, b->name) == 0
           && memcmp(&a->svc, &b->svc, sizeof(a->svc)) == 0
           && memcmp(a->eps, b->eps, a->neps * sizeof(*a->eps)) == 0
           && memcmp(a->meta, b->meta, a->nmeta * sizeof(*a->meta)) == 0
           && memcmp(a->strings, b->strings, a->nstr) == 0;
}

/* The body of publishing sl on wa and sv (a whole encode) on wb, read
 * back: the same bytes. */
static int
same_body(scout_shm_t *wa, scout_shm_t *wb, scout_shm_reader_t *ra,
          scout_shm_reader_t *rb, scout_shm_slice_t *sl,
          const scout_shm_service_t *sv)
{
    char err[SCOUT_ERR_LEN] = "";
    const scout_shm_snap_t *a, *b;

    if (scout_shm_publish_slices(wa, &sl, 1, err) != SCOUT_OK
        || scout_shm_publish(wb, sv, 1, err) != SCOUT_OK) {
        CHECK(0, "%s", err);
        return 0;
    }
    a = scout_shm_reader_read(ra, err);
    b = scout_shm_reader_read(rb, err);
    CHECK(a != NULL && b != NULL, "%s", err);
    return a != NULL && b != NULL && a->size == b->size
           && memcmp(a, b, a->size) == 0;
}

#define IDS 40

/* One random change of the set (it owns and frees its endpoints). */
static void
random_change(scout_epset_t *set, int *reused_addr)
{
    int k = (int)rnd(IDS), op = (int)rnd(10);
    char id[64];
    scout_endpoint_t *was;

    id_of(k, id, sizeof(id));
    was = scout_epset_find(set, id);
    if (was == NULL) {
        scout_epset_put(set, random_ep(k));             /* an add */
    } else if (op < 3) {
        scout_epset_del(set, id);                       /* a remove */
    } else if (op < 7) {
        /* the same id, one field changed (or, 8, none: an equal copy) */
        scout_epset_put(set, changed_ep(was, (int)rnd(9)));
    } else {
        /* freed, then the id again with other data at once: malloc
         * hands the freed chunk back more often than not */
        const void *addr = was;
        scout_endpoint_t *ep;

        scout_epset_del(set, id);
        ep = random_ep(k);
        *reused_addr += (const void *)ep == addr;
        scout_epset_put(set, ep);
    }
}

/* Random sequences of changes, each slice made from the last one against
 * a fresh encode. */
static void
test_random_changes(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *pa = path_in("reslice-a"), *pb = path_in("reslice-b");
    scout_shm_t *wa = scout_shm_open(pa, err), *wb = scout_shm_open(pb, err);
    scout_shm_reader_t *ra = scout_shm_reader_open(pa, err);
    scout_shm_reader_t *rb = scout_shm_reader_open(pb, err);
    static const char *states[] = { "synced", "stale", "protected" };
    static const char settings[] = "{\"route\":[]}\0tail";
    scout_epset_t set, other_set;
    scout_shm_service_t sv = { .name = "orders", .path = "/dubbo/orders",
                               .state = "synced", .settings = "",
                               .settings_len = 0, .index = 1, .eps = &set };
    scout_shm_service_t other = sv;
    scout_shm_slice_t *prev = NULL, *other_sl;
    int steps = quick ? 400 : 4000, reused_addr = 0, bad = 0;

    if (wa == NULL || wb == NULL || ra == NULL || rb == NULL) {
        CHECK(0, "%s", err);
        return;
    }
    scout_epset_init(&set);
    scout_epset_init(&other_set);
    for (int k = 0; k < IDS; k += 2)
        scout_epset_put(&set, random_ep(k));
    for (int k = 0; k < IDS; k += 3)
        scout_epset_put(&other_set, random_ep(k));
    other.name = "other";
    other.eps = &other_set;
    other_sl = scout_shm_slice_new(&other, err);
    CHECK(other_sl != NULL, "%s", err);
    for (int step = 0; step < steps && bad < 5; step++) {
        const scout_shm_slice_t *from = prev;
        scout_shm_slice_t *next, *fresh;
        scout_endpoint_t **rev = NULL;
        scout_epset_t rev_set;
        int n = rnd(8) == 0 ? 1 + (int)rnd(6) : 1;      /* coalesced */

        for (int i = 0; i < n; i++)
            random_change(&set, &reused_addr);
        sv.index++;
        if (rnd(10) == 0)
            sv.state = states[rnd(3)];
        if (rnd(10) == 0) {
            int with = rnd(2);

            sv.settings = with ? settings : "";
            sv.settings_len = with ? sizeof(settings) - 1 : 0;
        }
        if (rnd(20) == 0)
            sv.path = sv.path[1] == 'd' ? "/p" : "/dubbo/orders";
        if (rnd(25) == 0)
            from = other_sl;                    /* another's last slice */
        if (rnd(40) == 0)
            from = NULL;
        sv.eps = &set;
        if (rnd(25) == 0 && set.n > 1) {
            /* handed over out of order: the slice sorts it as a fresh
             * encode does */
            rev = malloc(set.n * sizeof(*rev));
            for (unsigned i = 0; i < set.n; i++)
                rev[i] = set.eps[set.n - 1 - i];
            rev_set = set;
            rev_set.eps = rev;
            sv.eps = &rev_set;
        }
        next = scout_shm_slice_next(from, &sv, err);
        fresh = scout_shm_slice_new(&sv, err);
        CHECK(next != NULL && fresh != NULL, "%s", err);
        if (next == NULL || fresh == NULL)
            break;
        if (!same_slice(next, fresh)) {
            bad++;
            CHECK(0, "step %d: the slice made from the last one differs "
                  "from a fresh encode (%u endpoints)", step, set.n);
        }
        if (step % 16 == 0 && !same_body(wa, wb, ra, rb, next, &sv)) {
            bad++;
            CHECK(0, "step %d: the published bodies differ", step);
        }
        free(rev);
        scout_shm_slice_unref(fresh);
        scout_shm_slice_unref(prev);
        prev = next;
    }
    printf("# %d steps, %d endpoints freed and a new one made at the same "
           "address\n", steps, reused_addr);
    scout_shm_slice_unref(prev);
    scout_shm_slice_unref(other_sl);
    scout_shm_slice_spares_free();
    scout_epset_free(&set);
    scout_epset_free(&other_set);
    scout_shm_reader_close(ra);
    scout_shm_reader_close(rb);
    scout_shm_close(wa, 1);
    scout_shm_close(wb, 1);
}

/* What a change costs: one endpoint changed of 50 is the one encoded; the
 * other 49 are copied (scout_shm_endpoints_encoded_total).  Then a field
 * that only the last slice's record would miss -- the same id and length,
 * freed and made again -- is still encoded. */
static void
test_encodes_only_changed(void)
{
    char err[SCOUT_ERR_LEN] = "", id[64];
    scout_epset_t set;
    scout_shm_service_t sv = { .name = "svc", .path = "/bench/svc",
                               .state = "synced", .settings = "",
                               .settings_len = 0, .index = 1, .eps = &set };
    scout_shm_slice_t *a, *b, *c, *fresh;
    scout_endpoint_t *ep;
    uint64_t before;

    scout_epset_init(&set);
    for (int k = 0; k < 50; k++) {
        id_of(k, id, sizeof(id));
        scout_epset_put(&set, mk_ep(id, "10.0.0.1", 8080, 1, "up", k, 0));
    }
    a = scout_shm_slice_new(&sv, err);
    id_of(50, id, sizeof(id));
    scout_epset_put(&set, mk_ep(id, "10.0.0.2", 8080, 1, "up", 50, 0));
    sv.index++;
    before = scout_stats.shm_endpoints_encoded;
    b = scout_shm_slice_next(a, &sv, err);
    CHECK(b != NULL, "%s", err);
    CHECK(scout_stats.shm_endpoints_encoded - before == 1, "%llu encoded",
          (unsigned long long)(scout_stats.shm_endpoints_encoded - before));
    /* endpoint 7 replaced by one that differs only in its zxid */
    id_of(7, id, sizeof(id));
    ep = scout_epset_find(&set, id);
    scout_epset_put(&set, mk_ep(id, "10.0.0.1", 8080, 1, "up",
                                ep->zxid + 1, 0));
    sv.index++;
    before = scout_stats.shm_endpoints_encoded;
    c = scout_shm_slice_next(b, &sv, err);
    fresh = scout_shm_slice_new(&sv, err);
    CHECK(c != NULL && fresh != NULL, "%s", err);
    CHECK(scout_stats.shm_endpoints_encoded - before == 1 + 51,
          "%llu encoded (the fresh one's 51 included)",
          (unsigned long long)(scout_stats.shm_endpoints_encoded - before));
    CHECK(c != NULL && fresh != NULL && same_slice(c, fresh));
    scout_shm_slice_unref(a);
    scout_shm_slice_unref(b);
    scout_shm_slice_unref(c);
    scout_shm_slice_unref(fresh);
    scout_shm_slice_spares_free();
    scout_epset_free(&set);
}

int
main(void)
{
    if (shm_fixtures_start() != 0)
        return 1;
    RUN(test_encodes_only_changed());
    RUN(test_random_changes());
    shm_fixtures_stop();
    return test_summary();
}
