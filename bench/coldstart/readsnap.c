/*
 * readsnap.c -- the floor under serving a cold start early: a process that
 * does nothing but read and validate the disk snapshot (the agent's own
 * reader), then prints its CPU from exec to there.  Serving the snapshot
 * before the policy is loaded could not cost less than this (plus encoding
 * the first answer); run.sh prints it beside the agent's start so that the
 * design is judged on measured numbers (docs/performance/coldstart.md).  With
 * -c it only maps the file and checks its XXH64, what a lazy reader (index
 * first, decode a service when it is asked for) would have to do at least.
 *
 * usage: readsnap [-c] SNAPSHOT_FILE -> "readsnap: ..., CPU X ms"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "scout.h"
#include "heap.h"
#include "publish/snapshot.h"

static double
cpu_ms(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3
           + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* the file mapped (populated in one call) and its body's checksum: nothing
 * decoded, nothing copied */
static int
check_only(const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    const unsigned char *b;
    unsigned long long sum = 0;

    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 32
        || (b = mmap(NULL, (size_t)st.st_size, PROT_READ,
                     MAP_PRIVATE | MAP_POPULATE, fd, 0)) == MAP_FAILED) {
        fprintf(stderr, "readsnap: cannot map %s\n", path);
        return 1;
    }
    memcpy(&sum, b + 24, 8);        /* little-endian, as the header is */
    if (XXH64(b + 32, (size_t)st.st_size - 32, 0) != sum) {
        fprintf(stderr, "readsnap: %s: checksum mismatch\n", path);
        return 1;
    }
    printf("readsnap: %lld bytes checked, CPU %.1f ms\n",
           (long long)st.st_size, cpu_ms());
    return 0;                       /* the process ends here */
}

int
main(int argc, char **argv)
{
    char err[SCOUT_ERR_LEN];
    scout_snapshot_t *s;

    if (argc == 3 && strcmp(argv[1], "-c") == 0)
        return check_only(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: readsnap [-c] SNAPSHOT_FILE\n");
        return 2;
    }
    scout_heap_populate_start(SCOUT_HEAP_STEP);     /* as the agent starts */
    if ((s = scout_snapshot_read(argv[1], err)) == NULL) {
        fprintf(stderr, "readsnap: %s\n", err);
        return 1;
    }
    printf("readsnap: %d services, CPU %.1f ms\n", scout_snapshot_count(s),
           cpu_ms());
    /* not freed: the process ends here, as an early server would go on */
    return 0;
}
