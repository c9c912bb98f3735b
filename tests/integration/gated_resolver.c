/*
 * gated_resolver.c -- an LD_PRELOAD getaddrinfo() for test_resolve.py: a name
 * ending in ".gated.test" blocks until the file $SCOUT_TEST_GATE exists (the
 * way a dead DNS server blocks), then resolves to 127.0.0.1.  While blocked,
 * $SCOUT_TEST_GATE.waiting exists, so the test knows a lookup is stuck.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *,
                      struct addrinfo **);

int
getaddrinfo(const char *node, const char *service,
            const struct addrinfo *hints, struct addrinfo **res)
{
    static gai_fn real;
    const char *gate = getenv("SCOUT_TEST_GATE");
    size_t n = node ? strlen(node) : 0;

    if (real == NULL)
        real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (gate != NULL && n > 11 && strcmp(node + n - 11, ".gated.test") == 0) {
        char waiting[4096];

        snprintf(waiting, sizeof(waiting), "%s.waiting", gate);
        while (access(gate, F_OK) != 0) {
            int fd = open(waiting, O_WRONLY | O_CREAT, 0644);
            if (fd >= 0)
                close(fd);
            usleep(10000);
        }
        unlink(waiting);
        node = "127.0.0.1";
    }
    return real(node, service, hints, res);
}
