/*
 * log.c - stderr logging (journald adds timestamps), OpenBSD daemon style.
 */
#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Set once by log_init() from main(), before any other thread or child exists, and only read
 * afterwards: the documented exception to "no global mutable state" (as in OpenBSD log.c). */
static const char *log_progname = "cwt";
static int log_verbose;
static int log_journal; /* stderr is the journal: lines carry "<N>" priorities */

/* syslog priorities (sd-daemon.h's SD_CRIT ... SD_DEBUG) */
enum { PRIO_CRIT = 2, PRIO_ERR = 3, PRIO_WARNING = 4, PRIO_INFO = 6, PRIO_DEBUG = 7 };

/* Whether stderr is the stream $JOURNAL_STREAM ("DEV:INODE") names: systemd sets it for a
 * service's stdout/stderr, and a child that inherits the variable but not the stream (a
 * redirected test) must not get priority prefixes. */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    uintmax_t dev, ino;
    struct stat st;
    char tail;

    if (js == NULL || sscanf(js, "%ju:%ju%c", &dev, &ino, &tail) != 2)
        return 0;
    if (fstat(fileno(stderr), &st) != 0)
        return 0;
    return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

void log_init(const char *progname, int verbose)
{
    log_progname = progname;
    log_verbose = verbose;
    log_journal = stderr_is_journal();
}

/* Copies src to dst (dstlen > 0) with every control character written as \xNN, truncating
 * at a whole character. */
static void escape_controls(char *dst, size_t dstlen, const char *src)
{
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)src; *p != 0; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            if (o + 4 >= dstlen)
                break;
            snprintf(dst + o, 5, "\\x%02x", *p);
            o += 4;
        } else {
            if (o + 1 >= dstlen)
                break;
            dst[o++] = (char)*p;
        }
    }
    dst[o] = 0;
}

static void vlog(int prio, const char *level, int with_errno, const char *fmt, va_list ap)
{
    char msg[1024], line[4 * sizeof(msg)], prefix[8] = "";
    int saved = errno;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    escape_controls(line, sizeof(line), msg);
    if (log_journal)
        snprintf(prefix, sizeof(prefix), "<%d>", prio);
    if (with_errno)
        fprintf(stderr, "%s%s: %s%s: %s\n", prefix, log_progname, level, line, strerror(saved));
    else
        fprintf(stderr, "%s%s: %s%s\n", prefix, log_progname, level, line);
    errno = saved;
}

void log_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(PRIO_INFO, "", 0, fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(PRIO_WARNING, "warning: ", 1, fmt, ap);
    va_end(ap);
}

void log_warnx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(PRIO_WARNING, "warning: ", 0, fmt, ap);
    va_end(ap);
}

void log_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(PRIO_ERR, "error: ", 1, fmt, ap);
    va_end(ap);
}

void log_errorx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(PRIO_ERR, "error: ", 0, fmt, ap);
    va_end(ap);
}

void log_debug(const char *fmt, ...)
{
    va_list ap;

    if (!log_verbose)
        return;
    va_start(ap, fmt);
    vlog(PRIO_DEBUG, "debug: ", 0, fmt, ap);
    va_end(ap);
}

void fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(PRIO_CRIT, "fatal: ", 1, fmt, ap);
    va_end(ap);
    exit(1);
}

void fatalx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(PRIO_CRIT, "fatal: ", 0, fmt, ap);
    va_end(ap);
    exit(1);
}
