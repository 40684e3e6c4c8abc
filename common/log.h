/*
 * log.h - daemon-style logging to stderr (journald picks it up), OpenBSD style.
 *
 * log_init() is called once from main() before anything else; the settings it stores are
 * read-only afterwards (the one piece of process-wide state outside main, as in OpenBSD's
 * log.c).
 */
#ifndef CWT_LOG_H
#define CWT_LOG_H

/* Sets the program name shown in front of every line and the verbosity (0 quiet debug,
 * 1 debug). */
void log_init(const char *progname, int verbose);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_warn appends ": strerror(errno)"; log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log and exit(1). fatal appends strerror(errno). For impossible states in the daemon. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
