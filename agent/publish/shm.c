/*
 * shm.c -- the shared-memory snapshot's writer.  The file is a 4 KiB header
 * and two slots (a double buffer); generation g lives in slot g & 1, so the
 * header's one 8-byte generation word says both "something moved" and where
 * to read.  Publishing g+1 rewrites the older slot under a per-slot
 * sequence (seqlock: 0 while writing, g+1 when done) and only then moves the
 * header's generation, so readers of slot g are never disturbed and a reader
 * slow enough to be lapped twice sees the sequence change and retries.
 * docs/shm.md has the byte layout and the reader's side of the protocol.
 *
 * Growing (a snapshot that does not fit a slot goes into a new file) and
 * the file itself are shm_file.c's.
 *
 * Why XXH3-64 (libxxhash-dev, inlined from its header so nothing new is
 * linked): packaged in Debian with bindings for most languages (python3-
 * xxhash has xxh3_64), a frozen spec since 0.8.0, and fast enough (~20+
 * GB/s) that checksumming a 10 MB snapshot is noise next to copying it --
 * which every nginx worker does on every change.  It catches torn or
 * scribbled snapshots; it is not a signature.
 *
 * The slot's checksum (a whole body's, or chunks' and their table's:
 * format version 2) is shm_sum.c's.
 *
 * What this module must never do: make a reader wait, let a reader accept a
 * half-written snapshot, truncate a mapped file, or leave the previous
 * snapshot unreadable when a publish fails.
 */
#include "publish/shm_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"
#include "stats.h"

/* The format is little-endian (docs/shm.md) and written and read in place. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the shm snapshot format is little-endian; this host is not"
#endif

#define SHRINK_ABOVE   (4 * 1024 * 1024)   /* never shrink slots below this */

#define S(s) ((s) != NULL ? (s) : "")


/* ---- encoding ---------------------------------------------------------- */

static int
by_name(const void *a, const void *b)
{
    return strcmp((*(const scout_shm_service_t *const *)a)->name,
                  (*(const scout_shm_service_t *const *)b)->name);
}

static int
by_id(const void *a, const void *b)
{
    return strcmp(S((*(const scout_endpoint_t *const *)a)->id),
                  S((*(const scout_endpoint_t *const *)b)->id));
}

static int
ids_in_order(const scout_endpoint_t **eps, size_t k)
{
    for (size_t i = 1; i < k; i++)
        if (strcmp(S(eps[i - 1]->id), S(eps[i]->id)) > 0)
            return 0;
    return 1;
}

static int
grow(void *pp, size_t *cap, size_t need, size_t size)
{
    void **p = pp;
    void *q;
    size_t n = *cap ? *cap : 16;

    if (need <= *cap)
        return SCOUT_OK;
    while (n < need)
        n *= 2;
    q = realloc(*p, n * size);
    if (q == NULL)
        return SCOUT_ERROR;
    *p = q;
    *cap = n;
    return SCOUT_OK;
}

static scout_shm_str_t
put_str(strtab_t *t, const char *s, size_t len)
{
    scout_shm_str_t r = { t->pos, (uint32_t)len };

    if (len > 0)
        memcpy(t->strings + t->pos, s, len);
    t->strings[t->pos + len] = '\0';
    t->pos += (uint32_t)len + 1;
    return r;
}

static scout_shm_str_t
put_cstr(strtab_t *t, const char *s)
{
    s = S(s);
    return put_str(t, s, strlen(s));
}

/* One endpoint's record at r and its meta at *mrec (the cursor and the
 * running meta index move past them); lens, when given, are its strings'
 * lengths in order (see measure), and what follows them is returned. */
static inline const uint32_t *
put_endpoint(strtab_t *t, const scout_endpoint_t *ep, scout_shm_ep_t *r,
             scout_shm_meta_t **mrec, uint32_t *meta_i, const uint32_t *lens)
{
    if (lens != NULL) {
        r->id = put_str(t, S(ep->id), *lens++);
        r->host = put_str(t, S(ep->host), *lens++);
        r->status = put_str(t, S(ep->status), *lens++);
    } else {
        r->id = put_cstr(t, ep->id);
        r->host = put_cstr(t, ep->host);
        r->status = put_cstr(t, ep->status);
    }
    r->port = ep->port;
    r->weight = ep->weight;
    r->zxid = ep->zxid;
    r->meta_first = *meta_i;
    r->meta_count = (uint32_t)(ep->nmeta > 0 ? ep->nmeta : 0);
    for (int j = 0; j < ep->nmeta; j++, (*mrec)++, (*meta_i)++) {
        if (lens != NULL) {
            (*mrec)->key = put_str(t, S(ep->meta[j].key), *lens++);
            (*mrec)->value = put_str(t, S(ep->meta[j].value), *lens++);
        } else {
            (*mrec)->key = put_cstr(t, ep->meta[j].key);
            (*mrec)->value = put_cstr(t, ep->meta[j].value);
        }
    }
    return lens;
}

/* A service's own strings and fields (not its endpoints' run). */
static inline void
put_head(strtab_t *t, const scout_shm_service_t *s, scout_shm_svc_t *svc)
{
    svc->name = put_cstr(t, s->name);
    svc->path = put_cstr(t, s->path);
    svc->state = put_cstr(t, s->state);
    svc->settings = put_str(t, s->settings, s->settings_len);
    svc->index = s->index;
}

const uint32_t *
scout_shm_put_endpoint(strtab_t *t, const scout_endpoint_t *ep,
                       scout_shm_ep_t *r, scout_shm_meta_t **mrec,
                       uint32_t *meta_i, const uint32_t *lens)
{
    return put_endpoint(t, ep, r, mrec, meta_i, lens);
}

void
scout_shm_put_head(strtab_t *t, const scout_shm_service_t *s,
                   scout_shm_svc_t *svc)
{
    put_head(t, s, svc);
}

size_t
scout_shm_head_bytes(const scout_shm_service_t *s)
{
    /* name, path, state and settings, each NUL-terminated */
    return strlen(s->name) + strlen(S(s->path)) + strlen(S(s->state))
           + s->settings_len + 4;
}

/* One service's record, its endpoints (sorted by id, through the scratch
 * array eps) and their meta, at *eprec / *mrec; the cursors and the running
 * ep / meta indexes move past what was written.  The whole-body encode and
 * a slice write the same bytes through this one function (and a slice made
 * from the last one, shm_reslice.c, through its two parts). */
static void
put_service(strtab_t *t, const scout_shm_service_t *s,
            const scout_endpoint_t **eps, scout_shm_svc_t *svc,
            scout_shm_ep_t **eprec, scout_shm_meta_t **mrec, uint32_t *ep_i,
            uint32_t *meta_i, const uint32_t *lens)
{
    size_t k = 0;

    put_head(t, s, svc);
    svc->ep_first = *ep_i;
    /* an epset is kept in id order already (endpoint.h): one pass says
     * so, and its own array is read, where a copy and a sort cost a
     * 50-endpoint change 10k instructions; only another order is copied
     * into eps (room for every endpoint) and sorted */
    if (s->eps != NULL && s->eps->n > 0) {
        k = s->eps->n;
        if (!ids_in_order((const scout_endpoint_t **)s->eps->eps, k)) {
            memcpy(eps, s->eps->eps, k * sizeof(*eps));
            qsort(eps, k, sizeof(*eps), by_id);
            lens = NULL;        /* measured in the set's order */
        } else {
            eps = (const scout_endpoint_t **)s->eps->eps;
        }
    }
    svc->ep_count = (uint32_t)k;
    for (size_t e = 0; e < k; e++, (*eprec)++, (*ep_i)++)
        lens = put_endpoint(t, eps[e], *eprec, mrec, meta_i, lens);
}

/* Count what the snapshot will hold, so that it is written in one pass
 * straight into the slot with every offset known.  lens, when given (one
 * service: a slice), gets each endpoint's string lengths in the set's
 * order -- id, host, status, then each meta key and value -- so that the
 * write does not measure them again. */
static int
measure(const scout_shm_service_t *const *order, int n, sizes_t *z,
        uint32_t *lens, char *err)
{
    memset(z, 0, sizeof(*z));
    for (int i = 0; i < n; i++) {
        const scout_shm_service_t *s = order[i];
        const scout_endpoint_t *ep;
        size_t neps = 0, l;

        z->strings += scout_shm_head_bytes(s);
        if (s->settings_len > 0 && s->settings == NULL)
            return scout_seterr(err, "service \"%s\": settings is NULL", s->name);
        if (s->eps == NULL)
            continue;
        for (unsigned i = 0; i < s->eps->n; i++) {
            const char *str[3];

            ep = s->eps->eps[i];
            neps++;
            z->nmeta += (uint64_t)(ep->nmeta > 0 ? ep->nmeta : 0);
            str[0] = ep->id;
            str[1] = ep->host;
            str[2] = ep->status;
            for (int k = 0; k < 3; k++) {
                z->strings += (l = strlen(S(str[k]))) + 1;
                if (lens != NULL)
                    *lens++ = (uint32_t)l;
            }
            for (int j = 0; j < ep->nmeta; j++) {
                z->strings += (l = strlen(S(ep->meta[j].key))) + 1;
                if (lens != NULL)
                    *lens++ = (uint32_t)l;
                z->strings += (l = strlen(S(ep->meta[j].value))) + 1;
                if (lens != NULL)
                    *lens++ = (uint32_t)l;
            }
        }
        z->nendpoints += neps;
        if (neps > z->max_eps)
            z->max_eps = neps;
    }
    if (z->nendpoints > UINT32_MAX || z->nmeta > UINT32_MAX
        || z->strings > UINT32_MAX)
        return scout_seterr(err, "snapshot too large (%llu endpoints, %llu bytes "
                   "of strings)", (unsigned long long)z->nendpoints,
                   (unsigned long long)z->strings);
    return SCOUT_OK;
}

/* Write the body for generation gen at out (size bytes, as measured). */
static void
encode(scout_shm_t *shm, int n, const sizes_t *z, uint64_t gen,
       uint8_t *out, size_t size)
{
    scout_shm_snap_t *snap = (scout_shm_snap_t *)out;
    scout_shm_svc_t *svc = (scout_shm_svc_t *)(snap + 1);
    scout_shm_ep_t *eprec = (scout_shm_ep_t *)(svc + n);
    scout_shm_meta_t *mrec = (scout_shm_meta_t *)(eprec + z->nendpoints);
    strtab_t t = { (uint8_t *)(mrec + z->nmeta), 0 };
    uint32_t ep_i = 0, meta_i = 0;

    snap->generation = gen;
    snap->size = size;
    snap->nservices = (uint32_t)n;
    snap->nendpoints = (uint32_t)z->nendpoints;
    snap->nmeta = (uint32_t)z->nmeta;
    snap->strings_len = (uint32_t)z->strings;

    for (int i = 0; i < n; i++, svc++)
        put_service(&t, shm->order[i], shm->eps, svc, &eprec, &mrec, &ep_i,
                    &meta_i, NULL);
}

/* Body into the slot for gen under the slot's seqlock.  The release fence
 * after "seq = 0" orders it before every body store (Boehm, "Can seqlocks
 * get along with programming language memory models?", 2012); the release
 * store of seq orders the body before "done". */
static void assemble(scout_shm_slice_t *const *slices, int n,
                     const sizes_t *z, uint64_t gen, uint8_t *out,
                     size_t size);
static int patch(const scout_shm_held_t *h,
                 scout_shm_slice_t *const *slices, int n,
                 const sizes_t *z, uint64_t gen, uint8_t *out,
                 uint8_t *dirty);

static void
slot_write(scout_shm_t *shm, uint8_t *map, uint64_t gen, int n,
           const sizes_t *z, size_t body_len, scout_shm_slice_t *const *slices)
{
    scout_shm_file_t *hdr = (scout_shm_file_t *)map;
    scout_shm_slot_t *slot = slot_at(map, hdr, gen);
    uint8_t *body = (uint8_t *)slot + SCOUT_SHM_SLOT_HDR;
    scout_shm_held_t *h = &shm->held[gen & 1];
    int in_place = map == shm->map;     /* else a new file's slot */
    uint8_t *dirty = hdr->version >= 2 ? scout_shm_dirty_map(shm, hdr) : NULL;
    int patched = 0;
    uint64_t sum;

    __atomic_store_n(&slot->seq, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    if (slices == NULL || !in_place
        || !(patched = patch(h, slices, n, z, gen, body, dirty))) {
        dirty = NULL;           /* all written: all hashed */
        if (slices != NULL)
            assemble(slices, n, z, gen, body, body_len);
        else
            encode(shm, n, z, gen, body, body_len);
    }                           /* else only what changed since the slot's
                                   body, its chunks marked in dirty */
    if (slices != NULL && in_place)
        scout_shm_hold(h, slices, n, patched);
    else
        scout_shm_held_drop(h);
    sum = scout_shm_seal(hdr, slot, body, body_len, dirty);
    __atomic_store_n(&slot->len, (uint64_t)body_len, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->checksum, sum, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->seq, gen, __ATOMIC_RELEASE);
}

/* The body of the next generation into its slot, or into a new file when
 * it does not fit (or would waste most of a big one). */
static int
put_body(scout_shm_t *shm, int n, const sizes_t *z,
         scout_shm_slice_t *const *slices, char *err)
{
    uint64_t gen = shm->gen + 1;
    size_t body_len, need, slot_size = shm->hdr->slot_size;

    body_len = sizeof(scout_shm_snap_t) + (size_t)n * sizeof(scout_shm_svc_t)
               + z->nendpoints * sizeof(scout_shm_ep_t)
               + z->nmeta * sizeof(scout_shm_meta_t) + z->strings;
    need = SCOUT_SHM_SLOT_HDR + body_len;

    if (body_len > body_room(shm->hdr)
        || (slot_size > SHRINK_ABOVE && need < slot_size / 8)) {
        /* A new file, 1.5x what is needed so growth by a few services does
         * not move the file again; the old one stays intact for readers. */
        char tmp[4096];
        uint8_t *map;
        int fd;

        /* (a v2 table takes 1/8192 of it, well inside the spare half) */
        slot_size = round_page(need + need / 2 + INITIAL_SLOT);
        if (scout_shm_file_create(shm->path, shm->version, slot_size, gen,
                                  tmp, sizeof(tmp), &fd, &map, err)
            != SCOUT_OK)
            return SCOUT_ERROR;
        slot_write(shm, map, gen, n, z, body_len, slices);
        if (scout_shm_file_swap(shm, tmp, fd, map, gen, err) != SCOUT_OK)
            return SCOUT_ERROR;
    } else {
        slot_write(shm, shm->map, gen, n, z, body_len, slices);
        __atomic_store_n(&shm->hdr->generation, gen, __ATOMIC_RELEASE);
        shm->gen = gen;
    }
    shm->last_body = body_len;
    return SCOUT_OK;
}

int
scout_shm_publish(scout_shm_t *shm, const scout_shm_service_t *svcs, int n,
                  char *err)
{
    sizes_t z;

    if (n < 0 || (n > 0 && svcs == NULL))
        return scout_seterr(err, "shm: bad service list");
    if (grow(&shm->order, &shm->order_cap, (size_t)n, sizeof(*shm->order))
        != SCOUT_OK)
        return scout_seterr(err, "shm: out of memory");
    for (int i = 0; i < n; i++) {
        if (svcs[i].name == NULL || svcs[i].name[0] == '\0')
            return scout_seterr(err, "shm: service %d has no name", i);
        shm->order[i] = &svcs[i];
    }
    if (n > 1)
        qsort(shm->order, (size_t)n, sizeof(*shm->order), by_name);
    for (int i = 1; i < n; i++)
        if (strcmp(shm->order[i - 1]->name, shm->order[i]->name) == 0)
            return scout_seterr(err, "shm: duplicate service \"%s\"",
                       shm->order[i]->name);
    if (measure(shm->order, n, &z, NULL, err) != SCOUT_OK)
        return SCOUT_ERROR;
    if (grow(&shm->eps, &shm->eps_cap, z.max_eps, sizeof(*shm->eps))
        != SCOUT_OK)
        return scout_seterr(err, "shm: out of memory");

    return put_body(shm, n, &z, NULL, err);
}

/* ---- slices: one service encoded once, relocated into each body ------- */

/*
 * A service's part of a body is contiguous in every array: its svc record,
 * a run of ep records, a run of meta records and a run of strings.  A slice
 * holds that part encoded as if the service were alone (offsets from 0);
 * assembling relocates it by the runs before it.  Copying records and
 * adding three bases is what a publish costs per unchanged service: no
 * strlen, no hash walk, no sort -- and it touches nothing but slices, so
 * a writer thread may do it.  (The struct is in shm_int.h: shm_held.c
 * reads the sizes of the slices a slot holds.)
 */

/*
 * Spare slice buffers.  A changed service's slice used to be a fresh
 * calloc per index: half of the 30k instructions a 50-endpoint slice cost
 * (glibc consolidating its fast bins for a request past 1 KB, then zeroing
 * bytes that are all written again).  A slice let go (by the loop, or by
 * the writer thread dropping a slot's hold) parks its buffer here and the
 * next slice of a size that fits takes it: exchange and compare-and-swap
 * on a few words, so either thread may park or take, no lock.  A buffer is
 * sized with a quarter to spare, so a service that grows by an endpoint
 * fits its old buffer; big ones are not kept (a registry's worth of
 * spares is memory nobody uses).  Nothing is zeroed: put_service writes
 * every byte of the records and strings (no padding: scout_shm.h), which
 * test_shm_slices' reused-buffer test holds against a whole encode.
 */
#define SPARES       4
#define SPARE_MAX    (64 * 1024)

static scout_shm_slice_t *spares[SPARES];

scout_shm_slice_t *
scout_shm_slice_alloc(size_t size)
{
    scout_shm_slice_t *sl;
    size_t cap;

    for (int i = 0; i < SPARES; i++) {
        if (__atomic_load_n(&spares[i], __ATOMIC_RELAXED) == NULL)
            continue;
        sl = __atomic_exchange_n(&spares[i], NULL, __ATOMIC_ACQUIRE);
        if (sl == NULL)
            continue;
        if (sl->cap >= size)
            return sl;
        free(sl);               /* too small for this one: made anew */
        break;
    }
    cap = (size + size / 4 + 63) & ~(size_t)63;
    if ((sl = malloc(cap)) != NULL)
        sl->cap = cap;
    return sl;
}

static void
slice_park(scout_shm_slice_t *sl)
{
    if (sl->cap <= SPARE_MAX)
        for (int i = 0; i < SPARES; i++) {
            scout_shm_slice_t *none = NULL;

            if (__atomic_compare_exchange_n(&spares[i], &none, sl, 0,
                                            __ATOMIC_RELEASE,
                                            __ATOMIC_RELAXED))
                return;
        }
    free(sl);
}

void
scout_shm_slice_spares_free(void)
{
    for (int i = 0; i < SPARES; i++)
        free(__atomic_exchange_n(&spares[i], NULL, __ATOMIC_ACQUIRE));
}

scout_shm_slice_t *
scout_shm_slice_new(const scout_shm_service_t *s, char *err)
{
    const scout_shm_service_t *one = s;
    const scout_endpoint_t *few[64], **eps = few;
    uint32_t few_lens[256], *lens = few_lens;
    scout_shm_slice_t *sl = NULL;
    scout_shm_ep_t *eprec;
    scout_shm_meta_t *mrec;
    strtab_t t;
    sizes_t z;
    size_t size, nlens = 0;
    uint32_t ep_i = 0, meta_i = 0;

    if (s->name == NULL || s->name[0] == '\0') {
        scout_seterr(err, "shm: a service has no name");
        return NULL;
    }
    /* the scratch, on the stack but for a big service: each string's
     * length, measured once (measure, then put_service), and room for
     * endpoints not in id order */
    for (unsigned i = 0; s->eps != NULL && i < s->eps->n; i++)
        nlens += 3 + 2 * (size_t)(s->eps->eps[i]->nmeta > 0
                                  ? s->eps->eps[i]->nmeta : 0);
    if ((nlens > 256 && (lens = malloc(nlens * sizeof(*lens))) == NULL)
        || (s->eps != NULL && s->eps->n > 64
            && (eps = malloc(s->eps->n * sizeof(*eps))) == NULL)) {
        scout_seterr(err, "shm: out of memory");
        goto fail;
    }
    if (measure(&one, 1, &z, lens, err) != SCOUT_OK)
        goto fail;
    size = sizeof(*sl) + z.nendpoints * sizeof(scout_shm_ep_t)
           + z.nmeta * sizeof(scout_shm_meta_t) + z.strings;
    if ((sl = scout_shm_slice_alloc(size)) == NULL) {
        scout_seterr(err, "shm: out of memory");
        goto fail;
    }
    sl->refs = 1;
    sl->neps = (uint32_t)z.nendpoints;
    sl->nmeta = (uint32_t)z.nmeta;
    sl->nstr = (uint32_t)z.strings;
    sl->eps = eprec = (scout_shm_ep_t *)(sl + 1);
    sl->meta = mrec = (scout_shm_meta_t *)(sl->eps + sl->neps);
    sl->strings = t.strings = (uint8_t *)(sl->meta + sl->nmeta);
    t.pos = 0;
    /* the same order of strings and records as encode() */
    put_service(&t, s, eps, &sl->svc, &eprec, &mrec, &ep_i, &meta_i, lens);
    sl->name = (const char *)sl->strings + sl->svc.name.off;
    scout_stats.shm_endpoints_encoded += sl->neps;
fail:
    if (eps != few)
        free(eps);
    if (lens != few_lens)
        free(lens);
    return sl;
}

scout_shm_slice_t *
scout_shm_slice_ref(scout_shm_slice_t *sl)
{
    if (sl != NULL)
        __atomic_add_fetch(&sl->refs, 1, __ATOMIC_RELAXED);
    return sl;
}

void
scout_shm_slice_unref(scout_shm_slice_t *sl)
{
    if (sl != NULL && __atomic_sub_fetch(&sl->refs, 1, __ATOMIC_ACQ_REL) == 0)
        slice_park(sl);
}

static scout_shm_str_t
moved(scout_shm_str_t s, uint32_t base)
{
    s.off += base;
    return s;
}

/* The arrays of a body of n services with z's totals. */
typedef struct {
    scout_shm_snap_t *snap;
    scout_shm_svc_t  *svc;
    scout_shm_ep_t   *ep;
    scout_shm_meta_t *meta;
    uint8_t          *strings;
    uint8_t          *dirty;      /* v2 patch: chunks written, else NULL */
} body_t;

static body_t
body_at(uint8_t *out, int n, const sizes_t *z)
{
    body_t b;

    b.snap = (scout_shm_snap_t *)out;
    b.svc = (scout_shm_svc_t *)(b.snap + 1);
    b.ep = (scout_shm_ep_t *)(b.svc + n);
    b.meta = (scout_shm_meta_t *)(b.ep + z->nendpoints);
    b.strings = (uint8_t *)(b.meta + z->nmeta);
    b.dirty = NULL;
    return b;
}

/* [p, p + n) of b's body was written: its chunks are hashed again. */
static void
touch(const body_t *b, const void *p, size_t n)
{
    size_t off, last;

    if (b->dirty == NULL || n == 0)
        return;
    off = (size_t)((const uint8_t *)p - (const uint8_t *)b->snap);
    last = (off + n - 1) / SCOUT_SHM_CHUNK;
    for (size_t c = off / SCOUT_SHM_CHUNK; c <= last; c++)
        b->dirty[c] = 1;
}

/* Slice sl as service i of body b, its runs starting at ep_i, meta_i and
 * str_i (the runs of the services before it). */
static void
put_slice(const body_t *b, int i, const scout_shm_slice_t *sl, uint32_t ep_i,
          uint32_t meta_i, uint32_t str_i)
{
    scout_shm_svc_t *svc = b->svc + i;
    scout_shm_ep_t *eprec = b->ep + ep_i;
    scout_shm_meta_t *mrec = b->meta + meta_i;

    *svc = sl->svc;
    svc->name = moved(sl->svc.name, str_i);
    svc->path = moved(sl->svc.path, str_i);
    svc->state = moved(sl->svc.state, str_i);
    svc->settings = moved(sl->svc.settings, str_i);
    svc->ep_first = ep_i;
    for (uint32_t e = 0; e < sl->neps; e++, eprec++) {
        *eprec = sl->eps[e];
        eprec->id = moved(eprec->id, str_i);
        eprec->host = moved(eprec->host, str_i);
        eprec->status = moved(eprec->status, str_i);
        eprec->meta_first += meta_i;
    }
    for (uint32_t m = 0; m < sl->nmeta; m++, mrec++) {
        mrec->key = moved(sl->meta[m].key, str_i);
        mrec->value = moved(sl->meta[m].value, str_i);
    }
    memcpy(b->strings + str_i, sl->strings, sl->nstr);
    touch(b, b->svc + i, sizeof(*svc));
    touch(b, b->ep + ep_i, sl->neps * sizeof(*eprec));
    touch(b, b->meta + meta_i, sl->nmeta * sizeof(*mrec));
    touch(b, b->strings + str_i, sl->nstr);
}

static void
assemble(scout_shm_slice_t *const *slices, int n, const sizes_t *z,
         uint64_t gen, uint8_t *out, size_t size)
{
    body_t b = body_at(out, n, z);
    uint32_t ep_i = 0, meta_i = 0, str_i = 0;

    b.snap->generation = gen;
    b.snap->size = size;
    b.snap->nservices = (uint32_t)n;
    b.snap->nendpoints = (uint32_t)z->nendpoints;
    b.snap->nmeta = (uint32_t)z->nmeta;
    b.snap->strings_len = (uint32_t)z->strings;
    for (int i = 0; i < n; i++) {
        const scout_shm_slice_t *sl = slices[i];

        put_slice(&b, i, sl, ep_i, meta_i, str_i);
        ep_i += sl->neps;
        meta_i += sl->nmeta;
        str_i += sl->nstr;
    }
}

/* The body the slot holds (assembled from h) made the one of slices, by
 * rewriting only the services whose slice is another one: 1, or 0 when
 * that cannot be (nothing known, another count, a slice of another size
 * moves every offset after it) and nothing was written.  The walk over the
 * list compares pointers and adds sizes; the bytes written are the changed
 * services' -- the same bytes assemble() would write, since a slice is
 * immutable and held. */
static int
patch(const scout_shm_held_t *h, scout_shm_slice_t *const *slices, int n,
      const sizes_t *z, uint64_t gen, uint8_t *out, uint8_t *dirty)
{
    body_t b = body_at(out, n, z);

    b.dirty = dirty;
    if (h->slices == NULL || h->n != n || h->at == NULL)
        return 0;
    for (int i = 0; i < n; i++) {
        const scout_shm_slice_t *was = h->slices[i], *sl = slices[i];

        if (was != sl && (was->neps != sl->neps || was->nmeta != sl->nmeta
                          || was->nstr != sl->nstr))
            return 0;
    }
    /* every size kept: every run starts where it did in the slot's body */
    for (int i = 0; i < n; i++)
        if (h->slices[i] != slices[i])
            put_slice(&b, i, slices[i], h->at[i].ep, h->at[i].meta,
                      h->at[i].str);
    b.snap->generation = gen;
    touch(&b, &b.snap->generation, sizeof(b.snap->generation));
    return 1;
}

static int
by_slice_name(const void *a, const void *b)
{
    return strcmp((*(scout_shm_slice_t *const *)a)->name,
                  (*(scout_shm_slice_t *const *)b)->name);
}

/* The agent hands its slices over in name order (it sorts once per service
 * list): one pass tells, instead of a sort of the registry per generation. */
static int
in_name_order(scout_shm_slice_t *const *slices, int n)
{
    for (int i = 1; i < n; i++)
        if (strcmp(slices[i - 1]->name, slices[i]->name) > 0)
            return 0;
    return 1;
}

int
scout_shm_publish_slices(scout_shm_t *shm, scout_shm_slice_t **slices, int n,
                         char *err)
{
    sizes_t z;

    if (n < 0 || (n > 0 && slices == NULL))
        return scout_seterr(err, "shm: bad service list");
    if (scout_shm_kept_sizes(shm, slices, n, &z))
        return put_body(shm, n, &z, slices, err);
    if (n > 1 && !in_name_order(slices, n))
        qsort(slices, (size_t)n, sizeof(*slices), by_slice_name);
    memset(&z, 0, sizeof(z));
    for (int i = 0; i < n; i++) {
        if (i > 0 && strcmp(slices[i - 1]->name, slices[i]->name) == 0)
            return scout_seterr(err, "shm: duplicate service \"%s\"",
                                slices[i]->name);
        z.nendpoints += slices[i]->neps;
        z.nmeta += slices[i]->nmeta;
        z.strings += slices[i]->nstr;
    }
    if (z.nendpoints > UINT32_MAX || z.nmeta > UINT32_MAX
        || z.strings > UINT32_MAX)
        return scout_seterr(err, "snapshot too large (%llu endpoints, %llu "
                            "bytes of strings)",
                            (unsigned long long)z.nendpoints,
                            (unsigned long long)z.strings);
    return put_body(shm, n, &z, slices, err);
}
