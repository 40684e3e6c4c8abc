/*
 * rng.h - the engine's seeded PRNG (xoshiro256**, seeded by splitmix64) with
 * Box-Muller normals. Deterministic on every platform; no libc rand, no global state.
 */
#ifndef CWT_ENGINE_RNG_H
#define CWT_ENGINE_RNG_H

#include <stdint.h>

struct eng_rng {
    uint64_t s[4];
};

/* SplitMix64: advances *state and returns its next output (also the seeding expansion and
 * the finaliser behind train_hash3). */
uint64_t eng_splitmix64(uint64_t *state);
/* Seeds the generator from a 64-bit seed (splitmix64 expansion; any seed is fine). */
void eng_rng_seed(struct eng_rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t eng_rng_next(struct eng_rng *r);
/* Uniform double in (0, 1). */
double eng_rng_uniform(struct eng_rng *r);
/* Standard normal (Box-Muller; one of the pair is discarded to keep the stream simple). */
double eng_rng_normal(struct eng_rng *r);

#endif
