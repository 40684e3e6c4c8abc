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

static void vlog(const char *level, int with_errno, const char *fmt, va_list ap)
{
    char msg[1024];
    int saved = errno;

    vsnprintf(msg, sizeof(msg), fmt, ap);
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
