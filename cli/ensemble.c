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

int ensemble_average(struct eng_device *dev, struct store *st, const struct cwt_recipe *rec,
                     const struct ensemble_members *e, size_t cells, ensemble_run_fn fn, void *ctx,
                     double *sum, float *probs, char *err, size_t errlen)
{
    memset(sum, 0, cells * sizeof(*sum));
    for (uint32_t k = 0; k < e->n; k++) {
        char name[CWT_ID_MAX + 16];
        struct eng_model *m = NULL;
        struct eng_model_spec spec;
        struct train_norm norm;
        int rc;

        if ((rc = ensemble_ckpt_name(e->site[k], name, sizeof(name))) != 0)
            return cwt_seterr(err, errlen, rc, "site id '%s' is too long", e->site[k]);
        rc = train_load_named(dev, st, name, rec, &m, &spec, &norm, err, errlen);
        if (rc == 0)
            rc = fn(m, &spec, &norm, probs, ctx, err, errlen);
        eng_model_free(m);
        if (rc != 0) {
            char why[CWT_ERRLEN];

            snprintf(why, sizeof(why), "%s", err);
            return cwt_seterr(err, errlen, rc, "ensemble member %s: %s", e->site[k], why);
        }
        for (size_t i = 0; i < cells; i++)
            sum[i] += (double)probs[i];
    }
    for (size_t i = 0; i < cells; i++)
        probs[i] = (float)(sum[i] / (double)(e->n > 0 ? e->n : 1));
    return 0;
}
