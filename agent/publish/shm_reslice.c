/*
 * shm_reslice.c -- a changed service's shm slice made from its last one:
 * the endpoints that did not change are copied from it, records and
 * strings, and only the changed ones are encoded (issue 14).
 *
 * Why: a change of one endpoint of a 50-endpoint service re-encoded all 50
 * (a strlen and a memcpy a string, every record written field by field),
 * ~17k instructions on the loop for one endpoint's news.  Now an endpoint
 * costs that only when it is new or differs; the others cost a comparison
 * and a copy of their bytes, in runs.
 *
 * How "unchanged" is decided: by content, never by address.  An endpoint
 * record is immutable, but it is owned by its set alone and freed the
 * moment it is replaced or removed, and a new endpoint may be allocated
 * where a freed one was (same address, other data: the id re-added with
 * another host, say).  Endpoints carry no reference count or serial that
 * would tell (a serial is 8 bytes an endpoint, and the endpoint is packed
 * into its 64 bytes, its set into the service's chunk:
 * docs/performance/memory.md).  So an endpoint is taken from the last slice only when every
 * field the slice encodes is equal: id (which also lines the two id-sorted
 * runs up), host, status, port, weight, zxid and every meta key and value.
 * Equal fields give equal bytes, so the slice is byte for byte the one
 * scout_shm_slice_new writes (test_shm_reslice drives random change
 * sequences through both and compares every byte).  A comparison is a
 * strcmp a string where the encode was a strlen and a memcpy, and the
 * records and strings go over in runs.
 *
 * Cheaper still when the ids that changed are known (scout_shm_slice_known,
 * the publisher's idlog.h, from the service): an id not named was neither
 * put nor deleted, so its endpoint is the very object the last slice
 * encoded, copied without a look; only the named ids are looked up (a
 * binary search each, in the set and in the last slice) and the runs
 * between them copied whole.  The ids are checked against the two runs
 * (their counts, the ids at each run's ends) and, when they do not line
 * up, every endpoint is compared as above.
 *
 * What this module must never do: copy an endpoint from the last slice
 * that differs in any byte from what a fresh encode would write, or write
 * endpoints in another order than a fresh encode (a set not in id order is
 * handed to scout_shm_slice_new, which sorts it).
 */
#include "publish/shm_int.h"

#include <stdlib.h>
#include <string.h>

#include "scout.h"
#include "stats.h"

#define S(s) ((s) != NULL ? (s) : "")

/* Endpoint ep equal, in everything a slice encodes of it, to the last
 * slice's record r (its strings at str, its meta records at meta), whose
 * id is already known equal.  strcmp equality is byte equality here: a
 * slice's strings are NUL-terminated and hold no NUL (each was measured
 * with strlen). */
static inline int
same_endpoint(const char *str, const scout_shm_meta_t *meta,
              const scout_shm_ep_t *r, const scout_endpoint_t *ep)
{
    int nmeta = ep->nmeta;

    if (r->port != ep->port || r->weight != ep->weight
        || r->zxid != ep->zxid
        || r->meta_count != (uint32_t)(nmeta > 0 ? nmeta : 0)
        || strcmp(S(ep->host), str + r->host.off) != 0
        || strcmp(S(ep->status), str + r->status.off) != 0)
        return 0;
    meta += r->meta_first;
    for (int j = 0; j < nmeta; j++, meta++)
        if (strcmp(S(ep->meta[j].key), str + meta->key.off) != 0
            || strcmp(S(ep->meta[j].value), str + meta->value.off) != 0)
            return 0;
    return 1;
}

/* The bytes of strings the last slice's record e takes: from its id to
 * the next record's (they are written one after the other), or to the
 * end of the strings. */
static inline uint32_t
span_of(const scout_shm_slice_t *prev, uint32_t e)
{
    uint32_t end = e + 1 < prev->neps ? prev->eps[e + 1].id.off : prev->nstr;

    return end - prev->eps[e].id.off;
}

/* Where the meta of prev's record e starts: every record's meta follows
 * the one before's (a fresh encode and copy_run both number them so), the
 * end of the meta past the last. */
static inline uint32_t
meta_end(const scout_shm_slice_t *prev, uint32_t e)
{
    return e < prev->neps ? prev->eps[e].meta_first : prev->nmeta;
}

/* prev's records [from, to) (a run of endpoints the new slice keeps, in a
 * row) as the new slice's, at *eprec / *mrec, their strings at t->pos:
 * one memcpy each of the records, the meta and the strings (a run's meta
 * and strings are contiguous, in its order), then each offset moved by the
 * same amount -- not at all when the run stays where it was (the run
 * before a change). */
static void
copy_run(const scout_shm_slice_t *prev, uint32_t from, uint32_t to,
         scout_shm_ep_t **eprec, scout_shm_meta_t **mrec, uint32_t *meta_i,
         strtab_t *t)
{
    const scout_shm_ep_t *r = prev->eps + from;
    uint32_t n = to - from;
    uint32_t off = r->id.off;
    uint32_t len = prev->eps[to - 1].id.off + span_of(prev, to - 1) - off;
    uint32_t delta = t->pos - off;
    uint32_t mfirst = r->meta_first;
    uint32_t mcount = meta_end(prev, to) - mfirst;
    uint32_t mdelta = *meta_i - mfirst;
    scout_shm_ep_t *w = *eprec;
    scout_shm_meta_t *m = *mrec;

    memcpy(w, r, n * sizeof(*w));
    if (delta != 0 || mdelta != 0)
        for (uint32_t e = 0; e < n; e++) {
            w[e].id.off += delta;   /* (mod 2^32: may be "negative") */
            w[e].host.off += delta;
            w[e].status.off += delta;
            w[e].meta_first += mdelta;
        }
    memcpy(m, prev->meta + mfirst, mcount * sizeof(*m));
    if (delta != 0)
        for (uint32_t k = 0; k < mcount; k++) {
            m[k].key.off += delta;
            m[k].value.off += delta;
        }
    *eprec += n;
    *mrec += mcount;
    *meta_i += mcount;
    memcpy(t->strings + t->pos, prev->strings + off, len);
    t->pos += len;
}

/* Each new endpoint's string lengths, as shm.c's measure writes them. */
static uint32_t *
measure_one(const scout_endpoint_t *ep, uint32_t *lens, uint64_t *bytes)
{
    uint32_t l;

    *bytes += (l = (uint32_t)strlen(S(ep->id))) + 1;
    *lens++ = l;
    *bytes += (l = (uint32_t)strlen(S(ep->host))) + 1;
    *lens++ = l;
    *bytes += (l = (uint32_t)strlen(S(ep->status))) + 1;
    *lens++ = l;
    for (int j = 0; j < ep->nmeta; j++) {
        *bytes += (l = (uint32_t)strlen(S(ep->meta[j].key))) + 1;
        *lens++ = l;
        *bytes += (l = (uint32_t)strlen(S(ep->meta[j].value))) + 1;
        *lens++ = l;
    }
    return lens;
}

/* A slice of k endpoints, nmeta meta and strings bytes, allocated and laid
 * out (records, then meta, then strings, as a fresh encode lays them) with
 * the service's head written: both ways of making one from the last fill
 * in the rest.  NULL, err set, when too large or out of memory. */
static scout_shm_slice_t *
slice_laid_out(const scout_shm_service_t *s, uint32_t k, uint64_t nmeta,
               uint64_t strings, strtab_t *t, char *err)
{
    scout_shm_slice_t *sl;

    if (strings > UINT32_MAX || nmeta > UINT32_MAX) {
        scout_seterr(err, "snapshot too large (%llu bytes of strings)",
                     (unsigned long long)strings);
        return NULL;
    }
    sl = scout_shm_slice_alloc(sizeof(*sl) + k * sizeof(scout_shm_ep_t)
                               + nmeta * sizeof(scout_shm_meta_t) + strings);
    if (sl == NULL) {
        scout_seterr(err, "shm: out of memory");
        return NULL;
    }
    sl->refs = 1;
    sl->neps = k;
    sl->nmeta = (uint32_t)nmeta;
    sl->nstr = (uint32_t)strings;
    sl->eps = (scout_shm_ep_t *)(sl + 1);
    sl->meta = (scout_shm_meta_t *)(sl->eps + sl->neps);
    sl->strings = t->strings = (uint8_t *)(sl->meta + sl->nmeta);
    t->pos = 0;
    scout_shm_put_head(t, s, &sl->svc);
    sl->svc.ep_first = 0;
    sl->svc.ep_count = k;
    return sl;
}

scout_shm_slice_t *
scout_shm_slice_next(const scout_shm_slice_t *prev,
                     const scout_shm_service_t *s, char *err)
{
    int32_t few_from[64], *from = few_from;     /* prev's record, or -1 */
    uint32_t few_lens[256], *lens = few_lens, *lp;
    scout_endpoint_t *const *eps;
    scout_shm_slice_t *sl = NULL;
    scout_shm_ep_t *eprec;
    scout_shm_meta_t *mrec;
    uint64_t strings, nmeta = 0;
    size_t nlens = 0;
    uint32_t k, j = 0, meta_i = 0, encoded = 0, pn;
    const scout_shm_ep_t *pe;
    const char *pstr;
    strtab_t t;

    if (prev == NULL || prev->neps == 0 || s->eps == NULL || s->eps->n == 0
        || s->name == NULL || s->name[0] == '\0'
        || (s->settings_len > 0 && s->settings == NULL))
        return scout_shm_slice_new(s, err);     /* nothing to take */
    scout_stats.shm_slices_compared++;
    k = s->eps->n;
    eps = s->eps->eps;
    pe = prev->eps;
    pn = prev->neps;
    pstr = (const char *)prev->strings;
    for (uint32_t i = 0; i < k; i++)
        nlens += 3 + 2 * (size_t)(eps[i]->nmeta > 0 ? eps[i]->nmeta : 0);
    if ((k > 64 && (from = malloc(k * sizeof(*from))) == NULL)
        || (nlens > 256 && (lens = malloc(nlens * sizeof(*lens))) == NULL)) {
        scout_seterr(err, "shm: out of memory");
        goto done;
    }
    strings = scout_shm_head_bytes(s);
    /* Line the two id-sorted runs up.  The set's own order is checked on
     * the way: while an id of prev bounds the last endpoint's from above,
     * "that id <= this one" says the set is in order; only past prev's
     * last id, or for an id before prev's next, is it compared to the
     * endpoint before it. */
    lp = lens;
    for (uint32_t i = 0; i < k; i++) {
        const scout_endpoint_t *ep = eps[i];
        const char *id = S(ep->id);
        int c = 1, ordered = i == 0;

        while (j < pn && (c = strcmp(pstr + pe[j].id.off, id)) < 0) {
            ordered = 1;
            j++;
        }
        if (c == 0) {
            ordered = 1;
        } else if (!ordered) {          /* (i > 0 here) */
            ordered = strcmp(S(eps[i - 1]->id), id) <= 0;
        }
        if (!ordered) {
            /* another order: the fresh encode sorts it */
            if (from != few_from)
                free(from);
            if (lens != few_lens)
                free(lens);
            return scout_shm_slice_new(s, err);
        }
        if (c == 0 && same_endpoint(pstr, prev->meta, &pe[j], ep)) {
            from[i] = (int32_t)j;
            strings += span_of(prev, j);
            nmeta += pe[j].meta_count;
            j++;
        } else {
            from[i] = -1;
            encoded++;
            lp = measure_one(ep, lp, &strings);
            nmeta += (uint64_t)(ep->nmeta > 0 ? ep->nmeta : 0);
        }
    }
    if ((sl = slice_laid_out(s, k, nmeta, strings, &t, err)) == NULL)
        goto done;
    eprec = sl->eps;
    mrec = sl->meta;
    lp = lens;
    for (uint32_t i = 0; i < k;) {
        uint32_t run;

        if (from[i] < 0) {
            lp = (uint32_t *)scout_shm_put_endpoint(&t, eps[i], eprec++,
                                                    &mrec, &meta_i, lp);
            i++;
            continue;
        }
        /* endpoints kept in a row of prev's: one copy of their strings */
        for (run = 1; i + run < k && from[i + run] == from[i] + (int32_t)run;
             run++)
            ;
        copy_run(prev, (uint32_t)from[i], (uint32_t)from[i] + run, &eprec,
                 &mrec, &meta_i, &t);
        i += run;
    }
    sl->name = (const char *)sl->strings + sl->svc.name.off;
    scout_stats.shm_endpoints_encoded += encoded;
done:
    if (from != few_from)
        free(from);
    if (lens != few_lens)
        free(lens);
    return sl;
}

/* The first of eps[lo, hi) whose id is not below id (the set is in id
 * order: endpoint.h). */
static uint32_t
set_bound(scout_endpoint_t *const *eps, uint32_t lo, uint32_t hi,
          const char *id)
{
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (strcmp(S(eps[mid]->id), id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The same in prev's records. */
static uint32_t
prev_bound(const scout_shm_slice_t *prev, uint32_t lo, uint32_t hi,
           const char *id)
{
    const char *str = (const char *)prev->strings;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (strcmp(str + prev->eps[mid].id.off, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* eps[i, i + n) and prev's [j, j + n) hold the same ids at their ends: a
 * cheap word that the ids told the truth about this stretch (a wrong prev
 * or log would rarely pass it; the log is what is trusted). */
static int
lines_up(const scout_shm_slice_t *prev, scout_endpoint_t *const *eps,
         uint32_t i, uint32_t j, uint32_t n)
{
    const char *str = (const char *)prev->strings;

    return strcmp(S(eps[i]->id), str + prev->eps[j].id.off) == 0
           && strcmp(S(eps[i + n - 1]->id),
                     str + prev->eps[j + n - 1].id.off) == 0;
}

static int
by_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* At most this many named ids take the known way; more: compared. */
#define KNOWN_MAX 64

/* A piece of the new slice: a run of prev's records [from, from + n), or
 * (from < 0) the set's endpoint at, encoded. */
typedef struct {
    int32_t  from;
    uint32_t at, n;
} piece_t;

scout_shm_slice_t *
scout_shm_slice_known(const scout_shm_slice_t *prev,
                      const scout_shm_service_t *s, const char *ids,
                      uint32_t n, char *err)
{
    const char *named[KNOWN_MAX];
    piece_t piece[2 * KNOWN_MAX + 1];
    uint32_t few_lens[256], *lens = few_lens, *lp;
    scout_endpoint_t *const *eps;
    scout_shm_slice_t *sl = NULL;
    scout_shm_ep_t *eprec;
    scout_shm_meta_t *mrec;
    uint64_t strings, nmeta = 0;
    size_t nlens = 0;
    uint32_t k, pn, i = 0, j = 0, meta_i = 0, encoded = 0, nd = 0;
    int np = 0;
    strtab_t t;

    if (prev == NULL || prev->neps == 0 || s->eps == NULL || s->eps->n == 0
        || s->name == NULL || s->name[0] == '\0'
        || (s->settings_len > 0 && s->settings == NULL)
        || n > KNOWN_MAX || (n > 0 && ids == NULL))
        return scout_shm_slice_next(prev, s, err);
    k = s->eps->n;
    eps = s->eps->eps;
    pn = prev->neps;
    /* the named ids in order, each once */
    for (uint32_t d = 0; d < n; d++, ids += strlen(ids) + 1)
        named[d] = ids;
    if (n > 1)
        qsort(named, n, sizeof(*named), by_str);
    for (uint32_t d = 0; d < n; d++)
        if (nd == 0 || strcmp(named[nd - 1], named[d]) != 0)
            named[nd++] = named[d];
    /* Between two named ids the set and prev hold the same endpoints, in
     * the same order: a run copied whole.  A named id is encoded if the
     * set has it, and skipped in prev if prev had it. */
    for (uint32_t d = 0; d <= nd; d++) {
        uint32_t a = d < nd ? set_bound(eps, i, k, named[d]) : k;
        uint32_t b = d < nd ? prev_bound(prev, j, pn, named[d]) : pn;

        if (a - i != b - j || (a > i && !lines_up(prev, eps, i, j, a - i)))
            return scout_shm_slice_next(prev, s, err);  /* not as told */
        if (a > i)
            piece[np++] = (piece_t){ .from = (int32_t)j, .at = i,
                                     .n = a - i };
        i = a;
        j = b;
        if (d == nd)
            break;
        if (i < k && strcmp(S(eps[i]->id), named[d]) == 0) {
            piece[np++] = (piece_t){ .from = -1, .at = i, .n = 1 };
            nlens += 3 + 2 * (size_t)(eps[i]->nmeta > 0 ? eps[i]->nmeta
                                                        : 0);
            i++;
        }
        if (j < pn && strcmp((const char *)prev->strings
                             + prev->eps[j].id.off, named[d]) == 0)
            j++;
    }
    if (nlens > 256 && (lens = malloc(nlens * sizeof(*lens))) == NULL) {
        scout_seterr(err, "shm: out of memory");
        return NULL;
    }
    strings = scout_shm_head_bytes(s);
    lp = lens;
    for (int p = 0; p < np; p++) {
        const piece_t *q = &piece[p];

        if (q->from < 0) {
            const scout_endpoint_t *ep = eps[q->at];

            lp = measure_one(ep, lp, &strings);
            nmeta += (uint64_t)(ep->nmeta > 0 ? ep->nmeta : 0);
            encoded++;
        } else {
            uint32_t f = (uint32_t)q->from, e = f + q->n;

            strings += prev->eps[e - 1].id.off + span_of(prev, e - 1)
                       - prev->eps[f].id.off;
            nmeta += meta_end(prev, e) - prev->eps[f].meta_first;
        }
    }
    if ((sl = slice_laid_out(s, k, nmeta, strings, &t, err)) == NULL)
        goto done;
    eprec = sl->eps;
    mrec = sl->meta;
    lp = lens;
    for (int p = 0; p < np; p++) {
        const piece_t *q = &piece[p];

        if (q->from < 0)
            lp = (uint32_t *)scout_shm_put_endpoint(&t, eps[q->at], eprec++,
                                                    &mrec, &meta_i, lp);
        else
            copy_run(prev, (uint32_t)q->from, (uint32_t)q->from + q->n,
                     &eprec, &mrec, &meta_i, &t);
    }
    sl->name = (const char *)sl->strings + sl->svc.name.off;
    scout_stats.shm_endpoints_encoded += encoded;
    scout_stats.shm_slices_known++;
done:
    if (lens != few_lens)
        free(lens);
    return sl;
}
