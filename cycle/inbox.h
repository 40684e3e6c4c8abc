/*
 * inbox.h - the inbox folder as cwtd leaves it (library cwt_cycle): which names cwtd reads, and
 * the rejected files in inbox/rejected/ with their .reason files. Shared so that cwtd's status
 * and cwtctl's status while cwtd is down report the same files the same way.
 */
#ifndef CWT_INBOX_H
#define CWT_INBOX_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cwt.h"

#define INBOX_REJECTED_DIR   "rejected" /* below the inbox */
#define INBOX_REJECTED_SHOWN 16         /* rejected files that status lists, newest first */

/* One rejected file, from its NAME.reason ("file: ...", "rule: ...", "reason: ...", "time: ..."
 * lines, as cwtd writes them). The texts are as read: the caller makes them UTF-8-clean. */
struct inbox_rejected {
    char file[NAME_MAX + 1], rule[128], reason[CWT_ERRLEN];
    int64_t time;
};

/* 1 when cwtd leaves the inbox entry name alone: dot files, the rejected folder, and files
 * still being written (*.tmp*, *.part, *~); else 0. */
int inbox_skip_name(const char *name);

/* Reads the rejected folder dir: *total gets the number of .reason files, out[0..*n) the newest
 * max of them (newest first). A missing folder is 0 files. 0, or CWT_EIO (errno set) when the
 * folder exists but cannot be read (the caller then knows no total). */
int inbox_rejected_list(const char *dir, struct inbox_rejected *out, size_t max, size_t *n,
                        int64_t *total);

#endif
