/*
 * test_persist_stage.c -- the hand-over's stage (publish/persist.h,
 * persist_stage.c): the services' lists decoded from the lazy index the
 * early start read, in slices, with the rules of scout_persist_load.
 *
 * Why these: the stage is what keeps the hand-over's loop hold to slices
 * (a slice never does more than its count, and always does one, so a
 * late deadline still ends), and it must refuse what scout_persist_load
 * refuses (another ensemble, a file whose lists are not all decoded) and
 * say "not read whole" when an endpoint was dropped.  The integration test
 * (test_early.py) cannot reach these: the side file already refuses a
 * start whose policy or snapshot differs.
 */
#include <limits.h>

#include "snapshot_fixtures.h"

#include "publish/persist.h"
#include "publish/snapshot_lazy.h"

static scout_snaplazy_t *
lazy_small(void)
{
    char err[SCOUT_ERR_LEN], *buf;
    const char *file = path_in(tmpdir, SCOUT_SNAPSHOT_FILE);
    scout_snaplazy_t *z = NULL;
    size_t len;

    CHECK(scout_snapshot_encode("127.0.0.1:2181,10.0.0.9:2181/apps", 1, small,
                                3, &buf, &len, err) == SCOUT_OK, "%s", err);
    CHECK(put_file(file, buf, len) == 0);
    z = scout_snaplazy_read(file, err);
    CHECK(z != NULL, "%s", err);
    free(buf);
    return z;
}

static void
test_slices_do_at_most_their_count_and_at_least_one(void)
{
    const char *names[] = { "idle", "users", "nope", "orders" };
    const char *paths[] = { "/idle", "/services/users", "/nope",
                            "/dubbo/com.acme.OrderService/providers" };
    scout_snaplazy_t *z = lazy_small();
    scout_persist_stage_t *st;
    int rc = SCOUT_AGAIN, steps = 0, slices;
    double longest, total;

    if (z == NULL)
        return;
    st = scout_persist_stage_new(z, "test", names, paths, 4);
    CHECK(st != NULL);
    if (st == NULL)
        goto out;
    /* a deadline long past: one service per slice, never none */
    while (rc == SCOUT_AGAIN && steps < 100) {
        rc = scout_persist_stage_step(st, 0, INT_MAX);
        steps++;
    }
    CHECK(rc == SCOUT_OK && steps == 4, "rc %d after %d steps", rc, steps);
    scout_persist_stage_stats(st, &slices, &longest, &total);
    CHECK(slices == 4 && longest >= 0 && total >= longest);
    scout_persist_stage_free(st);
    /* no deadline: the count bounds a slice */
    st = scout_persist_stage_new(z, "test", names, paths, 4);
    CHECK(st != NULL);
    if (st == NULL)
        goto out;
    CHECK(scout_persist_stage_step(st, INT64_MAX, 3) == SCOUT_AGAIN);
    CHECK(scout_persist_stage_step(st, INT64_MAX, 3) == SCOUT_OK);
    scout_persist_stage_free(st);
out:
    scout_snaplazy_free(z);
    unlink(path_in(tmpdir, SCOUT_SNAPSHOT_FILE));
}

static void
test_refuses_what_the_full_load_refuses(void)
{
    char err[SCOUT_ERR_LEN];
    const char *names[] = { "users", "idle" };
    const char *paths[] = { "/services/users", "/idle" };
    scout_snaplazy_t *z = lazy_small();
    scout_persist_stage_t *st;

    if (z == NULL)
        return;
    st = scout_persist_stage_new(z, "test", names, paths, 2);
    CHECK(st != NULL);
    if (st == NULL)
        goto out;
    /* not all decoded yet: no seed may be taken */
    CHECK(scout_persist_stage_step(st, INT64_MAX, 1) == SCOUT_AGAIN);
    CHECK(scout_persist_stage_check(st, "127.0.0.1:2181/apps", err)
          == SCOUT_ERROR && strstr(err, "not all decoded") != NULL, "%s", err);
    CHECK(scout_persist_stage_step(st, INT64_MAX, 1) == SCOUT_OK);
    /* the ensemble rule of scout_snapshot_check_ensemble: a member in
     * common and the same chroot */
    CHECK(scout_persist_stage_check(st, "10.0.0.9:2181/apps", err)
          == SCOUT_OK, "%s", err);
    CHECK(scout_persist_stage_check(st, "10.0.0.8:2181/apps", err)
          == SCOUT_ERROR && strstr(err, "written for ensemble") != NULL,
          "%s", err);
    CHECK(scout_persist_stage_check(st, "127.0.0.1:2181/other", err)
          == SCOUT_ERROR, "a chroot moved");
    /* users and idle hold only valid endpoints: read whole */
    CHECK(scout_persist_stage_clean(st) == 1);
    scout_persist_stage_free(st);
out:
    scout_snaplazy_free(z);
    unlink(path_in(tmpdir, SCOUT_SNAPSHOT_FILE));
}

static void
test_a_dropped_endpoint_means_not_read_whole(void)
{
    const char *names[] = { "orders" };
    const char *paths[] = { "/dubbo/com.acme.OrderService/providers" };
    const char *moved[] = { "/dubbo/elsewhere" };
    scout_snaplazy_t *z = lazy_small();
    scout_persist_stage_t *st;

    if (z == NULL)
        return;
    /* orders holds an endpoint with no host: endpoint.h's rule drops it */
    st = scout_persist_stage_new(z, "test", names, paths, 1);
    CHECK(st != NULL && scout_persist_stage_step(st, INT64_MAX, 8)
                        == SCOUT_OK);
    CHECK(st != NULL && scout_persist_stage_clean(st) == 0);
    scout_persist_stage_free(st);
    /* the policy moved its path: not the same list, not decoded at all */
    st = scout_persist_stage_new(z, "test", names, moved, 1);
    CHECK(st != NULL && scout_persist_stage_step(st, INT64_MAX, 8)
                        == SCOUT_OK);
    CHECK(st != NULL && scout_persist_stage_clean(st) == 1);
    scout_persist_stage_free(st);
    scout_snaplazy_free(z);
    unlink(path_in(tmpdir, SCOUT_SNAPSHOT_FILE));
}

int
main(void)
{
    if (snapshot_fixtures_start() != 0)
        return 1;
    RUN(test_slices_do_at_most_their_count_and_at_least_one());
    RUN(test_refuses_what_the_full_load_refuses());
    RUN(test_a_dropped_endpoint_means_not_read_whole());
    snapshot_fixtures_stop();
    return test_summary();
}
