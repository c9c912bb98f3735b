/*
 * test_epset.c -- a service's published set as a sorted array (endpoint.h):
 * puts in any order keep it sorted by id, a put with a known id replaces
 * (the count stays), a delete closes the gap, lookups find what is there
 * and nothing else, and the JSON is in id order after every change -- what
 * the API, the snapshots and the runtime's rebuilt tables read.
 */
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
    RUN(test_append());
    return test_summary();
}
