/*
 * train_rng.c - the driver's random numbers: a counter-based hash for choices that must be
 * reproducible from (seed, epoch, position) alone, and the engine's xoshiro256** (engine/rng.c)
 * for sequential streams, with the bounded and unit-interval draws the driver needs.
 */
#include "engine/rng.h"
#include "engine/train/train.h"

uint64_t train_hash3(uint64_t a, uint64_t b, uint64_t c)
{
    /* Chaining the finaliser over the three words keeps (a, b, c) and permutations of it
     * apart, unlike a plain xor of the inputs. */
    uint64_t state = a;
    uint64_t h = eng_splitmix64(&state);

    state = h ^ b;
    h = eng_splitmix64(&state);
    state = h ^ c;
    return eng_splitmix64(&state);
}

void train_rng_seed(struct train_rng *rng, uint64_t seed)
{
    eng_rng_seed(&rng->g, seed);
}

uint64_t train_rng_next(struct train_rng *rng)
{
    return eng_rng_next(&rng->g);
}

uint64_t train_rng_below(struct train_rng *rng, uint64_t bound)
{
    /* Rejection of the values below 2^64 mod bound removes the modulo bias. */
    uint64_t threshold = (0 - bound) % bound;

    for (;;) {
        uint64_t r = eng_rng_next(&rng->g);
        if (r >= threshold)
            return r % bound;
    }
}

double train_rng_unit(struct train_rng *rng)
{
    return (double)(eng_rng_next(&rng->g) >> 11) * 0x1.0p-53;
}
