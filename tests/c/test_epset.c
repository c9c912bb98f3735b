/*
 * test_epset.c -- a service's published set as a sorted array (endpoint.h):
 * puts in any order keep it sorted by id, a put with a known id replaces
 * (the count stays), a delete closes the gap, lookups find what is there
 * and nothing else, and the JSON is in id order after every change -- what
 * the API, the snapshots and the runtime's rebuilt tables read.  An
 * endpoint's object is dumped from one reused jansson object: its bytes
 * are compared with a fresh tree's for thousands of endpoints in a row.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "scout.h"
#include "testing.h"
#include "test_endpoints.h"

static int
sorted(const scout_epset_t *set)
{
    for (unsigned i = 1; i < set->n; i++)
        if (strcmp(set->eps[i - 1]->id, set->eps[i]->id) >= 0)
            return 0;
    return 1;
}

/* 500 ids put in a scrambled order (a step coprime with 500), then every
 * other one replaced, then a third deleted: the set stays sorted and holds
 * exactly what was put last. */
static void
test_put_replace_del(void)
{
    scout_epset_t set;
    char id[32];
    unsigned n = 0;

    scout_epset_init(&set);
    for (unsigned k = 0; k < 500; k++) {
        unsigned v = (k * 317) % 500;

        snprintf(id, sizeof(id), "ep-%u", v);
        CHECK(scout_epset_put(&set, mk_ep(id, "10.0.0.1", 1000 + (int)v, 1,
                                          "up", v, 0)) == SCOUT_OK);
    }
    CHECK(set.n == 500 && sorted(&set), "n %u", set.n);
    for (unsigned v = 0; v < 500; v += 2) {
        snprintf(id, sizeof(id), "ep-%u", v);
        scout_epset_put(&set, mk_ep(id, "10.0.0.2", 2000 + (int)v, 1, "up",
                                    v, 0));
    }
    CHECK(set.n == 500 && sorted(&set), "n %u after replacing", set.n);
    for (unsigned v = 0; v < 500; v += 3) {
        snprintf(id, sizeof(id), "ep-%u", v);
        scout_epset_del(&set, id);
    }
    scout_epset_del(&set, "no-such-id");
    scout_epset_del(&set, "");
    CHECK(sorted(&set));
    for (unsigned v = 0; v < 500; v++) {
        const scout_endpoint_t *ep;

        snprintf(id, sizeof(id), "ep-%u", v);
        ep = scout_epset_find(&set, id);
        if (v % 3 == 0) {
            CHECK(ep == NULL, "%s deleted but found", id);
            continue;
        }
        n++;
        CHECK(ep != NULL && strcmp(ep->id, id) == 0, "%s not found", id);
        if (ep != NULL)
            CHECK(ep->port == (v % 2 == 0 ? 2000 : 1000) + (int)v,
                  "%s: port %d", id, ep->port);
    }
    CHECK(set.n == n, "n %u, want %u", set.n, n);
    CHECK(scout_epset_find(&set, "ep-") == NULL
          && scout_epset_find(&set, "zz") == NULL
          && scout_epset_find(&set, "") == NULL);
    scout_epset_free(&set);
    CHECK(set.n == 0 && set.eps == NULL);
}

/* The JSON follows every change, in id order, and an empty set is []. */
static void
test_json_follows(void)
{
    scout_epset_t set;
    size_t len;
    const char *j;

    scout_epset_init(&set);
    j = scout_epset_json(&set, &len);
    CHECK(j != NULL && strcmp(j, "[]") == 0);
    scout_epset_put(&set, mk_ep("b", "h2", 2, 1, "up", 7, 0));
    scout_epset_put(&set, mk_ep("a", "h1", 1, 1, "up", 7, 0));
    j = scout_epset_json(&set, &len);
    CHECK(j != NULL && strstr(j, "\"id\":\"a\"") < strstr(j, "\"id\":\"b\""),
          "%s", j ? j : "NULL");
    scout_epset_put(&set, mk_ep("a", "h9", 9, 1, "up", 8, 0));
    j = scout_epset_json(&set, &len);
    CHECK(j != NULL && strstr(j, "\"host\":\"h9\"") != NULL
          && strstr(j, "\"host\":\"h1\"") == NULL, "%s", j ? j : "NULL");
    scout_epset_del(&set, "b");
    j = scout_epset_json(&set, &len);
    CHECK(j != NULL && strstr(j, "\"id\":\"b\"") == NULL && len == strlen(j),
          "%s", j ? j : "NULL");
    scout_epset_free(&set);
}

/* The object as endpoint.c once built it for every endpoint: a fresh
 * jansson tree. */
static json_t *
fresh_tree(const scout_endpoint_t *ep)
{
    json_t *o = json_object(), *meta = json_object();

    for (int j = 0; j < ep->nmeta; j++)
        json_object_set_new(meta, ep->meta[j].key,
                            json_string(ep->meta[j].value));
    json_object_set_new(o, "id", json_string(ep->id));
    json_object_set_new(o, "host", json_string(ep->host));
    json_object_set_new(o, "port", json_integer(ep->port));
    json_object_set_new(o, "weight", json_integer(ep->weight));
    json_object_set_new(o, "status", json_string(ep->status));
    json_object_set_new(o, "zxid", json_integer(ep->zxid));
    json_object_set_new(o, "meta", meta);
    return o;
}

/* ... and its dump. */
static char *
fresh_json(const scout_endpoint_t *ep)
{
    json_t *o = fresh_tree(ep);
    char *out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

    json_decref(o);
    return out;
}

/* A random string: mostly plain, sometimes with what JSON escapes, UTF-8,
 * a byte that is not UTF-8 (jansson refuses it), or long. */
static char *
rnd_str(unsigned *seed, int bad)
{
    static const char *parts[] = {
        "a", "host", "10.0.0.1", "-", "_", "\"", "\\", "/", "\n", "\x01",
        "\x1f", "\xc3\xbc", "\xe2\x82\xac", "\xf0\x9f\x98\x80", " ",
    };
    int n = rand_r(seed) % 6 == 0 ? 200 : rand_r(seed) % 5;
    size_t cap = (size_t)n * 8 + 2, len = 0;   /* 8: the longest part */
    char *s = malloc(cap);

    for (int k = 0; k < n; k++) {
        const char *p = parts[rand_r(seed) % (sizeof(parts) / sizeof(*parts))];
        memcpy(s + len, p, strlen(p));
        len += strlen(p);
    }
    if (bad)
        s[len++] = (char)0xff;
    s[len] = '\0';
    return s;
}

/* nmeta keys k00.. with random values; the second one a byte that is not
 * UTF-8 when bad (jansson refuses it).  Keys now and then out of order or
 * twice (meta built by hand: a fresh tree keeps a key once, in its first
 * place, with its last value), or escaped. */
static void
random_meta(scout_endpoint_t *ep, int nmeta, unsigned *seed, int bad)
{
    int order = rand_r(seed) % 8;

    ep->nmeta = nmeta;
    ep->meta = nmeta ? calloc((size_t)nmeta, sizeof(*ep->meta)) : NULL;
    for (int j = 0; j < nmeta; j++) {
        char key[16];

        if (order == 0)          /* descending */
            snprintf(key, sizeof(key), "k%02d", nmeta - j);
        else if (order == 1)     /* a key twice, side by side */
            snprintf(key, sizeof(key), "k%02d", j / 2);
        else if (order == 2)     /* a key twice, apart */
            snprintf(key, sizeof(key), "k%02d", j % 2);
        else if (order == 3)     /* escaped, still ascending */
            snprintf(key, sizeof(key), "k\"%02d/", j);
        else
            snprintf(key, sizeof(key), "k%02d", j);
        ep->meta[j].key = strdup(key);
        ep->meta[j].value = rnd_str(seed, bad && j == 1);
    }
}

/* Endpoints one after another, meta and none and more and fewer, strings
 * jansson escapes or refuses: each one's JSON is the fresh tree's, byte
 * for byte, so nothing of the endpoint before it stays in the reused
 * object. */
static void
test_json_as_fresh_tree(void)
{
    unsigned seed = 7;
    int differ = 0, with_meta = 0, refused = 0;

    for (int i = 0; i < 3000; i++) {
        scout_epset_t set;
        scout_endpoint_t *ep;
        char *id = rnd_str(&seed, 0), *host = rnd_str(&seed, i % 97 == 5);
        char *want, *w;
        const char *got;
        size_t len;
        int nmeta = i % 3 == 0 ? 0 : rand_r(&seed) % (i % 50 == 1 ? 40 : 4);

        static const int ints[] = { INT_MIN, INT_MIN + 1, -1, 0, 9, 10,
                                    INT_MAX };
        static const int64_t zxids[] = { INT64_MIN, INT64_MIN + 1, -10, 0,
                                         99, 100, INT64_MAX };
        int odd = i % 5 == 3;    /* the numbers' edges */

        ep = mk_ep(id, host,
                   odd ? ints[rand_r(&seed) % 7] : 1 + rand_r(&seed) % 65535,
                   odd ? ints[rand_r(&seed) % 7]
                       : i % 11 == 0 ? 0 : rand_r(&seed),
                   i % 2 ? "up" : i % 7 == 2 ? "" : "drain",
                   odd ? zxids[rand_r(&seed) % 7]
                       : (int64_t)rand_r(&seed) << 24 | i, 0);
        random_meta(ep, nmeta, &seed, i % 89 == 7);
        with_meta += nmeta > 0;
        refused += i % 97 == 5 || (i % 89 == 7 && nmeta > 1);
        want = fresh_json(ep);
        scout_epset_init(&set);
        scout_epset_put(&set, ep);
        got = scout_epset_json(&set, &len);
        w = malloc(strlen(want) + 3);
        sprintf(w, "[%s]", want);
        if (got == NULL || len != strlen(w) || memcmp(got, w, len) != 0) {
            if (differ++ < 3)
                fprintf(stderr, "endpoint %d:\n got  %s\n want %s\n", i,
                        got ? got : "NULL", w);
        }
        free(w);
        free(want);
        scout_epset_free(&set);
        free(id);
        free(host);
    }
    CHECK(differ == 0, "%d of 3000 differ", differ);
    CHECK(with_meta > 1000 && refused > 20, "%d with meta, %d refused",
          with_meta, refused);
}

/* An endpoint made from (id, data) alone: the same pair makes the same
 * endpoint, so the set and the model below each hold their own copy.  Data
 * picks plain or escaped strings, a byte that is not UTF-8 now and then
 * (jansson refuses it: the key is left out, as a fresh tree leaves it),
 * meta or none, and objects past endpoint.c's 1 KB stack buffer. */
static scout_endpoint_t *
gen_ep(const char *id, unsigned data)
{
    unsigned seed = data;
    char *host = rnd_str(&seed, data % 37 == 3);
    int nmeta = data % 4 == 0 ? 0 : rand_r(&seed) % (data % 13 == 1 ? 40 : 4);
    scout_endpoint_t *ep = mk_ep(id, host, 1 + rand_r(&seed) % 65535,
                                 data % 7 == 0 ? 0 : rand_r(&seed),
                                 data % 2 ? "up" : "drain",
                                 (int64_t)rand_r(&seed) << 20 | data, 0);

    free(host);
    random_meta(ep, nmeta, &seed, data % 41 == 5);
    return ep;
}

#define PROP_IDS 24

static const scout_endpoint_t *prop_model[PROP_IDS];

static int
by_model_id(const void *a, const void *b)
{
    return strcmp(prop_model[*(const int *)a]->id,
                  prop_model[*(const int *)b]->id);
}

/* What the API answered before endpoints kept their JSON: jansson's dump of
 * one array of fresh trees, the model's endpoints in id order. */
static char *
fresh_list(void)
{
    int order[PROP_IDS], n = 0;
    json_t *a = json_array();
    char *out;

    for (int k = 0; k < PROP_IDS; k++)
        if (prop_model[k] != NULL)
            order[n++] = k;
    qsort(order, (size_t)n, sizeof(*order), by_model_id);
    for (int i = 0; i < n; i++)
        json_array_append_new(a, fresh_tree(prop_model[order[i]]));
    out = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(a);
    return out;
}

/* Random sequences of changes -- new ids, the same id put again with other
 * data (meta then none, longer, refused bytes), deletes of present and
 * absent ids -- with the list asked after some of them and not others, the
 * way the service asks (scout_epset_json_take) and the way a reader of the
 * set does (scout_epset_json): every list is byte for byte jansson's dump
 * of the whole array, so no endpoint's kept JSON outlives its data.  And
 * the keeping is real: an endpoint no change touched keeps the JSON it had
 * at the last list (a list renders only what a change brought), and a
 * plain read's list (scout_epset_json_take_once) keeps none it made. */
static void
test_json_list_property(void)
{
    static const char *prefix[] = {
        "ep", "a\"q", "b\\s", "c\xc3\xbc", "d\x01", "e\xff", "10.0.0.1:",
    };
    unsigned seed = 11;
    int differ = 0, asked = 0, kept = 0, rekept = 0, once_kept = 0;
    int spliceable = 0;
    char *base = NULL;       /* the last list a blocking query kept */
    size_t base_len = 0;

    for (int round = 0; round < 40; round++) {
        scout_epset_t set;
        char ids[PROP_IDS][32];
        const char *seen[PROP_IDS];   /* a kept JSON, at the last list */

        scout_epset_init(&set);
        for (int k = 0; k < PROP_IDS; k++) {
            snprintf(ids[k], sizeof(ids[k]), "%s-%d",
                     prefix[k % (int)(sizeof(prefix) / sizeof(*prefix))], k);
            prop_model[k] = NULL;
            seen[k] = NULL;
        }
        for (int step = 0; step < 150; step++) {
            int k = rand_r(&seed) % PROP_IDS, op = rand_r(&seed) % 8;

            if (op < 5) {
                unsigned data = (unsigned)rand_r(&seed);

                scout_endpoint_free((scout_endpoint_t *)prop_model[k]);
                prop_model[k] = gen_ep(ids[k], data);
                CHECK(scout_epset_put(&set, gen_ep(ids[k], data))
                      == SCOUT_OK);
                seen[k] = NULL;
            } else if (op < 7) {
                scout_endpoint_free((scout_endpoint_t *)prop_model[k]);
                prop_model[k] = NULL;
                scout_epset_del(&set, ids[k]);
                seen[k] = NULL;
            }
            /* odd rounds ask after every step, as a blocking consumer
             * does (one change between lists) */
            if (round % 2 == 1 || rand_r(&seed) % 3 == 0) {
                char *want = fresh_list(), *taken = NULL;
                const char *got;
                size_t len = 0;

                int mode = rand_r(&seed) % 4, had[PROP_IDS];

                asked++;
                for (int j = 0; j < PROP_IDS; j++) {
                    const scout_endpoint_t *ep =
                        scout_epset_find(&set, ids[j]);

                    had[j] = ep != NULL && ep->json != NULL;
                }
                if (mode == 3) {
                    /* the service's way for a blocking query: from the
                     * last list it kept, whatever came between (a plain
                     * read, several changes, none) */
                    spliceable += base != NULL
                                  && set.json == NULL
                                  && set.edit.op != SCOUT_EPSET_NO_BASE;
                    got = taken = scout_epset_json_take_after(
                        &set, base, base_len, &len);
                } else if (mode == 0)
                    got = taken = scout_epset_json_take(&set, &len);
                else if (mode == 1)
                    got = taken = scout_epset_json_take_once(&set, &len);
                else
                    got = scout_epset_json(&set, &len);
                if (got == NULL || len != strlen(want)
                    || memcmp(got, want, len) != 0) {
                    if (differ++ < 2)
                        fprintf(stderr, "round %d step %d:\n got  %s\n "
                                "want %s\n", round, step,
                                got ? got : "NULL", want);
                }
                free(want);
                if ((mode == 0 || mode == 3) && taken != NULL) {
                    free(base);
                    base = taken;
                    base_len = len;
                } else
                    free(taken);
                for (int j = 0; j < PROP_IDS; j++) {
                    const scout_endpoint_t *ep =
                        scout_epset_find(&set, ids[j]);

                    if (ep == NULL)
                        continue;
                    /* a plain read keeps no JSON it made, and the JSON
                     * made before it stays */
                    if (mode == 1 && ep->json != NULL && !had[j])
                        once_kept++;
                    if (mode != 1 && ep->json == NULL)
                        once_kept++;
                    if (seen[j] != NULL) {
                        rekept++;
                        kept += ep->json == seen[j];
                    }
                    seen[j] = ep->json;
                }
            }
        }
        scout_epset_free(&set);
        for (int k = 0; k < PROP_IDS; k++) {
            scout_endpoint_free((scout_endpoint_t *)prop_model[k]);
            prop_model[k] = NULL;
        }
        /* the next round's set starts with another's list as its base */
    }
    free(base);
    CHECK(spliceable > 300, "%d lists made from the last one", spliceable);
    CHECK(differ == 0, "%d of %d lists differ", differ, asked);
    CHECK(asked > 1500 && rekept > 10000, "%d lists, %d untouched endpoints",
          asked, rekept);
    CHECK(kept == rekept, "%d of %d untouched endpoints rendered again",
          rekept - kept, rekept);
    CHECK(once_kept == 0, "%d endpoints' JSON kept by a plain read, or not "
          "kept by a blocking query's", once_kept);
}

/* The next list is made from the last one only when that one is what the
 * set last handed out: a previous list of another length (another set's, a
 * truncated copy, one with bytes after it) is not spliced, and the list is
 * joined whole -- byte for byte what a plain read of the set gives. */
static void
test_splice_needs_its_base(void)
{
    scout_epset_t set;
    size_t len, wlen, glen;
    char *base, *want, *got, *wrong;

    scout_epset_init(&set);
    CHECK(scout_epset_put(&set, gen_ep("a-1", 7)) == SCOUT_OK);
    CHECK(scout_epset_put(&set, gen_ep("b-2", 8)) == SCOUT_OK);
    CHECK(scout_epset_put(&set, gen_ep("c-3", 9)) == SCOUT_OK);
    for (int w = 0; w < 3; w++) {
        char id[16];

        base = scout_epset_json_take(&set, &len);
        wrong = base != NULL ? malloc(len + 8) : NULL;
        CHECK(wrong != NULL);
        if (wrong == NULL)
            break;
        if (w == 0)         /* its first object only */
            snprintf(wrong, len + 8, "[%.*s]",
                     (int)(strchr(base, '}') - base), base + 1);
        else if (w == 1)    /* a byte short */
            snprintf(wrong, len + 8, "%.*s]", (int)len - 2, base);
        else                /* bytes past its end */
            snprintf(wrong, len + 8, "%.*s,{}]", (int)len - 1, base);
        free(base);
        snprintf(id, sizeof(id), "d-%d", w);
        CHECK(scout_epset_put(&set, gen_ep(id, 20u + (unsigned)w))
              == SCOUT_OK);
        CHECK(set.json == NULL && set.edit.op != SCOUT_EPSET_NO_BASE,
              "variant %d: the set would splice", w);
        got = scout_epset_json_take_after(&set, wrong, strlen(wrong), &glen);
        want = scout_epset_json_take_once(&set, &wlen);
        CHECK(got != NULL && want != NULL && glen == wlen
              && memcmp(got, want, wlen) == 0,
              "variant %d:\n got  %s\n want %s", w, got ? got : "NULL",
              want ? want : "NULL");
        free(got);
        free(want);
        free(wrong);
    }
    scout_epset_free(&set);
}

/* A reader of sorted input appends without lookups; a put after it still
 * lands in its place. */
static void
test_append(void)
{
    scout_epset_t set;

    scout_epset_init(&set);
    CHECK(scout_epset_append(&set, mk_ep("a", "h", 1, 1, "up", 1, 0))
          == SCOUT_OK);
    CHECK(scout_epset_append(&set, mk_ep("c", "h", 3, 1, "up", 1, 0))
          == SCOUT_OK);
    scout_epset_put(&set, mk_ep("b", "h", 2, 1, "up", 1, 0));
    CHECK(set.n == 3 && sorted(&set)
          && strcmp(set.eps[1]->id, "b") == 0);
    scout_epset_free(&set);
}

int
main(void)
{
    RUN(test_put_replace_del());
    RUN(test_json_follows());
    RUN(test_json_as_fresh_tree());
    RUN(test_json_list_property());
    RUN(test_splice_needs_its_base());
    RUN(test_append());
    return test_summary();
}
