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
} scout_shm_held_t;

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
    /* scratch, grown as needed and kept between publishes */
    const scout_shm_service_t **order;
    size_t              order_cap;
    const scout_endpoint_t **eps;
    size_t              eps_cap;
    scout_shm_held_t              held[2];      /* by slot: gen & 1 */
};


static inline size_t
round_page(size_t n)
{
    return (n + PAGE - 1) & ~(size_t)(PAGE - 1);
}

static inline scout_shm_slot_t *
slot_at(uint8_t *map, const scout_shm_file_t *hdr, uint64_t gen)
{
    return (scout_shm_slot_t *)(map + hdr->header_size
                                + (gen & 1) * hdr->slot_size);
}

/* shm_file.c: a new file of two slot_size slots under a temporary name
 * next to path (in tmp), locked, allocated, mapped, its header at gen;
 * then, once a slot is filled, renamed over the path with the old file
 * retired.  SCOUT_OK, or SCOUT_ERROR with err and nothing left behind. */
int scout_shm_file_create(const char *path, size_t slot_size, uint64_t gen,
                          char *tmp, size_t tmp_len, int *fd_out,
                          uint8_t **map_out, char *err);
int scout_shm_file_swap(scout_shm_t *shm, const char *tmp, int fd,
                        uint8_t *map, uint64_t gen, char *err);

/* shm.c: the slot is not known any more (its references dropped). */
void scout_shm_held_drop(scout_shm_held_t *h);

#endif
