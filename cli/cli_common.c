/*
 * cli_common.c - helpers shared by the cwtctl command groups.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "crypto/keys.h"

int cli_error(int code, const char *fmt, ...)
{
    va_list ap;
    int rc;

    /* Failures that name no error code: "usage" for exit 2, "failed" for exit 1. */
    va_start(ap, fmt);
    rc = cli_vfail(code, code == CLI_USAGE ? "usage" : "failed", fmt, ap);
    va_end(ap);
    return rc;
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

/* The long option of longopts with this val, or NULL. */
static const struct option *long_of(const struct option *longopts, int val)
{
    for (const struct option *o = longopts; o != NULL && o->name != NULL; o++)
        if (o->val == val)
            return o;
    return NULL;
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
               const char *cmd)
{
    /* Names as typed, with the global options every command also takes. */
    static const char *const globals[] = {"--config", "--json", "--verbose"};
    const char *names[96], *near, *arg;
    char buf[96][48];
    size_t n = 0;
    int ch, missing;

    opterr = 0;
    ch = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (ch != '?' && ch != ':')
        return ch;
    arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
    /* getopt sets optopt for an option it knows that lacks its value ('?' or ':'), and for an
     * unknown short option; an unknown long option leaves it 0. */
    missing = ch == ':' || (optopt != 0 && (long_of(longopts, optopt) != NULL ||
                                            (optopt != ':' && strchr(shortopts, optopt))));
    if (missing) {
        cli_fail(CLI_USAGE, "bad-option", "%s: option '%s' needs a value", cmd, arg);
        return '?';
    }
    if (optopt != 0) {
        cli_fail(CLI_USAGE, "bad-option", "%s: unknown option '-%c' (see 'cwtctl %s --help')", cmd,
                 optopt, cmd);
        return '?';
    }
    for (const struct option *o = longopts; o != NULL && o->name != NULL && n < 93; o++) {
        snprintf(buf[n], sizeof(buf[n]), "--%s", o->name);
        names[n] = buf[n];
        n++;
    }
    for (size_t i = 0; i < sizeof(globals) / sizeof(globals[0]); i++)
        names[n++] = globals[i];
    {
        char word[64];
        size_t len = strcspn(arg, "=");
        snprintf(word, sizeof(word), "%.*s", (int)(len < sizeof(word) ? len : sizeof(word) - 1),
                 arg);
        near = cli_closest(word, names, n);
        if (near != NULL)
            cli_fail(CLI_USAGE, "bad-option", "%s: unknown option '%s'; did you mean '%s'?", cmd,
                     word, near);
        else
            cli_fail(CLI_USAGE, "bad-option", "%s: unknown option '%s' (see 'cwtctl %s --help')",
                     cmd, word, cmd);
    }
    return '?';
}

int cli_load_site(const struct cli_globals *g, struct cwt_config *cfg, struct cwt_roster *roster)
{
    char err[CWT_ERRLEN];
    int rc;

    rc = config_load(g->config_path, cfg, err, sizeof(err));
    if (rc == CWT_ENOENT)
        return cli_fail(CLI_USAGE, "no-config",
                        "no site configuration at %s (use -c FILE, set CWT_CONFIG, "
                        "or run 'cwtctl init')",
                        g->config_path);
    if (rc != 0)
        return cli_fail(CLI_USAGE, "bad-config", "%s", err);
    if (roster != NULL && roster_load(cfg->roster_path, roster, err, sizeof(err)) != 0)
        return cli_fail(CLI_USAGE, "bad-roster", "%s", err);
    return 0;
}

int cli_site_id_mismatch(const struct cwt_config *cfg, char *msg, size_t msglen)
{
    char err[CWT_ERRLEN];
    struct site_keys k;

    if (keys_load_public(cfg->keys_dir, &k, err, sizeof(err)) != 0 ||
        strcmp(k.site_id, cfg->site_id) == 0)
        return 0;
    /* The keys are the site's identity (the roster and every bundle name it by them), so the
     * configuration is what changes. */
    snprintf(msg, msglen,
             "the keys in %s belong to site %s but %s says site_id = \"%s\"; set site_id = "
             "\"%s\" in %s",
             cfg->keys_dir, k.site_id, cfg->path, cfg->site_id, k.site_id, cfg->path);
    return CWT_EINVAL;
}

int cli_wants_help(int argc, char **argv, int from)
{
    for (int i = from; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}
