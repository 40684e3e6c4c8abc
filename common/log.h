/*
 * log.h - daemon-style logging to stderr (journald picks it up), OpenBSD style.
 *
 * When stderr is the journal ($JOURNAL_STREAM names it, as systemd sets it for a service),
 * every line starts with its syslog priority ("<3>" error, "<4>" warning, "<6>" info, "<7>"
 * debug; sd-daemon(3)), so that `journalctl -p warning` finds the warnings and errors.
 * Control characters in a message (a newline in a file name from the inbox) are written as
 * \xNN: one call is one line, and no outside text can forge another.
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
/* Errors the process survives (a refused bundle, a failed write): priority err. log_error
 * appends ": strerror(errno)"; log_errorx does not. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errorx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log at priority crit and exit(1). fatal appends strerror(errno). For impossible states in
 * the daemon. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
