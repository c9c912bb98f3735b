/*
 * readsnap.c -- the floor under serving a cold start early: a process that
 * does nothing but read and validate the disk snapshot (the agent's own
 * reader), then prints its CPU from exec to there.  Serving the snapshot
 * before the policy is loaded could not cost less than this (plus encoding
 * the first answer); run.sh prints it beside the agent's start so that the
 * design is judged on measured numbers (README "### Cold start").
 *
 * usage: readsnap SNAPSHOT_FILE -> "readsnap: N services, CPU X ms"
 */
#include <stdio.h>
#include <sys/resource.h>

#include "scout.h"
#include "heap.h"
#include "publish/snapshot.h"

int
main(int argc, char **argv)
{
    char err[SCOUT_ERR_LEN];
    scout_snapshot_t *s;
    struct rusage ru;

    if (argc != 2) {
        fprintf(stderr, "usage: readsnap SNAPSHOT_FILE\n");
        return 2;
    }
    scout_heap_populate_start(SCOUT_HEAP_STEP);     /* as the agent starts */
    if ((s = scout_snapshot_read(argv[1], err)) == NULL) {
        fprintf(stderr, "readsnap: %s\n", err);
        return 1;
    }
    getrusage(RUSAGE_SELF, &ru);
    printf("readsnap: %d services, CPU %.1f ms\n", scout_snapshot_count(s),
           (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3
           + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
    /* not freed: the process ends here, as an early server would go on */
    return 0;
}
