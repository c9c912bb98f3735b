/*
 * writer — the benchmark's single writer, in C so that the time between the
 * timestamp and the bytes leaving is short and steady (a kazoo writer adds a
 * thread hand-off that would be charged to every observer alike and flatten
 * the ratios).
 *
 * Reads commands on stdin, one per line: "c PATH" (create, persistent, empty)
 * or "d PATH" (delete). Takes CLOCK_MONOTONIC just before zoo_acreate /
 * zoo_adelete (which send synchronously in the ST client) and prints
 * "<ns> <rc>" when the reply arrives. Commands are answered in order.
 *
 *   writer HOSTS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "zkpoll.h"

static int connected, dead;

typedef struct { int64_t t0; } op_t;

static void
done(int rc, op_t *op)
{
    printf("%lld %d\n", (long long) op->t0, rc);
    fflush(stdout);
    free(op);
}

static void str_cb(int rc, const char *v, const void *d) { (void) v; done(rc, (op_t *) d); }
static void void_cb(int rc, const void *d) { done(rc, (op_t *) d); }

static void
session_watch(zhandle_t *zh, int type, int state, const char *p, void *ctx)
{
    (void) zh; (void) p; (void) ctx;
    if (type != ZOO_SESSION_EVENT)
        return;
    if (state == ZOO_CONNECTED_STATE)
        connected = 1;
    else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE)
        dead = 1;
}

static void
command(zhandle_t *zh, char *line)
{
    op_t *op = malloc(sizeof(*op));
    int rc;

    op->t0 = zkpoll_now_ns();
    if (line[0] == 'c' && line[1] == ' ')
        rc = zoo_acreate(zh, line + 2, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, str_cb, op);
    else if (line[0] == 'd' && line[1] == ' ')
        rc = zoo_adelete(zh, line + 2, -1, void_cb, op);
    else
        rc = ZBADARGUMENTS;
    if (rc != ZOK)
        done(rc, op);
}

int
main(int argc, char **argv)
{
    static char buf[1 << 16];
    size_t len = 0;
    zhandle_t *zh;
    ssize_t r;
    char *nl;
    int eof = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: writer HOSTS\n");
        return 2;
    }
    zh = zkpoll_connect(argv[1], 10000, session_watch, NULL);
    if (!zh) {
        perror("writer: zookeeper_init");
        return 1;
    }
    while (!connected && !dead)
        if (zkpoll_once(zh, -1) < 0)
            dead = 1;
    printf("ready\n");
    fflush(stdout);
    while (!dead && !eof) {
        r = zkpoll_once(zh, 0);
        if (r < 0)
            break;
        if (r == 0)
            continue;
        r = read(0, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0) {
            eof = 1;
            break;
        }
        len += (size_t) r;
        while ((nl = memchr(buf, '\n', len)) != NULL) {
            *nl = '\0';
            command(zh, buf);
            len -= (size_t) (nl + 1 - buf);
            memmove(buf, nl + 1, len);
        }
    }
    zookeeper_close(zh);
    return dead ? 1 : 0;
}
