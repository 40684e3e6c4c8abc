/*
 * fileio.h - crash-safe file writes and bounded reads.
 */
#ifndef CWT_FILEIO_H
#define CWT_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Writes buf to path atomically: a temp file in the same folder, fsync, rename over path,
 * fsync of the folder. mode applies to the new file (0600 for secrets). Returns 0 or
 * CWT_EIO with err filled. */
int file_write_atomic(const char *path, const void *buf, size_t len, mode_t mode, char *err,
                      size_t errlen);

/* Creates path with O_CREAT|O_EXCL and the given mode, writes buf, fsyncs, fsyncs the folder.
 * Fails with CWT_EEXIST if the file exists (used for secret keys, never overwritten). */
int file_write_new(const char *path, const void *buf, size_t len, mode_t mode, char *err,
                   size_t errlen);

/* Reads a whole regular file of at most max bytes into a malloc'd buffer (*out, NUL-terminated
 * one byte past *outlen, caller frees). CWT_ETOOBIG if larger, CWT_ENOENT if absent,
 * CWT_EIO otherwise. */
int file_read_all(const char *path, size_t max, uint8_t **out, size_t *outlen, char *err,
                  size_t errlen);

/* fsyncs the folder that holds path (or path itself if it is a folder). */
int file_fsync_dir(const char *path);

/* Creates a folder and its parents with the given mode (existing ones are fine). */
int file_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen);

/* Joins dir and name into out (size outlen). CWT_ETOOBIG if it does not fit. */
int file_join(char *out, size_t outlen, const char *dir, const char *name);

/* Copies src to dst atomically (temp + fsync + rename). */
int file_copy_atomic(const char *src, const char *dst, mode_t mode, char *err, size_t errlen);

#endif
