/*
 * reload_guard.c -- the share of the running agent a reload may drop (see
 * reload_guard.h).  Names are matched through a sorted copy of the new
 * policy's: O(n log n) at 10,000 services, never O(n^2).
 */
#include "policy/reload_guard.h"

#include <stdlib.h>
#include <string.h>

#include "scout.h"

static int
by_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

int
scout_reload_guard_check(const scout_conf_t *running,
                         const scout_conf_t *next, const char *file,
                         char *err)
{
    const char **names = NULL;
    int dsvc = 0, dreg = 0;
    int total = running->nservices + running->nregisters;
    double share;

    if (total == 0)
        return SCOUT_OK;
    if (next->nservices > 0
        && (names = malloc((size_t)next->nservices * sizeof(*names)))
           == NULL)
        return scout_seterr(err, "out of memory");
    for (int i = 0; i < next->nservices; i++)
        names[i] = next->services[i].name;
    qsort(names, (size_t)next->nservices, sizeof(*names), by_str);
    for (int j = 0; j < running->nservices; j++) {
        const char *n = running->services[j].name;
        if (names == NULL || bsearch(&n, names, (size_t)next->nservices,
                                     sizeof(*names), by_str) == NULL)
            dsvc++;
    }
    free(names);
    for (int j = 0; j < running->nregisters; j++) {
        int found = 0;
        for (int i = 0; !found && i < next->nregisters; i++)
            found = strcmp(running->registers[j].name,
                           next->registers[i].name) == 0;
        dreg += !found;
    }
    share = (double)(dsvc + dreg) / total;
    if (share <= next->reload_max_drop)
        return SCOUT_OK;
    return scout_seterr(err, "%s would drop %d of %d services and %d of %d "
                        "registrations (%.0f%%, over agent.reload_max_drop = "
                        "%g)%s; to drop them on purpose, set agent { "
                        "reload_max_drop = 1 } in the new policy", file,
                        dsvc, running->nservices, dreg, running->nregisters,
                        share * 100, next->reload_max_drop,
                        next->nservices + next->nregisters == 0
                        ? " -- is the file empty or truncated?" : "");
}
