/*
 * test_cycle_normsum.c - the pooled normalisation statistics carried in "cwt.normsum"
 * (cycle/cycle.h): sums of random sites add up exactly and round-trip through the text; the
 * pooled mean and std equal those computed over all the pixels at once; texts a peer could
 * forge (control characters, signs, extra keys, overflow, impossible sums) do not parse.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cycle/cycle.h"
#include "engine/train/train.h"

static void test_sites_add_and_round_trip(void **state)
{
    unsigned seed = (unsigned)time(NULL);
    struct cycle_normsum acc, back;
    char text[CWTD_NORMSUM_MAX + 1], err[CWT_ERRLEN];
    double all_sum = 0, all_sq = 0, all_n = 0;

    (void)state;
    srand(seed);
    memset(&acc, 0, sizeof(acc));
    for (uint32_t s = 0; s < 4; s++) {
        /* A site of 50..549 pixels around its own intensity level. */
        struct cycle_normsum site;
        uint32_t n = 50 + (uint32_t)(rand() % 500), level = (uint32_t)(rand() % 200);
        memset(&site, 0, sizeof(site));
        site.channels = 1;
        site.pixels = n;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t v = level + (uint64_t)(rand() % 56);
            site.sum[0] += v;
            site.sumsq[0] += v * v;
            all_sum += (double)v;
            all_sq += (double)(v * v);
        }
        all_n += n;
        if (cycle_normsum_add(&acc, &site) != 0)
            fail_msg("add failed (seed %u)", seed);
    }
    assert_int_equal(acc.sites, 4);
    assert_int_equal(cycle_normsum_format(&acc, text, sizeof(text)), 0);
    if (cycle_normsum_parse(text, 4, &back, err, sizeof(err)) != 0)
        fail_msg("\"%s\" does not parse: %s (seed %u)", text, err, seed);
    assert_memory_equal(&acc, &back, sizeof(acc));
    /* Four sites cannot be in a roster of three. */
    assert_int_equal(cycle_normsum_parse(text, 3, &back, err, sizeof(err)), CWT_EFORMAT);
    {
        struct train_norm_sums s = {.channels = 1, .pixels = acc.pixels};
        struct train_norm norm;
        double mean = all_sum / all_n, sd = sqrt(all_sq / all_n - mean * mean);
        s.sum[0] = acc.sum[0];
        s.sumsq[0] = acc.sumsq[0];
        assert_int_equal(train_norm_from_sums(&s, &norm), 0);
        if (fabs(norm.mean[0] - mean / 255) > 1e-6 || fabs(norm.std[0] - sd / 255) > 1e-6)
            fail_msg("pooled %g %g, want %g %g (seed %u)", norm.mean[0], norm.std[0], mean / 255,
                     sd / 255, seed);
    }
    /* The empty text is no statistics; an empty one cannot be formatted. */
    assert_int_equal(cycle_normsum_parse("", 4, &back, err, sizeof(err)), 0);
    assert_int_equal(back.sites, 0);
    assert_int_equal(cycle_normsum_format(&back, text, sizeof(text)), CWT_EINVAL);
}

static void test_forged_texts_do_not_parse(void **state)
{
    static const char *const bad[] = {
        "sites=1 pixels=10 sum=100 sumsq=2000\ncycle=1000",
        "sites=1 pixels=10 sum=100 sumsq=2000 evil=1",
        "sites=1 pixels=10 sum=-100 sumsq=2000",
        "sites=1 pixels=10 sum=+100 sumsq=2000",
        "sites=1 pixels=10 sum=100,5 sumsq=2000",
        "sites=1 pixels=10 sum=1,2,3,4,5 sumsq=1,2,3,4,5",
        "sites=1 pixels=10 sum=2551 sumsq=2000",  /* above 255 per pixel */
        "sites=1 pixels=10 sum=100 sumsq=650251", /* above 255^2 per pixel */
        "sites=0 pixels=10 sum=100 sumsq=2000",   /* no site */
        "sites=1 pixels=0 sum=0 sumsq=0",         /* no pixel */
        "sites=1 pixels=99999999999999999999 sum=1 sumsq=1",
        "pixels=10 sites=1 sum=100 sumsq=2000",
        "sites=1  pixels=10 sum=100 sumsq=2000",
        "sites=1 pixels=10 sum=100 sumsq=2000 ",
        "sites=1 pixels=10 sum=1e2 sumsq=2000",
        "sites=1 pixels=10 sum= sumsq=2000",
        "sites=1 pixels=010 sum=100 sumsq=2000", /* one spelling per number */
    };
    struct cycle_normsum ns;
    char err[CWT_ERRLEN];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (cycle_normsum_parse(bad[i], 8, &ns, err, sizeof(err)) != CWT_EFORMAT)
            fail_msg("normsum %zu was accepted: \"%s\"", i, bad[i]);
    assert_int_equal(cycle_normsum_parse("sites=2 pixels=10 sum=100,0,3 sumsq=2000,0,9", 8, &ns,
                                         err, sizeof(err)),
                     0);
    assert_int_equal(ns.channels, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sites_add_and_round_trip),
        cmocka_unit_test(test_forged_texts_do_not_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
