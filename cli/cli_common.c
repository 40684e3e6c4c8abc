/*
 * cli_common.c - helpers shared by the cwtctl command groups.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cli_error(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("cwtctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

/* Optimal string alignment distance of a and b, both shorter than 64 bytes (longer words are
 * no typos of a command or option name: CLOSEST_MAX). */
#define CLOSEST_MAX 64
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t d[CLOSEST_MAX + 1][CLOSEST_MAX + 1];

    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *cli_closest(const char *word, const char *const *cands, size_t n)
{
    size_t len = strlen(word), limit, best_d = SIZE_MAX;
    const char *best = NULL;

    if (len == 0 || len >= CLOSEST_MAX)
        return NULL;
    limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    for (size_t i = 0; i < n; i++) {
        size_t dist;
        if (strlen(cands[i]) >= CLOSEST_MAX)
            continue;
        dist = edit_distance(word, cands[i]);
        if (dist <= limit && dist < best_d) {
            best_d = dist;
            best = cands[i];
        }
    }
    return best;
}

int cli_load_site(const struct cli_globals *g, struct cwt_config *cfg, struct cwt_roster *roster)
{
    char err[CWT_ERRLEN];
    int rc;

    rc = config_load(g->config_path, cfg, err, sizeof(err));
    if (rc == CWT_ENOENT)
        return cli_error(CLI_USAGE,
                         "no site configuration at %s (use -c FILE, set CWT_CONFIG, "
                         "or run 'cwtctl init')",
                         g->config_path);
    if (rc != 0)
        return cli_error(CLI_USAGE, "%s", err);
    if (roster != NULL && roster_load(cfg->roster_path, roster, err, sizeof(err)) != 0)
        return cli_error(CLI_USAGE, "%s", err);
    return 0;
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}
