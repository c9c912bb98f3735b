/*
 * shm_sum.c -- the shared-memory snapshot's checksums (see shm.c for the
 * body, docs/shm.md for the format).  Version 1: the slot's checksum is
 * the XXH3-64 of its whole body.  Version 2: of a table of the XXH3-64s of
 * the body's 64 KB chunks, kept at the slot's end.
 *
 * Why chunks: the writer rewrites only the services that changed, but a
 * checksum of the whole body made each generation read all of it again
 * (12 MB, 1-2.5 ms of CPU at 10,000 services).  With a table, a generation
 * hashes the chunks it wrote (a one-service change: a few, the snap
 * header's included) and the table (8 bytes a chunk: 1.5 KB at 12 MB).
 * 64 KB keeps both small: hashing a chunk is a few microseconds, the table
 * stays under 2 KB up to 16 MB, and a reader's check costs one call per
 * 64 KB (against ~5 per 4 KB chunk).  A slot's table is always its own
 * body's: a patch starts from that very slot's content (two generations
 * back), and every chunk it writes is marked and hashed again.
 *
 * What this module must never do: leave a table entry that is not its
 * chunk's (a reader would refuse every read of the slot), or hash more
 * than the chunks written when told which they are.
 */
#include "publish/shm_int.h"

#include <stdlib.h>
#include <string.h>

#include "stats.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

/* The checksum for the slot's header of its body (len bytes).  Version 2:
 * first the slot's table brought up to the body -- every chunk, or, given
 * dirty (a patch's marks, cleared here), only the chunks it wrote: the
 * others' entries are the ones this slot's previous body left, the same
 * bytes -- then the checksum of the table. */
uint64_t
scout_shm_seal(const scout_shm_file_t *hdr, scout_shm_slot_t *slot,
               const uint8_t *body, size_t len, uint8_t *dirty)
{
    uint64_t *table = (uint64_t *)((uint8_t *)slot + hdr->table_off);
    size_t nchunks = (len + SCOUT_SHM_CHUNK - 1) / SCOUT_SHM_CHUNK;
    uint64_t hashed = 0;

    if (hdr->version < 2)
        return XXH3_64bits(body, len);
    for (size_t c = 0; c < nchunks; c++) {
        size_t off = c * SCOUT_SHM_CHUNK;

        if (dirty != NULL && !dirty[c])
            continue;
        table[c] = XXH3_64bits(body + off, len - off < SCOUT_SHM_CHUNK
                                           ? len - off : SCOUT_SHM_CHUNK);
        hashed++;
    }
    if (dirty != NULL)
        memset(dirty, 0, nchunks);
    /* the writer thread's; /metrics reads it on the loop */
    __atomic_add_fetch(&scout_stats.shm_chunks_hashed, hashed,
                       __ATOMIC_RELAXED);
    return XXH3_64bits(table, nchunks * sizeof(*table));
}

/* Room to mark each chunk of this file's slots; NULL when out of memory
 * (then every chunk is hashed). */
uint8_t *
scout_shm_dirty_map(scout_shm_t *shm, const scout_shm_file_t *hdr)
{
    if (hdr->table_max > shm->dirty_cap) {
        uint8_t *d = calloc(hdr->table_max, 1);

        if (d == NULL)
            return NULL;
        free(shm->dirty);
        shm->dirty = d;
        shm->dirty_cap = hdr->table_max;
    }
    return shm->dirty;
}

