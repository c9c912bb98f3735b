/*
 * snapshot_rec.h -- private to snapshot_encode.c and snapshot_write.c: a
 * service's record as both see it (the encoder makes it, the writer
 * assembles and commits it), and the file's frame -- the header and the
 * fields before the first service -- so a snapshot is framed the same
 * whether it is encoded whole or assembled from records.  Nothing else
 * includes it; snapshot.h stays the module's whole interface.
 */
#ifndef SCOUT_SNAPSHOT_REC_H
#define SCOUT_SNAPSHOT_REC_H

#include "publish/snapshot.h"

struct scout_snapshot_rec_s {
    int            refs;        /* atomic */
    uint32_t       name_len;
    size_t         len;         /* of the bytes */
    unsigned char *data;        /* the service's bytes as in the file, or
                                 * NULL once given back to the file    */
    uint64_t       hash;        /* XXH64 of the bytes                  */
    uint64_t       file_id;     /* the last file they were written to
                                 * (a commit's or the journal's)...    */
    uint64_t       off;         /* ...and where, in that file          */
    unsigned char  name[];      /* not NUL-terminated                  */
};

/* The frame's size for ensemble (*size), checked against the reader's
 * limits; SCOUT_ERROR with err set if it is over them. */
int scout_snapshot_head_size(const char *ensemble, uint64_t *size,
                             char *err);

/* Writes the header (checksum zero) and the fields before the first of n
 * services into out, for a file of size bytes; returns where the first
 * service goes. */
unsigned char *scout_snapshot_put_head(unsigned char *out,
                                       const char *ensemble,
                                       int64_t written_at_ms, uint32_t n,
                                       uint64_t size);

/* Puts the body's XXH64 in the header at out. */
void scout_snapshot_put_sum(unsigned char *out, uint64_t sum);

#endif
