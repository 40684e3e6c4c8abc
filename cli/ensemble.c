/*
 * ensemble.c - finding and averaging the members of an ensemble federation (ensemble.h).
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/ensemble.h"

int ensemble_ckpt_name(const char *site, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "ensemble.%s", site);

    return n < 0 || (size_t)n >= outlen ? CWT_ETOOBIG : 0;
}

int ensemble_find(struct store *st, const struct cwt_roster *roster, struct ensemble_members *out,
                  char *err, size_t errlen)
{
    char name[CWT_ID_MAX + 16];
    uint8_t *blob;
    size_t len;
    int rc;

    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < roster->n_sites && i < CWT_MAX_SITES; i++) {
        if (ensemble_ckpt_name(roster->sites[i].id, name, sizeof(name)) != 0)
            continue;
        /* The checkpoint is read whole only to see that it is there: members are small and
         * the store has no cheaper existence test. */
        rc = store_model_get(st, name, &blob, &len);
        if (rc == CWT_ENOENT)
            continue;
        if (rc != 0)
            return cwt_seterr(err, errlen, rc, "cannot read model '%s' from the store: %s", name,
                              cwt_strerror(rc));
        free(blob);
        snprintf(out->site[out->n++], sizeof(out->site[0]), "%s", roster->sites[i].id);
    }
    if (out->n == 0)
        return cwt_seterr(err, errlen, CWT_ENOENT,
                          "the roster's heuristic is ensemble but no ensemble member is in the "
                          "store yet; wait until cwtd has received the members");
    return 0;
}

void ensemble_print(FILE *f, const struct ensemble_members *e)
{
    fprintf(f, "ensemble of %u member%s:", e->n, e->n == 1 ? "" : "s");
    for (uint32_t i = 0; i < e->n; i++)
        fprintf(f, "%s %s", i ? "," : "", e->site[i]);
    fputc('\n', f);
}

void ensemble_print_json(FILE *f, const struct ensemble_members *e)
{
    fputc('[', f);
    for (uint32_t i = 0; i < e->n; i++) {
        if (i)
            fputc(',', f);
        cli_json_string(f, e->site[i]);
    }
    fputc(']', f);
}

void ensemble_accumulate(double *sum, const float *probs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sum[i] += (double)probs[i];
}

void ensemble_mean(const double *sum, uint32_t members, float *probs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        probs[i] = (float)(sum[i] / (double)(members > 0 ? members : 1));
}
