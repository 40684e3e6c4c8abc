/*
 * fileio.c - crash-safe writes (temp + fsync + rename + folder fsync) and bounded reads.
 */
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cwt.h"

static int write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int file_join(char *out, size_t outlen, const char *dir, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= outlen)
        return CWT_ETOOBIG;
    return 0;
}

int file_fsync_dir(const char *path)
{
    char copy[PATH_MAX];
    struct stat sb;
    const char *dir = path;
    int fd, rc;

    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        if (strlen(path) >= sizeof(copy))
            return CWT_ETOOBIG;
        strcpy(copy, path);
        dir = dirname(copy);
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return CWT_EIO;
    rc = fsync(fd);
    close(fd);
    return rc == 0 ? 0 : CWT_EIO;
}

int file_write_atomic(const char *path, const void *buf, size_t len, mode_t mode, char *err,
                      size_t errlen)
{
    char tmp[PATH_MAX];
    int fd, n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: path too long", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    if (fchmod(fd, mode) != 0 || write_full(fd, buf, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot replace: %s", path, strerror(e));
    }
    if (file_fsync_dir(path) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot sync folder: %s", path,
                          strerror(errno));
    return 0;
}

int file_write_new(const char *path, const void *buf, size_t len, mode_t mode, char *err,
                   size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);

    if (fd < 0) {
        if (errno == EEXIST)
            return cwt_seterr(err, errlen, CWT_EEXIST,
                              "%s exists already; refusing to "
                              "overwrite it",
                              path);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot create: %s", path, strerror(errno));
    }
    if (fchmod(fd, mode) != 0 || write_full(fd, buf, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    if (close(fd) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot close: %s", path, strerror(errno));
    if (file_fsync_dir(path) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot sync folder", path);
    return 0;
}

int file_read_all(const char *path, size_t max, uint8_t **out, size_t *outlen, char *err,
                  size_t errlen)
{
    struct stat sb;
    uint8_t *buf;
    size_t got = 0;
    int fd;

    *out = NULL;
    *outlen = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return cwt_seterr(err, errlen, CWT_ENOENT, "%s: no such file", path);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > max) {
        close(fd);
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: larger than the limit of %zu bytes", path,
                          max);
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "%s: out of memory", path);
    }
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot read: %s", path, strerror(e));
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *outlen = got;
    return 0;
}

int file_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(tmp))
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: bad folder path", path);
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(tmp, mode) != 0 && errno != EEXIST)
                return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot create folder: %s", tmp,
                                  strerror(errno));
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

int file_copy_atomic(const char *src, const char *dst, mode_t mode, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    uint8_t buf[1 << 16];
    int in, out, n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", dst, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: path too long", dst);
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot open: %s", src, strerror(errno));
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (out < 0) {
        int e = errno;
        close(in);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot create: %s", tmp, strerror(e));
    }
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || (r > 0 && write_full(out, buf, (size_t)r) != 0)) {
            int e = errno;
            close(in);
            close(out);
            unlink(tmp);
            return cwt_seterr(err, errlen, CWT_EIO, "%s -> %s: copy failed: %s", src, dst,
                              strerror(e));
        }
        if (r == 0)
            break;
    }
    close(in);
    if (fsync(out) != 0 || close(out) != 0 || rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot write: %s", dst, strerror(e));
    }
    if (file_fsync_dir(dst) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot sync folder", dst);
    return 0;
}
