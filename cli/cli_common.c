/*
 * cli_common.c - helpers shared by the cwtctl command groups.
 */
#include <stdarg.h>
#include <stdio.h>

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
