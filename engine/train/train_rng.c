/*
 * train_rng.c - the driver's random numbers: a counter-based hash for choices that must be
 * reproducible from (seed, epoch, position) alone, and xoshiro256** for sequential streams.
 */
#include "engine/train/train.h"

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t train_hash3(uint64_t a, uint64_t b, uint64_t c)
{
    /* Chaining the finaliser over the three words keeps (a, b, c) and permutations of it
     * apart, unlike a plain xor of the inputs. */
    uint64_t state = a;
    uint64_t h = splitmix64(&state);

    state = h ^ b;
    h = splitmix64(&state);
    state = h ^ c;
    return splitmix64(&state);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void train_rng_seed(struct train_rng *rng, uint64_t seed)
{
    uint64_t state = seed;

    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&state);
}

uint64_t train_rng_next(struct train_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t train_rng_below(struct train_rng *rng, uint64_t bound)
{
    /* Rejection of the values below 2^64 mod bound removes the modulo bias. */
    uint64_t threshold = (0 - bound) % bound;

    for (;;) {
        uint64_t r = train_rng_next(rng);
        if (r >= threshold)
            return r % bound;
    }
}

double train_rng_unit(struct train_rng *rng)
{
    return (double)(train_rng_next(rng) >> 11) * 0x1.0p-53;
}
