/*
 * test_footprint.c -- what one watched path costs in the agent's own
 * structs.  There is one watch (zk/watch) and one service per path, 10,000
 * at scale: fields only a failing service, a service whose sources move or
 * a delayed read use live in side structs allocated on first use, and the
 * flags share a word.  Each struct must stay one malloc chunk of the size
 * below (glibc: request + 8 rounded up to 16): 432 bytes for a watch (512
 * with its delayed-read timer inline) and 320 for a service (480 with its
 * retry and reap timers inline), 2.4 MB at 10,000 services.
 */
#include <stdio.h>

#include "testing.h"
#include "zk/watch_int.h"
#include "service_int.h"

/* glibc's chunk for a request of n bytes (64-bit) */
static size_t
chunk(size_t n)
{
    return n + 8 < 32 ? 32 : (n + 8 + 15) & ~(size_t)15;
}

static void
test_watch_footprint(void)
{
    CHECK(chunk(sizeof(struct scout_watch_s)) <= 432, "watch: %zu bytes, "
          "a chunk of %zu", sizeof(struct scout_watch_s),
          chunk(sizeof(struct scout_watch_s)));
}

static void
test_service_footprint(void)
{
    CHECK(chunk(sizeof(struct scout_service_s)) <= 320, "service: %zu "
          "bytes, a chunk of %zu", sizeof(struct scout_service_s),
          chunk(sizeof(struct scout_service_s)));
}

int
main(void)
{
    RUN(test_watch_footprint());
    RUN(test_service_footprint());
    return test_summary();
}
