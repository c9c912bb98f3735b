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
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "scout.h"

int
scout_file_replace(const char *dir, const char *name, const char *tmp,
                   const void *buf, size_t len, mode_t mode, char *err)
{
    const char *p = buf, *what = "open", *file = tmp;
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
    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            goto fail;
        }
        p += w;
        len -= (size_t)w;
    }
    what = "fsync";
    if (fsync(fd) != 0)
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
