/*
 * progress.c - the updating progress line shared by ingest, train and simulate.
 */
#include "cli/progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/cwt.h"

void progress_start(struct progress *p, int live)
{
    p->live = live;
    p->drawn = 0;
    p->t0 = cwt_monotonic();
    p->last_draw = 0.0;
    p->base = 0;
}

double progress_elapsed(const struct progress *p)
{
    return cwt_monotonic() - p->t0;
}

int progress_eta(char *out, size_t len, uint64_t done, uint64_t total, double elapsed_s)
{
    double left;
    long t;

    if (done >= total)
        return snprintf(out, len, "00:00");
    if (done == 0 || !(elapsed_s > 0.0) || !isfinite(elapsed_s))
        return snprintf(out, len, "--:--");
    left = elapsed_s * (double)(total - done) / (double)done;
    /* Beyond 99 hours an estimate says nothing more than "long". */
    if (left > 99.0 * 3600.0)
        left = 99.0 * 3600.0;
    t = (long)(left + 0.5);
    if (t >= 3600)
        return snprintf(out, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    return snprintf(out, len, "%02ld:%02ld", t / 60, t % 60);
}

int progress_format(char *out, size_t len, const char *text, uint64_t done, uint64_t total,
                    double elapsed_s)
{
    char eta[32];

    progress_eta(eta, sizeof(eta), done, total, elapsed_s);
    return snprintf(out, len, "%s, ETA %s", text, eta);
}

void progress_draw(struct progress *p, int force, uint64_t done, uint64_t total, const char *fmt,
                   ...)
{
    char text[192], line[256];
    double now;
    va_list ap;

    if (!p->live)
        return;
    now = cwt_monotonic();
    if (!force && done < total && p->drawn && now - p->last_draw < PROGRESS_EVERY_S)
        return;
    p->last_draw = now;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (done < p->base || total < p->base)
        progress_format(line, sizeof(line), text, 0, 1, 0.0);
    else
        progress_format(line, sizeof(line), text, done - p->base, total - p->base, now - p->t0);
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    p->drawn = 1;
}

void progress_clear(struct progress *p)
{
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}
