/*
 * rawwatch — the baseline for the propagation benchmark: what a bare
 * libzookeeper_st client costs when all it does is follow one directory.
 *
 * On every child event it re-reads the children with zoo_awget_children2
 * (which re-arms the watch in the same request) and prints the diff against
 * the previous list, one "<CLOCK_MONOTONIC ns> +name" / "-name" line per
 * child, flushed per line. The initial read is printed as additions. No data
 * reads, no caching beyond the sorted name list: nothing any observer could do
 * with fewer requests (1 per change).
 *
 *   rawwatch HOSTS PATH [SESSION_MS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "zkpoll.h"

static const char *path;
static char **cur;                     /* sorted, owned */
static int ncur;
static int dead;

static void read_children(zhandle_t *zh);

static int
cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
children_cb(int rc, const struct String_vector *sv, const struct Stat *st,
            const void *data)
{
    int64_t now = zkpoll_now_ns();
    char **next;
    int i = 0, j = 0, n, c;

    (void) st; (void) data;
    if (rc != ZOK) {
        /* ZNONODE sets no watch (see notes); the bench creates the path
         * first, so treat anything but connection loss as fatal. */
        if (rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT) {
            fprintf(stderr, "rawwatch: get_children %s: %s\n", path, zerror(rc));
            dead = 1;
        }
        return;
    }
    n = sv->count;
    next = malloc(sizeof(char *) * (n ? n : 1));
    for (i = 0; i < n; i++)
        next[i] = strdup(sv->data[i]);        /* borrowed: copy */
    qsort(next, n, sizeof(char *), cmp);
    for (i = 0; i < ncur || j < n;) {
        c = i >= ncur ? 1 : j >= n ? -1 : strcmp(cur[i], next[j]);
        if (c < 0)
            printf("%lld -%s\n", (long long) now, cur[i++]);
        else if (c > 0)
            printf("%lld +%s\n", (long long) now, next[j++]);
        else { i++; j++; continue; }
        fflush(stdout);
    }
    for (i = 0; i < ncur; i++)
        free(cur[i]);
    free(cur);
    cur = next;
    ncur = n;
}

static void
child_watch(zhandle_t *zh, int type, int state, const char *p, void *ctx)
{
    (void) state; (void) p; (void) ctx;
    if (type == ZOO_SESSION_EVENT)
        return;                 /* watch stays armed across session events */
    read_children(zh);
}

static void
read_children(zhandle_t *zh)
{
    int rc = zoo_awget_children2(zh, path, child_watch, NULL, children_cb, NULL);
    if (rc != ZOK)
        fprintf(stderr, "rawwatch: awget_children2: %s\n", zerror(rc));
}

static void
session_watch(zhandle_t *zh, int type, int state, const char *p, void *ctx)
{
    static int started;
    (void) p; (void) ctx;
    if (type != ZOO_SESSION_EVENT)
        return;
    if (state == ZOO_CONNECTED_STATE && !started) {
        started = 1;            /* reconnects re-set the watch themselves */
        read_children(zh);
    } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
        fprintf(stderr, "rawwatch: session lost (%d)\n", state);
        dead = 1;
    }
}

int
main(int argc, char **argv)
{
    zhandle_t *zh;

    if (argc < 3) {
        fprintf(stderr, "usage: rawwatch HOSTS PATH [SESSION_MS]\n");
        return 2;
    }
    path = argv[2];
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);   /* fflush per line, not per byte */
    zh = zkpoll_connect(argv[1], argc > 3 ? atoi(argv[3]) : 10000, session_watch, NULL);
    if (!zh) {
        perror("rawwatch: zookeeper_init");
        return 1;
    }
    while (!dead)
        if (zkpoll_once(zh, -1) < 0)
            break;
    zookeeper_close(zh);
    return 1;
}
