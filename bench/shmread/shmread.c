/*
 * shmread.c -- what a full read of a shared-memory snapshot costs a reader:
 * scout_shm_reader_copy() (copy, checksum(s), validate) of the whole body,
 * ROUNDS times, through the libscout.so named on the command line (dlopen),
 * so that one binary measures an old library against a new one on the same
 * file.  Prints the best and the median per read of the thread's CPU time.
 *
 * Why: format version 2 checks the body in 64 KB chunks against a table
 * instead of in one XXH3-64 call; the reader must not get much slower for
 * it (bench/shmread/run.sh prints the ratios, docs/performance/scale.md).
 *
 * usage: shmread LIBSCOUT.so SNAPSHOT_FILE [ROUNDS]
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct scout_shm_reader_s scout_shm_reader_t;

static double
cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    scout_shm_reader_t *(*open_r)(const char *, char *);
    int (*copy)(scout_shm_reader_t *, void *, size_t, size_t *, char *);
    char err[256] = "";
    int rounds = argc > 3 ? atoi(argv[3]) : 50;
    double *t;
    size_t len = 0, cap;
    void *lib, *buf;
    scout_shm_reader_t *r;

    if (argc < 3 || rounds < 1) {
        fprintf(stderr, "usage: %s LIBSCOUT.so SNAPSHOT_FILE [ROUNDS]\n",
                argv[0]);
        return 2;
    }
    if ((lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) == NULL) {
        fprintf(stderr, "shmread: %s\n", dlerror());
        return 1;
    }
    open_r = (scout_shm_reader_t *(*)(const char *, char *))
             dlsym(lib, "scout_shm_reader_open");
    copy = (int (*)(scout_shm_reader_t *, void *, size_t, size_t *, char *))
           dlsym(lib, "scout_shm_reader_copy");
    if (open_r == NULL || copy == NULL || (r = open_r(argv[2], err)) == NULL) {
        fprintf(stderr, "shmread: %s\n", err[0] ? err : "no reader symbols");
        return 1;
    }
    /* the size, then a buffer it fits (and one untimed read: page faults) */
    copy(r, NULL, 0, &len, err);
    cap = (len + 4096 + 7) & ~(size_t)7;
    buf = aligned_alloc(8, cap);
    t = calloc((size_t)rounds, sizeof(*t));
    if (buf == NULL || t == NULL || copy(r, buf, cap, &len, err) != 0) {
        fprintf(stderr, "shmread: %s\n", err);
        return 1;
    }
    for (int i = 0; i < rounds; i++) {
        double t0 = cpu_us();

        if (copy(r, buf, cap, &len, err) != 0) {
            fprintf(stderr, "shmread: %s\n", err);
            return 1;
        }
        t[i] = cpu_us() - t0;
    }
    qsort(t, (size_t)rounds, sizeof(*t), by_value);
    printf("%zu bytes, %d reads: best %.0f us, median %.0f us\n", len, rounds,
           t[0], t[rounds / 2]);
    return 0;
}
