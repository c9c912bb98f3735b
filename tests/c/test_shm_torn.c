/*
 * test_shm_torn.c -- readers never accept a torn snapshot.  The test forks
 * readers that hammer the shared-memory file while the writer
 * (agent/publish/shm.c) publishes thousands of snapshots of varying size,
 * each of which encodes its own generation everywhere: every read the reader
 * (lib/scout_shm_reader.c) accepts must be internally consistent.
 *
 * Why a binary of its own: it is the one test here that races processes
 * against each other, and the longest; test_shm.c keeps the format's
 * field-by-field checks.  SCOUT_TEST_QUICK=1 shrinks the run (valgrind).
 */
#define _GNU_SOURCE     /* sched_setaffinity */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_endpoints.h"
#include "testing.h"
#include "scout.h"
#include "publish/shm.h"
#include "scout_shm.h"
#include "shm_fixtures.h"

/* ---- torn reads ---------------------------------------------------------- */

/*
 * What generation g publishes: a shape that changes every time (so lengths
 * and offsets move): four small ones; five medium ones, 3 services of 20
 * endpoints whose settings are 63-315 KB of g written out over and over
 * (copies the writer makes nearly as fast as a reader does, so it laps
 * readers often); and at seven points a big one, bigger each time, that
 * forces the file to grow while readers hold it.  Every value that can
 * carry g does.  Shapes are built once and their values rewritten in place
 * (fixed width), so the writer does little but publish.  With the writer's
 * "seq = 0" store removed this test sees checksum failures, and with the
 * reader's checksum check removed too it accepts torn reads; intact, it
 * must see neither.
 */
#define SHAPES 9
#define BIGS   7

typedef struct {
    int                  n;
    scout_shm_service_t *svcs;
    scout_epset_t       *sets;
    char               (*names)[32];
} shape_t;

static shape_t shapes[SHAPES + BIGS];
static uint64_t torn_final;

static int
torn_shape(uint64_t g)
{
    uint64_t step = torn_final / (BIGS + 1);

    if (g % step == 0 && g / step >= 1 && g / step <= BIGS)
        return SHAPES + (int)(g / step) - 1;
    return (int)(g % SHAPES);
}

static int
torn_nsvc(uint64_t g)
{
    int k = torn_shape(g);

    return k >= SHAPES ? 300 * (k - SHAPES + 1) : k >= 4 ? 3 : 1 + k;
}

/* Bytes of settings in generation g: 0 means the small JSON form. */
static size_t
torn_blob(uint64_t g)
{
    int k = torn_shape(g);

    return k >= 4 && k < SHAPES ? (size_t)21 * 3000 * (size_t)(k - 3) : 0;
}

/* g as 20 digits and a comma, over and over, len bytes. */
static void
blob_fill(char *blob, size_t len, const char *gs)
{
    for (size_t o = 0; o + 21 <= len; o += 21) {
        memcpy(blob + o, gs, 20);
        blob[o + 20] = ',';
    }
}

static int
torn_neps(uint64_t g, int i)
{
    int k = torn_shape(g);

    return k >= 4 ? 20 : (k * 7 + i) % 9;
}

static void
shape_build(shape_t *sh, uint64_t g)
{
    char id[32];

    sh->n = torn_nsvc(g);
    sh->svcs = calloc((size_t)sh->n, sizeof(*sh->svcs));
    sh->sets = calloc((size_t)sh->n, sizeof(*sh->sets));
    sh->names = calloc((size_t)sh->n, sizeof(*sh->names));
    for (int i = 0; i < sh->n; i++) {
        snprintf(sh->names[i], sizeof(sh->names[i]), "svc-%05d", i);
        scout_epset_init(&sh->sets[i]);
        for (int e = 0; e < torn_neps(g, i); e++) {
            snprintf(id, sizeof(id), "ep-%03d", e);
            scout_epset_put(&sh->sets[i],
                            mk_ep(id, "00000000000000000000", 0, i, "up", 0,
                                  1, "gen", "00000000000000000000"));
        }
        sh->svcs[i] = (scout_shm_service_t){ sh->names[i], NULL, "synced", 0,
                                             NULL, 0, &sh->sets[i] };
    }
}

static void
shape_free(shape_t *sh)
{
    for (int i = 0; i < sh->n; i++)
        scout_epset_free(&sh->sets[i]);
    free(sh->svcs);
    free(sh->sets);
    free(sh->names);
    memset(sh, 0, sizeof(*sh));
}

static void
torn_publish(scout_shm_t *w, uint64_t g, char *err)
{
    static char settings_buf[48], path[48], blob[21 * 3000 * 5];
    char gs[32];
    size_t blen = torn_blob(g);
    int k = torn_shape(g), ok;
    shape_t *sh = &shapes[k];
    scout_endpoint_t *ep;

    if (sh->svcs == NULL)
        shape_build(sh, g);
    snprintf(settings_buf, sizeof(settings_buf), "{\"gen\":%" PRIu64 "}", g);
    snprintf(path, sizeof(path), "/p/%" PRIu64, g);
    snprintf(gs, sizeof(gs), "%020" PRIu64, g);
    blob_fill(blob, blen, gs);
    for (int i = 0; i < sh->n; i++) {
        sh->svcs[i].index = g;
        sh->svcs[i].path = path;
        sh->svcs[i].settings = blen ? blob : settings_buf;
        sh->svcs[i].settings_len = blen ? blen : strlen(settings_buf);
        for (unsigned k = 0; k < sh->sets[i].n; k++) {
            ep = sh->sets[i].eps[k];
            memcpy(ep->host, gs, 20);
            memcpy(ep->meta[0].value, gs, 20);
            ep->zxid = (int64_t)g;
            ep->port = (int)(g % 65536);
        }
    }
    ok = scout_shm_publish(w, sh->svcs, sh->n, err) == SCOUT_OK;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  publish %" PRIu64 ": %s\n", g, err);
}

/* 1 if sn is exactly what torn_publish(sn->generation) wrote. */
static int
torn_valid(const scout_shm_snap_t *sn)
{
    uint64_t g = sn->generation;
    const scout_shm_svc_t *svc = scout_shm_snap_services(sn);
    const scout_shm_ep_t *ep = scout_shm_snap_endpoints(sn);
    const scout_shm_meta_t *m = scout_shm_snap_meta(sn);
    char gs[32], want[48];

    snprintf(gs, sizeof(gs), "%020" PRIu64, g);
    if ((int)sn->nservices != torn_nsvc(g))
        return 0;
    for (uint32_t i = 0; i < sn->nservices; i++) {
        const scout_shm_svc_t *v = &svc[i];

        snprintf(want, sizeof(want), "svc-%05u", i);
        if (!STR_IS(sn, v->name, want) || v->index != g
            || (int)v->ep_count != torn_neps(g, (int)i)
            || !STR_IS(sn, v->state, "synced"))
            return 0;
        if (torn_blob(g) > 0) {
            const char *b = scout_shm_str(sn, v->settings);

            if (v->settings.len != torn_blob(g))
                return 0;
            for (size_t o = 0; o < v->settings.len; o += 21)
                if (memcmp(b + o, gs, 20) != 0 || b[o + 20] != ',')
                    return 0;
        } else {
            snprintf(want, sizeof(want), "{\"gen\":%" PRIu64 "}", g);
            if (!STR_IS(sn, v->settings, want))
                return 0;
        }
        snprintf(want, sizeof(want), "/p/%" PRIu64, g);
        if (!STR_IS(sn, v->path, want))
            return 0;
        for (uint32_t e = 0; e < v->ep_count; e++) {
            const scout_shm_ep_t *p = &ep[v->ep_first + e];

            memcpy(want, "ep-000", 7);
            want[3] = (char)('0' + e / 100);
            want[4] = (char)('0' + e / 10 % 10);
            want[5] = (char)('0' + e % 10);
            if (!str_is(sn, p->id, want, 6) || !str_is(sn, p->host, gs, 20)
                || !STR_IS(sn, p->status, "up")
                || p->zxid != (int64_t)g || p->port != (int)(g % 65536)
                || p->weight != (int)i || p->meta_count != 1
                || !STR_IS(sn, m[p->meta_first].key, "gen")
                || !str_is(sn, m[p->meta_first].value, gs, 20))
                return 0;
        }
    }
    return 1;
}

typedef struct {
    uint64_t reads, invalid, errors, backwards, last_gen;
    scout_shm_stats_t st;
} torn_report_t;

/* The child: read until the final generation is seen (or 120 s pass). */
static void
torn_reader(const char *p, uint64_t final, int own_buffer, int fd)
{
    char err[SCOUT_ERR_LEN];
    scout_shm_reader_t *r = scout_shm_reader_open(p, err);
    torn_report_t rep;
    size_t cap = 1 << 16, len;
    uint64_t *buf = malloc(cap);
    int64_t deadline = scout_now_ns() + 120 * (int64_t)1000000000;

    memset(&rep, 0, sizeof(rep));
    while (rep.last_gen < final && scout_now_ns() < deadline) {
        const scout_shm_snap_t *sn = NULL;

        if (own_buffer) {
            sn = scout_shm_reader_read(r, err);
            if (sn == NULL && strstr(err, "torn") == NULL
                && strstr(err, "no snapshot") == NULL)
                rep.errors++;
        } else {
            int rc = scout_shm_reader_copy(r, buf, cap, &len, err);
            if (rc == SCOUT_SHM_SHORT) {
                free(buf);
                cap = len * 2;
                buf = malloc(cap);
                continue;
            }
            if (rc == SCOUT_SHM_OK)
                sn = (const scout_shm_snap_t *)buf;
            else if (rc == SCOUT_SHM_ERROR && strstr(err, "no snapshot")
                     == NULL)
                rep.errors++;
        }
        if (sn == NULL)
            continue;
        rep.reads++;
        if (!torn_valid(sn))
            rep.invalid++;
        if (sn->generation < rep.last_gen)
            rep.backwards++;
        rep.last_gen = sn->generation;
    }
    scout_shm_reader_stats(r, &rep.st);
    if (write(fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(2);
    free(buf);
    scout_shm_reader_close(r);
    _exit(0);
}

#define NREADERS 3

static void
test_torn_reads(void)
{
    char err[SCOUT_ERR_LEN] = "";
    const char *p = path_in("torn");
    uint64_t final = quick ? 2000 : 20000;
    pid_t pid[NREADERS];
    int fds[NREADERS][2];
    scout_shm_t *w;
    int64_t t0;
    cpu_set_t all, one;
    int pinned;

    /* The writer and reader 0 share one CPU, so the scheduler preempts
     * either in the middle of a copy and the other runs: the writer laps a
     * reader stopped mid-copy, a reader checks a slot the writer was stopped
     * in the middle of.  Readers 1 and 2 run free on any CPU, racing the
     * writer in parallel (memory ordering across cores). */
    pinned = sched_getaffinity(0, sizeof(all), &all) == 0;
    if (pinned) {
        CPU_ZERO(&one);
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &all)) {
                CPU_SET(c, &one);
                break;
            }
        pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
    }
    torn_final = final;
    fflush(NULL);
    for (int k = 0; k < NREADERS; k++) {
        CHECK(pipe(fds[k]) == 0);
        pid[k] = fork();
        if (pid[k] == 0) {
            close(fds[k][0]);
            if (k > 0 && pinned)
                sched_setaffinity(0, sizeof(all), &all);
            torn_reader(p, final, k == 1, fds[k][1]);
        }
        close(fds[k][1]);
    }
    /* Opened after the fork so that the readers own nothing of the
     * writer's; they wait for the file ("no snapshot") meanwhile. */
    w = scout_shm_open(p, err);
    CHECK(w != NULL);
    if (w == NULL)
        _exit(1);
    t0 = scout_now_ns();
    for (uint64_t g = 1; g <= final; g++)
        torn_publish(w, g, err);
    for (int k = 0; k < SHAPES + BIGS; k++)
        shape_free(&shapes[k]);
    double ms = (double)(scout_now_ns() - t0) / 1e6;
    for (int k = 0; k < NREADERS; k++) {
        torn_report_t rep;
        int status;

        memset(&rep, 0, sizeof(rep));
        CHECK(read(fds[k][0], &rep, sizeof(rep)) == (ssize_t)sizeof(rep));
        close(fds[k][0]);
        CHECK(waitpid(pid[k], &status, 0) == pid[k] && WIFEXITED(status)
              && WEXITSTATUS(status) == 0);
        CHECK(rep.invalid == 0);
        CHECK(rep.errors == 0);
        CHECK(rep.backwards == 0);
        CHECK(rep.st.checksum_failures == 0);
        CHECK(rep.last_gen == final);
        CHECK(rep.reads > 0);
        printf("torn-read %s: %" PRIu64 " publishes in %.0f ms; %" PRIu64
               " reads accepted, %" PRIu64 " invalid, %" PRIu64
               " retries (torn), %" PRIu64 " checksum failures, %" PRIu64
               " re-maps (file grew)\n",
               k == 0 ? "copy(), writer's CPU" : k == 1 ? "read(), any CPU"
                      : "copy(), any CPU", final, ms,
               rep.reads, rep.invalid,
               rep.st.retries, rep.st.checksum_failures, rep.st.remaps);
    }
    if (pinned)
        sched_setaffinity(0, sizeof(all), &all);
    scout_shm_close(w, 1);
}

int
main(void)
{
    if (shm_fixtures_start() != 0)
        return 1;
    RUN(test_torn_reads());
    shm_fixtures_stop();
    return test_summary();
}
