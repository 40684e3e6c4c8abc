/*
 * progress.h - the one updating progress line of cwtctl's long commands (ingest, train,
 * simulate): "<what>, ETA mm:ss" redrawn in place on stderr when stderr is a terminal, nothing
 * at all otherwise (a pipe or a log file gets the command's final summary line only, which the
 * command prints itself).
 */
#ifndef CWT_CLI_PROGRESS_H
#define CWT_CLI_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

/* Seconds between redraws: often enough to look alive, rare enough to cost nothing. */
#define PROGRESS_EVERY_S 0.25

struct progress {
    int live;         /* stderr is a terminal: draw */
    int drawn;        /* a line is on screen and must be cleared before other output */
    double t0;        /* cwt_monotonic() at progress_start */
    double last_draw; /* cwt_monotonic() of the last line */
    uint64_t base;    /* units done before the clock started (a resumed run): not in the rate */
};

/* Starts the clock; live = draw at all (the caller passes isatty(STDERR_FILENO), or 0 for
 * --json and other machine output). */
void progress_start(struct progress *p, int live);

/* Writes the time left for total - done units at the mean rate so far (done / elapsed_s)
 * into out as "mm:ss", or "h:mm:ss" from one hour on; "--:--" while nothing is done or the
 * clock has not moved; "00:00" when done >= total. Returns the length written (snprintf's). */
int progress_eta(char *out, size_t len, uint64_t done, uint64_t total, double elapsed_s);

/* Formats the whole line "<text>, ETA <eta>" into out (what the terminal shows). */
int progress_format(char *out, size_t len, const char *text, uint64_t done, uint64_t total,
                    double elapsed_s);

/* Redraws the line if live and PROGRESS_EVERY_S has passed (always when force or done >=
 * total). done/total are the units the ETA is counted in (images, steps over all runs),
 * counted from the start of the work, base included. */
void progress_draw(struct progress *p, int force, uint64_t done, uint64_t total, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

/* Clears the line (before printing anything else on stderr or stdout, and at the end). */
void progress_clear(struct progress *p);

/* Seconds since progress_start. */
double progress_elapsed(const struct progress *p);

#endif
