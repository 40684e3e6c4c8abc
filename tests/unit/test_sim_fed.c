/*
 * test_sim_fed.c - the arithmetic of `cwtctl simulate`'s fedavg and fedprox: the
 * sample-weighted average equals the weighted mean of known tensors; a round cut to the
 * budget spends exactly the budget; the FedProx correction of an SGD step (plain, momentum,
 * Nesterov, weight decay) equals the step taken with the proximal gradient.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/fileio.h"
#include "config/config.h"
#include "crypto/keys.h"
#include "sim/sim.h"
#include "tests/test_tmp.h"

/* Three models with weights 10, 30, 60: the mean of known values, exact in float. */
static void average_known(void **state)
{
    const float a[4] = {1.0f, -2.0f, 0.5f, 100.0f};
    const float b[4] = {3.0f, 2.0f, 0.5f, -100.0f};
    const float c[4] = {5.0f, 0.0f, 0.5f, 0.0f};
    const float want[4] = {(10 * 1 + 30 * 3 + 60 * 5) / 100.0f, (10 * -2 + 30 * 2) / 100.0f, 0.5f,
                           (10 * 100 - 30 * 100) / 100.0f};
    double acc[4] = {0};
    float out[4];

    (void)state;
    sim_avg_add(acc, a, 4, 10);
    sim_avg_add(acc, b, 4, 30);
    sim_avg_add(acc, c, 4, 60);
    assert_int_equal(sim_avg_finish(acc, 4, 100, out), 0);
    for (int j = 0; j < 4; j++)
        assert_true(out[j] == want[j]);
    /* Equal weights give the plain mean; one model gives itself back bit for bit. */
    memset(acc, 0, sizeof(acc));
    sim_avg_add(acc, a, 4, 7);
    assert_int_equal(sim_avg_finish(acc, 4, 7, out), 0);
    assert_memory_equal(out, a, sizeof(a));
    assert_int_equal(sim_avg_finish(acc, 4, 0, out), CWT_EINVAL);
}

/* Random tensors and weights: the result is the double-precision weighted mean rounded once. */
static void average_random(void **state)
{
    const uint64_t seed = (uint64_t)time(NULL);
    struct train_rng rng;
    enum { K = 5, N = 1000 };
    float x[K][N], out[N];
    double w[K], acc[N] = {0}, wsum = 0;

    (void)state;
    train_rng_seed(&rng, seed);
    for (int k = 0; k < K; k++) {
        w[k] = 1 + (double)train_rng_below(&rng, 5000);
        wsum += w[k];
        for (int j = 0; j < N; j++)
            x[k][j] = (float)(train_rng_unit(&rng) * 20 - 10);
        sim_avg_add(acc, x[k], N, w[k]);
    }
    assert_int_equal(sim_avg_finish(acc, N, wsum, out), 0);
    for (int j = 0; j < N; j++) {
        double ref = 0;
        for (int k = 0; k < K; k++)
            ref += w[k] * x[k][j];
        ref /= wsum;
        if (fabs(out[j] - ref) > 1e-6 * (1 + fabs(ref)))
            fail_msg("seed %llu: element %d is %.9g, the weighted mean %.9g",
                     (unsigned long long)seed, j, out[j], ref);
    }
}

/* Full rounds are kept; a cut round spends exactly what is left, proportionally. */
static void round_steps(void **state)
{
    const uint64_t full[3] = {10, 20, 30};
    uint64_t out[3];

    (void)state;
    sim_round_steps(full, 3, 100, out);
    assert_true(out[0] == 10 && out[1] == 20 && out[2] == 30);
    sim_round_steps(full, 3, 60, out);
    assert_true(out[0] == 10 && out[1] == 20 && out[2] == 30);
    sim_round_steps(full, 3, 30, out);
    assert_true(out[0] == 5 && out[1] == 10 && out[2] == 15);
    sim_round_steps(full, 3, 7, out); /* floors 1, 2, 3; the missing step to inst-0 */
    assert_true(out[0] == 2 && out[1] == 2 && out[2] == 3);
    sim_round_steps(full, 3, 1, out);
    assert_true(out[0] + out[1] + out[2] == 1 && out[0] == 1);
    for (uint64_t left = 0; left < 60; left++) {
        sim_round_steps(full, 3, left, out);
        assert_true(out[0] + out[1] + out[2] == left);
        for (int i = 0; i < 3; i++)
            assert_true(out[i] <= full[i]);
    }
}

/* The engine's SGD (shaders/optim.comp) on one float: g += wd*w; buf = mom*buf + g;
 * update = nesterov ? g + mom*buf : buf (or g without momentum); w -= lr*update. */
static void sgd(float *w, float *buf, float g, float lr, float mom, float wd, int nesterov)
{
    float gr = g + wd * *w;
    if (mom != 0.0f) {
        float b = mom * *buf + gr;
        *buf = b;
        gr = nesterov ? gr + mom * b : b;
    }
    *w -= lr * gr;
}

/* Several steps: engine step then correction vs. the step with the proximal gradient. */
static void prox_matches_gradient(void **state)
{
    const uint64_t seed = (uint64_t)time(NULL) ^ 0x5eed;
    const float moms[3] = {0.0f, 0.9f, 0.9f};
    const int nest[3] = {0, 0, 1};
    struct train_rng rng;
    enum { N = 64, STEPS = 20 };

    (void)state;
    train_rng_seed(&rng, seed);
    for (int v = 0; v < 3; v++) {
        float w[N], ref[N], buf[N] = {0}, rbuf[N] = {0}, glob[N], prev[N];
        const float mu = 0.1f, lr = 0.05f, wd = 5e-4f;
        for (int j = 0; j < N; j++)
            glob[j] = w[j] = ref[j] = prev[j] = (float)(train_rng_unit(&rng) * 2 - 1);
        for (int s = 0; s < STEPS; s++) {
            for (int j = 0; j < N; j++) {
                float g = (float)(train_rng_unit(&rng) * 2 - 1);
                sgd(&w[j], &buf[j], g, lr, moms[v], wd, nest[v]);
                sgd(&ref[j], &rbuf[j], g + mu * (ref[j] - glob[j]), lr, moms[v], wd, nest[v]);
            }
            sim_prox_correct(w, moms[v] != 0.0f ? buf : NULL, prev, glob, N, mu, lr, moms[v],
                             nest[v]);
            memcpy(prev, w, sizeof(w));
        }
        for (int j = 0; j < N; j++)
            if (fabsf(w[j] - ref[j]) > 1e-5f * (1 + fabsf(ref[j])) ||
                fabsf(buf[j] - rbuf[j]) > 1e-5f * (1 + fabsf(rbuf[j])))
                fail_msg("seed %llu, variant %d: element %d is %.9g (buf %.9g), the proximal "
                         "SGD step gives %.9g (%.9g)",
                         (unsigned long long)seed, v, j, w[j], buf[j], ref[j], rbuf[j]);
    }
}

/* The proximal term pulls towards the global model: with zero gradient, plain SGD and
 * weights away from it, every step moves w by lr*mu of the distance. */
static void prox_pulls_back(void **state)
{
    float w[2] = {1.0f, -3.0f}, glob[2] = {0.0f, 1.0f}, prev[2];

    (void)state;
    memcpy(prev, w, sizeof(w));
    sim_prox_correct(w, NULL, prev, glob, 2, 0.5f, 0.1f, 0.0f, 0);
    assert_true(fabsf(w[0] - 0.95f) < 1e-7f && fabsf(w[1] - -2.8f) < 1e-6f);
}

/* Fractional visits carry their remainder: k visits of x steps take round(k x) together;
 * whole x gives x every time; under one step, every visit takes one. */
static void visit_steps(void **state)
{
    const double xs[5] = {1.125, 1.95, 2.5, 7.0, 3.3333333333333335};

    (void)state;
    for (int v = 0; v < 5; v++) {
        uint64_t sum = 0;
        for (uint64_t k = 0; k < 1000; k++) {
            uint64_t s = sim_visit_steps(xs[v], k);
            assert_true(s >= 1 && (double)s <= xs[v] + 1);
            sum += s;
            assert_int_equal(sum, (uint64_t)floor((double)(k + 1) * xs[v] + 0.5));
        }
    }
    assert_int_equal(sim_visit_steps(7.0, 12345), 7);
    assert_int_equal(sim_visit_steps(0.3, 0), 1);
    assert_int_equal(sim_visit_steps(0.3, 99), 1);
}

/* An output folder whose inst-0 holds another site's keys is refused with a sentence naming
 * both ids (the sentence was once built from keys sim_fed_open had already freed; the ASan
 * run of this test catches that). */
static void foreign_keys(void **state)
{
    (void)state;
    char dir[512], keys[600], err[CWT_ERRLEN];
    struct cwt_recipe r;
    struct sim_fed *f = NULL;

    assert_int_equal(test_tmp_path(dir, sizeof(dir), "test_sim_fed"), 0);
    snprintf(keys, sizeof(keys), "%s/inst-0/keys", dir);
    assert_int_equal(file_mkdir_p(keys, 0700, err, sizeof(err)), 0);
    assert_int_equal(keys_generate(keys, "someone-else", err, sizeof(err)), 0);
    recipe_defaults(&r);
    assert_int_equal(sim_fed_open(dir, 2, &r, &f, err, sizeof(err)), CWT_ECONFIG);
    assert_null(f);
    assert_non_null(strstr(err, "holds keys of 'someone-else', not 'inst-0'"));
    assert_int_equal(test_tmp_remove(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(average_known),   cmocka_unit_test(average_random),
        cmocka_unit_test(round_steps),     cmocka_unit_test(prox_matches_gradient),
        cmocka_unit_test(prox_pulls_back), cmocka_unit_test(visit_steps),
        cmocka_unit_test(foreign_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
