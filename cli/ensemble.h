/*
 * ensemble.h - the members of an `ensemble` federation as `cwtctl eval` and `predict` use
 * them: cwtd stores each site's model as checkpoint "ensemble.<site-id>"; the ensemble's
 * prediction is the mean of the members' class probabilities.
 */
#ifndef CWT_CLI_ENSEMBLE_H
#define CWT_CLI_ENSEMBLE_H

#include <stdio.h>

#include "common/cwt.h"
#include "config/config.h"
#include "engine/train/train.h"
#include "storage/store.h"

/* Members present in a store, in the roster's site order. */
struct ensemble_members {
    uint32_t n;
    char site[CWT_MAX_SITES][CWT_ID_MAX + 1];
};

/* Checkpoint name of a site's member ("ensemble.<site>"). CWT_ETOOBIG if it does not fit. */
int ensemble_ckpt_name(const char *site, char *out, size_t outlen);

/* Fills *out with the roster's sites whose member checkpoint is in st. CWT_ENOENT with a
 * sentence in err when there is none; store errors with a sentence. */
int ensemble_find(struct store *st, const struct cwt_roster *roster, struct ensemble_members *out,
                  char *err, size_t errlen);

/* "ensemble of N members: a, b, ..." and a newline. */
void ensemble_print(FILE *f, const struct ensemble_members *e);

/* What ensemble_average runs for each member: fills probs (the caller's cells floats) with the
 * probabilities of model m (loaded with its spec and the normalisation of the site that
 * trained it) for the caller's inputs in ctx. 0, or a CWT_E* code with a sentence in err. */
typedef int (*ensemble_run_fn)(struct eng_model *m, const struct eng_model_spec *spec,
                               const struct train_norm *norm, float *probs, void *ctx, char *err,
                               size_t errlen);

/* The ensemble's prediction: loads each member of e from st onto dev in turn (one model on the
 * device at a time, freed before the next), runs fn for it and writes the mean of the members'
 * probabilities into probs (cells floats). sum is the caller's scratch of cells doubles. The
 * first error stops it; err then names the member. */
int ensemble_average(struct eng_device *dev, struct store *st, const struct cwt_recipe *rec,
                     const struct ensemble_members *e, size_t cells, ensemble_run_fn fn, void *ctx,
                     double *sum, float *probs, char *err, size_t errlen);

#endif
