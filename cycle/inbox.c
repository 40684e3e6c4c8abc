/*
 * inbox.c - the inbox folder as cwtd leaves it: names it skips, and the rejected files listed
 * from their .reason files (inbox.h).
 */
#include "cycle/inbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"

int inbox_skip_name(const char *name)
{
    size_t n = strlen(name);

    if (name[0] == '.' || strcmp(name, INBOX_REJECTED_DIR) == 0)
        return 1;
    /* Files still being written by copy tools and our own atomic writes. */
    if (strstr(name, ".tmp") != NULL || (n > 5 && strcmp(name + n - 5, ".part") == 0) ||
        (n > 1 && name[n - 1] == '~'))
        return 1;
    return 0;
}

/* Reads one line "NAME: value" of a .reason file text into out (empty if absent). */
static void reason_field(const char *text, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);

    out[0] = '\0';
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, name, n) == 0 && p[n] == ':' && p[n + 1] == ' ') {
            size_t len = strcspn(p + n + 2, "\n");
            snprintf(out, outlen, "%.*s", (int)(len < outlen ? len : outlen - 1), p + n + 2);
            return;
        }
    }
}

/* Reads the .reason file path (at most 4 KiB of it: cwtd writes less) into r. */
static void read_reason(const char *path, const char *name, size_t namelen,
                        struct inbox_rejected *r)
{
    char text[4096], tbuf[32];
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    while (fd >= 0 && got < sizeof(text) - 1) {
        ssize_t k = read(fd, text + got, sizeof(text) - 1 - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    if (fd >= 0)
        close(fd);
    text[got] = '\0';
    snprintf(r->file, sizeof(r->file), "%.*s", (int)namelen, name);
    reason_field(text, "rule", r->rule, sizeof(r->rule));
    reason_field(text, "reason", r->reason, sizeof(r->reason));
    reason_field(text, "time", tbuf, sizeof(tbuf));
    r->time = strtoll(tbuf, NULL, 10);
}

static int newer_first(const void *a, const void *b)
{
    const struct inbox_rejected *x = a, *y = b;

    return x->time < y->time ? 1 : x->time > y->time ? -1 : strcmp(x->file, y->file);
}

int inbox_rejected_list(const char *dir, struct inbox_rejected *out, size_t max, size_t *n,
                        int64_t *total)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    *n = 0;
    *total = 0;
    if (d == NULL)
        return errno == ENOENT ? 0 : CWT_EIO;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        char path[PATH_MAX];
        struct inbox_rejected r;

        if (len <= 7 || strcmp(de->d_name + len - 7, ".reason") != 0)
            continue;
        (*total)++;
        if (max == 0 || file_join(path, sizeof(path), dir, de->d_name) != 0)
            continue;
        read_reason(path, de->d_name, len - 7, &r);
        /* Keep the newest: replace the oldest kept when full. */
        if (*n < max) {
            out[(*n)++] = r;
        } else {
            size_t old = 0;
            for (size_t i = 1; i < *n; i++)
                if (out[i].time < out[old].time)
                    old = i;
            if (r.time > out[old].time)
                out[old] = r;
        }
    }
    closedir(d);
    qsort(out, *n, sizeof(*out), newer_first);
    return 0;
}
