/*
 * file_replace.c -- crash-safe replacement of a file (file_replace.h): temp
 * file, fsync, rename, fsync of the directory.  One copy for the disk
 * snapshot and rendered files, so both get the same care (no writing
 * through a planted link, no fd leaked on a failed fsync, a rename that
 * survives a power cut).
 *
 * What this file must never do: leave a temp file behind after a failed
 * write, or replace a good file with a partial one.
 */
#include "publish/file_replace.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "scout.h"

#ifndef IOV_MAX
#define IOV_MAX 1024            /* Linux's UIO_MAXIOV */
#endif

int
scout_file_replace(const char *dir, const char *name, const char *tmp,
                   const void *buf, size_t len, mode_t mode, char *err)
{
    struct iovec one = { (void *)buf, len };

    return scout_file_replace_iov(dir, name, tmp, &one, 1, mode, NULL, err);
}

int
scout_file_replace_iov(const char *dir, const char *name, const char *tmp,
                       struct iovec *iov, int iovcnt, mode_t mode,
                       struct stat *written, char *err)
{
    const char *what = "open", *file = tmp;
    int dfd, fd = -1, made = 0, rc, e;

    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(err, SCOUT_ERR_LEN, "directory %s: %s", dir,
                 strerror(errno));
        return SCOUT_ERROR;
    }
    /* A temp file left by a crash is replaced, never written through: it
     * might be a link, and O_EXCL gives us our own file with our mode. */
    (void)unlinkat(dfd, tmp, 0);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                mode);
    if (fd < 0)
        goto fail;
    made = 1;
    what = "write";
    for (;;) {
        ssize_t w;

        while (iovcnt > 0 && iov->iov_len == 0) {
            iov++;
            iovcnt--;
        }
        if (iovcnt == 0)
            break;
        w = writev(fd, iov, iovcnt < IOV_MAX ? iovcnt : IOV_MAX);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            goto fail;
        }
        for (size_t left = (size_t)w; left > 0; ) {   /* advance past w */
            size_t k = left < iov->iov_len ? left : iov->iov_len;

            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= k;
            left -= k;
            if (iov->iov_len == 0 && left > 0) {
                iov++;
                iovcnt--;
            }
        }
    }
    what = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    what = "fstat";
    if (written != NULL && fstat(fd, written) != 0)
        goto fail;
    what = "close";
    rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail;
    what = "rename";
    file = name;
    if (renameat(dfd, tmp, dfd, name) != 0)
        goto fail;
    made = 0;
    /* Without this the rename itself may not survive a power cut; the new
     * file is in place either way, so nothing is undone. */
    what = "written, but fsync of the directory failed";
    if (fsync(dfd) != 0)
        goto fail;
    close(dfd);
    return SCOUT_OK;

fail:
    e = errno;
    snprintf(err, SCOUT_ERR_LEN, "%s/%s: %s: %s", dir, file, what,
             strerror(e));
    if (fd >= 0)
        close(fd);
    if (made)
        (void)unlinkat(dfd, tmp, 0);
    close(dfd);
    return SCOUT_ERROR;
}
