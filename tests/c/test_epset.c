/*
 * test_epset.c -- a service's published set as a sorted array (endpoint.h):
 * puts in any order keep it sorted by id, a put with a known id replaces
 * (the count stays), a delete closes the gap, lookups find what is there
 * and nothing else, and the JSON is in id order after every change -- what
 * the API, the snapshots and the runtime's rebuilt tables read.
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

/* What the API sent when each endpoint went through a jansson tree: the
 * list must stay those very bytes (consumers and test_discovery compare
 * them), now that endpoint.c writes each object itself. */
static json_t *
jansson_endpoint(const scout_endpoint_t *ep)
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

/* Every byte that jansson escapes (the controls, '"', '\\') and the ones
 * it does not ('/', DEL, UTF-8 of 2, 3 and 4 bytes), in ids, hosts,
 * statuses, meta keys and values; the integers' extremes; no meta; a
 * string jansson could not hold (NULL) left out as jansson left it out. */
static void
test_json_as_jansson(void)
{
    static const char tail[] = "\"\\/\x7f\xc3\xa9\xe2\x82\xac"
                               "\xf0\x9f\x98\x80 e";
    char all[64], key[16];
    scout_epset_t set;
    json_t *arr = json_array();
    const char *j;
    char *want;
    size_t len;
    int k = 0;

    for (int c = 1; c < 0x20; c++)
        all[k++] = (char)c;
    memcpy(all + k, tail, sizeof(tail));     /* its NUL too */
    snprintf(key, sizeof(key), "k\"\\\n\x1f/");
    scout_epset_init(&set);
    scout_epset_put(&set, mk_ep(all, "h", 1, 1, all, 1, 2, "", all, key,
                                "\t"));
    scout_epset_put(&set, mk_ep("b/\"q\"", "10.0.0.1", 65535, INT_MAX,
                                "up", INT64_MAX, 0));
    scout_epset_put(&set, mk_ep("c", "", INT_MIN, INT_MIN, "", INT64_MIN,
                                1, "zone", "a\xc3\xa9"));
    scout_epset_put(&set, mk_ep("d", "h", 0, -1, "down", -1, 0));
    scout_epset_put(&set, mk_ep("e", "h", 10, 0, "up", 0, 0));
    set.eps[4]->status = NULL;          /* inline: not freed on its own */
    for (unsigned i = 0; i < set.n; i++)
        json_array_append_new(arr, jansson_endpoint(set.eps[i]));
    want = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    j = scout_epset_json(&set, &len);
    CHECK(want != NULL && j != NULL && len == strlen(want)
          && strcmp(j, want) == 0, "\n got  %s\n want %s", j ? j : "NULL",
          want ? want : "NULL");
    free(want);
    json_decref(arr);
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
    RUN(test_json_as_jansson());
    RUN(test_append());
    return test_summary();
}
