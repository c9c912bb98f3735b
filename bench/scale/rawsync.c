/*
 * rawsync -- the baseline for the scale benchmark: how long a bare
 * libzookeeper_st client takes to do the reads scout's initial sync does.
 *
 * Same requests, same watches, same sharding: NSVC service paths
 * PREFIX/svc-NNNNN spread round-robin over NSESS sessions; per path one
 * zoo_awget_children2 with a watch, then per child one zoo_awget with a watch,
 * all pipelined as soon as the list is in. Nothing is decoded or kept (the
 * bytes are only counted), so the difference to scout is scout's own work:
 * decoding, policy, publishing, the API. Prints one line when every read has
 * completed:
 *   done <ns from start> <ns from all connected> <children reads> <data reads>
 *        <data bytes> <VmHWM kB>
 * then closes its sessions (so the server drops the watches at once) and
 * exits 0; exits 1 on any read error or after RAWSYNC_TIMEOUT_S (120) s.
 *
 * RAWSYNC_PARSE=1 also parses each child's data as JSON (jansson) and takes
 * its host and port, then drops it: a second, fairer baseline for an agent
 * that must decode what it reads (the rest of its work -- filters, judging,
 * publishing, snapshots -- is still its own).
 *
 * Reads in flight are bounded (WINDOW requests over all sessions, a child
 * list counting for its children to come): at 1,000,000 endpoints, 170,000
 * requests queued at once on one session starved its pings and the server
 * closed it.
 *
 *   rawsync HOSTS PREFIX NSVC NSESS
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "zkpoll.h"

#define MAXSESS 64
#define WINDOW  24000

static zhandle_t *zh[MAXSESS];
static int nsess, connected[MAXSESS], failed;
static long children_done, data_done, data_pending, data_bytes;
static long inflight[MAXSESS];    /* requests, a list counting as its */
static long last_count = 10;      /* children to come: estimated as    */
static long *est;                 /* the last list's size              */
static const char *prefix;
static int parse;                 /* RAWSYNC_PARSE=1                   */
static long parsed;               /* endpoints with a host and a port  */

static void
nop_watcher(zhandle_t *z, int type, int state, const char *path, void *ctx)
{
    (void) z; (void) type; (void) state; (void) path; (void) ctx;
}

static void
session_watcher(zhandle_t *z, int type, int state, const char *path, void *ctx)
{
    (void) z; (void) path;
    if (type == ZOO_SESSION_EVENT && state == ZOO_CONNECTED_STATE)
        connected[(long) ctx] = 1;
}

static void
data_cb(int rc, const char *value, int len, const struct Stat *st,
        const void *data)
{
    (void) value; (void) st;
    inflight[(long) data]--;
    if (rc != ZOK) {
        fprintf(stderr, "rawsync: get: %s\n", zerror(rc));
        failed = 1;
        return;
    }
    data_bytes += len;
    if (parse && value != NULL && len > 0) {
        json_t *o = json_loadb(value, (size_t) len, 0, NULL);
        json_t *h = json_object_get(o, "host"), *p = json_object_get(o, "port");

        if (json_is_string(h) && json_is_integer(p))
            parsed++;
        json_decref(o);
    }
    data_done++;
    data_pending--;
}

static void
children_cb(int rc, const struct String_vector *sv, const struct Stat *st,
            const void *data)
{
    const char *parent = data;
    char path[512];
    zhandle_t *z;
    long sess, svc;
    (void) st;

    if (rc != ZOK) {
        fprintf(stderr, "rawsync: get_children %s: %s\n", parent, zerror(rc));
        failed = 1;
        return;
    }
    children_done++;
    svc = atol(parent + strlen(prefix) + 5);        /* ".../svc-NNNNN" */
    sess = svc % nsess;
    z = zh[sess];
    inflight[sess] += sv->count - est[svc];     /* the estimate, made real */
    last_count = sv->count > 0 ? sv->count : 1;
    for (int i = 0; i < sv->count; i++) {
        snprintf(path, sizeof(path), "%s/%s", parent, sv->data[i]);
        if (zoo_awget(z, path, nop_watcher, (void *) sess, data_cb,
                      (void *) sess) != ZOK) {
            failed = 1;
            return;
        }
        data_pending++;
    }
}

static void
turn(int ms)
{
    struct pollfd p[MAXSESS];
    int idx[MAXSESS], n = 0, to = ms;

    for (int i = 0; i < nsess; i++) {
        int fd = -1, interest = 0, rc, t;
        struct timeval tv = {0, 0};

        idx[i] = -1;
        rc = zookeeper_interest(zh[i], &fd, &interest, &tv);
        if (rc == ZINVALIDSTATE) {
            fprintf(stderr, "rawsync: session %d lost\n", i);
            exit(1);
        }
        if (fd != -1 && fcntl(fd, F_GETFD) == -1)
            fd = -1;
        if (fd != -1 && rc != ZOK)
            interest |= ZOOKEEPER_READ;
        t = (int) (tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
        if (rc != ZOK && t < 10)
            t = 10;
        if (t < to)
            to = t;
        if (fd != -1 && interest) {
            idx[i] = n;
            p[n].fd = fd;
            p[n].events = (interest & ZOOKEEPER_READ ? POLLIN : 0)
                        | (interest & ZOOKEEPER_WRITE ? POLLOUT : 0);
            p[n++].revents = 0;
        }
    }
    poll(p, n, to);
    for (int i = 0; i < nsess; i++) {
        int ev = 0;
        if (idx[i] >= 0) {
            short r = p[idx[i]].revents;
            if (r & (POLLIN | POLLHUP | POLLERR))
                ev |= ZOOKEEPER_READ;
            if (r & POLLOUT)
                ev |= ZOOKEEPER_WRITE;
        }
        zookeeper_process(zh[i], ev);
    }
}

int
main(int argc, char **argv)
{
    int64_t t0 = zkpoll_now_ns(), t1, deadline;
    long nsvc;
    char **paths, line[256];
    FILE *f;
    long hwm = 0;

    if (argc != 5) {
        fprintf(stderr, "usage: rawsync HOSTS PREFIX NSVC NSESS\n");
        return 2;
    }
    prefix = argv[2];
    nsvc = atol(argv[3]);
    nsess = atoi(argv[4]);
    parse = getenv("RAWSYNC_PARSE") != NULL && atoi(getenv("RAWSYNC_PARSE")) == 1;
    if (nsess < 1 || nsess > MAXSESS)
        return 2;
    deadline = t0 + (getenv("RAWSYNC_TIMEOUT_S") ? atol(getenv("RAWSYNC_TIMEOUT_S"))
                     : 120) * 1000000000LL;
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    for (long i = 0; i < nsess; i++) {
        zh[i] = zookeeper_init(argv[1], session_watcher,
                               getenv("SESSION_TIMEOUT_MS")
                               ? atoi(getenv("SESSION_TIMEOUT_MS")) : 10000,
                               NULL, (void *) i, 0);
        if (zh[i] == NULL)
            return 1;
        zoo_set_servers_resolution_delay(zh[i], -1);
    }
    for (;;) {
        int all = 1;
        for (int i = 0; i < nsess; i++)
            all &= connected[i];
        if (all)
            break;
        if (zkpoll_now_ns() > deadline)
            return 1;
        turn(50);
    }
    t1 = zkpoll_now_ns();
    paths = calloc((size_t) nsvc, sizeof(*paths));
    est = calloc((size_t) nsvc, sizeof(*est));
    for (long i = 0; !failed && (i < nsvc || children_done < nsvc
                                 || data_pending > 0);) {
        /* each session gets lists while its window has room */
        for (; i < nsvc && inflight[i % nsess] + last_count <= WINDOW / nsess;
             i++) {
            char p[256];
            snprintf(p, sizeof(p), "%s/svc-%05ld", prefix, i);
            paths[i] = strdup(p);       /* lives as the completion's data */
            if (zoo_awget_children2(zh[i % nsess], paths[i], nop_watcher, NULL,
                                    children_cb, paths[i]) != ZOK)
                return 1;
            est[i] = last_count;
            inflight[i % nsess] += last_count;
        }
        if (zkpoll_now_ns() > deadline) {
            fprintf(stderr, "rawsync: not done in time\n");
            return 1;
        }
        turn(50);
    }
    if (failed)
        return 1;
    if (parse && parsed != data_done) {
        fprintf(stderr, "rawsync: %ld of %ld data parsed as JSON with a host and a port\n",
                parsed, data_done);
        return 1;
    }
    if ((f = fopen("/proc/self/status", "r")) != NULL) {
        while (fgets(line, sizeof(line), f))
            if (strncmp(line, "VmHWM:", 6) == 0)
                hwm = atol(line + 6);
        fclose(f);
    }
    printf("done %lld %lld %ld %ld %ld %ld\n", (long long) (zkpoll_now_ns() - t0),
           (long long) (zkpoll_now_ns() - t1), children_done, data_done,
           data_bytes, hwm);
    fflush(stdout);
    for (int i = 0; i < nsess; i++)
        zookeeper_close(zh[i]);
    for (long i = 0; i < nsvc; i++)
        free(paths[i]);
    free(paths);
    return 0;
}
