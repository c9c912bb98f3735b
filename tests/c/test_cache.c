/*
 * test_cache.c -- the cache's ordering gates and change bookkeeping, without
 * ZooKeeper: stale lists and stale data are refused, removals of announced
 * children are reported exactly once, and changes a failed policy call saw
 * stay pending until commit.
 */
#include <stdio.h>
#include <string.h>

#include "testing.h"
#include "zk/cache.h"
#include "scout.h"

static unsigned last_changed;


static unsigned asked_calls, asked_names;

static void
needs_data_for_ids(void *ud, const char *const *names, unsigned n,
                   unsigned char *need)
{
    (void)ud;
    asked_calls++;
    asked_names += n;
    for (unsigned k = 0; k < n; k++)
        need[k] = strncmp(names[k], "id-", 3) == 0;
}

static int
apply(scout_cache_t *c, int64_t pzxid, int n, const char **names)
{
    struct String_vector v = { n, (char **)names };
    struct Stat st;

    memset(&st, 0, sizeof(st));
    st.pzxid = pzxid;
    return scout_cache_apply_children(c, &v, &st, needs_data_for_ids, NULL,
                                      &last_changed);
}

static int
pending_count(const scout_cache_t *c)
{
    int n = 0;
    for (scout_child_t *ch = c->pending; ch; ch = ch->next_pending)
        n++;
    return n;
}

static int
dirty_count(const scout_cache_t *c)
{
    int n = 0;
    for (scout_child_t *ch = c->dirty; ch; ch = ch->next_dirty)
        n++;
    return n;
}

static struct Stat
stat_of(int64_t czxid, int64_t mzxid)
{
    struct Stat st;
    memset(&st, 0, sizeof(st));
    st.czxid = czxid;
    st.mzxid = mzxid;
    return st;
}

static void
test_lists_and_ordering(void)
{
    scout_cache_t c;
    const char *l1[] = { "a:1", "b:2", "id-x" };
    const char *l2[] = { "b:2" };
    const char *old[] = { "a:1", "b:2", "id-x", "zombie:9" };

    scout_cache_init(&c);
    CHECK(apply(&c, 10, 3, l1) == SCOUT_OK);
    CHECK(c.count == 3 && last_changed == 3);
    CHECK(apply(&c, 10, 3, l1) == SCOUT_OK && last_changed == 0);
    CHECK(pending_count(&c) == 2);          /* names are endpoints        */
    CHECK(dirty_count(&c) == 1);            /* id-x waits for its data    */
    CHECK(scout_cache_find(&c, "a:1")->mzxid == 10);

    scout_cache_delivered(&c);
    scout_cache_commit(&c);
    CHECK(!scout_cache_has_pending(&c));

    /* an older list (a lagging follower after a new session) is refused
     * and changes nothing */
    CHECK(apply(&c, 9, 4, old) == SCOUT_AGAIN);
    CHECK(c.count == 3 && scout_cache_find(&c, "zombie:9") == NULL);

    CHECK(apply(&c, 12, 1, l2) == SCOUT_OK);
    CHECK(c.count == 1 && last_changed == 2);
    /* a:1 was announced: its removal is reported; id-x never was */
    CHECK(c.nremoved == 1 && strcmp(c.removed[0], "a:1") == 0);
    CHECK(dirty_count(&c) == 0);            /* removed child left dirty  */
    scout_cache_commit(&c);
    CHECK(c.nremoved == 0);

    /* the path disappears: everything announced is reported removed */
    scout_cache_apply_missing(&c);
    CHECK(c.count == 0 && c.nremoved == 1);
    scout_cache_free(&c);
}

static void
test_data_gates(void)
{
    scout_cache_t c;
    const char *l[] = { "id-1" };
    scout_child_t *ch;
    struct Stat st;

    scout_cache_init(&c);
    apply(&c, 5, 1, l);
    ch = scout_cache_find(&c, "id-1");
    st = stat_of(5, 7);
    CHECK(scout_cache_apply_data(&c, ch, "v7", 2, &st) == SCOUT_OK);
    CHECK(ch->has_data && scout_cache_data_len(ch) == 2 && memcmp(ch->data, "v7", 2) == 0);
    CHECK(pending_count(&c) == 1);
    scout_cache_delivered(&c);
    scout_cache_commit(&c);
    /* accepted: the policy holds what it decoded, the bytes are let go */
    CHECK(ch->data == NULL && ch->has_data && ch->had_bytes);

    st = stat_of(5, 6);                     /* older version: refused     */
    CHECK(scout_cache_apply_data(&c, ch, "v6", 2, &st) == SCOUT_AGAIN);
    CHECK(ch->data == NULL && ch->mzxid == 7 && !scout_cache_has_pending(&c));

    st = stat_of(5, 7);                     /* same version: no change    */
    CHECK(scout_cache_apply_data(&c, ch, "v7", 2, &st) == SCOUT_OK);
    CHECK(!scout_cache_has_pending(&c));

    st = stat_of(3, 99);                    /* an older incarnation       */
    CHECK(scout_cache_apply_data(&c, ch, "old", 3, &st) == SCOUT_AGAIN);

    st = stat_of(20, 20);                   /* deleted and re-created     */
    CHECK(scout_cache_apply_data(&c, ch, "", 0, &st) == SCOUT_OK);
    CHECK(ch->has_data && ch->data == NULL && ch->czxid == 20);
    CHECK(pending_count(&c) == 1);
    CHECK(c.max_mzxid == 20);
    scout_cache_free(&c);
}

/* A reload's new policy needs the bytes the cache let go of: those children
 * are read again, and the service waits until every one is back. */
static void
test_reload_refetches_data(void)
{
    scout_cache_t c;
    const char *l[] = { "id-1", "id-2", "id-3", "n:1" };
    scout_child_t *ch1, *ch2, *ch3;
    struct Stat st;

    scout_cache_init(&c);
    apply(&c, 5, 4, l);
    ch1 = scout_cache_find(&c, "id-1");
    ch2 = scout_cache_find(&c, "id-2");
    ch3 = scout_cache_find(&c, "id-3");
    st = stat_of(5, 7);
    scout_cache_apply_data(&c, ch1, "v7", 2, &st);
    scout_cache_apply_data(&c, ch2, "w7", 2, &st);
    scout_cache_apply_data(&c, ch3, "x7", 2, &st);
    scout_cache_delivered(&c);
    scout_cache_commit(&c);
    CHECK(ch1->data == NULL && !scout_cache_refetching(&c));

    /* reload: the name-only child is pending at once, the others are read */
    CHECK(scout_cache_mark_all_pending(&c) == 3);
    CHECK(scout_cache_refetching(&c) && pending_count(&c) == 1
          && dirty_count(&c) == 3);
    /* the same version comes back: pending again, with its bytes */
    st = stat_of(5, 7);
    c.dirty = NULL;                     /* the watch took them to read */
    ch1->data_dirty = ch2->data_dirty = ch3->data_dirty = 0;
    CHECK(scout_cache_apply_data(&c, ch1, "v7", 2, &st) == SCOUT_OK);
    CHECK(ch1->pending && ch1->data != NULL && memcmp(ch1->data, "v7", 2) == 0);
    CHECK(scout_cache_refetching(&c));
    /* an older answer (a lagging server) does not end a refetch: read again */
    st = stat_of(5, 6);
    CHECK(scout_cache_apply_data(&c, ch2, "w6", 2, &st) == SCOUT_AGAIN);
    CHECK(!ch2->pending && ch2->data_dirty && scout_cache_refetching(&c));
    /* one deleted meanwhile is not waited for */
    {
        const char *l2[] = { "id-1", "id-2", "n:1" };
        apply(&c, 9, 3, l2);
    }
    CHECK(scout_cache_find(&c, "id-3") == NULL && scout_cache_refetching(&c));
    st = stat_of(5, 8);
    CHECK(scout_cache_apply_data(&c, ch2, "w8", 2, &st) == SCOUT_OK);
    CHECK(!scout_cache_refetching(&c) && ch2->pending);
    CHECK(pending_count(&c) == 3 && c.nremoved == 1);
    scout_cache_delivered(&c);
    scout_cache_commit(&c);
    CHECK(ch1->data == NULL && ch2->data == NULL && ch2->had_bytes);
    scout_cache_free(&c);
}

static void
test_failed_policy_keeps_changes(void)
{
    scout_cache_t c;
    const char *l1[] = { "a:1", "b:2" };
    const char *l2[] = { "b:2" };

    scout_cache_init(&c);
    apply(&c, 1, 2, l1);
    /* the policy saw both and failed: nothing committed */
    scout_cache_delivered(&c);
    CHECK(pending_count(&c) == 2);
    /* a:1 goes before the policy recovers: it must still be reported,
     * because the failed call may have applied it */
    apply(&c, 2, 1, l2);
    CHECK(c.nremoved == 1 && strcmp(c.removed[0], "a:1") == 0);
    CHECK(pending_count(&c) == 1);
    scout_cache_commit(&c);
    CHECK(!scout_cache_has_pending(&c));
    scout_cache_free(&c);
}

static void
test_many_children(void)
{
    enum { N = 20000 };
    static char names[N][16];
    static const char *ptrs[N];
    scout_cache_t c;

    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "10.0.%d.%d:80", i / 250,
                 i % 250);
        ptrs[i] = names[i];
    }
    scout_cache_init(&c);
    CHECK(apply(&c, 1, N, ptrs) == SCOUT_OK);
    CHECK(c.count == N && pending_count(&c) == N);
    scout_cache_delivered(&c);
    scout_cache_commit(&c);
    CHECK(apply(&c, 2, N / 2, ptrs) == SCOUT_OK);
    CHECK(c.count == N / 2 && c.nremoved == N / 2);
    scout_cache_free(&c);
}

/* The codec is asked once per child list, about the new names only: a
 * 10,000-service sync made one policy call per child before. */
static void
test_needs_data_once_per_list(void)
{
    enum { N = 100 };
    static char names[N][16];
    static const char *ptrs[N + 1];
    scout_cache_t c;

    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), i % 2 ? "id-%d" : "h%d:80", i);
        ptrs[i] = names[i];
    }
    scout_cache_init(&c);
    asked_calls = asked_names = 0;
    CHECK(apply(&c, 1, N, ptrs) == SCOUT_OK);
    CHECK(asked_calls == 1 && asked_names == N);
    /* each name got its own answer */
    CHECK(dirty_count(&c) == N / 2 && pending_count(&c) == N / 2);
    CHECK(scout_cache_find(&c, "id-1")->needs_data == 1);
    CHECK(scout_cache_find(&c, "h0:80")->needs_data == 0);
    CHECK(c.data_children == N / 2);

    ptrs[N] = "id-new";
    asked_calls = asked_names = 0;
    CHECK(apply(&c, 2, N + 1, ptrs) == SCOUT_OK);
    CHECK(asked_calls == 1 && asked_names == 1);
    CHECK(scout_cache_find(&c, "id-new")->needs_data == 1);

    asked_calls = 0;                        /* nothing new: not asked */
    CHECK(apply(&c, 3, N + 1, ptrs) == SCOUT_OK && asked_calls == 0);
    scout_cache_free(&c);
}

/* Every live child in walk order: sorted, unique, as many as count, each
 * found by name; what the walk saw is written to out (joined by ','). */
static int
walk_sorted(scout_cache_t *c, char *out, size_t outlen)
{
    scout_child_t *child, *prev = NULL;
    unsigned n = 0;
    size_t used = 0;

    out[0] = '\0';
    for (unsigned at = 0; (child = scout_cache_next(c, &at)) != NULL;) {
        if (prev != NULL && strcmp(prev->name, child->name) >= 0)
            return 0;
        if (scout_cache_find(c, child->name) != child)
            return 0;
        used += (size_t)snprintf(out + used, used < outlen ? outlen - used : 0,
                                 "%s%s", n ? "," : "", child->name);
        prev = child;
        n++;
    }
    return n == c->count;
}

/* The sorted array: lists in any order come out in name order, new names
 * merge in, missing ones go, a single removal leaves a tombstone that no
 * lookup or walk sees and that a later list or half the array gone frees;
 * the array grows to hold 20,000 and shrinks back. */
static void
test_sorted_children(void)
{
    scout_cache_t c;
    char seen[256];
    const char *l1[] = { "m", "c", "x", "a" };
    const char *l2[] = { "x", "b", "a", "z", "m", "c" };
    const char *l3[] = { "z", "a" };
    const char *dup[] = { "q", "q", "a" };
    scout_child_t *ch;

    scout_cache_init(&c);
    CHECK(apply(&c, 1, 4, l1) == SCOUT_OK && last_changed == 4);
    CHECK(walk_sorted(&c, seen, sizeof(seen)) && strcmp(seen, "a,c,m,x") == 0,
          "walk %s", seen);
    CHECK(scout_cache_find(&c, "b") == NULL && scout_cache_find(&c, "") == NULL
          && scout_cache_find(&c, "zz") == NULL);
    /* two new names, between and after the held ones */
    CHECK(apply(&c, 2, 6, l2) == SCOUT_OK && last_changed == 2);
    CHECK(walk_sorted(&c, seen, sizeof(seen))
          && strcmp(seen, "a,b,c,m,x,z") == 0, "walk %s", seen);
    CHECK(c.nkids == 6 && c.ngone == 0);
    scout_cache_delivered(&c);
    scout_cache_commit(&c);

    /* a delete event: a tombstone, invisible, reported once */
    scout_cache_remove(&c, scout_cache_find(&c, "c"));
    CHECK(c.count == 5 && c.ngone == 1 && c.nkids == 6);
    CHECK(scout_cache_find(&c, "c") == NULL);
    CHECK(walk_sorted(&c, seen, sizeof(seen))
          && strcmp(seen, "a,b,m,x,z") == 0, "walk %s", seen);
    CHECK(c.nremoved == 1 && strcmp(c.removed[0], "c") == 0);
    /* a walk resumed at a name that went goes on at the next one */
    {
        unsigned at = scout_cache_seek(&c, "c");

        ch = scout_cache_next(&c, &at);
        CHECK(ch != NULL && strcmp(ch->name, "m") == 0);
        at = scout_cache_seek(&c, "zz");
        CHECK(scout_cache_next(&c, &at) == NULL);
    }
    /* more than half gone: compacted, the array shrinks */
    scout_cache_remove(&c, scout_cache_find(&c, "a"));
    scout_cache_remove(&c, scout_cache_find(&c, "m"));
    CHECK(c.ngone == 3 && c.nkids == 6, "ngone %u nkids %u", c.ngone, c.nkids);
    scout_cache_remove(&c, scout_cache_find(&c, "b"));
    CHECK(c.ngone == 0 && c.nkids == 2 && c.count == 2,
          "ngone %u nkids %u", c.ngone, c.nkids);
    CHECK(walk_sorted(&c, seen, sizeof(seen)) && strcmp(seen, "x,z") == 0,
          "walk %s", seen);
    /* a name back after its tombstone: one child, found */
    scout_cache_remove(&c, scout_cache_find(&c, "x"));
    CHECK(c.ngone == 1 && scout_cache_find(&c, "x") == NULL);
    CHECK(apply(&c, 3, 2, l3) == SCOUT_OK && last_changed == 1);
    CHECK(apply(&c, 4, 3, (const char *[]){ "z", "a", "x" }) == SCOUT_OK
          && last_changed == 1);
    CHECK(c.ngone == 0 && c.nkids == 3 && scout_cache_find(&c, "x") != NULL);
    CHECK(walk_sorted(&c, seen, sizeof(seen)) && strcmp(seen, "a,x,z") == 0,
          "walk %s", seen);
    /* a name twice in one list is one child */
    CHECK(apply(&c, 5, 3, dup) == SCOUT_OK && last_changed == 3,
          "changed %u", last_changed);
    CHECK(walk_sorted(&c, seen, sizeof(seen)) && strcmp(seen, "a,q") == 0,
          "walk %s", seen);
    CHECK(c.count == 2 && c.nkids == 2);
    /* an empty list: every child gone (no sort of nothing) */
    CHECK(apply(&c, 6, 0, NULL) == SCOUT_OK && last_changed == 2
          && c.count == 0 && c.nkids == 0);
    CHECK(apply(&c, 7, 3, dup) == SCOUT_OK && c.count == 2);
    scout_cache_apply_missing(&c);
    CHECK(c.count == 0 && c.nkids == 0 && c.kids == NULL);
    CHECK(scout_cache_find(&c, "a") == NULL);
    scout_cache_free(&c);

    /* growth to 20,000 in an order that is not the names', and back */
    {
        enum { N = 20000 };
        static char names[N][16];
        static const char *ptrs[N];
        unsigned n = 0;
        char prev[16] = "";

        for (int i = 0; i < N; i++) {
            snprintf(names[i], sizeof(names[i]), "ep-%d", (i * 7919) % N);
            ptrs[i] = names[i];
        }
        scout_cache_init(&c);
        CHECK(apply(&c, 1, N / 2, ptrs) == SCOUT_OK && c.count == N / 2);
        CHECK(apply(&c, 2, N, ptrs) == SCOUT_OK && c.count == N
              && c.nkids == N && last_changed == N / 2);
        for (unsigned at = 0; (ch = scout_cache_next(&c, &at)) != NULL; n++) {
            CHECK(strcmp(prev, ch->name) < 0, "%s after %s", ch->name, prev);
            snprintf(prev, sizeof(prev), "%s", ch->name);
        }
        CHECK(n == N);
        for (int i = 0; i < N; i++)
            CHECK(scout_cache_find(&c, names[i]) != NULL, "%s", names[i]);
        for (int i = 0; i < N - 10; i++)
            scout_cache_remove(&c, scout_cache_find(&c, names[i]));
        CHECK(c.count == 10 && c.nkids <= 20, "nkids %u", c.nkids);
        for (int i = N - 10; i < N; i++)
            CHECK(scout_cache_find(&c, names[i]) != NULL, "%s", names[i]);
        scout_cache_free(&c);
    }
}

/* The cache as a string: live children in order with their flags, the
 * removed names reported, the pending and dirty lists (their order too). */
static void
describe(const scout_cache_t *c, unsigned changed, char *out, size_t len)
{
    size_t o = 0;
    scout_child_t *ch;

    o += (size_t)snprintf(out + o, len - o, "count %u changed %u kids:",
                          c->count, changed);
    for (unsigned at = 0; (ch = scout_cache_next(c, &at)) != NULL;)
        o += (size_t)snprintf(out + o, len - o, " %s/%d%d%d/%lld", ch->name,
                              ch->needs_data, ch->pending, ch->data_dirty,
                              (long long)ch->mzxid);
    o += (size_t)snprintf(out + o, len - o, " removed:");
    for (unsigned i = 0; i < c->nremoved; i++)
        o += (size_t)snprintf(out + o, len - o, " %s", c->removed[i]);
    o += (size_t)snprintf(out + o, len - o, " pending:");
    for (ch = c->pending; ch != NULL; ch = ch->next_pending)
        o += (size_t)snprintf(out + o, len - o, " %s", ch->name);
    o += (size_t)snprintf(out + o, len - o, " dirty:");
    for (ch = c->dirty; ch != NULL; ch = ch->next_dirty)
        o += (size_t)snprintf(out + o, len - o, " %s", ch->name);
}

/* After a small service's list, each position it keeps for the next list
 * (c->listed) is the array's slot of the name listed there, or unknown:
 * the array moved under them (a merge, a compaction) and they were moved
 * with it. */
static void
listed_positions_hold(const scout_cache_t *c, const struct String_vector *v)
{
    CHECK(c->nlisted == (unsigned)v->count || c->listed == NULL,
          "%u positions for %d names", c->nlisted, v->count);
    for (unsigned i = 0; c->listed != NULL && i < c->nlisted; i++) {
        unsigned j = c->listed[i];

        if (j == UINT16_MAX)
            continue;
        CHECK(j < c->nkids && strcmp(c->kids[j]->name, v->data[i]) == 0,
              "position %u of %s: slot %u holds %s", i, v->data[i], j,
              j < c->nkids ? c->kids[j]->name : "nothing");
        if (j >= c->nkids || strcmp(c->kids[j]->name, v->data[i]) != 0)
            return;
    }
}

/* A small service's list is matched by a binary search per name, a large
 * one's by a sort and a walk (cache.h): the same lists, with names listed
 * twice, tombstones from single removals and committed (announced)
 * children, leave two caches exactly alike whichever way each went. */
/* A list's positions are kept for the next list only when that one will
 * search (the array within scout_cache_search_max): a big service's first
 * list, searched because its array was empty, keeps none (2 bytes a child
 * held for nothing), and they come back once the array is small again. */
static void
test_big_first_list_keeps_no_positions(void)
{
    scout_cache_t c;
    char names[12][8];
    const char *list[12];
    unsigned saved = scout_cache_search_max;

    scout_cache_search_max = 8;
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof(names[i]), "h:%d", 100 + i);
        list[i] = names[i];
    }
    scout_cache_init(&c);
    CHECK(apply(&c, 1, 12, list) == SCOUT_OK && c.count == 12);
    CHECK(c.listed == NULL && c.nlisted == 0, "%u positions kept",
          c.nlisted);
    CHECK(apply(&c, 2, 6, list) == SCOUT_OK && c.count == 6);
    CHECK(c.listed == NULL, "a walked list kept positions");
    CHECK(apply(&c, 3, 7, list) == SCOUT_OK && c.count == 7);
    CHECK(c.listed != NULL && c.nlisted == 7, "%u positions kept",
          c.nlisted);
    for (unsigned i = 0; c.listed != NULL && i < c.nlisted; i++)
        CHECK(c.listed[i] == UINT16_MAX || (c.listed[i] < c.nkids
              && strcmp(c.kids[c.listed[i]]->name, list[i]) == 0),
              "position %u", i);
    scout_cache_free(&c);
    scout_cache_search_max = saved;
}

static void
test_search_matches_walk(void)
{
    enum { UNIVERSE = 40, STEPS = 400 };
    static char names[UNIVERSE][16];
    static char a[8192], b[8192];
    unsigned saved = scout_cache_search_max, seed = 12345;
    unsigned saved_insert = scout_cache_insert_max;
    unsigned long inserts0, inserted = 0;
    scout_cache_t cs, cw;
    unsigned ch_s, ch_w;
    int differ = 0;

    for (int i = 0; i < UNIVERSE; i++)  /* endpoints and data-reading ids */
        snprintf(names[i], sizeof(names[i]), i % 3 ? "10.0.0.%d:80" : "id-%d",
                 i);
    scout_cache_init(&cs);
    scout_cache_init(&cw);
    for (int step = 0; step < STEPS && !differ; step++) {
        const char *list[UNIVERSE + 8];
        int n = 0;
        struct String_vector v;
        struct Stat st;

        seed = seed * 1103515245u + 12345u;
        for (int i = 0; i < UNIVERSE; i++) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 4 != 0)
                list[n++] = names[i];
        }
        for (int k = 0; k < 8 && n > 0; k++) {  /* some listed twice */
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 5 == 0) {
                list[n] = list[(seed >> 8) % (unsigned)n];
                n++;
            }
        }
        for (int i = n - 1; i > 0; i--) {       /* ZooKeeper's order: any */
            const char *t;
            int j;

            seed = seed * 1103515245u + 12345u;
            j = (int)((seed >> 16) % (unsigned)(i + 1));
            t = list[i];
            list[i] = list[j];
            list[j] = t;
        }
        v.count = n;
        v.data = (char **)list;
        memset(&st, 0, sizeof(st));
        st.pzxid = step + 1;
        scout_cache_search_max = 1u << 30;
        scout_cache_insert_max = saved_insert;
        inserts0 = scout_cache_inserts;
        CHECK(scout_cache_apply_children(&cs, &v, &st, needs_data_for_ids,
                                         NULL, &ch_s) == SCOUT_OK);
        inserted += scout_cache_inserts - inserts0;
        listed_positions_hold(&cs, &v);
        scout_cache_search_max = 0;
        scout_cache_insert_max = 0;
        CHECK(scout_cache_apply_children(&cw, &v, &st, needs_data_for_ids,
                                         NULL, &ch_w) == SCOUT_OK);
        describe(&cs, ch_s, a, sizeof(a));
        describe(&cw, ch_w, b, sizeof(b));
        CHECK(strcmp(a, b) == 0, "step %d:\n search %s\n walk   %s", step,
              a, b);
        differ = strcmp(a, b) != 0;
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 3 == 0) {            /* the policy took it */
            scout_cache_delivered(&cs);
            scout_cache_commit(&cs);
            scout_cache_delivered(&cw);
            scout_cache_commit(&cw);
        }
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 4 == 0) {            /* a child's delete event */
            const char *name = names[(seed >> 4) % UNIVERSE];
            scout_child_t *x = scout_cache_find(&cs, name), *y;

            y = scout_cache_find(&cw, name);
            CHECK((x == NULL) == (y == NULL), "%s", name);
            if (x != NULL && y != NULL) {
                scout_cache_remove(&cs, x);
                scout_cache_remove(&cw, y);
            }
        }
    }
    /* new names went in by the search and copies now and then (a list
     * after a delete event's tombstone, or past the bound, walks) */
    CHECK(inserted > 0, "no list took the insert path");
    scout_cache_search_max = saved;
    scout_cache_insert_max = saved_insert;
    scout_cache_free(&cs);
    scout_cache_free(&cw);
}

/* ZooKeeper lists a node's children in its HashSet's order, which a
 * create or a delete leaves alone for the other names: a small service
 * takes each name from where the last list had it (cache.c, listed_at).
 * Lists kept in one order while children come and go (one or a few a step,
 * a name listed twice now and then, a delete event's tombstone and its
 * compaction between lists, a reshuffle as a HashSet's resize does) leave
 * the cache exactly as the sorted walk does, and most names are found where
 * the last list had them. */
static void
test_listed_order_matches_walk(void)
{
    enum { UNIVERSE = 300, STEPS = 600 };
    static char names[UNIVERSE][16];
    static char a[16384], b[16384];
    static const char *order[UNIVERSE];
    unsigned saved = scout_cache_search_max, seed = 777;
    unsigned saved_insert = scout_cache_insert_max;
    unsigned long inserts0, inserted = 0;
    unsigned long hits0 = scout_cache_listed_hits, listed = 0;
    unsigned char in[UNIVERSE] = { 0 };
    scout_cache_t cs, cw;
    unsigned ch_s, ch_w, norder = 0;
    int differ = 0;

    for (int i = 0; i < UNIVERSE; i++)
        snprintf(names[i], sizeof(names[i]), i % 5 ? "10.0.%d.%d:80" : "id-%d",
                 i / 7, i);
    for (int i = 0; i < 40; i++) {
        order[norder++] = names[i * 7 % UNIVERSE];
        in[i * 7 % UNIVERSE] = 1;
    }
    scout_cache_init(&cs);
    scout_cache_init(&cw);
    for (int step = 0; step < STEPS && !differ; step++) {
        const char *list[UNIVERSE + 2];
        struct String_vector v;
        struct Stat st;
        int n, ops;

        seed = seed * 1103515245u + 12345u;
        ops = 1 + (int)((seed >> 16) % 3);
        for (int op = 0; op < ops; op++) {
            seed = seed * 1103515245u + 12345u;
            if (norder > 0 && (norder > 60 || (seed >> 16) % 2)) {
                unsigned at = (seed >> 4) % norder;  /* a delete */

                in[(size_t)(order[at] - names[0]) / sizeof(names[0])] = 0;
                memmove(order + at, order + at + 1,
                        (norder - at - 1) * sizeof(*order));
                norder--;
            } else {
                unsigned x = (seed >> 4) % UNIVERSE, at;  /* a create */

                if (in[x])
                    continue;
                in[x] = 1;
                seed = seed * 1103515245u + 12345u;
                at = (seed >> 16) % (norder + 1);   /* its hash's place */
                memmove(order + at + 1, order + at,
                        (norder - at) * sizeof(*order));
                order[at] = names[x];
                norder++;
            }
        }
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 50 == 0) {           /* a resize: new order */
            for (unsigned i = norder - 1; norder > 1 && i > 0; i--) {
                const char *t;
                unsigned j;

                seed = seed * 1103515245u + 12345u;
                j = (seed >> 16) % (i + 1);
                t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
        memcpy(list, order, norder * sizeof(*order));
        n = (int)norder;
        seed = seed * 1103515245u + 12345u;
        if (n > 0 && (seed >> 16) % 10 == 0) {  /* listed twice */
            list[n] = list[(seed >> 4) % (unsigned)n];
            n++;
        }
        v.count = n;
        v.data = (char **)list;
        memset(&st, 0, sizeof(st));
        st.pzxid = step + 1;
        listed += (unsigned long)n;
        scout_cache_search_max = 1u << 30;
        scout_cache_insert_max = saved_insert;
        inserts0 = scout_cache_inserts;
        CHECK(scout_cache_apply_children(&cs, &v, &st, needs_data_for_ids,
                                         NULL, &ch_s) == SCOUT_OK);
        inserted += scout_cache_inserts - inserts0;
        listed_positions_hold(&cs, &v);
        scout_cache_search_max = 0;
        scout_cache_insert_max = 0;
        CHECK(scout_cache_apply_children(&cw, &v, &st, needs_data_for_ids,
                                         NULL, &ch_w) == SCOUT_OK);
        describe(&cs, ch_s, a, sizeof(a));
        describe(&cw, ch_w, b, sizeof(b));
        CHECK(strcmp(a, b) == 0, "step %d:\n listed %s\n walk   %s", step,
              a, b);
        differ = strcmp(a, b) != 0;
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 3 == 0) {            /* the policy took it */
            scout_cache_delivered(&cs);
            scout_cache_commit(&cs);
            scout_cache_delivered(&cw);
            scout_cache_commit(&cw);
        }
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 4 == 0 && norder > 0) {  /* a delete event */
            const char *name = order[(seed >> 4) % norder];
            scout_child_t *x = scout_cache_find(&cs, name), *y;

            y = scout_cache_find(&cw, name);
            CHECK((x == NULL) == (y == NULL), "%s", name);
            if (x != NULL && y != NULL) {
                scout_cache_remove(&cs, x);
                scout_cache_remove(&cw, y);
            }
        }
    }
    /* the shortcut was taken: most names, most of the time */
    CHECK(scout_cache_listed_hits - hits0 > listed * 3 / 4,
          "%lu of %lu names found where the last list had them",
          scout_cache_listed_hits - hits0, listed);
    CHECK(inserted > STEPS / 4, "%lu lists took the insert path", inserted);
    scout_cache_search_max = saved;
    scout_cache_insert_max = saved_insert;
    scout_cache_free(&cs);
    scout_cache_free(&cw);
}

int
main(void)
{
    RUN(test_lists_and_ordering());
    RUN(test_data_gates());
    RUN(test_failed_policy_keeps_changes());
    RUN(test_reload_refetches_data());
    RUN(test_many_children());
    RUN(test_needs_data_once_per_list());
    RUN(test_sorted_children());
    RUN(test_search_matches_walk());
    RUN(test_listed_order_matches_walk());
    RUN(test_big_first_list_keeps_no_positions());
    return test_summary();
}
