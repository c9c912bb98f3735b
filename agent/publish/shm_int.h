/*
 * shm_int.h -- what the shm writer's two files share: shm.c (bodies,
 * slices, publishing) and shm_file.c (the file: creating, adopting,
 * replacing it).  Private to agent/publish/shm*.c; shm.h is the interface.
 */
#ifndef SCOUT_SHM_INT_H
#define SCOUT_SHM_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "scout_shm.h"
#include "publish/shm.h"

#define INITIAL_SLOT   (64 * 1024)
#define PAGE           4096

/* What a slot's body was last assembled from, in this file: the next
 * publish into the slot rewrites only the services whose slice is another
 * one, when every slice keeps its size (so every offset stays).  The slot
 * holds g - 1 while g is current, so a patch covers two publishes' changes.
 * The slices are held (a reference each), so a pointer compares equal only
 * to the very bytes it was written from. */
typedef struct {
    scout_shm_slice_t **slices;     /* [n], held; NULL: not known */
    int                 n;
    /* where each slice's runs start in the slot's body, and the totals:
     * with them a publish that keeps every size reads only the slices
     * that changed, not the 10,000 that did not (each a cache miss) */
    struct { uint32_t ep, meta, str; } *at;     /* [n]; NULL: not known */
    uint64_t            nendpoints, nmeta, strings;
} scout_shm_held_t;

/* What a body's arrays add up to (shm.c measures them, a slice or a held
 * slot knows them). */
typedef struct {
    uint64_t nendpoints, nmeta, strings;
    size_t   max_eps;
} sizes_t;

/* A slice's strings being written: the next one goes at pos. */
typedef struct {
    uint8_t  *strings;
    uint32_t  pos;
} strtab_t;

/* One service encoded once (shm.c): its records and strings with offsets
 * from 0, relocated into each body. */
struct scout_shm_slice_s {
    int               refs;       /* atomic */
    size_t            cap;        /* bytes allocated, this header included */
    const char       *name;       /* NUL-terminated, inside strings */
    scout_shm_svc_t   svc;
    uint32_t          neps, nmeta, nstr;
    scout_shm_ep_t   *eps;        /* [neps], then meta, then strings */
    scout_shm_meta_t *meta;
    uint8_t          *strings;
};

struct scout_shm_s {
    char               *path;
    int                 fd;           /* holds the flock */
    uint8_t            *map;
    size_t              map_len;
    scout_shm_file_t   *hdr;
    dev_t               dev;
    ino_t               ino;
    uint64_t            gen;
    size_t              last_body;
    int                 version;      /* of the files it writes: 1 or 2 */
    /* scratch, grown as needed and kept between publishes */
    const scout_shm_service_t **order;
    size_t              order_cap;
    const scout_endpoint_t **eps;
    size_t              eps_cap;
    scout_shm_held_t              held[2];      /* by slot: gen & 1 */
    uint8_t            *dirty;        /* v2: [table_max], chunks to hash */
    size_t              dirty_cap;
};


static inline size_t
round_page(size_t n)
{
    return (n + PAGE - 1) & ~(size_t)(PAGE - 1);
}

/* Version 2: where a slot of slot_size bytes keeps its table of chunk
 * checksums -- at its end, room for one per chunk the slot could hold,
 * rounded to 64 bytes -- so the body keeps its offset (64) and a slot's
 * table always describes that slot's body. */
static inline void
slot_table(uint64_t slot_size, uint32_t *table_max, uint64_t *table_off)
{
    uint64_t n = (slot_size - SCOUT_SHM_SLOT_HDR + SCOUT_SHM_CHUNK - 1)
                 / SCOUT_SHM_CHUNK;

    *table_max = (uint32_t)n;
    *table_off = slot_size - ((n * 8 + 63) & ~(uint64_t)63);
}

/* The body bytes a slot of this file has room for. */
static inline size_t
body_room(const scout_shm_file_t *hdr)
{
    return (size_t)((hdr->version >= 2 ? hdr->table_off : hdr->slot_size)
                    - SCOUT_SHM_SLOT_HDR);
}

static inline scout_shm_slot_t *
slot_at(uint8_t *map, const scout_shm_file_t *hdr, uint64_t gen)
{
    return (scout_shm_slot_t *)(map + hdr->header_size
                                + (gen & 1) * hdr->slot_size);
}

/* shm.c: a slice's buffer of at least size bytes (a spare one, or new),
 * its cap set; NULL: no memory.  What the caller does not write is not
 * zeroed. */
scout_shm_slice_t *scout_shm_slice_alloc(size_t size);
/* shm.c: a service's own strings and fields, then one endpoint's record
 * at r and its meta at *mrec, exactly as a fresh encode writes them (lens:
 * see measure in shm.c; NULL measures each string; what follows the
 * endpoint's lengths is returned). */
void scout_shm_put_head(strtab_t *t, const scout_shm_service_t *s,
                        scout_shm_svc_t *svc);
/* The bytes of strings scout_shm_put_head writes for s. */
size_t scout_shm_head_bytes(const scout_shm_service_t *s);
const uint32_t *scout_shm_put_endpoint(strtab_t *t,
                                       const scout_endpoint_t *ep,
                                       scout_shm_ep_t *r,
                                       scout_shm_meta_t **mrec,
                                       uint32_t *meta_i,
                                       const uint32_t *lens);

/* shm_file.c: a new file of two slot_size slots under a temporary name
 * next to path (in tmp), locked, allocated, mapped, its header at gen;
 * then, once a slot is filled, renamed over the path with the old file
 * retired.  SCOUT_OK, or SCOUT_ERROR with err and nothing left behind. */
int scout_shm_file_create(const char *path, int version, size_t slot_size,
                          uint64_t gen, char *tmp, size_t tmp_len,
                          int *fd_out, uint8_t **map_out, char *err);
int scout_shm_file_swap(scout_shm_t *shm, const char *tmp, int fd,
                        uint8_t *map, uint64_t gen, char *err);

/* shm_sum.c: the checksum of a slot's body of len bytes, for its header;
 * in a version 2 file, after bringing the slot's chunk table up to it:
 * every chunk, or the ones marked in dirty (then cleared). */
uint64_t scout_shm_seal(const scout_shm_file_t *hdr, scout_shm_slot_t *slot,
                        const uint8_t *body, size_t len, uint8_t *dirty);
/* shm_sum.c: shm's chunk marks, room for hdr's table; NULL: no memory. */
uint8_t *scout_shm_dirty_map(scout_shm_t *shm, const scout_shm_file_t *hdr);

/* shm_held.c: the slot is not known any more (its references dropped). */
void scout_shm_held_drop(scout_shm_held_t *h);
/* shm_held.c: the slot now holds slices[0..n) (a reference to each that
 * is new to it); patched: written in place, every size and offset kept. */
void scout_shm_hold(scout_shm_held_t *h, scout_shm_slice_t *const *slices,
                    int n, int patched);
/* shm_held.c: 1 and z from the slot the next publish writes when it holds
 * the same services at the same sizes and the changed slices are in name
 * order with their neighbours (only they are read); 0: check them all. */
int scout_shm_kept_sizes(const scout_shm_t *shm,
                         scout_shm_slice_t *const *slices, int n,
                         sizes_t *z);

#endif
