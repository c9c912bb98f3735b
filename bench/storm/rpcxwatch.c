/*
 * rpcxwatch — the "rpcx-style" strategy of the storm benchmark: what a
 * discovery client built on libkv's WatchTree (rpcx's ZooKeeper plugin) asks
 * of ZooKeeper during a rolling deploy.
 *
 * Why C on libzookeeper_st and not Go: the benchmark counts requests on the
 * server, so only the request pattern must match, and a small C client costs
 * M instances next to nothing in memory. The pattern is libkv's List():
 * on every child event, list the children, then Get the data of *every*
 * child, one Get at a time ("FIXME Costly Get request for each child key"),
 * and hand the whole list on. Events that arrive while a cycle runs are not
 * lost and not multiplied: ZooKeeper's one-shot watch fires once, and one new
 * cycle follows the current one (libkv's goroutine likewise reads its event
 * channel only between lists). Two deliberate differences, both in rpcx's
 * favour: the children are read with the watch set in the same request
 * (libkv lists, then calls ChildrenW: one more children read per event and a
 * window in which the last change of a deploy is lost for good), and a child
 * deleted between the list and its Get is skipped instead of restarting the
 * whole List (the armed watch brings the next cycle anyway).
 *
 * Output on stdout, one line per completed cycle whose result differs from
 * the last printed: "<CLOCK_MONOTONIC ns> <count> <fnv1a64 hex>" where the
 * hash covers the sorted names of the children whose data was read, each
 * followed by '\n' (storm.py computes the same for the expected set). On
 * SIGTERM: "stats cycles=C children=X data=Y nonode=Z", then exit 0.
 *
 *   rpcxwatch HOSTS PATH [SESSION_MS]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "zkpoll.h"

static const char *path;
static volatile sig_atomic_t stop;
static int dead, in_cycle, pending, started;
static char **names;                   /* this cycle's list, sorted, owned */
static unsigned char *ok;              /* data read for names[i]           */
static int nnames, next_get;
static uint64_t last_hash = 0;
static int last_count = -1;
static unsigned long cycles, reads_children, reads_data, nonode;

static void start_cycle(zhandle_t *zh);
static void get_next(zhandle_t *zh);

static int
cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
free_names(void)
{
    for (int i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    free(ok);
    names = NULL;
    ok = NULL;
    nnames = 0;
}

static void
finish_cycle(zhandle_t *zh)
{
    uint64_t h = 1469598103934665603ULL;
    int count = 0;

    for (int i = 0; i < nnames; i++) {
        if (!ok[i])
            continue;
        count++;
        for (const unsigned char *p = (const unsigned char *) names[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ '\n') * 1099511628211ULL;
    }
    cycles++;
    if (count != last_count || h != last_hash) {
        printf("%lld %d %016llx\n", (long long) zkpoll_now_ns(), count,
               (unsigned long long) h);
        fflush(stdout);
        last_count = count;
        last_hash = h;
    }
    in_cycle = 0;
    if (pending)
        start_cycle(zh);
}

static void
data_cb(int rc, const char *value, int len, const struct Stat *st, const void *d)
{
    zhandle_t *zh = (zhandle_t *) d;

    (void) st;
    if (rc == ZOK) {
        reads_data++;
        ok[next_get] = value != NULL && len > 0;
    } else if (rc == ZNONODE) {
        reads_data++;
        nonode++;
    } else if (rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT) {
        in_cycle = 0;           /* the session watcher restarts on CONNECTED */
        pending = 1;
        return;
    } else {
        if (rc != ZCLOSING)
            fprintf(stderr, "rpcxwatch: get: %s\n", zerror(rc));
        dead = 1;
        return;
    }
    next_get++;
    get_next(zh);
}

static void
get_next(zhandle_t *zh)
{
    char buf[2048];
    int rc;

    if (next_get >= nnames) {
        finish_cycle(zh);
        return;
    }
    snprintf(buf, sizeof(buf), "%s/%s", path, names[next_get]);
    rc = zoo_aget(zh, buf, 0, data_cb, zh);
    if (rc != ZOK) {
        fprintf(stderr, "rpcxwatch: aget: %s\n", zerror(rc));
        in_cycle = 0;
        pending = 1;
    }
}

static void
children_cb(int rc, const struct String_vector *sv, const struct Stat *st,
            const void *d)
{
    zhandle_t *zh = (zhandle_t *) d;

    (void) st;
    if (rc != ZOK) {
        if (rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT) {
            in_cycle = 0;
            pending = 1;
            return;
        }
        if (rc != ZCLOSING)
            fprintf(stderr, "rpcxwatch: get_children %s: %s\n", path, zerror(rc));
        dead = 1;
        return;
    }
    reads_children++;
    free_names();
    nnames = sv->count;
    names = malloc(sizeof(char *) * (nnames ? nnames : 1));
    ok = calloc(nnames ? nnames : 1, 1);
    for (int i = 0; i < nnames; i++)
        names[i] = strdup(sv->data[i]);           /* borrowed: copy */
    qsort(names, nnames, sizeof(char *), cmp);
    next_get = 0;
    get_next(zh);
}

static void
child_watch(zhandle_t *zh, int type, int state, const char *p, void *ctx)
{
    (void) state; (void) p; (void) ctx;
    if (type == ZOO_SESSION_EVENT)
        return;                 /* watch stays armed across session events */
    if (in_cycle)
        pending = 1;            /* one more cycle after this one */
    else
        start_cycle(zh);
}

static void
start_cycle(zhandle_t *zh)
{
    int rc;

    in_cycle = 1;
    pending = 0;
    rc = zoo_awget_children2(zh, path, child_watch, NULL, children_cb, zh);
    if (rc != ZOK) {
        fprintf(stderr, "rpcxwatch: awget_children2: %s\n", zerror(rc));
        in_cycle = 0;
        pending = 1;
    }
}

static void
session_watch(zhandle_t *zh, int type, int state, const char *p, void *ctx)
{
    (void) p; (void) ctx;
    if (type != ZOO_SESSION_EVENT)
        return;
    if (state == ZOO_CONNECTED_STATE) {
        if (!started || (pending && !in_cycle)) {
            started = 1;
            start_cycle(zh);
        }
    } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
        fprintf(stderr, "rpcxwatch: session lost (%d)\n", state);
        dead = 1;
    }
}

static void
on_term(int sig)
{
    (void) sig;
    stop = 1;
}

int
main(int argc, char **argv)
{
    struct sigaction sa;
    zhandle_t *zh;

    if (argc < 3) {
        fprintf(stderr, "usage: rpcxwatch HOSTS PATH [SESSION_MS]\n");
        return 2;
    }
    path = argv[2];
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;                   /* no SA_RESTART: poll returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    zh = zkpoll_connect(argv[1], argc > 3 ? atoi(argv[3]) : 10000, session_watch, NULL);
    if (!zh) {
        perror("rpcxwatch: zookeeper_init");
        return 1;
    }
    while (!dead && !stop)
        if (zkpoll_once(zh, -1) < 0)
            break;
    printf("stats cycles=%lu children=%lu data=%lu nonode=%lu\n", cycles,
           reads_children, reads_data, nonode);
    fflush(stdout);
    zookeeper_close(zh);
    free_names();
    return dead ? 1 : 0;
}
