/*
 * file_replace.h -- put bytes at a path so that readers see the old file or
 * the new one, never a part, and the new one survives a power cut.  Used by
 * the disk snapshot and by rendered files.
 */
#ifndef SCOUT_FILE_REPLACE_H
#define SCOUT_FILE_REPLACE_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Write buf to DIR/TMP (created with mode, O_EXCL|O_NOFOLLOW: a temp file
 * left by a crash is removed first, never written through, since it could
 * be a link), fsync it, rename it over DIR/NAME, fsync DIR.  On a failure
 * before the rename the temp file is removed and NAME is untouched.
 * Blocking; touches nothing but the files.  SCOUT_ERROR with
 * "DIR/FILE: step: reason" in err. */
int scout_file_replace(const char *dir, const char *name, const char *tmp,
                       const void *buf, size_t len, mode_t mode, char *err);

/* The same from pieces, written in order (writev): a file assembled from
 * parts the caller keeps need not be copied into one buffer first.  iov is
 * consumed (its entries are advanced as bytes are written).  written, when
 * not NULL: the file's fstat once synced, before the rename -- what this
 * call wrote, which nobody else can have touched yet (a stat by name after
 * the rename may see an edit made since). */
int scout_file_replace_iov(const char *dir, const char *name,
                           const char *tmp, struct iovec *iov, int iovcnt,
                           mode_t mode, struct stat *written, char *err);

#endif
