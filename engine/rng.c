/*
 * rng.c - xoshiro256** (Blackman and Vigna) seeded with splitmix64; Box-Muller normals.
 */
#include <math.h>

#include "engine/rng.h"

uint64_t eng_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void eng_rng_seed(struct eng_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = eng_splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t eng_rng_next(struct eng_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double eng_rng_uniform(struct eng_rng *r)
{
    /* 53 random bits, shifted off zero so log() below is finite. */
    return ((double)(eng_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double eng_rng_normal(struct eng_rng *r)
{
    double u1 = eng_rng_uniform(r), u2 = eng_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
