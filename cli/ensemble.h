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

/* The JSON array ["a","b",...] of the members' site ids. */
void ensemble_print_json(FILE *f, const struct ensemble_members *e);

/* Adds the probabilities of one member (n floats) to the running sum. */
void ensemble_accumulate(double *sum, const float *probs, size_t n);

/* Writes the mean sum / members into probs (n floats). */
void ensemble_mean(const double *sum, uint32_t members, float *probs, size_t n);

#endif
