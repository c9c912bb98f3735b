/*
 * snapshot_format.h -- private to snapshot_encode.c, snapshot_write.c and
 * snapshot_read.c: the few things the writing and the reading halves of
 * the disk snapshot must agree on.  Nothing else
 * includes it; snapshot.h stays the module's whole interface.
 *
 * The file is a 32-byte header (magic, version, body length, XXH64 of the
 * body) and a length-prefixed little-endian binary body; see
 * docs/snapshot.md for the layout.
 *
 * Why binary and not JSON: cold start of 10,000 services x 10 endpoints must
 * take under 100 ms including building the endpoint sets; a binary body is
 * parsed in one pass with every length checked against the bytes left, and
 * is a far smaller surface for the fuzzer than a JSON parser plus a schema.
 *
 * Why XXH64 (libxxhash-dev, inlined from its header so nothing new is
 * linked): packaged, well kept, specified with implementations in most
 * languages, 64 bits, and ~10 GB/s, so verifying a 15 MB file costs a few
 * milliseconds.  It guards against torn and corrupted files, not against an
 * attacker: whoever can write the cache dir can write a valid snapshot.
 */
#ifndef SCOUT_SNAPSHOT_FORMAT_H
#define SCOUT_SNAPSHOT_FORMAT_H


#include "scout.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

static const char magic[8] = { 'S', 'C', 'O', 'U', 'T', 'S', 'N', 'P' };

/* Smallest encoding of each record: a count is checked against the bytes
 * left divided by these before anything is allocated for it. */
#define STR_MIN  4u                                 /* u32 length, no bytes */
#define SVC_MIN  (2 * STR_MIN + 8 + 8 + 8 + 4)
#define EP_MIN   (3 * STR_MIN + 4 + 4 + 8 + 4)
#define META_MIN (2 * STR_MIN)

#endif
