/*
 * shm_file.c -- the shared-memory snapshot's file (see shm.c for the body).
 *
 * Growing: a snapshot that does not fit a slot goes into a new, larger file
 * written completely under a temporary name and renamed over the path; the
 * old file is then marked retired and its generation bumped so readers'
 * cheap check fires and they re-map.  No file is ever truncated or shrunk
 * while mapped, so no reader can fault on a short mapping; the new file's
 * pages are allocated up front (posix_fallocate) so a full /dev/shm is an
 * error here and not a SIGBUS in the middle of a publish.  A file left by
 * an earlier agent is adopted; another live agent's is refused (flock).
 */
#define _GNU_SOURCE     /* mkostemp */
#include "publish/shm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scout.h"

/*
 * A new file of two slots of slot_size bytes under a temporary name next to
 * path, locked, allocated, mapped, with a header at generation gen (nothing
 * in either slot yet).  On success *tmp names it; the caller fills a slot
 * and renames it into place, or unlinks it.
 */
int
scout_shm_file_create(const char *path, int version, size_t slot_size,
                      uint64_t gen, char *tmp, size_t tmp_len, int *fd_out,
                      uint8_t **map_out, char *err)
{
    size_t file_size = SCOUT_SHM_HDR_SIZE + 2 * slot_size;
    scout_shm_file_t *hdr;
    uint8_t *map;
    int fd, rc;

    if ((size_t)snprintf(tmp, tmp_len, "%s.XXXXXX", path) >= tmp_len)
        return scout_seterr(err, "%s: path too long", path);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return scout_seterr(err, "%s: %s", tmp, strerror(errno));
    /* 0644: nginx workers run as another user and only read. */
    if (fchmod(fd, 0644) != 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        scout_seterr(err, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (ftruncate(fd, (off_t)file_size) != 0) {
        scout_seterr(err, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    rc = posix_fallocate(fd, 0, (off_t)file_size);
    if (rc != 0) {
        scout_seterr(err, "%s: cannot allocate %zu bytes: %s", tmp, file_size,
            strerror(rc));
        goto fail;
    }
    map = mmap(NULL, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        scout_seterr(err, "%s: mmap: %s", tmp, strerror(errno));
        goto fail;
    }
    hdr = (scout_shm_file_t *)map;
    memset(map, 0, SCOUT_SHM_HDR_SIZE);
    memcpy(hdr->magic, SCOUT_SHM_MAGIC, 8);
    hdr->version = (uint32_t)version;
    hdr->header_size = SCOUT_SHM_HDR_SIZE;
    if (version >= 2) {
        hdr->chunk_size = SCOUT_SHM_CHUNK;
        slot_table(slot_size, &hdr->table_max, &hdr->table_off);
    }
    hdr->generation = gen;
    hdr->slot_size = slot_size;
    hdr->file_size = file_size;
    hdr->writer_pid = (uint32_t)getpid();
    memset(slot_at(map, hdr, 0), 0, SCOUT_SHM_SLOT_HDR);
    memset(slot_at(map, hdr, 1), 0, SCOUT_SHM_SLOT_HDR);
    *fd_out = fd;
    *map_out = map;
    return SCOUT_OK;

fail:
    unlink(tmp);
    close(fd);
    return SCOUT_ERROR;
}

/* Make the new file current: rename it over the path, retire the old one
 * (readers' generation check fires, they see retired and re-map), drop the
 * old mapping.  On failure the new file is removed and nothing changed. */
int
scout_shm_file_swap(scout_shm_t *shm, const char *tmp, int fd, uint8_t *map,
                    uint64_t gen, char *err)
{
    scout_shm_file_t *hdr = (scout_shm_file_t *)map;
    struct stat st;

    if (fstat(fd, &st) != 0 || rename(tmp, shm->path) != 0) {
        scout_seterr(err, "%s: %s", shm->path, strerror(errno));
        munmap(map, hdr->file_size);
        unlink(tmp);
        close(fd);
        return SCOUT_ERROR;
    }
    if (shm->hdr != NULL) {
        __atomic_store_n(&shm->hdr->retired, 1, __ATOMIC_RELEASE);
        __atomic_store_n(&shm->hdr->generation, gen, __ATOMIC_RELEASE);
        munmap(shm->map, shm->map_len);
    }
    if (shm->fd >= 0)
        close(shm->fd);
    shm->fd = fd;
    shm->map = map;
    shm->map_len = hdr->file_size;
    shm->hdr = hdr;
    shm->dev = st.st_dev;
    shm->ino = st.st_ino;
    shm->gen = gen;
    scout_shm_held_drop(&shm->held[0]);     /* a new file: nothing in it is known */
    scout_shm_held_drop(&shm->held[1]);
    return SCOUT_OK;
}

/*
 * Adopt the file at path if it is a snapshot file we can continue: ours to
 * write, this version, sizes consistent with what is on disk.  1 adopted,
 * 0 not a file to adopt (replace it), SCOUT_ERROR another agent holds it.
 */
static int
file_adopt(scout_shm_t *shm, char *err)
{
    scout_shm_file_t h;
    struct stat st;
    uint8_t *map;
    uint32_t tmax = 0;
    uint64_t toff = 0;
    int fd;

    /* O_NONBLOCK: a FIFO at the path must not stall us; it is replaced */
    fd = open(shm->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int pid = 0;
        if (pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h))
            pid = (int)h.writer_pid;
        close(fd);
        return scout_seterr(err, "%s: another agent (pid %d) is publishing here",
                   shm->path, pid);
    }
    if (st.st_uid != geteuid()
        || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)
        || memcmp(h.magic, SCOUT_SHM_MAGIC, 8) != 0
        || h.version != (uint32_t)shm->version
        || h.header_size != SCOUT_SHM_HDR_SIZE
        || h.slot_size < PAGE || h.slot_size % PAGE != 0
        || h.slot_size > ((uint64_t)1 << 40)
        || h.file_size != SCOUT_SHM_HDR_SIZE + 2 * h.slot_size
        || (uint64_t)st.st_size != h.file_size || h.retired != 0) {
        close(fd);
        return 0;
    }
    /* a version 2 file continues only with the table where we put it */
    if (shm->version >= 2)
        slot_table(h.slot_size, &tmax, &toff);
    if (h.chunk_size != (shm->version >= 2 ? SCOUT_SHM_CHUNK : 0)
        || h.table_max != tmax || h.table_off != toff) {
        close(fd);
        return 0;
    }
    /* Allocate any hole so that writing never faults on a full tmpfs. */
    if (posix_fallocate(fd, 0, (off_t)h.file_size) != 0) {
        close(fd);
        return 0;
    }
    map = mmap(NULL, h.file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return 0;
    }
    shm->fd = fd;
    shm->map = map;
    shm->map_len = h.file_size;
    shm->hdr = (scout_shm_file_t *)map;
    shm->hdr->writer_pid = (uint32_t)getpid();
    shm->dev = st.st_dev;
    shm->ino = st.st_ino;
    shm->gen = __atomic_load_n(&shm->hdr->generation, __ATOMIC_ACQUIRE);
    return 1;
}

scout_shm_t *
scout_shm_open(const char *path, char *err)
{
    return scout_shm_open_version(path, SCOUT_SHM_VERSION, err);
}

scout_shm_t *
scout_shm_open_version(const char *path, int version, char *err)
{
    scout_shm_t *shm;
    char tmp[4096];
    uint8_t *map;
    int fd, rc;

    if (path == NULL || path[0] == '\0') {
        scout_seterr(err, "shm: empty path");
        return NULL;
    }
    if (strlen(path) + 8 >= sizeof(tmp)) {
        scout_seterr(err, "%s: path too long", path);
        return NULL;
    }
    shm = calloc(1, sizeof(*shm));
    if (shm == NULL || (shm->path = strdup(path)) == NULL) {
        scout_seterr(err, "shm: out of memory");
        goto fail;
    }
    shm->fd = -1;
    if (version < SCOUT_SHM_VERSION_MIN || version > SCOUT_SHM_VERSION) {
        scout_seterr(err, "shm: no format version %d (1 or 2)", version);
        goto fail;
    }
    shm->version = version;
    rc = file_adopt(shm, err);
    if (rc == SCOUT_ERROR)
        goto fail;
    if (rc == 1)
        return shm;
    /* Nothing to adopt: an empty file (generation 0, "no snapshot"), so
     * readers started before the first publish attach at once. */
    if (scout_shm_file_create(path, version, INITIAL_SLOT, 0, tmp,
                              sizeof(tmp), &fd, &map, err) != SCOUT_OK
        || scout_shm_file_swap(shm, tmp, fd, map, 0, err) != SCOUT_OK)
        goto fail;
    return shm;

fail:
    if (shm != NULL)
        free(shm->path);
    free(shm);
    return NULL;
}

void
scout_shm_close(scout_shm_t *shm, int unlink_file)
{
    struct stat st;

    if (shm == NULL)
        return;
    if (unlink_file && stat(shm->path, &st) == 0 && st.st_dev == shm->dev
        && st.st_ino == shm->ino)
        unlink(shm->path);
    if (shm->map != NULL)
        munmap(shm->map, shm->map_len);
    if (shm->fd >= 0)
        close(shm->fd);
    free(shm->order);
    free(shm->eps);
    free(shm->dirty);
    scout_shm_held_drop(&shm->held[0]);
    scout_shm_held_drop(&shm->held[1]);
    free(shm->path);
    free(shm);
}

uint64_t
scout_shm_generation(const scout_shm_t *shm)
{
    return shm->gen;
}

size_t
scout_shm_file_size(const scout_shm_t *shm)
{
    return shm->map_len;
}

size_t
scout_shm_snapshot_size(const scout_shm_t *shm)
{
    return shm->last_body;
}
