/*
 * snapshot_encode.c -- the disk snapshot's encoder (snapshot.h): the
 * published state, or one service's record, into the file's bytes.  It is
 * split from the reader because the two share only the format
 * (snapshot_format.h), and from the writer (snapshot_write.c), which
 * assembles records into a file and commits it.  It touches no agent state,
 * so the caller may run it off the loop.
 *
 * The encoder refuses whatever the reader would refuse, and writes only the
 * canonical form the reader accepts (sorted, no duplicates), so a written
 * snapshot always reads back.
 */
#include "publish/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "publish/snapshot_format.h"
#include "publish/snapshot_rec.h"

#define S(s) ((s) != NULL ? (s) : "")

static const char writer[] = "scout " SCOUT_VERSION;

static unsigned char *
put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + bytes;
}

static unsigned char *
put_str(unsigned char *p, const char *s)
{
    size_t len = strlen(S(s));

    p = put_le(p, len, 4);
    memcpy(p, S(s), len);
    return p + len;
}

/* Adds a string's encoded size to *size; SCOUT_ERROR if it is too long. */
static int
size_str(uint64_t *size, const char *s, const char *svc, const char *ep,
         const char *what, char *err)
{
    size_t len = strlen(S(s));

    if (len > SCOUT_SNAPSHOT_MAX_STR)
        return scout_seterr(err, "snapshot: service \"%s\"%s%s: %s is %zu bytes, over "
                   "the %u limit", S(svc), ep ? " endpoint " : "", S(ep), what,
                   len, SCOUT_SNAPSHOT_MAX_STR);
    *size += STR_MIN + len;
    return SCOUT_OK;
}

/* The header and the fields before the first service: writer, ensemble,
 * when, how many.  Shared with the records' assembly (snapshot_write.c), so
 * a file is framed the same whichever way it is written. */
int
scout_snapshot_head_size(const char *ensemble, uint64_t *size, char *err)
{
    *size = SCOUT_SNAPSHOT_HDR_LEN + 8 + 4;
    if (size_str(size, writer, "", NULL, "writer", err) != SCOUT_OK
        || size_str(size, ensemble, "", NULL, "ensemble", err) != SCOUT_OK)
        return SCOUT_ERROR;
    return SCOUT_OK;
}

unsigned char *
scout_snapshot_put_head(unsigned char *out, const char *ensemble,
                        int64_t written_at_ms, uint32_t n, uint64_t size)
{
    unsigned char *p = out + SCOUT_SNAPSHOT_HDR_LEN;

    memcpy(out, magic, sizeof(magic));
    put_le(out + 8, SCOUT_SNAPSHOT_VERSION, 4);
    put_le(out + 12, 0, 4);
    put_le(out + 16, size - SCOUT_SNAPSHOT_HDR_LEN, 8);
    put_le(out + 24, 0, 8);     /* the checksum: scout_snapshot_put_sum() */
    p = put_str(p, writer);
    p = put_str(p, ensemble);
    p = put_le(p, (uint64_t)written_at_ms, 8);
    return put_le(p, n, 4);
}

void
scout_snapshot_put_sum(unsigned char *out, uint64_t sum)
{
    put_le(out + 24, sum, 8);
}

static int
by_service_name(const void *a, const void *b)
{
    return strcmp(S((*(const scout_snapshot_service_t *const *)a)->name),
                  S((*(const scout_snapshot_service_t *const *)b)->name));
}

static int
by_endpoint_id(const void *a, const void *b)
{
    return strcmp((*(scout_endpoint_t *const *)a)->id,
                  (*(scout_endpoint_t *const *)b)->id);
}

/* First pass: validate against the reader's rules and sum the size, so the
 * buffer is allocated once and exactly. */
static int
size_service(const scout_snapshot_service_t *sv, uint64_t *size, char *err)
{
    scout_endpoint_t *ep;
    unsigned n = sv->eps != NULL ? sv->eps->n : 0;

    if (size_str(size, sv->name, sv->name, NULL, "name", err) != SCOUT_OK
        || size_str(size, sv->path, sv->name, NULL, "path", err) != SCOUT_OK)
        return SCOUT_ERROR;
    if (n > SCOUT_SNAPSHOT_MAX_ENDPOINTS)
        return scout_seterr(err, "snapshot: service \"%s\": %u endpoints, over the %u "
                   "limit", S(sv->name), n, SCOUT_SNAPSHOT_MAX_ENDPOINTS);
    *size += SVC_MIN - 2 * STR_MIN;
    if (sv->eps == NULL)
        return SCOUT_OK;
    for (unsigned i = 0; i < sv->eps->n; i++) {
        ep = sv->eps->eps[i];
        *size += EP_MIN - 3 * STR_MIN;
        if (size_str(size, ep->id, sv->name, ep->id, "id", err) != SCOUT_OK
            || size_str(size, ep->host, sv->name, ep->id, "host", err)
               != SCOUT_OK
            || size_str(size, ep->status, sv->name, ep->id, "status", err)
               != SCOUT_OK)
            return SCOUT_ERROR;
        if (ep->nmeta < 0 || (unsigned)ep->nmeta > SCOUT_SNAPSHOT_MAX_META)
            return scout_seterr(err, "snapshot: service \"%s\" endpoint %s: %d meta "
                       "entries, over the %u limit", S(sv->name), ep->id,
                       ep->nmeta, SCOUT_SNAPSHOT_MAX_META);
        for (int j = 0; j < ep->nmeta; j++) {
            if (j > 0 && strcmp(S(ep->meta[j - 1].key),
                                S(ep->meta[j].key)) >= 0)
                return scout_seterr(err, "snapshot: service \"%s\" endpoint %s: meta "
                           "keys not sorted and unique at \"%s\"", S(sv->name),
                           ep->id, S(ep->meta[j].key));
            if (size_str(size, ep->meta[j].key, sv->name, ep->id, "a meta key",
                         err) != SCOUT_OK
                || size_str(size, ep->meta[j].value, sv->name, ep->id,
                            "a meta value", err) != SCOUT_OK)
                return SCOUT_ERROR;
        }
        if (*size > SCOUT_SNAPSHOT_MAX_SIZE)
            return SCOUT_OK;    /* the caller reports it */
    }
    return SCOUT_OK;
}

static unsigned char *
put_service(unsigned char *p, const scout_snapshot_service_t *sv,
            scout_endpoint_t **sorted)
{
    scout_endpoint_t *ep;
    unsigned n = 0;

    p = put_str(p, sv->name);
    p = put_str(p, sv->path);
    p = put_le(p, sv->index, 8);
    p = put_le(p, (uint64_t)sv->pzxid, 8);
    p = put_le(p, (uint64_t)sv->max_mzxid, 8);
    if (sv->eps != NULL) {
        for (unsigned i = 0; i < sv->eps->n; i++)
            sorted[n++] = sv->eps->eps[i];
    }
    qsort(sorted, n, sizeof(*sorted), by_endpoint_id);
    p = put_le(p, n, 4);
    for (unsigned i = 0; i < n; i++) {
        ep = sorted[i];
        p = put_str(p, ep->id);
        p = put_str(p, ep->host);
        p = put_str(p, ep->status);
        p = put_le(p, (uint32_t)ep->port, 4);
        p = put_le(p, (uint32_t)ep->weight, 4);
        p = put_le(p, (uint64_t)ep->zxid, 8);
        p = put_le(p, (uint32_t)ep->nmeta, 4);
        for (int j = 0; j < ep->nmeta; j++) {
            p = put_str(p, ep->meta[j].key);
            p = put_str(p, ep->meta[j].value);
        }
    }
    return p;
}

/* Whatever the endpoint rule lets through, the format holds. */
_Static_assert(SCOUT_ENDPOINT_MAX_STR <= SCOUT_SNAPSHOT_MAX_STR
               && SCOUT_ENDPOINT_MAX_META <= SCOUT_SNAPSHOT_MAX_META,
               "endpoint.h's limits must fit the snapshot's");

/* left_out == NULL: strict, the first service the reader would refuse fails
 * the whole encoding.  Otherwise such a service (or one that would take the
 * file over its size limit) is left out, counted in *left_out, and the
 * first reason goes to err. */
static int
encode(const char *ensemble, int64_t written_at_ms,
       const scout_snapshot_service_t *svcs, int n, char **buf, size_t *len,
       int *left_out, char *err)
{
    const scout_snapshot_service_t **order = NULL;
    scout_endpoint_t **sorted = NULL;
    unsigned char *out = NULL, *p;
    uint64_t size;
    unsigned most = 0;
    int kept = 0;

    *buf = NULL;
    *len = 0;
    if (left_out != NULL)
        *left_out = 0;
    if (n < 0 || (unsigned)n > SCOUT_SNAPSHOT_MAX_SERVICES)
        return scout_seterr(err, "snapshot: %d services, over the %u limit", n,
                   SCOUT_SNAPSHOT_MAX_SERVICES);
    if (scout_snapshot_head_size(ensemble, &size, err) != SCOUT_OK)
        return SCOUT_ERROR;
    order = malloc((n > 0 ? (size_t)n : 1) * sizeof(*order));
    if (order == NULL)
        goto oom;
    for (int i = 0; i < n; i++)
        order[i] = &svcs[i];
    qsort(order, (size_t)n, sizeof(*order), by_service_name);
    for (int i = 0; i < n; i++) {
        uint64_t before = size;
        char why[SCOUT_ERR_LEN];

        if (i > 0 && strcmp(S(order[i - 1]->name), S(order[i]->name)) == 0) {
            scout_seterr(err, "snapshot: two services named \"%s\"",
                S(order[i]->name));
            goto fail;
        }
        why[0] = '\0';
        if (size_service(order[i], &size, why) == SCOUT_OK
            && size > SCOUT_SNAPSHOT_MAX_SIZE)
            scout_seterr(why, "snapshot: over the %u-byte limit at service "
                         "\"%s\"", SCOUT_SNAPSHOT_MAX_SIZE,
                         S(order[i]->name));
        if (why[0] != '\0') {
            if (left_out == NULL) {
                snprintf(err, SCOUT_ERR_LEN, "%s", why);
                goto fail;
            }
            if ((*left_out)++ == 0)
                snprintf(err, SCOUT_ERR_LEN, "%s", why);
            size = before;      /* as if it were not there */
            continue;
        }
        order[kept++] = order[i];
        if (order[i]->eps != NULL && order[i]->eps->n > most)
            most = order[i]->eps->n;
    }
    n = kept;

    sorted = malloc((most > 0 ? most : 1) * sizeof(*sorted));
    out = malloc((size_t)size);
    if (sorted == NULL || out == NULL)
        goto oom;
    p = scout_snapshot_put_head(out, ensemble, written_at_ms, (uint32_t)n,
                                size);
    for (int i = 0; i < n; i++)
        p = put_service(p, order[i], sorted);
    scout_snapshot_put_sum(out, XXH64(out + SCOUT_SNAPSHOT_HDR_LEN,
                           (size_t)size - SCOUT_SNAPSHOT_HDR_LEN, 0));
    free(order);
    free(sorted);
    *buf = (char *)out;
    *len = (size_t)size;
    return SCOUT_OK;

oom:
    scout_seterr(err, "snapshot: out of memory");
fail:
    free(order);
    free(sorted);
    free(out);
    return SCOUT_ERROR;
}

int
scout_snapshot_encode(const char *ensemble, int64_t written_at_ms,
                      const scout_snapshot_service_t *svcs, int n,
                      char **buf, size_t *len, char *err)
{
    return encode(ensemble, written_at_ms, svcs, n, buf, len, NULL, err);
}

int
scout_snapshot_encode_each(const char *ensemble, int64_t written_at_ms,
                           const scout_snapshot_service_t *svcs, int n,
                           char **buf, size_t *len, int *left_out,
                           char *err)
{
    return encode(ensemble, written_at_ms, svcs, n, buf, len, left_out, err);
}

/* ---- one service's record (snapshot_write.c assembles them) ------------ */

scout_snapshot_rec_t *
scout_snapshot_rec_new(const scout_snapshot_service_t *sv, char *err)
{
    scout_endpoint_t **sorted;
    scout_snapshot_rec_t *r;
    unsigned char *data;
    uint64_t size = 0;
    size_t name_len;
    unsigned n = sv->eps != NULL ? sv->eps->n : 0;

    if (size_service(sv, &size, err) != SCOUT_OK)
        return NULL;
    if (size > SCOUT_SNAPSHOT_MAX_SIZE) {
        scout_seterr(err, "snapshot: over the %u-byte limit at service "
                     "\"%s\"", SCOUT_SNAPSHOT_MAX_SIZE, S(sv->name));
        return NULL;
    }
    name_len = strlen(S(sv->name));
    sorted = malloc((n > 0 ? n : 1) * sizeof(*sorted));
    r = malloc(sizeof(*r) + name_len);
    data = malloc((size_t)size > 0 ? (size_t)size : 1);
    if (sorted == NULL || r == NULL || data == NULL) {
        free(sorted);
        free(r);
        free(data);
        scout_seterr(err, "snapshot: out of memory");
        return NULL;
    }
    r->refs = 1;
    r->len = (size_t)size;
    r->data = data;
    put_service(r->data, sv, sorted);
    free(sorted);
    r->hash = XXH64(r->data, r->len, 0);
    r->file_id = 0;             /* in no file yet */
    r->off = 0;
    r->name_len = (uint32_t)name_len;
    memcpy(r->name, S(sv->name), name_len);
    return r;
}
