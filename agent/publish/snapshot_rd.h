/*
 * snapshot_rd.h -- the checks every reader of the disk snapshot makes on
 * untrusted bytes: bounds, limits, strings, endpoints, the header and its
 * checksum, and the file read into populated pages.  Private to
 * snapshot_read.c (the full reader) and snapshot_lazy.c (the lazy one),
 * defined once in snapshot_rd.c, so that the two refuse the same files
 * with the same words.  A journal's records are checked where they are
 * (snapshot_merge.h): a reader then says a byte offset in the file the
 * fold would have made (reader_t.at), so its words do not depend on where
 * the bytes were read from.
 */
#ifndef SCOUT_SNAPSHOT_RD_H
#define SCOUT_SNAPSHOT_RD_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endpoint.h"
#include "publish/snapshot.h"
#include "publish/snapshot_format.h"
#include "scout.h"

typedef struct {
    const unsigned char *base, *p, *end;
    const char          *label;
    char                *err;
    size_t               at;        /* the offset base stands at, for the
                                       messages: 0, or where the fold puts
                                       the record base points to */
} reader_t;

/* One service record where it is (the base's pages or the journal's),
 * with what the lazy check of it read. */
typedef struct {
    const unsigned char *rec;       /* its first byte: the name's length */
    size_t      len;
    size_t      at;                 /* its offset in the file read: the
                                       base's own, or where the fold would
                                       put it (snapshot_merge.h) */
    const char *name, *path;        /* in place: not NUL-terminated */
    size_t      name_len, path_len;
    uint64_t    index;
    int64_t     pzxid, max_mzxid;
    uint32_t    neps;
    size_t      eps;                /* its first endpoint, from rec */
    int         checked;            /* scout_snaprd_service passed it */
    int         seq;                /* journal record number; -1: base */
} scout_snaprec_t;

/* "snapshot LABEL: malformed at byte N: ..." with N the offset reached. */
int scout_snaprd_fail(reader_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
uint64_t scout_snaprd_le(const unsigned char *p, int bytes);
int scout_snaprd_int(reader_t *r, int bytes, uint64_t *v, const char *what);
/* A count of records of at least min bytes each: bounded by its limit and
 * by what is left, so a lying count cannot make us allocate. */
int scout_snaprd_count(reader_t *r, uint32_t *n, uint32_t limit, size_t min,
                       const char *what);
/* A string in place: validated, not copied (*s is not NUL-terminated). */
int scout_snaprd_span(reader_t *r, const char **s, size_t *len,
                      const char *what);
int scout_snaprd_str(reader_t *r, char **out, const char *what);
/* Meta the old way, an allocation per string: only for an endpoint whose
 * meta does not fit in one (endpoint.h's limits are tighter than the
 * file's; the endpoint rule then drops it, the file still loads). */
int scout_snaprd_meta_apart(reader_t *r, scout_endpoint_t *ep, uint32_t nmeta);
/* Reads one endpoint into set; *prev_id becomes its id (owned by the set).
 * The endpoint and its meta are one allocation (endpoint.h): the meta is
 * validated in a first pass over the bytes, which sizes it, and copied in
 * a second; a dubbo endpoint's twenty parameters were 41 mallocs each. */
int scout_snaprd_endpoint(reader_t *r, scout_epset_t *set,
                          const char **prev_id);
/* One service record at r->p, checked as the lazy reader checks it: every
 * length against the bytes left, every string (limit, no NUL), every count
 * and limit; not the order of endpoint ids and meta keys, which decoding
 * checks.  prev (prev_len bytes; NULL: the first) is the name before it:
 * names must ascend.  rec is filled (rec->at from r->at); r->p is then
 * past the record. */
int scout_snaprd_service(reader_t *r, scout_snaprec_t *rec, const char *prev,
                         size_t prev_len);
int scout_snaprd_check_header(const unsigned char *b, size_t len,
                              const char *label, char *err);
/* The file at path in pages populated in one call (*buf, *size mapped,
 * *got read), or SCOUT_ERROR with the reason in err. */
int scout_snaprd_load_file(const char *path, unsigned char **buf,
                           size_t *size, size_t *got, char *err);

#endif
