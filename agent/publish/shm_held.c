/*
 * shm_held.c -- what each slot of the shared-memory file was last written
 * from (see shm.c): the slices it holds, where each one's runs start in
 * the body, and the totals.  A publish that keeps every service's size
 * rewrites only the changed services in place (shm.c, patch()); with the
 * offsets and totals kept here it also reads only the changed slices, not
 * every one of 10,000 (a cache miss each: 0.4 ms a generation, more than
 * the copy and the checksums of a change).
 *
 * What this module must never do: vouch for a slot it did not see written
 * (the offsets and totals are of the very slices held, or not known), or
 * let an unchecked pair of names through (a changed slice is checked
 * against both neighbours).
 */
#include "publish/shm_int.h"

#include <stdlib.h>
#include <string.h>

void
scout_shm_held_drop(scout_shm_held_t *h)
{
    for (int i = 0; h->slices != NULL && i < h->n; i++)
        scout_shm_slice_unref(h->slices[i]);
    free(h->slices);
    free(h->at);
    h->slices = NULL;
    h->at = NULL;
    h->n = 0;
}

/* Where each of h's slices starts in the body, and the totals (every
 * slice read once: after a body was assembled, which read them anyway).
 * Out of memory: not known, and the next publish into the slot assembles. */
static void
hold_offsets(scout_shm_held_t *h)
{
    uint64_t ep = 0, meta = 0, str = 0;

    if (h->at == NULL
        && (h->at = malloc((size_t)(h->n ? h->n : 1) * sizeof(*h->at)))
           == NULL)
        return;
    for (int i = 0; i < h->n; i++) {
        h->at[i].ep = (uint32_t)ep;
        h->at[i].meta = (uint32_t)meta;
        h->at[i].str = (uint32_t)str;
        ep += h->slices[i]->neps;
        meta += h->slices[i]->nmeta;
        str += h->slices[i]->nstr;
    }
    h->nendpoints = ep;
    h->nmeta = meta;
    h->strings = str;
}

/* The slot now holds slices: a reference to each that is new to it (out of
 * memory: the slot is not known, and the next publish into it assembles).
 * patched: written by patch(), every size and so every offset kept. */
void
scout_shm_hold(scout_shm_held_t *h, scout_shm_slice_t *const *slices, int n,
     int patched)
{
    if (h->slices == NULL || h->n != n) {
        scout_shm_held_drop(h);
        if ((h->slices = malloc((size_t)(n ? n : 1) * sizeof(*h->slices)))
            == NULL)
            return;
        h->n = n;
        for (int i = 0; i < n; i++)
            h->slices[i] = scout_shm_slice_ref(slices[i]);
        hold_offsets(h);
        return;
    }
    for (int i = 0; i < n; i++)
        if (h->slices[i] != slices[i]) {
            scout_shm_slice_unref(h->slices[i]);
            h->slices[i] = scout_shm_slice_ref(slices[i]);
        }
    if (!patched)
        hold_offsets(h);
}

/* The totals of slices, in name order without duplicates, read from the
 * slot the next publish writes when it holds the same services at the
 * same sizes: then only the slices that changed are read (their sizes,
 * their names against their neighbours'), the unchanged pairs having been
 * checked when the slot was written.  0: not so (the caller checks and
 * sums them all). */
int
scout_shm_kept_sizes(const scout_shm_t *shm, scout_shm_slice_t *const *slices, int n,
           sizes_t *z)
{
    const scout_shm_held_t *h = &shm->held[(shm->gen + 1) & 1];

    if (h->slices == NULL || h->n != n || h->at == NULL)
        return 0;
    for (int i = 0; i < n; i++) {
        const scout_shm_slice_t *was = h->slices[i], *sl = slices[i];

        if (was == sl)
            continue;
        if (was->neps != sl->neps || was->nmeta != sl->nmeta
            || was->nstr != sl->nstr
            || (i > 0 && strcmp(slices[i - 1]->name, sl->name) >= 0)
            || (i + 1 < n && slices[i + 1] == h->slices[i + 1]
                && strcmp(sl->name, slices[i + 1]->name) >= 0))
            return 0;
    }
    memset(z, 0, sizeof(*z));
    z->nendpoints = h->nendpoints;
    z->nmeta = h->nmeta;
    z->strings = h->strings;
    return 1;
}
