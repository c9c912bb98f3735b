/*
 * scout_shm_reader.c -- the shared-memory snapshot's reader, built into
 * libscout.so for nginx workers (through lua/scout/shm.lua) and any C
 * program on the host.  docs/shm.md is the format and the protocol.
 *
 * A read is: load the header's generation g; check slot g & 1 carries
 * sequence g; copy the body out (and, version 2, the slot's table of its
 * chunks' checksums); acquire fence; check the sequence is still g; check
 * the XXH3-64 of the copy (version 2: of the table against the slot's
 * checksum, then of each 64 KB chunk of the copy against the table -- every
 * byte is still checked, only in pieces the writer can hash one by one);
 * then validate every count, range and string of the copy before anyone
 * walks it.  Versions 1 and 2 are both read: a reader newer than its agent
 * works.  The sequence check is what
 * rejects torn copies; the checksum is the second line (a writer bug, a
 * stray write into /dev/shm) and the validation the third (nothing in a
 * snapshot is trusted to be in bounds, checksum or not).
 *
 * The body copy is a plain memcpy racing with the writer: formally a data
 * race, in practice the seqlock pattern every kernel and runtime uses, and
 * any byte it got wrong is caught by the sequence re-check and the checksum.
 *
 * What this module must never do: block or signal the writer, fault on a
 * mapping (files are never truncated by the writer, and sizes come from the
 * header we validated against fstat, not from the live mapping), or hand
 * out a snapshot it did not validate.
 */
#include "scout_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The format is little-endian (docs/shm.md) and written and read in place. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the shm snapshot format is little-endian; this host is not"
#endif

#define XXH_INLINE_ALL
#include <xxhash.h>

#define READ_TRIES 16

struct scout_shm_reader_s {
    char              *path;
    const uint8_t     *map;          /* NULL: not attached */
    size_t             map_len;
    const uint64_t    *genp;         /* the header's generation, or &zero */
    const uint32_t    *retiredp;
    uint64_t           header_size;  /* validated copies of the header */
    uint64_t           slot_size;
    uint32_t           version;
    uint32_t           chunk_size;   /* v2 */
    uint64_t           table_off;    /* v2 */
    uint64_t          *table;        /* v2: [table_max], the copy's */
    dev_t              dev;
    ino_t              ino;
    uint64_t          *buf;          /* read()'s buffer */
    size_t             buf_cap;
    scout_shm_stats_t  st;
};

static const uint64_t zero_gen;
static const uint32_t zero_retired;

static int say(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
say(char *err, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL) {
        va_start(ap, fmt);
        vsnprintf(err, SCOUT_SHM_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return SCOUT_SHM_ERROR;
}

scout_shm_reader_t *
scout_shm_reader_open(const char *path, char *err)
{
    scout_shm_reader_t *r;

    if (path == NULL || path[0] == '\0') {
        say(err, "empty path");
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->path = strdup(path)) == NULL) {
        free(r);
        say(err, "out of memory");
        return NULL;
    }
    r->genp = &zero_gen;
    r->retiredp = &zero_retired;
    return r;
}

static void
detach(scout_shm_reader_t *r)
{
    if (r->map != NULL)
        munmap((void *)r->map, r->map_len);
    r->map = NULL;
    r->map_len = 0;
    r->genp = &zero_gen;
    r->retiredp = &zero_retired;
}

void
scout_shm_reader_close(scout_shm_reader_t *r)
{
    if (r == NULL)
        return;
    detach(r);
    free(r->table);
    free(r->buf);
    free(r->path);
    free(r);
}

/*
 * Map the file the path names now, replacing the current mapping only once
 * the new one is validated.  The header is read with pread and checked
 * against fstat before mapping: a mapping longer than the file would fault.
 */
static int
attach(scout_shm_reader_t *r, char *err)
{
    scout_shm_file_t h;
    struct stat st;
    const uint8_t *map;
    uint64_t *table = NULL;
    int fd;

    /* O_NONBLOCK: a FIFO at the path is refused below, never waited on */
    fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return say(err, "no snapshot");
        return say(err, "%s: %s", r->path, strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)
        || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)
        || memcmp(h.magic, SCOUT_SHM_MAGIC, 8) != 0) {
        close(fd);
        return say(err, "%s: not a scout snapshot", r->path);
    }
    if (h.version < SCOUT_SHM_VERSION_MIN || h.version > SCOUT_SHM_VERSION) {
        close(fd);
        return say(err, "%s: snapshot version %u, this reader knows %d to %d",
                   r->path, h.version, SCOUT_SHM_VERSION_MIN,
                   SCOUT_SHM_VERSION);
    }
    if (h.header_size != SCOUT_SHM_HDR_SIZE
        || h.slot_size < SCOUT_SHM_SLOT_HDR + sizeof(scout_shm_snap_t)
        || h.slot_size > ((uint64_t)1 << 40)
        || h.file_size != h.header_size + 2 * h.slot_size
        || (uint64_t)st.st_size < h.file_size) {
        close(fd);
        return say(err, "%s: corrupt snapshot header", r->path);
    }
    /* version 2: a table inside the slot, past a body's room, with an
     * entry for every chunk a body of that room can have */
    if (h.version >= 2
        && (h.chunk_size < 64 || h.table_max == 0 || h.table_off % 8 != 0
            || h.table_off < SCOUT_SHM_SLOT_HDR + sizeof(scout_shm_snap_t)
            || h.table_off > h.slot_size
            || (uint64_t)h.table_max * 8 > h.slot_size - h.table_off
            || (uint64_t)h.table_max * h.chunk_size
               < h.table_off - SCOUT_SHM_SLOT_HDR)) {
        close(fd);
        return say(err, "%s: corrupt snapshot header", r->path);
    }
    if (h.version >= 2
        && (table = malloc((size_t)h.table_max * sizeof(*table))) == NULL) {
        close(fd);
        return say(err, "out of memory");
    }
    map = mmap(NULL, h.file_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        free(table);
        return say(err, "%s: mmap: %s", r->path, strerror(errno));
    }
    detach(r);
    free(r->table);
    r->table = table;
    r->version = h.version;
    r->chunk_size = h.version >= 2 ? h.chunk_size : 0;
    r->table_off = h.version >= 2 ? h.table_off : h.slot_size;
    r->map = map;
    r->map_len = h.file_size;
    r->genp = &((const scout_shm_file_t *)map)->generation;
    r->retiredp = &((const scout_shm_file_t *)map)->retired;
    r->header_size = h.header_size;
    r->slot_size = h.slot_size;
    r->dev = st.st_dev;
    r->ino = st.st_ino;
    r->st.remaps++;
    return SCOUT_SHM_OK;
}

uint64_t
scout_shm_reader_generation(const scout_shm_reader_t *r)
{
    return __atomic_load_n(r->genp, __ATOMIC_ACQUIRE);
}

int
scout_shm_reader_moved(scout_shm_reader_t *r)
{
    struct stat st;

    if (__atomic_load_n(r->retiredp, __ATOMIC_ACQUIRE))
        return 1;
    if (stat(r->path, &st) != 0)
        return 0;        /* gone: keep serving what is mapped */
    return r->map == NULL || st.st_dev != r->dev || st.st_ino != r->ino;
}

/* Map the current file if the path names another one or ours is retired. */
static int
refresh(scout_shm_reader_t *r, char *err)
{
    struct stat st;

    if (stat(r->path, &st) != 0) {
        if (r->map == NULL)
            return say(err, errno == ENOENT ? "no snapshot" : "%s: %s",
                       r->path, strerror(errno));
        if (__atomic_load_n(r->retiredp, __ATOMIC_ACQUIRE))
            return say(err, "no snapshot");
        return SCOUT_SHM_OK;
    }
    if (r->map == NULL || st.st_dev != r->dev || st.st_ino != r->ino
        || __atomic_load_n(r->retiredp, __ATOMIC_ACQUIRE))
        return attach(r, err);
    return SCOUT_SHM_OK;
}

/* ---- validation ------------------------------------------------------ */

typedef struct {
    const char *strs;
    uint32_t    len;
} strs_t;

static int
str_ok(const strs_t *t, scout_shm_str_t s)
{
    return s.off < t->len && s.len < t->len - s.off
           && t->strs[s.off + s.len] == '\0';
}

/* <0, 0, >0 as strcmp over (ptr, len) strings. */
static int
str_cmp(const strs_t *t, scout_shm_str_t a, scout_shm_str_t b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = memcmp(t->strs + a.off, t->strs + b.off, n);

    if (c != 0)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

static int
validate(const void *buf, size_t n, uint64_t gen, char *err)
{
    const scout_shm_snap_t *s = buf;
    const scout_shm_svc_t *svc;
    const scout_shm_ep_t *ep;
    const scout_shm_meta_t *m;
    uint64_t want;
    uint32_t ep_next = 0, meta_next = 0;
    strs_t t;

    if (s->generation != gen || s->size != n)
        return say(err, "corrupt snapshot: generation or size");
    want = sizeof(*s) + (uint64_t)s->nservices * sizeof(*svc)
           + (uint64_t)s->nendpoints * sizeof(*ep)
           + (uint64_t)s->nmeta * sizeof(*m) + s->strings_len;
    if (want != n)
        return say(err, "corrupt snapshot: counts do not add up");
    svc = scout_shm_snap_services(s);
    ep = scout_shm_snap_endpoints(s);
    m = scout_shm_snap_meta(s);
    t.strs = (const char *)(m + s->nmeta);
    t.len = s->strings_len;

    for (uint32_t i = 0; i < s->nservices; i++) {
        const scout_shm_svc_t *v = &svc[i];

        if (!str_ok(&t, v->name) || !str_ok(&t, v->path)
            || !str_ok(&t, v->state) || !str_ok(&t, v->settings))
            return say(err, "corrupt snapshot: service %u strings", i);
        if (i > 0 && str_cmp(&t, svc[i - 1].name, v->name) >= 0)
            return say(err, "corrupt snapshot: services not sorted");
        if (v->ep_first != ep_next || v->ep_count > s->nendpoints - ep_next)
            return say(err, "corrupt snapshot: service %u endpoints", i);
        for (uint32_t e = ep_next; e < ep_next + v->ep_count; e++) {
            const scout_shm_ep_t *p = &ep[e];

            if (!str_ok(&t, p->id) || !str_ok(&t, p->host)
                || !str_ok(&t, p->status))
                return say(err, "corrupt snapshot: endpoint %u strings", e);
            if (e > ep_next && str_cmp(&t, ep[e - 1].id, p->id) >= 0)
                return say(err, "corrupt snapshot: endpoints not sorted");
            if (p->meta_first != meta_next
                || p->meta_count > s->nmeta - meta_next)
                return say(err, "corrupt snapshot: endpoint %u meta", e);
            for (uint32_t k = meta_next; k < meta_next + p->meta_count; k++)
                if (!str_ok(&t, m[k].key) || !str_ok(&t, m[k].value))
                    return say(err, "corrupt snapshot: meta %u strings", k);
            meta_next += p->meta_count;
        }
        ep_next += v->ep_count;
    }
    if (ep_next != s->nendpoints || meta_next != s->nmeta)
        return say(err, "corrupt snapshot: unowned records");
    return SCOUT_SHM_OK;
}

/* ---- reading ---------------------------------------------------------- */

/* The copy (n bytes at buf) is the body the slot's checksum sum vouches
 * for: version 1, its XXH3-64; version 2, the table's (its copy in
 * r->table), then each chunk's against its entry. */
static int
sum_ok(const scout_shm_reader_t *r, const uint8_t *buf, size_t n,
       uint64_t sum)
{
    size_t c, nchunks;

    if (r->version < 2)
        return XXH3_64bits(buf, n) == sum;
    nchunks = (n + r->chunk_size - 1) / r->chunk_size;
    if (XXH3_64bits(r->table, nchunks * sizeof(*r->table)) != sum)
        return 0;
    for (c = 0; c < nchunks; c++) {
        size_t off = c * r->chunk_size;
        size_t len = n - off < r->chunk_size ? n - off : r->chunk_size;

        if (XXH3_64bits(buf + off, len) != r->table[c])
            return 0;
    }
    return 1;
}

static int
torn(scout_shm_reader_t *r, char *err)
{
    r->st.retries++;
    say(err, "torn, retry");
    return SCOUT_SHM_AGAIN;
}

int
scout_shm_reader_copy(scout_shm_reader_t *r, void *buf, size_t cap,
                      size_t *len, char *err)
{
    const scout_shm_slot_t *slot;
    uint64_t gen, n, sum;

    *len = 0;
    if (((uintptr_t)buf & 7) != 0)
        return say(err, "buffer not 8-byte aligned");
    if (refresh(r, err) != SCOUT_SHM_OK)
        return SCOUT_SHM_ERROR;
    gen = __atomic_load_n(r->genp, __ATOMIC_ACQUIRE);
    if (gen == 0)
        return say(err, "no snapshot");
    if (__atomic_load_n(r->retiredp, __ATOMIC_ACQUIRE))
        return torn(r, err);        /* replaced since refresh(): re-map */
    slot = (const scout_shm_slot_t *)(r->map + r->header_size
                                      + (gen & 1) * r->slot_size);
    if (__atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE) != gen)
        return torn(r, err);
    n = __atomic_load_n(&slot->len, __ATOMIC_RELAXED);
    sum = __atomic_load_n(&slot->checksum, __ATOMIC_RELAXED);
    if (n < sizeof(scout_shm_snap_t) || n > r->table_off - SCOUT_SHM_SLOT_HDR
        || n > cap) {
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) != gen)
            return torn(r, err);
        if (n < sizeof(scout_shm_snap_t)
            || n > r->table_off - SCOUT_SHM_SLOT_HDR)
            return say(err, "corrupt snapshot: length %llu",
                       (unsigned long long)n);
        *len = (size_t)n;
        say(err, "buffer too small");
        return SCOUT_SHM_SHORT;
    }
    memcpy(buf, (const uint8_t *)slot + SCOUT_SHM_SLOT_HDR, (size_t)n);
    if (r->version >= 2)        /* n <= table_max chunks: attach() */
        memcpy(r->table, (const uint8_t *)slot + r->table_off,
               (n + r->chunk_size - 1) / r->chunk_size * sizeof(*r->table));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) != gen)
        return torn(r, err);
    if (!sum_ok(r, buf, (size_t)n, sum)) {
        r->st.checksum_failures++;
        say(err, "checksum mismatch");
        return SCOUT_SHM_AGAIN;
    }
    if (validate(buf, (size_t)n, gen, err) != SCOUT_SHM_OK)
        return SCOUT_SHM_ERROR;
    r->st.reads++;
    *len = (size_t)n;
    return SCOUT_SHM_OK;
}

const scout_shm_snap_t *
scout_shm_reader_read(scout_shm_reader_t *r, char *err)
{
    size_t len;

    for (int i = 0; i < READ_TRIES; i++) {
        int rc = scout_shm_reader_copy(r, r->buf, r->buf_cap, &len, err);

        if (rc == SCOUT_SHM_OK)
            return (const scout_shm_snap_t *)r->buf;
        if (rc == SCOUT_SHM_SHORT) {
            size_t cap = (len + len / 4 + 7) & ~(size_t)7;
            void *b = malloc(cap);    /* no realloc: nothing to keep */

            if (b == NULL) {
                say(err, "out of memory");
                return NULL;
            }
            free(r->buf);
            r->buf = b;
            r->buf_cap = cap;
            i--;                      /* not a lost race: does not count */
            continue;
        }
        if (rc != SCOUT_SHM_AGAIN)
            return NULL;
    }
    return NULL;                      /* err says torn or checksum */
}

void
scout_shm_reader_stats(const scout_shm_reader_t *r, scout_shm_stats_t *out)
{
    *out = r->st;
}

const scout_shm_svc_t *
scout_shm_snap_find(const scout_shm_snap_t *s, const char *name, size_t len)
{
    const scout_shm_svc_t *svc = scout_shm_snap_services(s);
    uint32_t lo = 0, hi = s->nservices;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        scout_shm_str_t k = svc[mid].name;
        size_t n = k.len < len ? k.len : len;
        int c = memcmp(scout_shm_str(s, k), name, n);

        if (c == 0)
            c = k.len < len ? -1 : k.len > len;
        if (c == 0)
            return &svc[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Every record type and field a reader over the copy uses. */
#define ABI(T, F)                                                           \
    T(scout_shm_str_t) F(scout_shm_str_t, off) F(scout_shm_str_t, len)      \
    T(scout_shm_snap_t) F(scout_shm_snap_t, generation)                     \
    F(scout_shm_snap_t, size) F(scout_shm_snap_t, nservices)                \
    F(scout_shm_snap_t, nendpoints) F(scout_shm_snap_t, nmeta)              \
    F(scout_shm_snap_t, strings_len)                                        \
    T(scout_shm_svc_t) F(scout_shm_svc_t, name) F(scout_shm_svc_t, path)    \
    F(scout_shm_svc_t, state) F(scout_shm_svc_t, settings)                  \
    F(scout_shm_svc_t, index) F(scout_shm_svc_t, ep_first)                  \
    F(scout_shm_svc_t, ep_count)                                            \
    T(scout_shm_ep_t) F(scout_shm_ep_t, id) F(scout_shm_ep_t, host)         \
    F(scout_shm_ep_t, status) F(scout_shm_ep_t, port)                       \
    F(scout_shm_ep_t, weight) F(scout_shm_ep_t, zxid)                       \
    F(scout_shm_ep_t, meta_first) F(scout_shm_ep_t, meta_count)             \
    T(scout_shm_meta_t) F(scout_shm_meta_t, key) F(scout_shm_meta_t, value) \
    T(scout_shm_stats_t) F(scout_shm_stats_t, reads)                        \
    F(scout_shm_stats_t, retries) F(scout_shm_stats_t, checksum_failures)   \
    F(scout_shm_stats_t, remaps)

const char *
scout_shm_abi(void)
{
    /* Built once per process; nginx workers are single-threaded, and two
     * threads racing here would write the same bytes. */
    static char abi[2048];
    size_t o = 0;

    if (abi[0] != '\0')
        return abi;
#define T_(type)                                                            \
    o += (size_t)snprintf(abi + o, sizeof(abi) - o, "%s=%zu ", #type,       \
                          sizeof(type));
#define F_(type, field)                                                     \
    o += (size_t)snprintf(abi + o, sizeof(abi) - o, "%s.%s=%zu ", #type,    \
                          #field, offsetof(type, field));
    ABI(T_, F_)
#undef T_
#undef F_
    if (o > 0)
        abi[o - 1] = '\0';
    return abi;
}
