/*
 * test_policy_gc.c -- the policy's Lua collector through and after the
 * initial sync (policy/policy_gc.c): the default pause until every service
 * was judged once with its whole listing, or until the bound when one is
 * never read (ZooKeeper down); then a full collection in slices on the loop,
 * and the eager pause.  A real VM loads a real policy file (scout's Lua from
 * this tree) holding a 6 MB string, so that its heap is past the eager
 * threshold; the bound is shortened through the bridge's own field.
 */
#include <ev.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "policy/policy_int.h"
#include "scout.h"
#include "stats.h"
#include "testing.h"

/* the tree's, as tests/run.sh runs the C tests from its root */
static const char *lua_dir = "lua";
static char policy_file[] = "/tmp/scout-test-policy-gc-XXXXXX";

static scout_policy_t *
loaded(scout_conf_t *conf, struct ev_loop *loop, double bound_s)
{
    char err[SCOUT_ERR_LEN];
    scout_policy_t *p = scout_policy_new(lua_dir, err);

    CHECK(p != NULL, "%s", err);
    if (p == NULL)
        return NULL;
    p->gc.bound_s = bound_s;
    scout_policy_attach(p, loop);
    CHECK(scout_policy_load(p, policy_file, conf, err) == SCOUT_OK, "%s", err);
    return p;
}

static void
on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
}

/* Runs the loop until the settling collection has ended: waits for that
 * fact, ticking so that a loop with nothing due still comes back to look
 * (and gives up after 20 s, when it never comes). */
static void
settle(struct ev_loop *loop, uint64_t settles)
{
    double give_up = scout_now_ms() + 20000;
    ev_timer tick;

    ev_timer_init(&tick, on_tick, 0.01, 0.01);
    ev_timer_start(loop, &tick);
    while (scout_stats.lua_gc_settles == settles && scout_now_ms() < give_up)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
}

static void
test_lazy_until_every_service_judged_whole(struct ev_loop *loop)
{
    scout_conf_t conf;
    scout_policy_t *p = loaded(&conf, loop, 0);
    uint64_t ends = scout_stats.lua_gc_sync_ends;
    uint64_t settles = scout_stats.lua_gc_settles;
    size_t before;

    if (p == NULL)
        return;
    CHECK(conf.nservices == 2, "%d services", conf.nservices);
    CHECK(scout_policy_memory(p) > (4u << 20), "heap %zu",
          scout_policy_memory(p));
    CHECK(scout_policy_gc_pause(p) == 120, "pause %d after the load",
          scout_policy_gc_pause(p));
    scout_policy_gc_judged(p, 0, 0);    /* more reads were coming */
    scout_policy_gc_judged(p, 1, 0);
    scout_policy_gc_judged(p, 0, 1);
    scout_policy_gc_judged(p, 0, 1);    /* the same service, again */
    scout_policy_gc_judged(p, 2, 1);    /* no such service */
    CHECK(scout_stats.lua_gc_sync_ends == ends, "ended early");
    scout_policy_tune_gc(p);
    CHECK(scout_policy_gc_pause(p) == 120, "pause %d mid-sync",
          scout_policy_gc_pause(p));
    /* garbage the sync left: the settling collection takes it */
    (void)luaL_dostring(scout_policy_L(p),
                  "local t = {} for i = 1, 200000 do t[i] = {i} end");
    before = scout_policy_memory(p);
    scout_policy_gc_judged(p, 1, 1);
    CHECK(scout_stats.lua_gc_sync_ends == ends + 1, "not ended");
    CHECK(scout_stats.lua_gc_sync_bounds == 0, "ended by the bound");
    CHECK(scout_policy_gc_pause(p) == 100, "pause %d after the sync",
          scout_policy_gc_pause(p));
    settle(loop, settles);
    CHECK(scout_stats.lua_gc_settles == settles + 1, "no collection");
    CHECK(scout_policy_memory(p) + (8u << 20) < before,
          "heap %zu after the collection, %zu before",
          scout_policy_memory(p), before);
    scout_policy_tune_gc(p);
    CHECK(scout_policy_gc_pause(p) == 100, "pause %d", scout_policy_gc_pause(p));
    scout_conf_free(&conf);
    scout_policy_free(p);
}

static void
test_bound_ends_a_sync_nothing_reads(struct ev_loop *loop)
{
    scout_conf_t conf;
    scout_policy_t *p = loaded(&conf, loop, 0.05);
    uint64_t bounds = scout_stats.lua_gc_sync_bounds;
    uint64_t settles = scout_stats.lua_gc_settles;

    if (p == NULL)
        return;
    scout_policy_gc_judged(p, 0, 1);    /* service 1 is never read */
    settle(loop, settles);
    CHECK(scout_stats.lua_gc_sync_bounds == bounds + 1, "no bound");
    CHECK(scout_stats.lua_gc_settles == settles + 1, "no collection");
    CHECK(scout_policy_gc_pause(p) == 100, "pause %d after the bound",
          scout_policy_gc_pause(p));
    scout_conf_free(&conf);
    scout_policy_free(p);
}

int
main(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    int fd = mkstemp(policy_file);
    static const char text[] =
        "zookeeper { servers = \"127.0.0.1:1\" }\n"
        "local ballast = string.rep(\"x\", 6 * 1024 * 1024)\n"
        "service \"a\" { path = \"/a\", filter = function(ep) "
        "return #ballast > 0 end }\n"
        "service \"b\" { path = \"/b\" }\n";

    CHECK(fd >= 0 && write(fd, text, sizeof(text) - 1)
                     == (ssize_t)(sizeof(text) - 1), "policy file");
    if (fd >= 0)
        close(fd);
    RUN(test_lazy_until_every_service_judged_whole(loop));
    RUN(test_bound_ends_a_sync_nothing_reads(loop));
    unlink(policy_file);
    ev_loop_destroy(loop);
    return test_summary();
}
