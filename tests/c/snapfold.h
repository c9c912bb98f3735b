/*
 * snapfold.h -- the reference the readers are held to: base + journal folded
 * into the bytes of the full file a whole write of the same state gives,
 * exactly as the readers did it before they indexed the two where they
 * are (agent/publish/snapshot_merge.h; the code of snapshot_journal.c at
 * 8d0c3e6, kept here unchanged but for its name and one guard: a journal
 * whose records hold no service qsort'ed a NULL array, which UBSan stops).
 * test_snapshot_journal checks it against the writer's whole file;
 * test_snapshot_merge checks the readers against it.
 *
 * ref_fold_load(path, &buf, &size, &got, &base_sum, note, err): the base at
 * path with the journal beside it folded in, in pages of their own (munmap
 * buf, size); note says what the journal did.
 */
#ifndef SCOUT_TEST_SNAPFOLD_H
#define SCOUT_TEST_SNAPFOLD_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "publish/snapshot_journal.h"
#include "publish/snapshot_rd.h"

static const char jmagic[8] = { 'S', 'C', 'O', 'U', 'T', 'J', 'N', 'L' };

static void
put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* One service record: where it is and its name. */
typedef struct {
    const unsigned char *at;
    size_t               len;
    const char          *name;
    size_t               name_len;
    int                  seq;       /* journal order, for the newest */
} span_t;

static int
name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);

    return c != 0 ? c : (al > bl) - (al < bl);
}

static int
by_name_then_seq(const void *x, const void *y)
{
    const span_t *a = x, *b = y;
    int c = name_cmp(a->name, a->name_len, b->name, b->name_len);

    return c != 0 ? c : (a->seq > b->seq) - (a->seq < b->seq);
}

/* A length-prefixed string, stepped over: only its bounds are checked
 * (what it holds is checked by the reader, on the folded file). */
static int
skip_str(reader_t *r, const char **s, size_t *len, const char *what)
{
    uint64_t n;

    if (r->end - r->p < 4)
        return scout_snaprd_fail(r, "%s runs past the end", what);
    n = scout_snaprd_le(r->p, 4);
    if (n > (size_t)(r->end - r->p) - 4)
        return scout_snaprd_fail(r, "%s of %llu bytes runs past the end",
                                 what, (unsigned long long)n);
    *s = (const char *)r->p + 4;
    *len = (size_t)n;
    r->p += 4 + n;
    return SCOUT_OK;
}

static int
skip_fixed(reader_t *r, size_t n, uint32_t *count, const char *what)
{
    if ((size_t)(r->end - r->p) < n + (count != NULL ? 4 : 0))
        return scout_snaprd_fail(r, "%s runs past the end", what);
    r->p += n;
    if (count != NULL) {
        *count = (uint32_t)scout_snaprd_le(r->p, 4);
        r->p += 4;
    }
    return SCOUT_OK;
}

/* Steps over one service record, checking every length against the bytes
 * left and nothing else: the fold only needs to know where records are,
 * and the reader checks the folded file whole (a lying count ends at the
 * end of the bytes, never allocates). */
static int
walk_service(reader_t *r, span_t *sp)
{
    const char *s;
    size_t len;
    uint32_t neps = 0, nmeta = 0;

    sp->at = r->p;
    if (skip_str(r, &sp->name, &sp->name_len, "service name") != SCOUT_OK
        || skip_str(r, &s, &len, "service path") != SCOUT_OK
        || skip_fixed(r, 24, &neps, "service") != SCOUT_OK)
        return SCOUT_ERROR;
    for (uint32_t e = 0; e < neps; e++) {
        if (skip_str(r, &s, &len, "endpoint id") != SCOUT_OK
            || skip_str(r, &s, &len, "endpoint host") != SCOUT_OK
            || skip_str(r, &s, &len, "endpoint status") != SCOUT_OK
            || skip_fixed(r, 16, &nmeta, "endpoint") != SCOUT_OK)
            return SCOUT_ERROR;
        for (uint32_t m = 0; m < nmeta; m++)
            if (skip_str(r, &s, &len, "meta key") != SCOUT_OK
                || skip_str(r, &s, &len, "meta value") != SCOUT_OK)
                return SCOUT_ERROR;
    }
    sp->len = (size_t)(r->p - sp->at);
    return SCOUT_OK;
}

/* The whole journal file, malloc'd; SCOUT_AGAIN when there is none. */
static int
read_journal(const char *jpath, unsigned char **out, size_t *len, char *err)
{
    struct stat st;
    unsigned char *b = NULL;
    size_t got = 0;
    int fd = open(jpath, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);

    *out = NULL;
    if (fd < 0) {
        if (errno == ENOENT)
            return SCOUT_AGAIN;
        return scout_seterr(err, "%s", errno == ELOOP
                            ? "a symbolic link; not followed"
                            : strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)
        || (uint64_t)st.st_size > SCOUT_SNAPSHOT_MAX_SIZE
        || (b = malloc(st.st_size > 0 ? (size_t)st.st_size : 1)) == NULL) {
        scout_seterr(err, "%s", !S_ISREG(st.st_mode) ? "not a regular file"
                     : b == NULL && (uint64_t)st.st_size
                                    <= SCOUT_SNAPSHOT_MAX_SIZE
                     ? "out of memory" : "over the size limit");
        close(fd);
        return SCOUT_ERROR;
    }
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, b + got, (size_t)st.st_size - got);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;              /* shorter than stat said: a torn tail */
        got += (size_t)k;
    }
    close(fd);
    *out = b;
    *len = got;
    return SCOUT_OK;
}

/* The records of the journal jb[0, jlen) that apply, as spans (malloc'd,
 * *n of them, newest last for a name); *at_ms the last applied record's
 * written_at.  Stops at the first record that is torn or corrupt (note
 * says so). */
static int
journal_spans(const unsigned char *jb, size_t jlen, const char *jpath,
              span_t **out, int *n, int *records, int64_t *at_ms,
              char *note)
{
    size_t pos = SCOUT_JOURNAL_HDR_LEN, cap = 0;
    span_t *sp = NULL;
    char why[SCOUT_ERR_LEN];

    *n = 0;
    *records = 0;
    while (pos < jlen) {
        uint64_t len, sum, at;
        uint32_t count;
        const char *prev = NULL;
        size_t prevl = 0;
        int first = *n;
        reader_t r = { 0 };

        why[0] = '\0';
        if (jlen - pos < SCOUT_JOURNAL_REC_HDR
            || (len = scout_snaprd_le(jb + pos, 4))
               > jlen - pos - SCOUT_JOURNAL_REC_HDR) {
            snprintf(why, sizeof(why), "torn");
            break;
        }
        sum = scout_snaprd_le(jb + pos + 4, 8);
        r.base = jb;
        r.p = jb + pos + SCOUT_JOURNAL_REC_HDR;
        r.end = r.p + len;
        r.label = jpath;
        r.err = why;
        if (XXH64(r.p, (size_t)len, 0) != sum) {
            snprintf(why, sizeof(why), "checksum mismatch");
            break;
        }
        if (scout_snaprd_int(&r, 8, &at, "written_at") != SCOUT_OK
            || scout_snaprd_count(&r, &count, SCOUT_SNAPSHOT_MAX_SERVICES,
                                  SVC_MIN, "service count") != SCOUT_OK)
            break;
        for (uint32_t i = 0; i < count; i++) {
            if ((size_t)*n == cap) {
                span_t *m = realloc(sp, (cap = cap ? 2 * cap : 64)
                                        * sizeof(*sp));

                if (m == NULL) {
                    snprintf(why, sizeof(why), "out of memory");
                    break;
                }
                sp = m;
            }
            if (walk_service(&r, &sp[*n]) != SCOUT_OK)
                break;
            if (prev != NULL && name_cmp(prev, prevl, sp[*n].name,
                                         sp[*n].name_len) >= 0) {
                scout_snaprd_fail(&r, "names not ascending");
                break;
            }
            prev = sp[*n].name;
            prevl = sp[*n].name_len;
            sp[*n].seq = *records;
            (*n)++;
        }
        if (why[0] == '\0' && r.p != r.end)
            scout_snaprd_fail(&r, "bytes after the last service");
        if (why[0] != '\0') {
            *n = first;         /* none of a record that does not walk */
            break;
        }
        *at_ms = (int64_t)at;
        (*records)++;
        pos += SCOUT_JOURNAL_REC_HDR + (size_t)len;
    }
    if (pos < jlen)
        snprintf(note, SCOUT_ERR_LEN, "journal %s: %d record%s applied; "
                 "the rest, from byte %zu, ignored (%s)", jpath, *records,
                 *records == 1 ? "" : "s", pos, why);
    else
        snprintf(note, SCOUT_ERR_LEN, "journal %s: %d record%s applied",
                 jpath, *records, *records == 1 ? "" : "s");
    *out = sp;
    return SCOUT_OK;
}

/* base + the journal's spans (sorted by name, newest kept) into a new
 * full file: its pages, size, length; SCOUT_ERROR when the base does not
 * walk or the result would pass the size limit (the base alone is then
 * served; why in note). */
static int
fold(const unsigned char *base, size_t blen, span_t *js, int jn,
     int64_t at_ms, unsigned char **out, size_t *out_size, size_t *out_len,
     char *note)
{
    const char *s;
    size_t len, head_end, total, k = 0;
    uint64_t v;
    uint32_t n;
    span_t *bs = NULL;
    unsigned char *o, *p;
    uint32_t count = 0;
    char why[SCOUT_ERR_LEN];
    reader_t r = { base, base + SCOUT_SNAPSHOT_HDR_LEN, base + blen,
                   "base", why, 0 };
    int ok = 0;

    if (scout_snaprd_span(&r, &s, &len, "writer") != SCOUT_OK
        || scout_snaprd_span(&r, &s, &len, "ensemble") != SCOUT_OK
        || scout_snaprd_int(&r, 8, &v, "written_at") != SCOUT_OK)
        goto done;
    head_end = (size_t)(r.p - base);        /* writer, ensemble: kept */
    if (scout_snaprd_count(&r, &n, SCOUT_SNAPSHOT_MAX_SERVICES, SVC_MIN,
                           "service count") != SCOUT_OK
        || (bs = malloc((n ? n : 1) * sizeof(*bs))) == NULL)
        goto done;
    for (uint32_t i = 0; i < n; i++)
        if (walk_service(&r, &bs[i]) != SCOUT_OK)
            goto done;
    /* the newest record of each name in the journal: the last of its run */
    total = head_end + 4;      /* (head_end holds written_at) */
    for (int i = 0, w = 0; i < jn; i++) {
        if (i + 1 < jn && name_cmp(js[i].name, js[i].name_len,
                                   js[i + 1].name, js[i + 1].name_len) == 0)
            continue;
        js[w++] = js[i];
        if (i + 1 == jn)
            jn = w;
    }
    /* merge the two sorted lists; the journal's wins a tie */
    for (uint32_t i = 0; i < n || k < (size_t)jn; count++) {
        int c = i == n ? 1 : k == (size_t)jn ? -1
                : name_cmp(bs[i].name, bs[i].name_len, js[k].name,
                           js[k].name_len);

        if (c < 0)
            total += bs[i++].len;
        else {
            total += js[k++].len;
            i += c == 0;
        }
    }
    if (total > SCOUT_SNAPSHOT_MAX_SIZE) {
        snprintf(why, sizeof(why), "base and journal together pass the "
                 "%u-byte limit", SCOUT_SNAPSHOT_MAX_SIZE);
        goto done;
    }
    o = mmap(NULL, total, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (o == MAP_FAILED) {
        snprintf(why, sizeof(why), "out of memory");
        goto done;
    }
    memcpy(o, base, head_end);
    p = o + head_end - 8;
    put_le(p, (uint64_t)at_ms, 8);
    put_le(p + 8, count, 4);
    p += 12;
    k = 0;
    for (uint32_t i = 0; i < n || k < (size_t)jn;) {
        int c = i == n ? 1 : k == (size_t)jn ? -1
                : name_cmp(bs[i].name, bs[i].name_len, js[k].name,
                           js[k].name_len);
        const span_t *from = c < 0 ? &bs[i] : &js[k];

        memcpy(p, from->at, from->len);
        p += from->len;
        if (c < 0)
            i++;
        else {
            k++;
            i += c == 0;
        }
    }
    put_le(o + 16, total - SCOUT_SNAPSHOT_HDR_LEN, 8);
    put_le(o + 24, XXH64(o + SCOUT_SNAPSHOT_HDR_LEN,
                         total - SCOUT_SNAPSHOT_HDR_LEN, 0), 8);
    *out = o;
    *out_size = *out_len = total;
    ok = 1;

done:
    if (!ok) {
        size_t l = strlen(note);

        snprintf(note + l, SCOUT_ERR_LEN - l, "; not applied: %s", why);
    }
    free(bs);
    return ok ? SCOUT_OK : SCOUT_ERROR;
}

static int
ref_fold_load(const char *path, unsigned char **buf, size_t *size,
                       size_t *got, uint64_t *base_sum, char *note,
                       char *err)
{
    char jpath[4096], why[SCOUT_ERR_LEN];
    const char *slash = strrchr(path, '/');
    unsigned char *jb = NULL, *o;
    size_t jlen = 0, olen, osize;
    span_t *js = NULL;
    int jn = 0, records = 0, rc;
    int64_t at_ms = 0;

    note[0] = '\0';
    *base_sum = 0;
    if (scout_snaprd_load_file(path, buf, size, got, err) != SCOUT_OK)
        return SCOUT_ERROR;
    if (*got >= SCOUT_SNAPSHOT_HDR_LEN)
        *base_sum = scout_snaprd_le(*buf + 24, 8);
    if (snprintf(jpath, sizeof(jpath), "%.*s%s",
                 slash != NULL ? (int)(slash - path + 1) : 0, path,
                 SCOUT_JOURNAL_FILE) >= (int)sizeof(jpath))
        return SCOUT_OK;
    rc = read_journal(jpath, &jb, &jlen, why);
    if (rc == SCOUT_AGAIN)
        return SCOUT_OK;        /* none: the base is the whole state */
    if (rc != SCOUT_OK) {
        snprintf(note, SCOUT_ERR_LEN, "journal %s: %s; ignored", jpath, why);
        return SCOUT_OK;
    }
    /* a base its own reader will refuse: said in its words, not ours */
    if (scout_snaprd_check_header(*buf, *got, path, why) != SCOUT_OK)
        goto done;
    if (jlen < SCOUT_JOURNAL_HDR_LEN || memcmp(jb, jmagic, 8) != 0
        || scout_snaprd_le(jb + 8, 4) != SCOUT_JOURNAL_VERSION
        || scout_snaprd_le(jb + 12, 4) != 0) {
        snprintf(note, SCOUT_ERR_LEN, "journal %s: %s; ignored", jpath,
                 jlen < SCOUT_JOURNAL_HDR_LEN ? "torn header"
                 : memcmp(jb, jmagic, 8) != 0 ? "not a scout journal"
                 : "a format this build does not read");
        goto done;
    }
    if (scout_snaprd_le(jb + 16, 8) != *got - SCOUT_SNAPSHOT_HDR_LEN
        || scout_snaprd_le(jb + 24, 8) != *base_sum) {
        snprintf(note, SCOUT_ERR_LEN, "journal %s: written for another "
                 "snapshot (checksum %016llx, this one is %016llx); "
                 "ignored", jpath,
                 (unsigned long long)scout_snaprd_le(jb + 24, 8),
                 (unsigned long long)*base_sum);
        goto done;
    }
    if (journal_spans(jb, jlen, jpath, &js, &jn, &records, &at_ms, note)
        != SCOUT_OK || records == 0)
        goto done;
    if (jn > 0)     /* (the one change: no qsort of a NULL array, UBSan) */
        qsort(js, (size_t)jn, sizeof(*js), by_name_then_seq);
    if (fold(*buf, *got, js, jn, at_ms, &o, &osize, &olen, note)
        == SCOUT_OK) {
        munmap(*buf, *size);
        *buf = o;
        *size = osize;
        *got = olen;
    }

done:
    free(js);
    free(jb);
    return SCOUT_OK;
}

#endif
