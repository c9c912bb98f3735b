/*
 * snapshot_merge.c -- the base and the journal beside it indexed where
 * they are (snapshot_merge.h): the journal's records read and checked
 * (each by its own XXH64, a torn or corrupt one ending the journal), the
 * base's records walked once, and the two merged by name, the newest
 * record of each service winning, exactly as the fold merged them.
 *
 * Each record is walked with the lazy reader's checks where it is
 * (scout_snaprd_service); one that fails them is walked by its lengths
 * alone, as the fold walked it, and left unchecked: a reader checks it
 * again at the offset the fold would have given it, so it is refused,
 * with the fold's words, only when it is served (a superseded record is
 * never looked at again, as the fold never copied it).
 *
 * What this file must never do: merge a journal into a base it does not
 * name, take a record whose checksum fails or anything after it, or read
 * past a length it did not check.
 */
#include "publish/snapshot_merge.h"

#include "publish/snapshot_journal.h"

static const char jmagic[8] = { 'S', 'C', 'O', 'U', 'T', 'J', 'N', 'L' };

static int
name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);

    return c != 0 ? c : (al > bl) - (al < bl);
}

/* By name, then journal order: the newest record of a name is the last of
 * its run. */
static int
by_name_then_seq(const void *x, const void *y)
{
    const scout_snaprec_t *a = x, *b = y;
    int c = name_cmp(a->name, a->name_len, b->name, b->name_len);

    return c != 0 ? c : (a->seq > b->seq) - (a->seq < b->seq);
}

/* A length-prefixed string, stepped over: only its bounds are checked. */
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

/* Steps over one service record checking every length against the bytes
 * left and nothing else (what the fold did to find where records are). */
static int
walk_lengths(reader_t *r, scout_snaprec_t *sp)
{
    const char *s;
    size_t len;
    uint32_t neps = 0, nmeta = 0;

    sp->rec = r->p;
    sp->checked = 0;
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
    sp->len = (size_t)(r->p - sp->rec);
    return SCOUT_OK;
}

/* One record: checked where it passes the lazy reader's checks (one walk
 * for both), else walked by its lengths and left unchecked.  A record
 * that passes the checks walks by its lengths too, over the same bytes. */
static int
walk_rec(reader_t *r, scout_snaprec_t *sp)
{
    const unsigned char *from = r->p;
    char *err = r->err, scratch[SCOUT_ERR_LEN];
    int rc;

    r->err = scratch;
    rc = scout_snaprd_service(r, sp, NULL, 0);
    r->err = err;
    if (rc == SCOUT_OK)
        return SCOUT_OK;
    r->p = from;
    return walk_lengths(r, sp);
}

/* The journal file in pages populated at once (as the base is read:
 * snapshot_rd.h); SCOUT_AGAIN when there is none. */
static int
read_journal(const char *jpath, unsigned char **out, size_t *size,
             size_t *len, char *err)
{
    struct stat st;
    unsigned char *b = MAP_FAILED;
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
        || (b = mmap(NULL, st.st_size > 0 ? (size_t)st.st_size : 1,
                     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
                     | MAP_POPULATE, -1, 0)) == MAP_FAILED) {
        scout_seterr(err, "%s", !S_ISREG(st.st_mode) ? "not a regular file"
                     : (uint64_t)st.st_size <= SCOUT_SNAPSHOT_MAX_SIZE
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
    *size = st.st_size > 0 ? (size_t)st.st_size : 1;
    *len = got;
    return SCOUT_OK;
}

/* The records of the journal jb[0, jlen) that apply, as record spans
 * (malloc'd, *n of them, .seq their record's number); *at_ms the last
 * applied record's written_at.  Stops at the first record that is torn or
 * corrupt (note says so). */
static void
journal_spans(const unsigned char *jb, size_t jlen, const char *jpath,
              scout_snaprec_t **out, int *n, int *records, int64_t *at_ms,
              char *note)
{
    size_t pos = SCOUT_JOURNAL_HDR_LEN, cap = 0;
    scout_snaprec_t *sp = NULL;
    char why[SCOUT_ERR_LEN];

    *n = 0;
    *records = 0;
    while (pos < jlen) {
        uint64_t len, sum, at;
        uint32_t count;
        const char *prev = NULL;
        size_t prevl = 0;
        int first = *n;
        reader_t r;

        why[0] = '\0';
        if (jlen - pos < SCOUT_JOURNAL_REC_HDR
            || (len = scout_snaprd_le(jb + pos, 4))
               > jlen - pos - SCOUT_JOURNAL_REC_HDR) {
            snprintf(why, sizeof(why), "torn");
            break;
        }
        sum = scout_snaprd_le(jb + pos + 4, 8);
        r = (reader_t){ .base = jb, .p = jb + pos + SCOUT_JOURNAL_REC_HDR,
                        .label = jpath, .err = why };
        r.end = r.p + len;
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
                scout_snaprec_t *m = realloc(sp, (cap = cap ? 2 * cap : 64)
                                                 * sizeof(*sp));

                if (m == NULL) {
                    snprintf(why, sizeof(why), "out of memory");
                    break;
                }
                sp = m;
            }
            if (walk_rec(&r, &sp[*n]) != SCOUT_OK)
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
}

/* The base's records and the journal's (js: sorted by name, then record)
 * merged into m->recs as the fold merged them; SCOUT_ERROR when the base
 * does not walk or the state would pass the size limit (the fold then
 * served the base alone; why in note). */
static int
merge(scout_snapmerge_t *m, scout_snaprec_t *js, int jn, int64_t at_ms)
{
    size_t head_end, total, k = 0, at;
    uint64_t v;
    uint32_t n, count = 0;
    scout_snaprec_t *bs = NULL, *o;
    char why[SCOUT_ERR_LEN];
    reader_t r = { .base = m->base, .p = m->base + SCOUT_SNAPSHOT_HDR_LEN,
                   .end = m->base + m->base_len, .label = "base",
                   .err = why };
    int ok = 0;

    if (scout_snaprd_span(&r, &m->writer, &m->writer_len, "writer")
        != SCOUT_OK
        || scout_snaprd_span(&r, &m->ensemble, &m->ensemble_len, "ensemble")
           != SCOUT_OK
        || scout_snaprd_int(&r, 8, &v, "written_at") != SCOUT_OK)
        goto done;
    head_end = (size_t)(r.p - m->base);     /* the count follows */
    if (scout_snaprd_count(&r, &n, SCOUT_SNAPSHOT_MAX_SERVICES, SVC_MIN,
                           "service count") != SCOUT_OK
        || (bs = malloc((n ? n : 1) * sizeof(*bs))) == NULL)
        goto done;
    for (uint32_t i = 0; i < n; i++) {
        if (walk_rec(&r, &bs[i]) != SCOUT_OK)
            goto done;
        bs[i].seq = -1;
    }
    /* the newest record of each name in the journal: the last of its run */
    for (int i = 0, w = 0; i < jn; i++) {
        if (i + 1 < jn && name_cmp(js[i].name, js[i].name_len,
                                   js[i + 1].name, js[i + 1].name_len) == 0)
            continue;
        js[w++] = js[i];
        if (i + 1 == jn)
            jn = w;
    }
    /* the two sorted lists merged; the journal's record wins a tie */
    total = head_end + 4;
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
    if ((o = malloc((count ? count : 1) * sizeof(*o))) == NULL) {
        snprintf(why, sizeof(why), "out of memory");
        goto done;
    }
    at = head_end + 4;
    k = 0;
    for (uint32_t i = 0, w = 0; i < n || k < (size_t)jn; w++) {
        int c = i == n ? 1 : k == (size_t)jn ? -1
                : name_cmp(bs[i].name, bs[i].name_len, js[k].name,
                           js[k].name_len);

        o[w] = c < 0 ? bs[i] : js[k];
        o[w].at = at;               /* where the fold put it */
        at += o[w].len;
        if (c < 0)
            i++;
        else {
            k++;
            i += c == 0;
        }
    }
    m->recs = o;
    m->n = count;
    m->count_at = head_end;
    m->written_at_ms = at_ms;
    m->merged = 1;
    ok = 1;

done:
    if (!ok) {
        size_t l = strlen(m->note);

        snprintf(m->note + l, SCOUT_ERR_LEN - l, "; not applied: %s", why);
    }
    free(bs);
    return ok ? SCOUT_OK : SCOUT_ERROR;
}

int
scout_snapmerge_open(const char *path, scout_snapmerge_t *m, char *err)
{
    char jpath[4096], why[SCOUT_ERR_LEN];
    const char *slash = strrchr(path, '/');
    scout_snaprec_t *js = NULL;
    int jn = 0, records = 0, rc;
    int64_t at_ms = 0;

    memset(m, 0, sizeof(*m));
    if (scout_snaprd_load_file(path, &m->base, &m->base_size, &m->base_len,
                               err) != SCOUT_OK)
        return SCOUT_ERROR;
    if (m->base_len >= SCOUT_SNAPSHOT_HDR_LEN)
        m->base_sum = scout_snaprd_le(m->base + 24, 8);
    if (snprintf(jpath, sizeof(jpath), "%.*s%s",
                 slash != NULL ? (int)(slash - path + 1) : 0, path,
                 SCOUT_JOURNAL_FILE) >= (int)sizeof(jpath))
        return SCOUT_OK;
    rc = read_journal(jpath, &m->jnl, &m->jnl_size, &m->jnl_len, why);
    if (rc == SCOUT_AGAIN)
        return SCOUT_OK;        /* none: the base is the whole state */
    if (rc != SCOUT_OK) {
        snprintf(m->note, SCOUT_ERR_LEN, "journal %s: %s; ignored", jpath,
                 why);
        return SCOUT_OK;
    }
    /* a base its own reader will refuse: said in its words, not ours */
    if (scout_snaprd_check_header(m->base, m->base_len, path, why)
        != SCOUT_OK)
        goto alone;
    if (m->jnl_len < SCOUT_JOURNAL_HDR_LEN || memcmp(m->jnl, jmagic, 8) != 0
        || scout_snaprd_le(m->jnl + 8, 4) != SCOUT_JOURNAL_VERSION
        || scout_snaprd_le(m->jnl + 12, 4) != 0) {
        snprintf(m->note, SCOUT_ERR_LEN, "journal %s: %s; ignored", jpath,
                 m->jnl_len < SCOUT_JOURNAL_HDR_LEN ? "torn header"
                 : memcmp(m->jnl, jmagic, 8) != 0 ? "not a scout journal"
                 : "a format this build does not read");
        goto alone;
    }
    if (scout_snaprd_le(m->jnl + 16, 8)
        != m->base_len - SCOUT_SNAPSHOT_HDR_LEN
        || scout_snaprd_le(m->jnl + 24, 8) != m->base_sum) {
        snprintf(m->note, SCOUT_ERR_LEN, "journal %s: written for another "
                 "snapshot (checksum %016llx, this one is %016llx); "
                 "ignored", jpath,
                 (unsigned long long)scout_snaprd_le(m->jnl + 24, 8),
                 (unsigned long long)m->base_sum);
        goto alone;
    }
    journal_spans(m->jnl, m->jnl_len, jpath, &js, &jn, &records, &at_ms,
                  m->note);
    if (records == 0)
        goto alone;
    if (jn > 0)                 /* (records of no service: none) */
        qsort(js, (size_t)jn, sizeof(*js), by_name_then_seq);
    if (merge(m, js, jn, at_ms) != SCOUT_OK)
        goto alone;
    free(js);
    return SCOUT_OK;

alone:
    free(js);
    munmap(m->jnl, m->jnl_size);
    m->jnl = NULL;
    m->jnl_size = m->jnl_len = 0;
    return SCOUT_OK;
}

/* At most max bytes of *buf's pages given back, from its end, to a page
 * boundary (the mapping's start stays, unless all goes). */
static size_t
release_pages(unsigned char **buf, size_t *size, size_t *len, size_t max)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), keep;

    keep = *size > max ? *size - max : 0;
    keep = keep / page * page;
    if (keep >= *size)
        keep = *size > page ? (*size - 1) / page * page : 0;
    if (keep == 0) {
        munmap(*buf, *size);
        *buf = NULL;
    } else {
        munmap(*buf + keep, *size - keep);
    }
    *size = keep;
    *len = keep < *len ? keep : *len;
    return keep;
}

size_t
scout_snapmerge_release(scout_snapmerge_t *m, size_t max)
{
    if (m->jnl != NULL)
        release_pages(&m->jnl, &m->jnl_size, &m->jnl_len, max);
    else if (m->base != NULL)
        release_pages(&m->base, &m->base_size, &m->base_len, max);
    return (m->jnl != NULL ? m->jnl_size : 0)
           + (m->base != NULL ? m->base_size : 0);
}

void
scout_snapmerge_close(scout_snapmerge_t *m)
{
    if (m->base != NULL)
        munmap(m->base, m->base_size);
    if (m->jnl != NULL)
        munmap(m->jnl, m->jnl_size);
    free(m->recs);
    memset(m, 0, sizeof(*m));
}
