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
 * The same steps drive the way the agent takes when it knows which ids
 * changed (scout_shm_slice_known, from publish/idlog.h's log, noted and
 * asked as shmpub.c does): a freed endpoint re-made at its address inside
 * one pending publication, many changes coalesced past the log's bound, a
 * publish that cannot name its ids, a set replaced with no word (the index
 * moved unnoted), and logs that leave out an add or a delete, which must
 * be noticed and compared instead.
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
#include "publish/idlog.h"
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

/* One random change of the set (it owns and frees its endpoints), each id
 * put or deleted noted in log as service.c notes it.  only: -1 any change;
 * 0 an add, 1 a delete (when the set has room / an endpoint). */
static void
random_change(scout_epset_t *set, scout_idlog_t **log, int *reused_addr,
              int only)
{
    int k = (int)rnd(IDS), op = (int)rnd(10);
    char id[64];
    scout_endpoint_t *was;

    id_of(k, id, sizeof(id));
    was = scout_epset_find(set, id);
    if (only >= 0)
        for (int tries = 0; tries < IDS && (was == NULL) != (only == 0);
             tries++) {
            k = (k + 1) % IDS;
            id_of(k, id, sizeof(id));
            was = scout_epset_find(set, id);
        }
    scout_idlog_add(log, id);
    if (was == NULL) {
        scout_epset_put(set, random_ep(k));             /* an add */
    } else if (op < 3 || only == 1) {
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
    scout_idlog_t *log = NULL;
    uint64_t known = scout_stats.shm_slices_known;
    int lies = 0, lies_seen = 0, lost = 0;

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
        int lie = rnd(30) == 0 && set.n > 1 && set.n < IDS;
        const char *ids = NULL;
        uint32_t nids = 0;
        uint64_t compared = scout_stats.shm_slices_compared;

        if (rnd(50) == 0)
            n = 40;             /* a rolling deploy: past the log's bound */
        if (lie) {
            /* one add or one delete the log does not name */
            scout_idlog_t *mute = NULL;

            n = 0;
            random_change(&set, &mute, &reused_addr, (int)rnd(2));
            scout_idlog_free(&mute);
            /* and an id of no endpoint, noted (or the empty log would
             * answer nothing, the index having moved) */
            scout_idlog_add(&log, "zz-none");
        }
        for (int i = 0; i < n; i++)
            random_change(&set, &log, &reused_addr, -1);
        sv.index++;
        if (rnd(40) == 0)
            scout_idlog_lose(&log);     /* a publish that cannot say */
        if (rnd(40) != 0)
            scout_idlog_moved(&log, sv.index);
        /* else a set replaced with no word: the index moved unnoted */
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
        /* shmpub.c's rule: the log, when it runs from this service's
         * last slice (not another's, not a set handed over otherwise) */
        if (from == prev && prev != NULL && rev == NULL
            && scout_idlog_since(log, sv.index - 1, sv.index, &ids, &nids)) {
            next = scout_shm_slice_known(from, &sv, ids, nids, err);
            lies += lie;
            lies_seen += lie && scout_stats.shm_slices_compared > compared;
        } else {
            lost += from == prev && prev != NULL && rev == NULL;
            next = scout_shm_slice_next(from, &sv, err);
        }
        scout_idlog_free(&log);
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
           "address; %llu slices from the log, %d compared (the log lost "
           "or past its bound), %d logs leaving a change out\n", steps,
           reused_addr,
           (unsigned long long)(scout_stats.shm_slices_known - known), lost,
           lies);
    /* the known way was taken, and so were the fallbacks */
    CHECK(scout_stats.shm_slices_known - known > (uint64_t)steps / 2);
    CHECK(lost > 0 && lies > 0);
    CHECK(lies_seen == lies, "%d of %d logs leaving a change out noticed",
          lies_seen, lies);
    scout_idlog_free(&log);
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

/* The known way's cost: what the log names since the last slice, and
 * nothing else -- changes in a row, each slice encodes its own one (a log
 * kept past the slice it was for would encode the last change's again).
 * A log answers only for the index it noted last, from the slice's. */
static void
test_known_encodes_only_named(void)
{
    char err[SCOUT_ERR_LEN] = "", id[64];
    scout_epset_t set;
    scout_idlog_t *log = NULL;
    scout_shm_service_t sv = { .name = "svc", .path = "/bench/svc",
                               .state = "synced", .settings = "",
                               .settings_len = 0, .index = 1, .eps = &set };
    scout_shm_slice_t *sl, *next, *fresh;
    const char *ids;
    uint32_t n;
    uint64_t before, known;

    scout_epset_init(&set);
    for (int k = 0; k < 50; k++) {
        id_of(k, id, sizeof(id));
        scout_epset_put(&set, mk_ep(id, "10.0.0.1", 8080, 1, "up", k, 0));
    }
    sl = scout_shm_slice_new(&sv, err);
    /* nothing noted: known while the index stays, not once it moved */
    CHECK(scout_idlog_since(log, 1, 1, &ids, &n) && n == 0);
    CHECK(!scout_idlog_since(log, 1, 2, &ids, &n));
    for (int round = 0; round < 3; round++) {
        int k = 10 + round * 13;
        scout_endpoint_t *ep;

        id_of(k, id, sizeof(id));
        ep = scout_epset_find(&set, id);
        scout_idlog_add(&log, id);
        scout_epset_put(&set, mk_ep(id, "10.0.0.9", 8080, 1, "up",
                                    ep->zxid + 100, 0));
        sv.index++;
        scout_idlog_moved(&log, sv.index);
        CHECK(!scout_idlog_since(log, sv.index - 1, sv.index + 1, &ids, &n));
        CHECK(scout_idlog_since(log, sv.index - 1, sv.index, &ids, &n)
              && n == 1, "round %d: %u ids named", round, n);
        before = scout_stats.shm_endpoints_encoded;
        known = scout_stats.shm_slices_known;
        next = scout_shm_slice_known(sl, &sv, ids, n, err);
        scout_idlog_free(&log);
        CHECK(next != NULL, "%s", err);
        CHECK(scout_stats.shm_slices_known - known == 1);
        CHECK(scout_stats.shm_endpoints_encoded - before == 1,
              "round %d: %llu encoded", round,
              (unsigned long long)(scout_stats.shm_endpoints_encoded
                                   - before));
        fresh = scout_shm_slice_new(&sv, err);
        CHECK(next != NULL && fresh != NULL && same_slice(next, fresh),
              "round %d", round);
        scout_shm_slice_unref(fresh);
        scout_shm_slice_unref(sl);
        sl = next;
    }
    /* past the bound the log is lost: compared until the next slice */
    for (unsigned k = 0; k <= SCOUT_IDLOG_MAX_IDS; k++) {
        id_of((int)k, id, sizeof(id));
        scout_idlog_add(&log, id);
    }
    scout_idlog_moved(&log, sv.index + 1);
    CHECK(!scout_idlog_since(log, sv.index, sv.index + 1, &ids, &n));
    scout_idlog_free(&log);
    scout_shm_slice_unref(sl);
    scout_shm_slice_spares_free();
    scout_epset_free(&set);
}

/* A log let go is kept for the next change (idlog.c): taken again, it
 * names only what the new change adds, as a fresh one would, and a lost
 * log or another index does not carry over. */
static void
test_idlog_reused_from_empty(void)
{
    scout_idlog_t *a = NULL, *b = NULL;
    const char *ids;
    uint32_t n;

    for (int round = 0; round < 3; round++) {
        scout_idlog_add(&a, "old-1");
        scout_idlog_add(&a, "old-2");
        scout_idlog_moved(&a, 7);
        if (round == 1)
            scout_idlog_lose(&a);
        scout_idlog_free(&a);
        CHECK(a == NULL);
        scout_idlog_add(&b, "new");
        scout_idlog_moved(&b, 9);
        CHECK(!scout_idlog_since(b, 8, 7, &ids, &n));       /* not at 7 */
        CHECK(scout_idlog_since(b, 8, 9, &ids, &n) && n == 1
              && strcmp(ids, "new") == 0, "round %d: %u ids", round, n);
        scout_idlog_free(&b);
    }
    /* a grown log is not kept: the next starts at the first size, empty */
    for (int k = 0; k < 20; k++) {
        char id[32];

        snprintf(id, sizeof(id), "a-long-enough-id-%02d", k);
        scout_idlog_add(&a, id);
    }
    scout_idlog_moved(&a, 3);
    CHECK(scout_idlog_since(a, 2, 3, &ids, &n) && n == 20);
    scout_idlog_free(&a);
    scout_idlog_moved(&b, 4);               /* nothing noted: NULL */
    CHECK(b == NULL && scout_idlog_since(b, 4, 4, &ids, &n) && n == 0);
    scout_idlog_add(&b, "x");
    scout_idlog_moved(&b, 5);
    CHECK(scout_idlog_since(b, 4, 5, &ids, &n) && n == 1
          && strcmp(ids, "x") == 0);
    scout_idlog_free(&b);
}

int
main(void)
{
    if (shm_fixtures_start() != 0)
        return 1;
    RUN(test_encodes_only_changed());
    RUN(test_known_encodes_only_named());
    RUN(test_random_changes());
    RUN(test_idlog_reused_from_empty());
    shm_fixtures_stop();
    return test_summary();
}
