/*
 * test_snapshot_merge.c -- the readers index base + journal where they are
 * (agent/publish/snapshot_merge.h) and must give exactly what the fold
 * gave (tests/c/snapfold.h, the readers' code before): for every service
 * (name, path, index, zxids, each endpoint, what decoding it says), for the
 * lists (count, order, name lookups), for the file's written_at, ensemble
 * and base checksum, for what the journal did (the note), and for a file
 * they refuse, the same words.
 *
 * How: random bases and journals, written byte by byte here (so that they
 * may also break the rules under a valid checksum): services added,
 * changed, emptied and filled again, endpoints removed and re-added, one
 * service in several records (the newest must win), records of no service;
 * then a torn tail, garbage after the last record, a corrupt record, a
 * journal naming another base, one that is not a journal; and records or
 * bases whose checksum holds but whose bytes break a rule (a NUL in a
 * string, ids not ascending, names not ascending, bytes after the last
 * service), served or superseded.  Each case is read twice at the same
 * path: by the readers as they are, then, with the fold's output written
 * there alone (no journal), by the same readers, which then read one plain
 * file as they always did.  (A journal record never removes a service: the
 * format says a removal is a full write, docs/snapshot.md.)
 *
 * SEED=N picks another sequence; the seed is printed.
 */
#include "snapshot_fixtures.h"
#include "publish/snapshot_journal.h"
#include "publish/snapshot_lazy.h"
#include "snapfold.h"

#include <sys/mman.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define NNAMES 9
#define NIDS   6

static const char *const NAMES[NNAMES] = {
    "a", "ab", "b", "c", "svc-0", "svc-00", "svc-1", "x", "zz",
};

typedef struct {
    int      present, neps, bad;    /* bad: 1 NUL in a host, 2 ids not
                                       ascending */
    int      ids[NIDS];             /* ascending picks of 0..NIDS-1 */
    int      port[NIDS], nmeta[NIDS];
    uint64_t index;
    int64_t  pzxid, mzxid;
} tsvc_t;

typedef struct {
    unsigned char *p;
    size_t         n, cap;
} bb_t;

static unsigned long long rng_state;

static unsigned
rnd(unsigned n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return n ? (unsigned)((rng_state >> 33) % n) : 0;
}

static void
put(bb_t *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            abort();
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void
put_int(bb_t *b, uint64_t v, int bytes)
{
    unsigned char x[8];

    put_le(x, v, bytes);
    put(b, x, (size_t)bytes);
}

static void
put_str(bb_t *b, const char *s, size_t n)
{
    put_int(b, n, 4);
    put(b, s, n);
}

static void
random_service(tsvc_t *s)
{
    s->present = 1;
    s->neps = 0;
    for (int i = 0; i < NIDS; i++)
        if (rnd(3) == 0) {
            s->ids[s->neps] = i;
            s->port[s->neps] = 1 + (int)rnd(65535);
            s->nmeta[s->neps++] = (int)rnd(3);
        }
    s->index = rnd(1000);
    s->pzxid = (int64_t)rnd(1 << 20) - 5;
    s->mzxid = (int64_t)rnd(1 << 20);
    s->bad = rnd(40) == 0 ? 1 + (int)rnd(2) : 0;
}

static void
enc_service(bb_t *b, int name, const tsvc_t *s)
{
    char path[32], id[16], host[16];
    int order[NIDS];

    snprintf(path, sizeof(path), "/p/%s", NAMES[name]);
    put_str(b, NAMES[name], strlen(NAMES[name]));
    put_str(b, path, strlen(path));
    put_int(b, s->index, 8);
    put_int(b, (uint64_t)s->pzxid, 8);
    put_int(b, (uint64_t)s->mzxid, 8);
    put_int(b, (uint64_t)s->neps, 4);
    for (int e = 0; e < s->neps; e++)
        order[e] = e;
    if (s->bad == 2 && s->neps >= 2) {
        order[0] = 1;
        order[1] = 0;
    }
    for (int k = 0; k < s->neps; k++) {
        int e = order[k];

        snprintf(id, sizeof(id), "10.0.0.%d:80", s->ids[e]);
        snprintf(host, sizeof(host), "10.0.0.%d", s->ids[e]);
        put_str(b, id, strlen(id));
        if (s->bad == 1 && k == 0)
            put_str(b, "10\0x", 4);
        else
            put_str(b, host, strlen(host));
        put_str(b, "up", 2);
        put_int(b, (uint64_t)s->port[e], 4);
        put_int(b, 1, 4);
        put_int(b, (uint64_t)(s->mzxid - e), 8);
        put_int(b, (uint64_t)s->nmeta[e], 4);
        for (int m = 0; m < s->nmeta[e]; m++) {
            put_str(b, m == 0 ? "group" : "zone", m == 0 ? 5 : 4);
            put_str(b, "v", 1);
        }
    }
}

/* The services present in st, in name order (NAMES is sorted); swap: the
 * first two out of order. */
static void
enc_services(bb_t *b, const tsvc_t *st, int swap)
{
    int idx[NNAMES], n = 0;

    for (int i = 0; i < NNAMES; i++)
        if (st[i].present)
            idx[n++] = i;
    put_int(b, (uint64_t)n, 4);
    if (swap && n >= 2) {
        int t = idx[0];

        idx[0] = idx[1];
        idx[1] = t;
    }
    for (int i = 0; i < n; i++)
        enc_service(b, idx[i], &st[idx[i]]);
}

static int
put_at(const char *path, const bb_t *b)
{
    return put_file(path, b->p, b->n);
}

/* ---- the two readings compared ------------------------------------------ */

typedef struct {
    scout_snapshot_t *full;
    scout_snaplazy_t *lazy;
    char              full_err[SCOUT_ERR_LEN], lazy_err[SCOUT_ERR_LEN];
} reading_t;

static void
read_both(const char *path, reading_t *r)
{
    r->full_err[0] = r->lazy_err[0] = '\0';
    r->full = scout_snapshot_read(path, r->full_err);
    r->lazy = scout_snaplazy_read(path, r->lazy_err);
}

static void
reading_free(reading_t *r)
{
    scout_snapshot_free(r->full);
    scout_snaplazy_free(r->lazy);
}

static char *
full_bytes(scout_snapshot_t *s, size_t *len)
{
    int n = scout_snapshot_count(s);
    scout_snapshot_service_t *sv = calloc((size_t)n + 1, sizeof(*sv));
    char err[SCOUT_ERR_LEN], *buf = NULL;

    for (int i = 0; i < n; i++)
        scout_snapshot_get(s, i, &sv[i]);
    if (scout_snapshot_encode(scout_snapshot_ensemble(s),
                              scout_snapshot_written_at_ms(s), sv, n, &buf,
                              len, err) != SCOUT_OK)
        buf = NULL;
    free(sv);
    return buf;
}

static int mismatches;

#define SAME(cond, ...)                                                     \
    do {                                                                    \
        if (!(cond)) {                                                      \
            if (mismatches++ < 10)                                          \
                CHECK(cond, __VA_ARGS__);                                   \
            else                                                            \
                test_failures_++;                                           \
            return;                                                         \
        }                                                                   \
    } while (0)

/* got: the readers on base + journal; want: on the fold's file alone. */
static void
compare(int trial, reading_t *got, reading_t *want, const char *want_note,
        uint64_t base_sum)
{
    char e1[SCOUT_ERR_LEN], e2[SCOUT_ERR_LEN];

    SAME((got->full != NULL) == (want->full != NULL), "trial %d: full: %s "
         "vs the fold's %s", trial, got->full_err, want->full_err);
    SAME(strcmp(got->full_err, want->full_err) == 0, "trial %d: full: '%s' "
         "vs the fold's '%s'", trial, got->full_err, want->full_err);
    if (got->full != NULL) {
        size_t l1 = 0, l2 = 0;
        char *b1 = full_bytes(got->full, &l1), *b2 = full_bytes(want->full,
                                                              &l2);
        int same = b1 != NULL && b2 != NULL && l1 == l2
                   && memcmp(b1, b2, l1) == 0;

        free(b1);
        free(b2);
        SAME(same, "trial %d: the full reader's state differs", trial);
        SAME(strcmp(scout_snapshot_writer(got->full),
                    scout_snapshot_writer(want->full)) == 0, "trial %d", trial);
        SAME(strcmp(scout_snapshot_note(got->full), want_note) == 0,
             "trial %d: note '%s' vs the fold's '%s'", trial,
             scout_snapshot_note(got->full), want_note);
    }
    SAME((got->lazy != NULL) == (want->lazy != NULL), "trial %d: lazy: %s "
         "vs the fold's %s", trial, got->lazy_err, want->lazy_err);
    SAME(strcmp(got->lazy_err, want->lazy_err) == 0, "trial %d: lazy: '%s' "
         "vs the fold's '%s'", trial, got->lazy_err, want->lazy_err);
    if (got->lazy == NULL)
        return;
    SAME(strcmp(scout_snaplazy_note(got->lazy), want_note) == 0,
         "trial %d: note '%s' vs '%s'", trial, scout_snaplazy_note(got->lazy),
         want_note);
    SAME(scout_snaplazy_checksum(got->lazy) == base_sum, "trial %d", trial);
    SAME(scout_snaplazy_written_at_ms(got->lazy)
         == scout_snaplazy_written_at_ms(want->lazy), "trial %d", trial);
    SAME(strcmp(scout_snaplazy_ensemble(got->lazy),
                scout_snaplazy_ensemble(want->lazy)) == 0, "trial %d", trial);
    SAME(scout_snaplazy_count(got->lazy) == scout_snaplazy_count(want->lazy),
         "trial %d: %d services vs the fold's %d", trial,
         scout_snaplazy_count(got->lazy), scout_snaplazy_count(want->lazy));
    for (int i = 0; i < scout_snaplazy_count(got->lazy); i++) {
        scout_snaplazy_service_t a, b;
        scout_epset_t ea, eb;
        int ra, rb;
        char *ja = NULL, *jb = NULL;
        size_t la = 0, lb = 0;

        scout_snaplazy_get(got->lazy, i, &a);
        scout_snaplazy_get(want->lazy, i, &b);
        SAME(strcmp(a.name, b.name) == 0 && strcmp(a.path, b.path) == 0
             && a.index == b.index && a.pzxid == b.pzxid
             && a.max_mzxid == b.max_mzxid && a.nendpoints == b.nendpoints,
             "trial %d: service %d: %s index %llu vs the fold's %s index "
             "%llu", trial, i, a.name, (unsigned long long)a.index, b.name,
             (unsigned long long)b.index);
        SAME(scout_snaplazy_find(got->lazy, a.name) == i, "trial %d", trial);
        scout_epset_init(&ea);
        scout_epset_init(&eb);
        e1[0] = e2[0] = '\0';
        ra = scout_snaplazy_decode(got->lazy, i, &ea, e1);
        rb = scout_snaplazy_decode(want->lazy, i, &eb, e2);
        if (ra == SCOUT_OK)
            ja = scout_epset_json_take(&ea, &la);
        if (rb == SCOUT_OK)
            jb = scout_epset_json_take(&eb, &lb);
        scout_epset_free(&ea);
        scout_epset_free(&eb);
        {
            int same = ra == rb && strcmp(e1, e2) == 0 && la == lb
                       && (la == 0 || memcmp(ja, jb, la) == 0);

            free(ja);
            free(jb);
            SAME(same, "trial %d: service %s decodes to '%s' vs the fold's "
                 "'%s'", trial, a.name, e1, e2);
        }
    }
    SAME(scout_snaplazy_find(got->lazy, "nope") == -1, "trial %d", trial);
}

/* ---- the trials -------------------------------------------------------- */

enum {
    V_NONE, V_TORN, V_GARBAGE, V_CORRUPT, V_OTHER_BASE, V_NOT_JOURNAL,
    V_NO_JOURNAL, V_BASE_UNSORTED, V_BASE_TRAILING, V_REC_TRAILING,
    V_REC_UNSORTED, V_N
};

static int counts[V_N], served_journal, refused, decode_refused;

static void
trial(int t)
{
    char *base_path = path_in(tmpdir, SCOUT_SNAPSHOT_FILE);
    char *jpath = path_in(tmpdir, SCOUT_JOURNAL_FILE);
    char note[SCOUT_ERR_LEN], err[SCOUT_ERR_LEN];
    tsvc_t st[NNAMES];
    bb_t base = { 0 }, body = { 0 }, jn = { 0 };
    int variant = (int)rnd(V_N), nrec = (int)rnd(7), bad_rec = -1;
    uint64_t sum;
    unsigned char *fold;
    size_t fsize, flen;
    reading_t got, want;

    memset(st, 0, sizeof(st));
    for (int i = 0; i < NNAMES; i++)
        if (rnd(2))
            random_service(&st[i]);
    /* the base */
    put_str(&body, "scout test", 10);
    put_str(&body, "127.0.0.1:2181", 14);
    put_int(&body, 1000, 8);
    enc_services(&body, st, variant == V_BASE_UNSORTED);
    if (variant == V_BASE_TRAILING)
        put(&body, "xyz", 3);
    sum = XXH64(body.p, body.n, 0);
    put(&base, "SCOUTSNP", 8);
    put_int(&base, 1, 4);
    put_int(&base, 0, 4);
    put_int(&base, body.n, 8);
    put_int(&base, sum, 8);
    put(&base, body.p, body.n);
    CHECK(put_at(base_path, &base) == 0);
    /* the journal: records of changed services, whole */
    put(&jn, variant == V_NOT_JOURNAL ? "SCOUTJNX" : "SCOUTJNL", 8);
    put_int(&jn, 1, 4);
    put_int(&jn, 0, 4);
    put_int(&jn, body.n, 8);
    put_int(&jn, variant == V_OTHER_BASE ? sum ^ 1 : sum, 8);
    if (variant == V_CORRUPT || variant == V_REC_TRAILING
        || variant == V_REC_UNSORTED)
        bad_rec = nrec > 0 ? (int)rnd((unsigned)nrec) : -1;
    for (int r = 0; r < nrec; r++) {
        tsvc_t ch[NNAMES];
        bb_t p = { 0 };
        size_t rec_at = jn.n;

        memset(ch, 0, sizeof(ch));
        for (int i = 0, k = (int)rnd(4); i < k; i++) {
            int name = (int)rnd(NNAMES);

            random_service(&ch[name]);
            st[name] = ch[name];
        }
        put_int(&p, 2000 + (uint64_t)r, 8);
        enc_services(&p, ch, r == bad_rec && variant == V_REC_UNSORTED);
        if (r == bad_rec && variant == V_REC_TRAILING)
            put(&p, "\0\0", 2);
        put_int(&jn, p.n, 4);
        put_int(&jn, XXH64(p.p, p.n, 0), 8);
        put(&jn, p.p, p.n);
        if (r == bad_rec && variant == V_CORRUPT)
            jn.p[rec_at + 12 + rnd((unsigned)p.n)] ^= 0x20;
        free(p.p);
    }
    if (variant == V_GARBAGE)
        put(&jn, "\x30\0\0\0garbage", 11);
    if (variant == V_TORN && jn.n > SCOUT_JOURNAL_HDR_LEN)
        jn.n -= 1 + rnd((unsigned)(jn.n - SCOUT_JOURNAL_HDR_LEN));
    unlink(jpath);
    if (variant != V_NO_JOURNAL)
        CHECK(put_at(jpath, &jn) == 0);
    counts[variant]++;

    /* the readers as they are */
    read_both(base_path, &got);
    /* the reference: the fold, its output read alone at the same path */
    if (ref_fold_load(base_path, &fold, &fsize, &flen, &sum, note, err)
        != SCOUT_OK) {
        CHECK(0, "trial %d: the fold: %s", t, err);
        reading_free(&got);
        goto done;
    }
    served_journal += strstr(note, "applied") != NULL
                      && strstr(note, "not applied") == NULL
                      && strstr(note, " 0 records") == NULL;
    unlink(jpath);
    CHECK(put_file(base_path, fold, flen) == 0);
    munmap(fold, fsize);
    read_both(base_path, &want);
    compare(t, &got, &want, note, sum);
    refused += got.full == NULL;
    if (got.full == NULL && got.lazy != NULL)
        decode_refused++;       /* what decoding refuses, not the index */
    reading_free(&got);
    reading_free(&want);

done:
    free(base.p);
    free(body.p);
    free(jn.p);
}

static void
test_the_readers_give_what_the_fold_gives(void)
{
    const char *seed = getenv("SEED");
    int n = getenv("TRIALS") ? atoi(getenv("TRIALS")) : 3000;

    rng_state = seed != NULL ? strtoull(seed, NULL, 10) : 14;
    fprintf(stderr, "SEED=%llu TRIALS=%d\n", rng_state, n);
    for (int t = 0; t < n && mismatches < 10; t++)
        trial(t);
    /* every kind of case was met, and most served a journal */
    for (int v = 0; v < V_N; v++)
        CHECK(counts[v] > 0, "variant %d never drawn", v);
    CHECK(served_journal > n / 4, "only %d of %d served a journal",
          served_journal, n);
    CHECK(refused > 0 && decode_refused > 0 && refused < n / 4,
          "%d refused, %d of them by decoding only", refused, decode_refused);
    fprintf(stderr, "%d trials: %d served a journal, %d refused (%d by "
            "decoding only)\n", n, served_journal, refused, decode_refused);
    unlink(path_in(tmpdir, SCOUT_JOURNAL_FILE));
}

int
main(void)
{
    if (snapshot_fixtures_start() != 0)
        return 1;
    RUN(test_the_readers_give_what_the_fold_gives());
    snapshot_fixtures_stop();
    return test_summary();
}
