/*
 * log.c - stderr logging (journald adds timestamps), OpenBSD daemon style.
 */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set once by log_init() from main(), before any other thread or child exists, and only read
 * afterwards: the documented exception to "no global mutable state" (as in OpenBSD log.c). */
static const char *log_progname = "cwt";
static int log_verbose;

void log_init(const char *progname, int verbose)
{
    log_progname = progname;
    log_verbose = verbose;
}

/* Control characters become "\xNN": a file name with a newline and a fake log line in it
 * must not forge a line of the log (issue 18, L3). */
static void escape_controls(const char *in, char *out, size_t outlen)
{
    size_t o = 0;

    for (; *in != '\0' && o + 5 < outlen; in++) {
        unsigned char ch = (unsigned char)*in;
        if (ch < 0x20 || ch == 0x7f)
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
}

static void vlog(const char *level, int with_errno, const char *fmt, va_list ap)
{
    char raw[1024], msg[4 * sizeof(raw) + 1];
    int saved = errno;

    vsnprintf(raw, sizeof(raw), fmt, ap);
    escape_controls(raw, msg, sizeof(msg));
    if (with_errno)
        fprintf(stderr, "%s: %s%s: %s\n", log_progname, level, msg, strerror(saved));
    else
        fprintf(stderr, "%s: %s%s\n", log_progname, level, msg);
    errno = saved;
}

void log_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog("", 0, fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog("warning: ", 1, fmt, ap);
    va_end(ap);
}

void log_warnx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog("warning: ", 0, fmt, ap);
    va_end(ap);
}

void log_debug(const char *fmt, ...)
{
    va_list ap;

    if (!log_verbose)
        return;
    va_start(ap, fmt);
    vlog("debug: ", 0, fmt, ap);
    va_end(ap);
}

void fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog("fatal: ", 1, fmt, ap);
    va_end(ap);
    exit(1);
}

void fatalx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog("fatal: ", 0, fmt, ap);
    va_end(ap);
    exit(1);
}
