/*
 * test_svclist.c -- GET /v1/services' bytes (api/svclist.h), the one
 * encoder of the loaded API and of the early server.
 *
 * Why: test_early.py compares the early table with the loaded one byte for
 * byte, which only means something while the bytes themselves are right:
 * the keys and their order (clients parse by name, but diff and cache by
 * bytes), JSON escaping, an index past 2^53 written exactly, "[]" for
 * none.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"

#include "api/svclist.h"
#include "scout.h"

static void
test_keys_order_and_bytes(void)
{
    scout_svclist_t l;
    char *buf;
    size_t len;
    static const char want[] =
        "[{\"name\":\"orders\",\"path\":\"/dubbo/a/providers\",\"endpoints\":3,"
        "\"index\":42,\"state\":\"synced\"},"
        "{\"name\":\"q\\\"x\\\\y\\u0001\",\"path\":\"/p\",\"endpoints\":0,"
        "\"index\":9007199254740993,\"state\":\"stale\"}]";

    CHECK(scout_svclist_init(&l, 1) == SCOUT_OK);
    CHECK(scout_svclist_add(&l, "orders", "/dubbo/a/providers", 3, 42,
                            "synced") == SCOUT_OK);
    CHECK(scout_svclist_add(&l, "q\"x\\y\001", "/p", 0, 9007199254740993ULL,
                            "stale") == SCOUT_OK);
    buf = scout_svclist_finish(&l, &len);
    CHECK(buf != NULL);
    if (buf == NULL)
        return;
    CHECK(len == sizeof(want) - 1 && memcmp(buf, want, len) == 0,
          "got %.*s", (int)len, buf);
    free(buf);
}

static void
test_none_is_an_empty_array_and_reset_starts_over(void)
{
    scout_svclist_t l;
    char *buf;
    size_t len;

    CHECK(scout_svclist_init(&l, 16) == SCOUT_OK);
    buf = scout_svclist_finish(&l, &len);
    CHECK(buf != NULL && len == 2 && memcmp(buf, "[]", 2) == 0);
    free(buf);
    CHECK(scout_svclist_init(&l, 16) == SCOUT_OK);
    CHECK(scout_svclist_add(&l, "a", "/a", 1, 1, "synced") == SCOUT_OK);
    scout_svclist_reset(&l);        /* a reload: the render starts over */
    CHECK(scout_svclist_add(&l, "b", "/b", 2, 7, "syncing") == SCOUT_OK);
    buf = scout_svclist_finish(&l, &len);
    CHECK(buf != NULL && len == strlen("[{\"name\":\"b\",\"path\":\"/b\","
                                       "\"endpoints\":2,\"index\":7,"
                                       "\"state\":\"syncing\"}]")
          && memcmp(buf, "[{\"name\":\"b\"", 12) == 0,
          "got %.*s", (int)len, buf ? buf : "");
    free(buf);
}

int
main(void)
{
    RUN(test_keys_order_and_bytes());
    RUN(test_none_is_an_empty_array_and_reset_starts_over());
    return test_summary();
}
