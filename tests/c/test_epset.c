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
 * jansson tree, dumped. */
static char *
fresh_json(const scout_endpoint_t *ep)
{
    json_t *o = json_object(), *meta = json_object();
    char *out;

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
    out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
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

        ep = mk_ep(id, host, 1 + rand_r(&seed) % 65535,
                   i % 11 == 0 ? 0 : rand_r(&seed), i % 2 ? "up" : "drain",
                   (int64_t)rand_r(&seed) << 24 | i, 0);
        ep->nmeta = nmeta;
        ep->meta = nmeta ? calloc((size_t)nmeta, sizeof(*ep->meta)) : NULL;
        for (int j = 0; j < nmeta; j++) {
            char key[16];

            snprintf(key, sizeof(key), "k%02d", j);
            ep->meta[j].key = strdup(key);
            ep->meta[j].value = rnd_str(&seed, i % 89 == 7 && j == 1);
        }
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
    RUN(test_append());
    return test_summary();
}
