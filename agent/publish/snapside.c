/*
 * snapside.c -- the side file that says which policy wrote the disk
 * snapshot (see snapside.h).  It only ever makes a start cheaper: whatever
 * is wrong with it (missing, torn, foreign, another snapshot's) the caller
 * starts as if it were not there, so this file checks everything and
 * trusts nothing it reads.
 */
#include "publish/snapside.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "scout.h"

static const char side_magic[8] = { 'S', 'C', 'O', 'U', 'T', 'S', 'D', 'E' };
#define SIDE_VERSION 1
#define SIDE_MAX     (64u << 20)
#define FILE_MAX     (64u << 20)    /* a policy file, for the fingerprint */

static void
put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++, v >>= 8)
        p[i] = (unsigned char)(v & 255);
}

static uint64_t
get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;

    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- fingerprint --------------------------------------------------------- */

static void
fp_str(XXH64_state_t *st, const char *s)
{
    /* NULL (not given) and "" (given empty) differ */
    if (s == NULL)
        XXH64_update(st, "\1", 2);
    else
        XXH64_update(st, s, strlen(s) + 1);
}

static int
fp_file(XXH64_state_t *st, const char *path, char *err)
{
    unsigned char sum[8];
    struct stat sb;
    char *buf = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0)
        return scout_seterr(err, "%s: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)
        || (uint64_t)sb.st_size > FILE_MAX
        || (buf = malloc((size_t)sb.st_size + 1)) == NULL) {
        close(fd);
        return scout_seterr(err, "%s: not a readable file", path);
    }
    while (got < (size_t)sb.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)sb.st_size - got);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    fp_str(st, path);
    put_le(sum, XXH64(buf, got, 0), 8);
    XXH64_update(st, sum, 8);
    free(buf);
    return SCOUT_OK;
}

int
scout_snapside_fingerprint(const scout_snapside_inputs_t *in,
                           const char *const *files, int nfiles,
                           uint64_t *fp, char *err)
{
    XXH64_state_t st;

    XXH64_reset(&st, 0);
    fp_str(&st, "scout " SCOUT_VERSION);
    fp_str(&st, in->zk);
    fp_str(&st, in->zk_env);
    fp_str(&st, in->api);
    fp_str(&st, in->cache_dir);
    fp_str(&st, in->lua_dir);
    fp_str(&st, in->lua_dir_env);
    fp_str(&st, in->lua_path_env);
    fp_str(&st, in->listen);
    for (int i = 0; i < nfiles; i++)
        if (fp_file(&st, files[i], err) != SCOUT_OK)
            return SCOUT_ERROR;
    *fp = XXH64_digest(&st);
    return SCOUT_OK;
}

/* ---- encode -------------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t         len, cap;
} wbuf_t;

static int
w_grow(wbuf_t *w, size_t n)
{
    unsigned char *q;
    size_t cap = w->cap ? w->cap : 4096;

    if (w->len + n <= w->cap)
        return SCOUT_OK;
    while (cap < w->len + n)
        cap *= 2;
    if ((q = realloc(w->p, cap)) == NULL)
        return SCOUT_ERROR;
    w->p = q;
    w->cap = cap;
    return SCOUT_OK;
}

static int
w_int(wbuf_t *w, uint64_t v, int bytes)
{
    if (w_grow(w, (size_t)bytes) != SCOUT_OK)
        return SCOUT_ERROR;
    put_le(w->p + w->len, v, bytes);
    w->len += (size_t)bytes;
    return SCOUT_OK;
}

static int
w_str(wbuf_t *w, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (w_int(w, n, 4) != SCOUT_OK || w_grow(w, n) != SCOUT_OK)
        return SCOUT_ERROR;
    memcpy(w->p + w->len, s != NULL ? s : "", n);
    w->len += n;
    return SCOUT_OK;
}

/* The encoder: the header at once, then the services one by one, so that
 * the steps after an early start's hand-over add them in slices (issue
 * 14's loop rule) and a start adds them all in one call. */
struct scout_snapside_enc_s {
    wbuf_t w;
    int    n, added;
    int    rc;
    XXH64_state_t h;        /* of w's bytes up to hashed: the end hashes */
    size_t hashed;          /*   only the last service's, not the file  */
};

static void
enc_hash(scout_snapside_enc_t *e)
{
    if (e->rc == SCOUT_OK && e->w.len > e->hashed) {
        XXH64_update(&e->h, e->w.p + e->hashed, e->w.len - e->hashed);
        e->hashed = e->w.len;
    }
}

scout_snapside_enc_t *
scout_snapside_enc_new(uint64_t fp, uint64_t sum, const char *listen,
                       const char *const *files, int nfiles, int n)
{
    scout_snapside_enc_t *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return NULL;
    /* room for 48 bytes a service at once: growing a buffer of MBs by
     * doubling copies it, in one slice of the caller's */
    if (w_grow(&e->w, 4096 + (size_t)(n > 0 ? n : 0) * 48) != SCOUT_OK) {
        free(e);
        return NULL;
    }
    memcpy(e->w.p, side_magic, 8);
    e->w.len = 8;
    e->n = n;
    XXH64_reset(&e->h, 0);
    e->rc |= w_int(&e->w, SIDE_VERSION, 4);
    e->rc |= w_int(&e->w, 0, 4);
    e->rc |= w_int(&e->w, sum, 8);
    e->rc |= w_int(&e->w, fp, 8);
    e->rc |= w_str(&e->w, listen);
    e->rc |= w_int(&e->w, (uint64_t)nfiles, 4);
    for (int i = 0; i < nfiles; i++)
        e->rc |= w_str(&e->w, files[i]);
    e->rc |= w_int(&e->w, (uint64_t)n, 4);
    enc_hash(e);
    return e;
}

void
scout_snapside_enc_add(scout_snapside_enc_t *e, const char *name,
                       const char *path)
{
    e->rc |= w_str(&e->w, name);
    e->rc |= w_str(&e->w, path);
    e->added++;
    enc_hash(e);
}

char *
scout_snapside_enc_end(scout_snapside_enc_t *e, size_t *len)
{
    char *buf = NULL;

    enc_hash(e);
    if (e->added == e->n)
        e->rc |= w_int(&e->w, XXH64_digest(&e->h), 8);
    if (e->rc == SCOUT_OK && e->added == e->n) {
        *len = e->w.len;
        buf = (char *)e->w.p;
        e->w.p = NULL;
    }
    scout_snapside_enc_free(e);
    return buf;
}

void
scout_snapside_enc_free(scout_snapside_enc_t *e)
{
    if (e == NULL)
        return;
    free(e->w.p);
    free(e);
}

char *
scout_snapside_encode(uint64_t fp, uint64_t sum, const char *listen,
                      const char *const *files, int nfiles,
                      const char *const *names, const char *const *paths,
                      int n, size_t *len)
{
    scout_snapside_enc_t *e = scout_snapside_enc_new(fp, sum, listen, files,
                                                     nfiles, n);

    if (e == NULL)
        return NULL;
    for (int i = 0; i < n; i++)
        scout_snapside_enc_add(e, names[i], paths[i]);
    return scout_snapside_enc_end(e, len);
}

void
scout_snapside_set_sum(char *buf, size_t len, uint64_t sum)
{
    unsigned char *b = (unsigned char *)buf;

    if (len < 40)
        return;
    put_le(b + 16, sum, 8);
    put_le(b + len - 8, XXH64(b, len - 8, 0), 8);
}

/* ---- files --------------------------------------------------------------- */

int
scout_snapside_write(const char *dir, const void *buf, size_t len,
                     int durable, char *err)
{
    char tmp[4096], dst[4096];
    const char *p = buf;
    size_t done = 0;
    int fd;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s/%s", dir, SCOUT_SNAPSIDE_TMP)
        >= sizeof(tmp)
        || (size_t)snprintf(dst, sizeof(dst), "%s/%s", dir,
                            SCOUT_SNAPSIDE_FILE) >= sizeof(dst))
        return scout_seterr(err, "side file: cache dir path too long");
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd < 0)
        return scout_seterr(err, "side file %s: %s", tmp, strerror(errno));
    while (done < len) {
        ssize_t k = write(fd, p + done, len - done);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        done += (size_t)k;
    }
    if (done < len || (durable && fsync(fd) != 0)) {
        scout_seterr(err, "side file %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return SCOUT_ERROR;
    }
    close(fd);
    if (rename(tmp, dst) != 0) {
        scout_seterr(err, "side file %s: %s", dst, strerror(errno));
        unlink(tmp);
        return SCOUT_ERROR;
    }
    return SCOUT_OK;
}

int
scout_snapside_snapshot_sum(const char *path, uint64_t *sum, char *err)
{
    unsigned char hdr[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    ssize_t k;

    if (fd < 0)
        return scout_seterr(err, "%s: %s", path, strerror(errno));
    k = pread(fd, hdr, sizeof(hdr), 0);
    close(fd);
    if (k != (ssize_t)sizeof(hdr) || memcmp(hdr, "SCOUTSNP", 8) != 0)
        return scout_seterr(err, "%s: not a scout snapshot", path);
    *sum = get_le(hdr + 24, 8);
    return SCOUT_OK;
}

/* ---- read ---------------------------------------------------------------- */

typedef struct {
    const unsigned char *p, *end;
    char                *out;       /* strings copied here, NUL-ended */
} rbuf_t;

static int
r_int(rbuf_t *r, int bytes, uint64_t *v)
{
    if (r->end - r->p < bytes)
        return SCOUT_ERROR;
    *v = get_le(r->p, bytes);
    r->p += bytes;
    return SCOUT_OK;
}

static int
r_str(rbuf_t *r, const char **s)
{
    uint64_t n;

    if (r_int(r, 4, &n) != SCOUT_OK || n > (uint64_t)(r->end - r->p)
        || memchr(r->p, '\0', (size_t)n) != NULL)
        return SCOUT_ERROR;
    memcpy(r->out, r->p, (size_t)n);
    r->out[n] = '\0';
    *s = r->out;
    r->out += n + 1;
    r->p += n;
    return SCOUT_OK;
}

/* A count of records of at least min bytes each, bounded by what is left. */
static int
r_count(rbuf_t *r, int *n, size_t min)
{
    uint64_t v;

    if (r_int(r, 4, &v) != SCOUT_OK || v > (uint64_t)(r->end - r->p) / min)
        return SCOUT_ERROR;
    *n = (int)v;
    return SCOUT_OK;
}

scout_snapside_t *
scout_snapside_parse(const void *buf, size_t len, char *err)
{
    const unsigned char *b = buf;
    scout_snapside_t *s;
    uint64_t version, zero;
    rbuf_t r;

    if (len < 48 || memcmp(b, side_magic, 8) != 0) {
        scout_seterr(err, "not a side file");
        return NULL;
    }
    if (XXH64(b, len - 8, 0) != get_le(b + len - 8, 8)) {
        scout_seterr(err, "checksum mismatch (torn or edited)");
        return NULL;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL
        || (s->buf_ = malloc(len)) == NULL) {
        free(s);
        scout_seterr(err, "out of memory");
        return NULL;
    }
    r.p = b + 8;
    r.end = b + len - 8;
    r.out = s->buf_;
    if (r_int(&r, 4, &version) != SCOUT_OK || version != SIDE_VERSION
        || r_int(&r, 4, &zero) != SCOUT_OK || zero != 0) {
        scout_seterr(err, "unknown side file version");
        goto fail;
    }
    if (r_int(&r, 8, &s->sum) != SCOUT_OK || r_int(&r, 8, &s->fp) != SCOUT_OK
        || r_str(&r, &s->listen) != SCOUT_OK
        || r_count(&r, &s->nfiles, 4) != SCOUT_OK
        || (s->files = calloc((size_t)s->nfiles + 1, sizeof(char *))) == NULL)
        goto bad;
    for (int i = 0; i < s->nfiles; i++)
        if (r_str(&r, &s->files[i]) != SCOUT_OK)
            goto bad;
    if (r_count(&r, &s->n, 8) != SCOUT_OK
        || (s->names = calloc((size_t)s->n + 1, sizeof(char *))) == NULL
        || (s->paths = calloc((size_t)s->n + 1, sizeof(char *))) == NULL)
        goto bad;
    for (int i = 0; i < s->n; i++)
        if (r_str(&r, &s->names[i]) != SCOUT_OK
            || r_str(&r, &s->paths[i]) != SCOUT_OK)
            goto bad;
    if (r.p != r.end)
        goto bad;
    return s;

bad:
    scout_seterr(err, "malformed side file");
fail:
    scout_snapside_free(s);
    return NULL;
}

scout_snapside_t *
scout_snapside_read(const char *dir, char *err)
{
    char path[4096], why[SCOUT_ERR_LEN];
    scout_snapside_t *s;
    struct stat sb;
    char *buf;
    size_t got = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, SCOUT_SNAPSIDE_FILE);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW))
        < 0) {
        scout_seterr(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)
        || (uint64_t)sb.st_size > SIDE_MAX
        || (buf = malloc((size_t)sb.st_size + 1)) == NULL) {
        close(fd);
        scout_seterr(err, "%s: not a readable file", path);
        return NULL;
    }
    while (got < (size_t)sb.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)sb.st_size - got);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    s = scout_snapside_parse(buf, got, why);
    free(buf);
    if (s == NULL)
        scout_seterr(err, "%s: %s", path, why);
    return s;
}

void
scout_snapside_free(scout_snapside_t *s)
{
    if (s == NULL)
        return;
    free(s->files);
    free(s->names);
    free(s->paths);
    free(s->buf_);
    free(s);
}
