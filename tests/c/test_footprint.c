/*
 * test_footprint.c -- what one watched path costs in the agent's own
 * structs.  There is one watch (zk/watch) and one service per path, 10,000
 * at scale: fields only a failing service, a service whose sources move or
 * a delayed read use live in side structs (the delayed read's only while a
 * read waits: the first session's jitter delays every watch once), the
 * flags share a word, and the path is one string (the service and the
 * path index borrow the watch's).  Each struct must stay one malloc chunk of the size
 * below (glibc: request + 8 rounded up to 16): 384 bytes for a watch (512
 * with its delayed-read timer inline, 432 with the anti-entropy pass's
 * unused position, a second copy of the slot totals' pointer and the
 * graveyard link beside the queue's) and 320 for a service with its name
 * (480 with its retry and reap timers inline, and the name was a chunk of
 * its own), 2.4 MB at 10,000 services.  A cache child (zk/cache.h), one per
 * watched znode (100,000 at 10 endpoints a service), is a 64-byte chunk
 * with a name of up to 9 bytes (80 with the data's length, a 64-bit read id
 * and the announced mzxid in it: 1.6 MB at 100,000).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <ev.h>

#include "testing.h"
#include "scout.h"
#include "zk/cache.h"
#include "zk/watch_int.h"
#include "zk/watch_index.h"
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
    CHECK(chunk(sizeof(struct scout_watch_s)) <= 384, "watch: %zu bytes, "
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

/* A child as cache.c allocates it (offsetof name + the name and its NUL):
 * the bench's "ep-0" and a 9-byte "ep-123456" stay in 64 bytes. */
static void
test_child_footprint(void)
{
    static const char *names[] = { "ep-0", "ep-123456" };

    for (unsigned i = 0; i < 2; i++) {
        size_t need = offsetof(scout_child_t, name) + strlen(names[i]) + 1;

        CHECK(chunk(need) <= 64, "child %s: %zu bytes, a chunk of %zu",
              names[i], need, chunk(need));
    }
}

/* The child keeps its data read's id in 32 bits, 0 meaning none in flight:
 * a watch's ids skip every value whose low 32 bits are 0, or the answer to
 * the read issued at the 2^32nd would be taken for superseded (and the
 * child never asked again while it looked in flight). */
static void
test_read_id_never_none(void)
{
    scout_watch_t *w = calloc(1, sizeof(*w));
    read_req_t *r1, *r2;

    CHECK(w != NULL);
    if (w == NULL)
        return;
    w->next_req = UINT32_MAX - 1;
    r1 = scout_watch_req_new(w, "ep-0");
    r2 = scout_watch_req_new(w, "ep-0");
    CHECK(r1 != NULL && r2 != NULL);
    if (r1 != NULL && r2 != NULL) {
        CHECK((uint32_t)r1->id == UINT32_MAX);
        CHECK((uint32_t)r2->id != 0 && r2->id != r1->id, "id %llx",
              (unsigned long long)r2->id);
    }
    free(r1);
    free(r2);
    free(w);
}

/* The service's name is in its own allocation, not a malloc of its own (a
 * 32-byte chunk a service), and a name like the bench's "svc-00001" still
 * fits the 320-byte chunk. */
static void
test_service_name_inline(void)
{
    static const char name[] = "svc-00001";
    size_t need = offsetof(struct scout_service_s, name) + sizeof(name);
    struct scout_service_s *s = calloc(1, sizeof(*s) + sizeof(name));

    CHECK(s != NULL);
    CHECK((const void *)s->name == (const void *)&s->name,
          "the name is a pointer to a string of its own");
    CHECK(chunk(need) <= 320, "service named %s: %zu bytes, a chunk of %zu",
          name, need, chunk(need));
    free(s);
}

static void
on_update(void *ud)
{
    (void)ud;
}

static void
on_state(void *ud, scout_session_state_t state, int new_session)
{
    (void)ud;
    (void)state;
    (void)new_session;
}

static int
no_delay(void *ud, const scout_event_t *ev)
{
    (void)ud;
    (void)ev;
    return 0;
}

/* A delayed read holds its timer only while it waits: armed, the watch has
 * it; fired (nothing connected: the read finds no handle), it is gone.  A
 * stopped one is freed by scout_watch_free (ASan's leak check). */
static void
test_delay_only_while_waiting(void)
{
    static const scout_watch_cb_t cb = { NULL, no_delay, on_update };
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    scout_session_opts_t opts = { "127.0.0.1:1", 10000, NULL, NULL };
    scout_service_stats_t stats = { 0 };
    char err[SCOUT_ERR_LEN] = "";
    scout_session_t *session = scout_session_new(loop, &opts, on_state, NULL,
                                                 err);
    scout_watch_t *w;
    int turns = 0;

    CHECK(session != NULL, "%s", err);
    if (session == NULL)
        return;
    w = scout_watch_new(loop, session, "/svc/a", &cb, NULL, &stats, err);
    CHECK(w != NULL, "%s", err);
    if (w == NULL)
        return;
    CHECK(w->delay == NULL);
    scout_watch_reread(w, 1);
    CHECK(w->delay != NULL && scout_watch_delay_armed(w));
    while (scout_watch_delay_armed(w) && turns++ < 10000)
        ev_run(loop, EVRUN_ONCE);
    CHECK(!scout_watch_delay_armed(w));
    CHECK(w->delay == NULL, "the fired read's timer is still held");
    scout_watch_reread(w, 60000);       /* waits until the free below */
    CHECK(w->delay != NULL);
    scout_session_close(session);
    scout_watch_free(w);
    scout_session_free(session);
    ev_loop_destroy(loop);
}

static unsigned delays_asked;

static int
count_delay(void *ud, const scout_event_t *ev)
{
    (void)ud;
    (void)ev;
    delays_asked++;
    return 0;
}

/* The path index borrows a watch's own path string as its key (the
 * path's first watch's): when that watch goes and others watch the same
 * path (a reload's old and new service), the key moves to another's
 * string, and events on the path still find them.  Three watches: the
 * first and the last to come go, whichever of them holds the key. */
static void
test_index_key_outlives_its_watch(void)
{
    static const scout_watch_cb_t cb = { NULL, count_delay, on_update };
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    scout_session_opts_t opts = { "127.0.0.1:1", 10000, NULL, NULL };
    scout_service_stats_t stats = { 0 };
    char err[SCOUT_ERR_LEN] = "";
    scout_session_t *session = scout_session_new(loop, &opts, on_state, NULL,
                                                 err);
    scout_watch_t *first, *second, *third;

    CHECK(session != NULL, "%s", err);
    if (session == NULL)
        return;
    first = scout_watch_new(loop, session, "/svc/shared", &cb, NULL, &stats,
                            err);
    second = scout_watch_new(loop, session, "/svc/shared", &cb, NULL, &stats,
                             err);
    third = scout_watch_new(loop, session, "/svc/shared", &cb, NULL, &stats,
                            err);
    CHECK(first != NULL && second != NULL && third != NULL, "%s", err);
    if (first == NULL || second == NULL || third == NULL)
        return;
    scout_watch_free(first);
    scout_watch_free(third);
    delays_asked = 0;
    scout_watch_on_parent_event(NULL, ZOO_CHILD_EVENT, ZOO_CONNECTED_STATE,
                                "/svc/shared", session);
    CHECK(delays_asked == 1, "the event reached %u watches", delays_asked);
    scout_session_close(session);
    scout_watch_free(second);
    scout_session_free(session);
    ev_loop_destroy(loop);
}

/* The index is a table of each path's first watch, its runs shifted back
 * on removal: after many paths came (the table grew) and a third of them
 * went, in an order that empties slots in the middle of runs, an event on
 * every path still reaches its watch, and only its watch. */
static void
test_index_many_paths(void)
{
    enum { N = 3000 };
    static const scout_watch_cb_t cb = { NULL, count_delay, on_update };
    static scout_watch_t *w[N];
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    scout_session_opts_t opts = { "127.0.0.1:1", 10000, NULL, NULL };
    scout_service_stats_t stats = { 0 };
    char err[SCOUT_ERR_LEN] = "";
    char path[64];
    scout_session_t *session = scout_session_new(loop, &opts, on_state, NULL,
                                                 err);
    unsigned missed = 0, extra = 0;

    CHECK(session != NULL, "%s", err);
    if (session == NULL)
        return;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/dubbo/com.example.Svc%d/providers", i);
        w[i] = scout_watch_new(loop, session, path, &cb, NULL, &stats, err);
        CHECK(w[i] != NULL, "%s", err);
        if (w[i] == NULL)
            return;
    }
    for (int i = N - 1; i >= 0; i--)
        if (i % 3 == 1) {
            scout_watch_free(w[i]);
            w[i] = NULL;
        }
    /* the removals' shifts, then a reload's reserve: the paths there
     * rehashed at once into a table several doublings bigger */
    for (int round = 0; round < 2; round++) {
        if (round == 1)
            scout_watch_index_reserve(4 * N);
        missed = extra = 0;
        for (int i = 0; i < N; i++) {
            delays_asked = 0;
            snprintf(path, sizeof(path), "/dubbo/com.example.Svc%d/providers",
                     i);
            scout_watch_on_parent_event(NULL, ZOO_CHILD_EVENT,
                                        ZOO_CONNECTED_STATE, path, session);
            if (w[i] != NULL && delays_asked != 1)
                missed++;
            if (w[i] == NULL && delays_asked != 0)
                extra++;
        }
        CHECK(missed == 0, "round %d: %u kept paths did not hear their event",
              round, missed);
        CHECK(extra == 0, "round %d: %u freed paths still heard one", round,
              extra);
    }
    scout_session_close(session);
    for (int i = 0; i < N; i++)
        scout_watch_free(w[i]);
    scout_session_free(session);
    ev_loop_destroy(loop);
}

int
main(void)
{
    RUN(test_watch_footprint());
    RUN(test_service_footprint());
    RUN(test_service_name_inline());
    RUN(test_child_footprint());
    RUN(test_read_id_never_none());
    RUN(test_delay_only_while_waiting());
    RUN(test_index_key_outlives_its_watch());
    RUN(test_index_many_paths());
    return test_summary();
}
