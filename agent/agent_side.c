/*
 * agent_side.c -- the side file (publish/snapside.h) that lets the next
 * start serve the disk snapshot before its policy is loaded: made at
 * start, after a reload, and after an early start's hand-over, where it is
 * made in steps, one per loop iteration, with the other work only the
 * next start or nobody waits for (the early server freed, the heap's
 * steps ended), so that the hand-over's last iteration holds the loop for
 * the outputs and the API alone (issue 14's loop rule).  A step that walks
 * the services (marking those ZooKeeper listed during the hand-over, the
 * side file's bytes) is itself in slices of at most 2 ms or
 * AFTER_SLICE_MAX services, the API answering between them.
 */
#include "agent.h"
#include "agent_early_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "heap.h"
#include "log.h"
#include "stats.h"

void
scout_agent_side_inputs(const scout_agent_t *a, scout_snapside_inputs_t *in)
{
    in->zk = a->opts.zk;
    in->zk_env = getenv("SCOUT_ZK");
    in->api = a->opts.api;
    in->cache_dir = a->opts.cache_dir;
    in->lua_dir = a->opts.lua_dir;
    in->lua_dir_env = getenv("SCOUT_LUA_DIR");
    in->lua_path_env = getenv("LUA_PATH");
    in->listen = a->conf.api_listen;
}

static void after_skip_side(struct loader *l);

/* The side file's three parts, each a step of its own after an early
 * start: the files the policy loaded as Lua, their fingerprint with the
 * command line's (a->fp), the bytes.  A failure is said; none is made. */
static int
side_files(scout_agent_t *a, char ***files, int *nfiles)
{
    char err[SCOUT_ERR_LEN];

    *files = NULL;
    *nfiles = 0;
    if (a->persist == NULL || a->conf.api_listen == NULL
        || a->opts.cache_dir == NULL)
        return SCOUT_ERROR;     /* early serving needs --cache-dir: above */
    if (scout_policy_files(a->policy, a->opts.policy_file, files, nfiles,
                           err) == SCOUT_OK)
        return SCOUT_OK;
    scout_log(SCOUT_LOG_WARN, "agent", "no side file for the snapshot "
              "(the next start is a normal one): %s", err);
    free(*files);
    *files = NULL;
    return SCOUT_ERROR;
}

static int
side_fp(scout_agent_t *a, char **files, int nfiles)
{
    char err[SCOUT_ERR_LEN];
    scout_snapside_inputs_t in;

    scout_agent_side_inputs(a, &in);
    if (scout_snapside_fingerprint(&in, (const char *const *)files, nfiles,
                                   &a->fp, err) == SCOUT_OK)
        return SCOUT_OK;
    scout_log(SCOUT_LOG_WARN, "agent", "no side file for the snapshot "
              "(the next start is a normal one): %s", err);
    return SCOUT_ERROR;
}

/* The side file's bytes for the running policy (snapshot checksum 0:
 * persist.c puts the real one in), or NULL when there is none to make. */
static char *
side_bytes(scout_agent_t *a, char **files, int nfiles, size_t *len)
{
    const char **names, **paths;
    char *buf = NULL;

    names = malloc(((size_t)a->nservices + 1) * sizeof(*names));
    paths = malloc(((size_t)a->nservices + 1) * sizeof(*paths));
    if (names != NULL && paths != NULL) {
        for (int i = 0; i < a->nservices; i++) {
            names[i] = scout_service_name(a->services[i]);
            paths[i] = scout_service_path(a->services[i]);
        }
        buf = scout_snapside_encode(a->fp, 0, a->conf.api_listen,
                                    (const char *const *)files, nfiles,
                                    names, paths, a->nservices, len);
    }
    free(names);
    free(paths);
    return buf;
}

static char *
side_encode(scout_agent_t *a, size_t *len)
{
    char **files = NULL, *buf = NULL;
    int nfiles = 0;

    if (side_files(a, &files, &nfiles) == SCOUT_OK
        && side_fp(a, files, nfiles) == SCOUT_OK)
        buf = side_bytes(a, files, nfiles, len);
    free(files);
    return buf;
}

void
scout_agent_side_update(scout_agent_t *a)
{
    size_t len = 0;
    char *buf;

    if (a->persist == NULL)
        return;
    if (a->loader != NULL)      /* a reload before the start's side file */
        after_skip_side(a->loader);
    buf = side_encode(a, &len);
    scout_persist_set_side(a->persist, buf, len);   /* NULL: none */
    free(buf);
}

/* The side file for the snapshot read at start (sum), written now from
 * the loop: the writer thread has written none for it yet. */
static void
side_write_now(scout_agent_t *a, char *buf, size_t len, uint64_t sum)
{
    char err[SCOUT_ERR_LEN];

    scout_snapside_set_sum(buf, len, sum);
    if (scout_snapside_write(a->opts.cache_dir, buf, len, 0, err)
        != SCOUT_OK)
        scout_log(SCOUT_LOG_WARN, "agent", "writing the snapshot's side "
                  "file: %s", err);
}

/* At start: the writer thread writes the side file after each snapshot;
 * a start that read a snapshot whole (ZooKeeper down: nothing is written
 * yet) says now which policy serves it, so that the next start may too.
 * Not durable (no fsync on the loop): a torn one is refused, which only
 * means a normal start. */
void
scout_agent_side_start(scout_agent_t *a)
{
    uint64_t sum;
    size_t len = 0;
    char *buf;

    if (a->persist == NULL)
        return;
    if (a->loader != NULL && a->early != NULL) {
        scout_agent_after_begin(a);         /* in later iterations: on_after */
        return;
    }
    buf = side_encode(a, &len);
    scout_persist_set_side(a->persist, buf, len);   /* NULL: none */
    if (buf == NULL || !scout_persist_loaded(a->persist, &sum)
        || (a->early != NULL && scout_early_fingerprint(a->early) == a->fp)) {
        free(buf);              /* (the one on disk says just this) */
        return;
    }
    side_write_now(a, buf, len, sum);
    free(buf);
}

/* ---- after the start's last slice ---------------------------------------- */

enum { AFTER_RETIRE = 1, AFTER_MARK, AFTER_FILES, AFTER_FP, AFTER_BYTES,
       AFTER_HEAP };

/* One step per loop iteration, once scout_agent_early_end has run: the
 * early server freed; the services ZooKeeper listed while they were built
 * (they published before there was a disk snapshot) marked for the next
 * write; then the side file, which only the next start reads (the one on
 * disk still says this policy and this snapshot unless the loaded policy
 * differs: then it is written); then the heap's steps end. */
static double
thread_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void after_step(scout_agent_t *a);

static const char *const step_names[] = {
    "none", "a slice of the early server's freeing", "a marking slice",
    "the policy's files", "their fingerprint", "a slice of the side file",
    "the heap's steps ended"
};

/* A slice's bound: over once it did AFTER_SLICE_MAX services or its time
 * (at least one service each). */
static int
slice_over(int done, int64_t deadline_ns)
{
    return done >= AFTER_SLICE_MAX
           || (done > 0 && scout_now_ns() >= deadline_ns);
}

static int
after_mark(scout_agent_t *a)
{
    struct loader *l = a->loader;
    int64_t deadline = scout_now_ns() + SEED_SLICE_NS;

    l->mark_slices++;
    for (int done = 0; l->mark_next < a->nservices; done++) {
        scout_service_t *s;

        if (slice_over(done, deadline))
            return SCOUT_AGAIN;
        s = a->services[l->mark_next++];
        if (scout_service_serving(s) && !scout_service_from_snapshot(s))
            scout_persist_changed(a->persist, s);
    }
    return SCOUT_OK;
}

/* The side file's bytes, a slice of services per call; then given to the
 * writer (and written at once when the loaded policy is not the one the
 * early start read). */
static int
after_bytes(scout_agent_t *a)
{
    struct loader *l = a->loader;
    int64_t deadline = scout_now_ns() + SEED_SLICE_NS;
    char *buf;
    uint64_t sum;
    size_t len = 0;

    if (l->bytes_slices++ == 0) {
        l->bytes_req0 = scout_stats.api_requests;
        l->enc = scout_snapside_enc_new(a->fp, 0, a->conf.api_listen,
                                        (const char *const *)l->files,
                                        l->nfiles, a->nservices);
    }
    for (int done = 0; l->enc != NULL && l->bytes_next < a->nservices;
         done++) {
        scout_service_t *s;

        if (slice_over(done, deadline))
            return SCOUT_AGAIN;
        s = a->services[l->bytes_next++];
        scout_snapside_enc_add(l->enc, scout_service_name(s),
                               scout_service_path(s));
    }
    l->bytes_reqs = scout_stats.api_requests - l->bytes_req0;
    buf = l->enc != NULL ? scout_snapside_enc_end(l->enc, &len) : NULL;
    l->enc = NULL;
    if (buf != NULL && scout_persist_loaded(a->persist, &sum)
        && a->fp != l->early_fp) {
        side_write_now(a, buf, len, sum);
    }
    /* given, not copied: the copy alone was most of this step at 100,000
     * services (the writer puts each snapshot's checksum in its own) */
    scout_persist_adopt_side(a->persist, buf, len);     /* NULL: none */
    scout_log(SCOUT_LOG_DEBUG, "agent", "the side file for the next "
              "start made, after the hand-over");
    return SCOUT_OK;
}

static void
on_after(struct ev_loop *loop, ev_check *w, int revents)
{
    scout_agent_t *a = w->data;
    struct loader *l = a->loader;
    int step = l->after_step;
    double c0, ms;
    (void)loop;
    (void)revents;

    if (!l->ended)
        return;
    c0 = thread_ms();
    l->after_steps++;
    after_step(a);              /* may free l: the last step logs its own */
    ms = thread_ms() - c0;
    if (a->loader == l && ms > l->after_longest_ms) {
        l->after_longest_ms = ms;
        l->after_longest = step;
    }
}

static void
after_step(scout_agent_t *a)
{
    struct loader *l = a->loader;

    switch (l->after_step++) {
    case AFTER_RETIRE:
        /* its snapshot's bytes (55 MB at 100,000 x 10) unmapped a slice
         * per iteration, then the rest of it */
        l->retire_slices++;
        if (scout_early_release(l->retired, RETIRE_SLICE_BYTES)
            == SCOUT_AGAIN) {
            l->after_step = AFTER_RETIRE;
            return;
        }
        scout_early_free(l->retired);
        l->retired = NULL;
        return;
    case AFTER_MARK:
        if (after_mark(a) == SCOUT_AGAIN)
            l->after_step = AFTER_MARK;
        return;
    case AFTER_FILES:
        if (l->skip_side || side_files(a, &l->files, &l->nfiles) != SCOUT_OK)
            l->after_step = AFTER_HEAP;
        return;
    case AFTER_FP:
        if (side_fp(a, l->files, l->nfiles) != SCOUT_OK)
            l->after_step = AFTER_HEAP;
        else if (a->fp != l->early_fp)
            /* the policy read something besides its files (the
             * environment): its answers may differ from the early ones */
            scout_log(SCOUT_LOG_WARN, "agent", "the loaded policy is not "
                      "the one the early answers were for (it depends on "
                      "more than its files and the command line)");
        return;
    case AFTER_BYTES:
        if (after_bytes(a) == SCOUT_AGAIN)
            l->after_step = AFTER_BYTES;
        return;
    default:                    /* AFTER_HEAP */
        scout_log(SCOUT_LOG_DEBUG, "agent", "start: %zu MB of heap made "
                  "resident in steps", scout_heap_populate_stop() >> 20);
        break;
    }
    scout_log(SCOUT_LOG_INFO, "agent", "after the hand-over: %d steps in "
              "later iterations, the longest %.1f ms of CPU (%s; the early "
              "server freed in %d, the services ZooKeeper listed meanwhile marked in %d "
              "slices, the side file for the next start with its bytes in "
              "%d slices of at most %d services and %llu API requests "
              "answered between the first and the last, the heap's steps "
              "ended); the name index sorted by the loader thread in %.1f ms",
              l->after_steps, l->after_longest_ms,
              step_names[l->after_longest], l->retire_slices,
              l->mark_slices,
              l->bytes_slices, AFTER_SLICE_MAX,
              (unsigned long long)l->bytes_reqs, l->sort_ms);
    scout_agent_after_stop(a);
    free(l);
    a->loader = NULL;
}

static void
on_after_spin(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

void
scout_agent_after_begin(scout_agent_t *a)
{
    struct loader *l = a->loader;

    l->after_step = AFTER_RETIRE;
    l->early_fp = scout_early_fingerprint(a->early);
    ev_check_init(&l->after, on_after);
    l->after.data = a;
    ev_check_start(a->loop, &l->after);
    ev_idle_init(&l->after_spin, on_after_spin);  /* the poll does not block */
    ev_idle_start(a->loop, &l->after_spin);
}

void
scout_agent_after_stop(scout_agent_t *a)
{
    struct loader *l = a->loader;

    if (l->after_step != 0) {
        ev_check_stop(a->loop, &l->after);
        ev_idle_stop(a->loop, &l->after_spin);
    }
    l->after_step = 0;
    free(l->files);
    l->files = NULL;
    scout_snapside_enc_free(l->enc);
    l->enc = NULL;
    scout_early_free(l->retired);
    l->retired = NULL;
}

/* A reload made its own side file: the start's is not made (nor, when the
 * reload came before its steps, compared with the early one's). */
static void
after_skip_side(struct loader *l)
{
    if (l->after_step != 0 && l->after_step < AFTER_FILES)
        l->skip_side = 1;       /* (the marking goes on) */
    if (l->after_step >= AFTER_FILES && l->after_step <= AFTER_BYTES) {
        l->after_step = AFTER_HEAP;
        free(l->files);
        l->files = NULL;
        scout_snapside_enc_free(l->enc);
        l->enc = NULL;
    }
}
