/*
 * fuzz_common.h - what the fuzz harnesses and the corpus generator share: a fixed roster of
 * three sites whose keys come from fixed seeds, so that the seed bundles in the corpus carry
 * signatures that verify and the fuzzer starts from files that pass every rule.
 */
#ifndef CWT_FUZZ_COMMON_H
#define CWT_FUZZ_COMMON_H

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "crypto/keys.h"

#define FUZZ_SITES 3

/* fuzz_bundle_open's seeds are created at FUZZ_BUNDLE_TIME and its clock reads
 * FUZZ_BUNDLE_NOW, an hour later: within every bundle's lifetime. */
#define FUZZ_BUNDLE_TIME 1700000000
#define FUZZ_BUNDLE_NOW  (FUZZ_BUNDLE_TIME + 3600)

/* Deterministic keys for site i (sign_sk and box_sk in sodium_malloc memory). */
static inline int fuzz_site_keys(int i, struct site_keys *k)
{
    uint8_t seed[32];

    memset(k, 0, sizeof(*k));
    snprintf(k->site_id, sizeof(k->site_id), "site-%c", 'a' + i);
    k->sign_sk = sodium_malloc(64);
    k->box_sk = sodium_malloc(32);
    if (k->sign_sk == NULL || k->box_sk == NULL)
        return -1;
    memset(seed, 'S' + i, sizeof(seed));
    crypto_sign_seed_keypair(k->sign_pk, k->sign_sk, seed);
    memset(seed, 'B' + i, sizeof(seed));
    crypto_box_seed_keypair(k->box_pk, k->box_sk, seed);
    return 0;
}

/* The fixed roster: federation "fuzz-fed", sites a, b, c, default recipe. */
static inline int fuzz_roster(struct cwt_roster *r, struct site_keys keys[FUZZ_SITES])
{
    memset(r, 0, sizeof(*r));
    snprintf(r->federation, sizeof(r->federation), "fuzz-fed");
    recipe_defaults(&r->recipe);
    for (int i = 0; i < FUZZ_SITES; i++) {
        struct cwt_roster_site *s = &r->sites[i];
        if (fuzz_site_keys(i, &keys[i]) != 0)
            return -1;
        snprintf(s->id, sizeof(s->id), "%s", keys[i].site_id);
        memcpy(s->sign_pk, keys[i].sign_pk, 32);
        memcpy(s->box_pk, keys[i].box_pk, 32);
        if (keyline_format(s->id, s->sign_pk, s->box_pk, s->key_line, sizeof(s->key_line),
                           s->key_id) != 0)
            return -1;
        memcpy(keys[i].key_id, s->key_id, CWT_KEYID_LEN);
        r->n_sites++;
    }
    return 0;
}

#endif
