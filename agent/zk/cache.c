/*
 * cache.c -- the children table of one watched path and its ordering gates.
 *
 * Children are an array sorted by name and binary-searched (cache.h says
 * why: one 8-byte slot a child instead of a hash handle and buckets, at
 * 100k watched znodes); lists of dirty and pending children are intrusive
 * so that an event costs O(1) and a child list costs O(children + new log
 * new) (O(listed log children) for a small service, without sorting the
 * list: search_new; O(listed) when the names keep the last list's order,
 * as ZooKeeper's do), never O(children^2).
 */
#define _GNU_SOURCE             /* qsort_r */
#include "zk/cache.h"

#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"

void
scout_cache_init(scout_cache_t *c)
{
    memset(c, 0, sizeof(*c));
}

/* A child's data: its length before its bytes, in the one allocation
 * child->data points into (held only until the policy accepts it, so the
 * 4 bytes are not in the child, which every watched znode has). */
typedef struct {
    uint32_t len;
    char     bytes[];
} child_data_t;

static void
data_free(scout_child_t *child)
{
    if (child->data != NULL)
        free(child->data - offsetof(child_data_t, bytes));
    child->data = NULL;
}

size_t
scout_cache_data_len(const scout_child_t *child)
{
    if (child->data == NULL)
        return 0;
    return ((const child_data_t *)(const void *)
            (child->data - offsetof(child_data_t, bytes)))->len;
}

static void
child_free(scout_child_t *child)
{
    data_free(child);
    free(child);
}

void
scout_cache_free(scout_cache_t *c)
{
    for (unsigned i = 0; i < c->nkids; i++)
        child_free(c->kids[i]);
    free(c->kids);
    for (unsigned i = 0; i < c->nremoved; i++)
        free(c->removed[i]);
    free(c->removed);
    free(c->listed);
    memset(c, 0, sizeof(*c));
}

unsigned
scout_cache_seek(const scout_cache_t *c, const char *name)
{
    unsigned lo = 0, hi = c->nkids;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;

        if (strcmp(c->kids[mid]->name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

scout_child_t *
scout_cache_find(scout_cache_t *c, const char *name)
{
    unsigned i = scout_cache_seek(c, name);

    /* a tombstone and a live child never share a name: a child list (the
     * only way in) compacts the tombstones away */
    if (i < c->nkids && !c->kids[i]->gone
        && strcmp(c->kids[i]->name, name) == 0)
        return c->kids[i];
    return NULL;
}

scout_child_t *
scout_cache_next(const scout_cache_t *c, unsigned *at)
{
    while (*at < c->nkids) {
        scout_child_t *child = c->kids[(*at)++];

        if (!child->gone)
            return child;
    }
    return NULL;
}

/* Free the tombstones and close the gaps; give back what the array no
 * longer needs. */
static void
compact_to(scout_cache_t *c, uint32_t *remap)
{
    unsigned j = 0;

    for (unsigned i = 0; i < c->nkids; i++) {
        if (c->kids[i]->gone) {
            child_free(c->kids[i]);
            if (remap != NULL)
                remap[i] = UINT32_MAX;
        } else {
            if (remap != NULL)
                remap[i] = j;
            c->kids[j++] = c->kids[i];
        }
    }
    c->nkids = j;
    c->ngone = 0;
    if (j == 0) {
        free(c->kids);
        c->kids = NULL;
    } else {
        scout_child_t **k = realloc(c->kids, j * sizeof(*k));

        if (k != NULL)
            c->kids = k;    /* else the bigger block stays: still valid */
    }
}

static void
compact(scout_cache_t *c)
{
    compact_to(c, NULL);
}

static void
list_unlink(scout_child_t **head, scout_child_t *child, size_t next_off)
{
    scout_child_t **pp = head;

    while (*pp != NULL) {
        scout_child_t **next = (scout_child_t **)((char *)*pp + next_off);
        if (*pp == child) {
            *pp = *next;
            *next = NULL;
            return;
        }
        pp = next;
    }
}

static void
make_pending(scout_cache_t *c, scout_child_t *child)
{
    if (child->pending)
        return;
    child->pending = 1;
    child->next_pending = c->pending;
    c->pending = child;
}

void
scout_cache_mark_dirty(scout_cache_t *c, scout_child_t *child)
{
    if (child->data_dirty)
        return;
    child->data_dirty = 1;
    child->next_dirty = c->dirty;
    c->dirty = child;
}

void
scout_cache_mark_all_dirty(scout_cache_t *c)
{
    scout_child_t *child;

    for (unsigned at = 0; (child = scout_cache_next(c, &at)) != NULL;) {
        if (child->needs_data)
            scout_cache_mark_dirty(c, child);
    }
}

static int
remember_removed(scout_cache_t *c, const char *name)
{
    if (c->nremoved == c->removed_cap) {
        unsigned cap = c->removed_cap ? c->removed_cap * 2 : 16;
        char **r = realloc(c->removed, cap * sizeof(*r));
        if (r == NULL)
            return SCOUT_ERROR;
        c->removed = r;
        c->removed_cap = cap;
    }
    c->removed[c->nremoved] = strdup(name);
    if (c->removed[c->nremoved] == NULL)
        return SCOUT_ERROR;
    c->nremoved++;
    return SCOUT_OK;
}

/* Take a child out of every list and count; it stays in the array, gone,
 * until the next compaction (its name keeps the array sorted). */
static void
unlink_child(scout_cache_t *c, scout_child_t *child)
{
    if (child->announced)
        remember_removed(c, child->name);
    if (child->pending)
        list_unlink(&c->pending, child,
                    offsetof(scout_child_t, next_pending));
    if (child->data_dirty)
        list_unlink(&c->dirty, child, offsetof(scout_child_t, next_dirty));
    if (child->refetch)
        c->refetching--;
    c->count--;
    if (child->needs_data) {
        c->data_children--;
        c->data_name_bytes -= strlen(child->name);
    }
    /* a deleted child's data watch fired (or fires) and leaves the client */
    if (child->slotted && c->slot_bytes != NULL) {
        size_t bytes = c->slot_base + strlen(child->name);

        c->slot_bytes[child->slot] -= bytes;
        *c->slot_total[child->slot] -= bytes;
    }
    data_free(child);
    child->gone = 1;
    c->ngone++;
}

/* A new child, once its codec has said whether its data is read. */
static void
place_new(scout_cache_t *c, scout_child_t *child, int needs_data)
{
    child->needs_data = needs_data ? 1 : 0;
    if (child->needs_data) {
        c->data_children++;
        c->data_name_bytes += strlen(child->name);
        scout_cache_mark_dirty(c, child);
    }
    else
        make_pending(c, child);
}

/* The codec is asked once for every new child of a list. */
static void
ask_needs_data(scout_cache_t *c, scout_child_t **fresh, unsigned n,
               scout_cache_needs_data_fn needs_data, void *ud)
{
    const char **names, *names_few[8];
    unsigned char *need, need_few[8];

    if (n == 0)
        return;
    /* a change's one or few new names: their scratch on the stack */
    names = n <= 8 ? names_few : malloc(n * (sizeof(*names) + 1));
    if (names == NULL) {
        for (unsigned k = 0; k < n; k++)
            place_new(c, fresh[k], 1);
        return;
    }
    need = n <= 8 ? need_few : (unsigned char *)(names + n);
    for (unsigned k = 0; k < n; k++)
        names[k] = fresh[k]->name;
    needs_data(ud, names, n, need);
    for (unsigned k = 0; k < n; k++)
        place_new(c, fresh[k], need[k]);
    if (names != names_few)
        free(names);
}

void
scout_cache_remove(scout_cache_t *c, scout_child_t *child)
{
    unlink_child(c, child);
    if (c->ngone > c->nkids / 2)
        compact(c);
}

static int
child_cmp(const void *a, const void *b)
{
    return strcmp((*(scout_child_t *const *)a)->name,
                  (*(scout_child_t *const *)b)->name);
}

/* Up to this many new names in one list (and no tombstones), each is put in
 * its place by a binary search instead of a walk of the whole array. */
unsigned scout_cache_insert_max = 8;
unsigned long scout_cache_inserts;

/* The array again, sorted, from the live children held and the new ones
 * (sorted): one pass, tombstones freed; remap (when given) gets each held
 * child's new position (UINT32_MAX: freed).  SCOUT_ERROR (nothing changed)
 * when the new array cannot be had. */
static int
merge(scout_cache_t *c, scout_child_t **fresh, unsigned nfresh,
      uint32_t *remap)
{
    unsigned n = c->nkids - c->ngone + nfresh, i = 0, j = 0, k = 0;
    scout_child_t **kids = n ? malloc(n * sizeof(*kids)) : NULL;

    if (n > 0 && kids == NULL)
        return SCOUT_ERROR;
    if (c->ngone == 0 && nfresh <= scout_cache_insert_max) {
        /* no tombstones, a few new names: each one's place found by a
         * search, the held children copied around them in runs (a create
         * under a 50-child service compared every name: 50 strcmp) */
        scout_cache_inserts++;
        for (; j <= nfresh; j++) {
            unsigned at = j < nfresh ? scout_cache_seek(c, fresh[j]->name)
                                     : c->nkids;

            if (at > i)
                memcpy(kids + i + j, c->kids + i, (at - i) * sizeof(*kids));
            for (; remap != NULL && i < at; i++)
                remap[i] = i + j;
            i = at;
            if (j < nfresh)
                kids[at + j] = fresh[j];
        }
        k = n;
    }
    while (i < c->nkids || j < nfresh) {
        scout_child_t *a = i < c->nkids ? c->kids[i] : NULL;
        scout_child_t *b = j < nfresh ? fresh[j] : NULL;

        if (a != NULL && a->gone) {
            child_free(a);
            if (remap != NULL)
                remap[i] = UINT32_MAX;
            i++;
        } else if (b == NULL || (a != NULL && strcmp(a->name, b->name) < 0)) {
            if (remap != NULL)
                remap[i] = k;
            kids[k++] = a;
            i++;
        } else {
            kids[k++] = b;
            j++;
        }
    }
    free(c->kids);
    c->kids = kids;
    c->nkids = k;
    c->ngone = 0;
    return SCOUT_OK;
}

/* qsort_r context: the list's names, sorted through an index array. */
static int
name_idx_cmp(const void *a, const void *b, void *names)
{
    char **v = names;

    return strcmp(v[*(const int32_t *)a], v[*(const int32_t *)b]);
}

/* Up to this many children held, a list is matched by a binary search per
 * name (search_new below); past it, by one sorted walk (walk_new).  Tests set
 * it to run both on the same lists. */
unsigned scout_cache_search_max = 1024;

/* The list is matched against the array in one sorted walk, not a binary
 * search per name: at 100,000 children each search's ~17 probes were each a
 * cache miss on a child, three times uthash's cost; the walk touches each
 * child once.  Sets isnew[i] for the names not held, and seen[j] for the
 * children listed.  order: n slots. */
static void
walk_new(scout_cache_t *c, const struct String_vector *names, int32_t n,
         int32_t *order, unsigned char *isnew, unsigned char *seen)
{
    scout_child_t *child;
    unsigned at = 0;

    for (int32_t i = 0; i < n; i++)
        order[i] = i;
    if (n > 1)
        qsort_r(order, (size_t)n, sizeof(*order), name_idx_cmp,
                names->data);
    child = scout_cache_next(c, &at);
    for (int32_t k = 0; k < n; k++) {
        const char *name = names->data[order[k]];
        int cmp = 1;

        if (k > 0 && strcmp(name, names->data[order[k - 1]]) == 0)
            continue;           /* twice in one list (ZooKeeper never) */
        while (child != NULL && (cmp = strcmp(child->name, name)) < 0)
            child = scout_cache_next(c, &at);
        if (child != NULL && cmp == 0) {
            seen[at - 1] = 1;
            child = scout_cache_next(c, &at);
        } else {
            isnew[order[k]] = 1;
        }
    }
}

unsigned long scout_cache_listed_hits;

/* A position the last list could not give (a name new in it). */
#define LISTED_UNKNOWN UINT16_MAX

/* Where the last list had the name at *k (or, that one gone, at *k + 1):
 * its position, *k moved past it; UINT_MAX when not there.  ZooKeeper lists
 * a node's children in its HashSet's order, which a create or a delete
 * leaves alone for every other name: a change of a 50-child service finds
 * 49 names with one comparison each.  A position is only a guess (the
 * array may have moved since, a remove's compaction): the name there is
 * compared, and a live child is the only one with its name. */
static unsigned
listed_at(const scout_cache_t *c, unsigned *k, const char *name)
{
    for (unsigned d = 0; d < 2 && *k + d < c->nlisted; d++) {
        unsigned j = c->listed[*k + d];

        if (j < c->nkids && !c->kids[j]->gone
            && strcmp(c->kids[j]->name, name) == 0) {
            *k += d + 1;
            scout_cache_listed_hits++;
            return j;
        }
    }
    return UINT_MAX;
}

/* A name found by the search, not where expected: if the last list had it
 * a little further on (names gone from this list before it), the names
 * after it are looked for after it again (positions compared, not names). */
static void
listed_resync(const scout_cache_t *c, unsigned *k, unsigned j)
{
    for (unsigned d = 0; d < 8 && *k + d < c->nlisted; d++) {
        if (c->listed[*k + d] == j) {
            *k += d + 1;
            return;
        }
    }
}

/* The same by a binary search per name, for a service of up to
 * scout_cache_search_max children, whose array stays in the CPU's caches:
 * no sort of the whole list at every change (a change of a 50-child
 * service spent 13k instructions in qsort_r, a tenth of the agent's).  Only
 * the new names are sorted, to find one listed twice (the first in the
 * list's order is the new child, as in walk_new).  A name where the last
 * list had it is taken from there (listed_at: 366 comparisons a change of
 * 50 children became ~55); listed gets each name's position, for the next
 * list.  Returns how many names were not found (0: nothing new). */
static int32_t
search_new(scout_cache_t *c, const struct String_vector *names, int32_t n,
           int32_t *order, unsigned char *isnew, unsigned char *seen,
           uint16_t *listed)
{
    int32_t nnew = 0;
    unsigned k = 0;

    for (int32_t i = 0; i < n; i++) {
        const char *name = names->data[i];
        unsigned j = listed_at(c, &k, name);

        if (j == UINT_MAX) {
            j = scout_cache_seek(c, name);
            if (j >= c->nkids || c->kids[j]->gone
                || strcmp(c->kids[j]->name, name) != 0)
                j = UINT_MAX;
            else
                listed_resync(c, &k, j);
        }
        if (j != UINT_MAX) {
            seen[j] = 1;
            listed[i] = j;
        } else {
            order[nnew++] = i;
            listed[i] = LISTED_UNKNOWN; /* its place is known next time */
        }
    }
    if (nnew > 1)
        qsort_r(order, (size_t)nnew, sizeof(*order), name_idx_cmp,
                names->data);
    for (int32_t k = 0, e; k < nnew; k = e) {
        int32_t first = order[k];

        for (e = k + 1; e < nnew && strcmp(names->data[order[e]],
                                           names->data[order[k]]) == 0; e++)
            if (order[e] < first)
                first = order[e];   /* twice in one list (ZooKeeper never) */
        isnew[first] = 1;
    }
    return nnew;
}

/* Lists and arrays up to this many have their scratch on the stack. */
#define FEW 256

int
scout_cache_apply_children(scout_cache_t *c,
                           const struct String_vector *names,
                           const struct Stat *stat,
                           scout_cache_needs_data_fn needs_data, void *ud,
                           unsigned *changed)
{
    scout_child_t *child, **fresh = NULL;
    int32_t *order = NULL, n = names->count > 0 ? names->count : 0;
    unsigned char *isnew = NULL, *seen = NULL;
    uint16_t *listed = NULL;
    uint32_t *remap = NULL, remap_few[FEW];
    int32_t order_few[FEW];
    unsigned char isnew_few[FEW], seen_few[FEW];
    unsigned nfresh = 0, nkids = c->nkids;
    int search = c->nkids <= scout_cache_search_max;
    int32_t nnew = n;           /* the walk does not count them */
    int moved = 0;
    size_t len;

    *changed = 0;
    if (c->have_list && stat->pzxid < c->pzxid)
        return SCOUT_AGAIN;
    /* a small service's: this list's positions (kept), and where the
     * array's children move when it is compacted or merged (remap).  The
     * scratch arrays of a list and an array of up to FEW are on the stack
     * (a change of a 50-child service made and freed three) */
    if (n > 0 && n <= FEW) {
        order = order_few;
        isnew = memset(isnew_few, 0, (size_t)n);
    }
    if (nkids > 0 && nkids <= FEW)
        seen = memset(seen_few, 0, nkids);
    if ((n > FEW && ((order = malloc((size_t)n * sizeof(*order))) == NULL
                     || (isnew = calloc((size_t)n, 1)) == NULL))
        || (nkids > FEW && (seen = calloc(nkids, 1)) == NULL)
        || (search && n > 0
            && (listed = malloc((size_t)n * sizeof(*listed))) == NULL)
        || (search && nkids > 0
            && (remap = nkids <= FEW ? remap_few
                                     : malloc(nkids * sizeof(*remap)))
               == NULL)) {
        if (order != order_few)
            free(order);
        if (isnew != isnew_few)
            free(isnew);
        if (seen != seen_few)
            free(seen);
        free(listed);
        return SCOUT_ERROR;     /* nothing taken: the next list brings it */
    }
    c->have_list = 1;
    c->pzxid = stat->pzxid;

    if (search)
        nnew = search_new(c, names, n, order, isnew, seen, listed);
    else
        walk_new(c, names, n, order, isnew, seen);
    /* a held child not listed is gone (in name order, as the removed names
     * are reported) */
    for (unsigned j = 0; j < c->nkids; j++) {
        if (!seen[j] && !c->kids[j]->gone) {
            unlink_child(c, c->kids[j]);
            (*changed)++;
        }
    }
    if (seen != seen_few)
        free(seen);
    /* (a list with no new name, as a delete's: the search knows, and no
     * pass over the list looks for them) */
    for (int32_t i = 0; nnew > 0 && i < n; i++) {
        const char *name = names->data[i];

        if (!isnew[i])
            continue;
        if (fresh == NULL
            && (fresh = malloc((size_t)n * sizeof(*fresh))) == NULL)
            break;              /* the next list will bring them back */
        len = strlen(name);
        if ((child = calloc(1, offsetof(scout_child_t, name) + len + 1))
            == NULL)
            continue;           /* the next list will bring it back */
        memcpy(child->name, name, len + 1);
        (*changed)++;
        /* Without a data read the best zxid we know is the listing's. */
        child->mzxid = stat->pzxid;
        fresh[nfresh++] = child;
        c->count++;
    }
    /* in the list's order, before they are sorted: their reads go out so */
    ask_needs_data(c, fresh, nfresh, needs_data, ud);
    if (order != order_few)
        free(order);
    if (isnew != isnew_few)
        free(isnew);
    if (nfresh > 1)
        qsort(fresh, nfresh, sizeof(*fresh), child_cmp);
    /* remap is filled whole by the compaction or the merge; when neither
     * runs (or the merge cannot), nothing moved and the positions stand */
    if (nfresh == 0) {
        if (c->ngone > 0) {
            compact_to(c, remap);   /* in place: no new array */
            moved = 1;
        }
    } else if (merge(c, fresh, nfresh, remap) == SCOUT_OK) {
        moved = 1;
    } else {
        /* no room for the new array: the new children wait for the next
         * list (its pzxid is not older: it is taken); the removed stay
         * tombstones */
        for (unsigned i = 0; i < nfresh; i++) {
            unlink_child(c, fresh[i]);
            c->ngone--;
            (*changed)--;
            child_free(fresh[i]);
        }
    }
    free(fresh);
    /* kept only for a list the next one searches: a big service's first
     * list (its array empty, so searched) would hold 2 bytes a child for
     * nothing; past the search's bound a position needs more than 16 bits */
    if (listed != NULL && (c->nkids > scout_cache_search_max
                           || c->nkids >= LISTED_UNKNOWN)) {
        free(listed);
        listed = NULL;
    }
    for (int32_t i = 0; moved && listed != NULL && remap != NULL && i < n; i++)
        if (listed[i] != LISTED_UNKNOWN)
            listed[i] = (uint16_t)remap[listed[i]];
    if (remap != remap_few)
        free(remap);
    free(c->listed);
    c->listed = listed;
    c->nlisted = listed != NULL ? (unsigned)n : 0;
    return SCOUT_OK;
}

void
scout_cache_apply_missing(scout_cache_t *c)
{
    scout_child_t *child;

    for (unsigned at = 0; (child = scout_cache_next(c, &at)) != NULL;)
        unlink_child(c, child);
    compact(c);
    c->have_list = 1;
}

int
scout_cache_apply_data(scout_cache_t *c, scout_child_t *child,
                       const char *data, int len, const struct Stat *stat)
{
    child_data_t *copy = NULL;

    /* An older incarnation of the name, or an older version of this one.
     * A refetch must bring bytes back: it is read again. */
    if ((child->czxid != 0 && stat->czxid < child->czxid)
        || (stat->czxid == child->czxid && stat->mzxid < child->mzxid)) {
        if (child->refetch)
            scout_cache_mark_dirty(c, child);
        return SCOUT_AGAIN;
    }
    if (len > 0) {
        copy = malloc(sizeof(*copy) + (size_t)len + 1);
        if (copy == NULL)
            return SCOUT_ERROR;
        copy->len = (uint32_t)len;
        memcpy(copy->bytes, data, (size_t)len);
        copy->bytes[len] = '\0';
    }
    data_free(child);
    child->data = copy != NULL ? copy->bytes : NULL;
    child->had_bytes = len > 0;
    child->has_data = 1;
    child->czxid = stat->czxid;
    if (stat->mzxid != child->mzxid)
        child->mzxid_announced = 0;
    child->mzxid = stat->mzxid;
    if (stat->mzxid > c->max_mzxid)
        c->max_mzxid = stat->mzxid;
    if (child->refetch) {
        child->refetch = 0;
        c->refetching--;
        make_pending(c, child);
    }
    if (!child->announced || !child->mzxid_announced)
        make_pending(c, child);
    return SCOUT_OK;
}

unsigned
scout_cache_mark_all_pending(scout_cache_t *c)
{
    scout_child_t *child;
    unsigned n = 0;

    for (unsigned at = 0; (child = scout_cache_next(c, &at)) != NULL;) {
        if (child->needs_data && child->has_data && child->data == NULL
            && child->had_bytes) {
            /* its bytes were let go at commit: read them again */
            if (!child->refetch) {
                child->refetch = 1;
                c->refetching++;
            }
            child->announced = 1;
            scout_cache_mark_dirty(c, child);
            n++;
        } else if (!child->needs_data || child->has_data) {
            child->announced = 1;   /* a later removal must be reported */
            make_pending(c, child);
        }
    }
    return n;
}

int
scout_cache_refetching(const scout_cache_t *c)
{
    return c->refetching > 0;
}

int
scout_cache_has_pending(const scout_cache_t *c)
{
    return c->pending != NULL || c->nremoved > 0;
}

void
scout_cache_delivered(scout_cache_t *c)
{
    for (scout_child_t *child = c->pending; child; child = child->next_pending)
        child->announced = 1;
}

void
scout_cache_commit(scout_cache_t *c)
{
    scout_child_t *child = c->pending, *next;

    for (; child != NULL; child = next) {
        next = child->next_pending;
        child->next_pending = NULL;
        child->pending = 0;
        child->announced = 1;
        child->mzxid_announced = 1;
        /* the policy holds what it decoded; had_bytes stays: it was read */
        if (!c->keep_data)
            data_free(child);
    }
    c->pending = NULL;
    for (unsigned i = 0; i < c->nremoved; i++)
        free(c->removed[i]);
    c->nremoved = 0;
}
