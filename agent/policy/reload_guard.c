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
    int dropped = 0;
    double share;

    /* nothing at all where something ran: an empty or truncated file */
    if (next->nservices + next->nregisters == 0
        && running->nservices + running->nregisters > 0
        && next->reload_max_drop < 1)
        return scout_seterr(err, "%s defines no service and no registration "
                            "(empty or truncated?) and would drop %d services "
                            "and %d registrations; to do so on purpose, set "
                            "agent { reload_max_drop = 1 } in it", file,
                            running->nservices, running->nregisters);
    if (running->nservices == 0)
        return SCOUT_OK;
    if (next->nservices > 0
        && (names = malloc((size_t)next->nservices * sizeof(*names)))
           == NULL)
        return scout_seterr(err, "out of memory");
    for (int i = 0; i < next->nservices; i++)
        names[i] = next->services[i].name;
    if (names != NULL)
        qsort(names, (size_t)next->nservices, sizeof(*names), by_str);
    for (int j = 0; j < running->nservices; j++) {
        const char *n = running->services[j].name;
        if (names == NULL || bsearch(&n, names, (size_t)next->nservices,
                                     sizeof(*names), by_str) == NULL)
            dropped++;
    }
    free(names);
    share = (double)dropped / running->nservices;
    if (share <= next->reload_max_drop)
        return SCOUT_OK;
    return scout_seterr(err, "%s would drop %d of %d services (%.0f%%, over "
                        "agent.reload_max_drop = %g); to drop them on "
                        "purpose, set agent { reload_max_drop = 1 } in the "
                        "new policy", file, dropped, running->nservices,
                        share * 100, next->reload_max_drop);
}
