/*
 * test_sim_partition.c - partitions of `cwtctl simulate`: disjoint and covering, sizes and
 * label mixes as requested, deterministic from the seed; the Gamma/Dirichlet samplers; the
 * argument lists.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim/sim.h"

#define N_CLASSES 10

struct dataset {
    size_t n;
    uint64_t *ids;
    uint32_t *labels;
};

/* n images with scattered ids; class c has about weight(c) of them (skewed when asked). */
static void make_dataset(struct dataset *d, size_t n, int skewed, uint64_t seed)
{
    struct train_rng rng;

    train_rng_seed(&rng, seed);
    d->n = n;
    d->ids = malloc(n * sizeof(uint64_t));
    d->labels = malloc(n * sizeof(uint32_t));
    assert_non_null(d->ids);
    assert_non_null(d->labels);
    for (size_t j = 0; j < n; j++) {
        d->ids[j] = 1000 + 7 * j + train_rng_below(&rng, 5);
        if (skewed)
            d->labels[j] = (uint32_t)(train_rng_below(&rng, 55) < 10 ? 0 : j % N_CLASSES);
        else
            d->labels[j] = (uint32_t)(j % N_CLASSES);
    }
}

static void free_dataset(struct dataset *d)
{
    free(d->ids);
    free(d->labels);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every input id appears exactly once, with its own label, each institution sorted. */
static void check_disjoint_covering(const struct dataset *d, const struct sim_part *p)
{
    uint64_t *a = malloc(d->n * sizeof(uint64_t)), *b = malloc(d->n * sizeof(uint64_t));

    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(p->start[0], 0);
    assert_int_equal(p->start[p->n_inst], d->n);
    memcpy(a, d->ids, d->n * sizeof(uint64_t));
    memcpy(b, p->ids, d->n * sizeof(uint64_t));
    qsort(a, d->n, sizeof(uint64_t), cmp_u64);
    qsort(b, d->n, sizeof(uint64_t), cmp_u64);
    for (size_t j = 0; j < d->n; j++) {
        assert_int_equal(a[j], b[j]);
        if (j > 0)
            assert_true(b[j] != b[j - 1]);
    }
    for (uint32_t i = 0; i < p->n_inst; i++)
        for (size_t j = p->start[i] + 1; j < p->start[i + 1]; j++)
            assert_true(p->ids[j - 1] < p->ids[j]);
    for (size_t j = 0; j < d->n; j++)
        for (size_t k = 0; k < d->n; k++)
            if (d->ids[k] == p->ids[j]) {
                assert_int_equal(d->labels[k], p->labels[j]);
                break;
            }
    free(a);
    free(b);
}

static void count_labels(const struct sim_part *p, uint64_t *counts /* n_inst * classes */)
{
    memset(counts, 0, (size_t)p->n_inst * N_CLASSES * sizeof(uint64_t));
    for (uint32_t i = 0; i < p->n_inst; i++)
        for (size_t j = p->start[i]; j < p->start[i + 1]; j++)
            counts[(size_t)i * N_CLASSES + p->labels[j]]++;
}

static void run_rule(const char *text, uint32_t n_inst, const struct dataset *d, uint64_t seed,
                     struct sim_part *out, double *mix, double *target)
{
    struct sim_part_rule rule;
    uint64_t class_counts[N_CLASSES] = {0};
    char err[CWT_ERRLEN];

    assert_int_equal(sim_part_rule_parse(text, n_inst, &rule, err, sizeof(err)), 0);
    sim_label_mix(&rule, n_inst, N_CLASSES, seed, mix);
    for (size_t j = 0; j < d->n; j++)
        class_counts[d->labels[j]]++;
    assert_int_equal(sim_partition_targets(&rule, n_inst, N_CLASSES, mix, class_counts, target), 0);
    assert_int_equal(sim_partition(&rule, n_inst, N_CLASSES, mix, d->ids, d->labels, d->n, seed, 1,
                                   out, err, sizeof(err)),
                     0);
}

/* iid: equal sizes within one image, every class spread evenly, disjoint and covering. */
static void iid_equal_and_covering(void **state)
{
    struct dataset d;
    struct sim_part p;
    double mix[4 * N_CLASSES], target[4 * N_CLASSES];
    uint64_t counts[4 * N_CLASSES];

    (void)state;
    make_dataset(&d, 1003, 1, 5);
    run_rule("iid", 4, &d, 42, &p, mix, target);
    check_disjoint_covering(&d, &p);
    for (uint32_t i = 0; i < 4; i++)
        assert_true(fabs((double)sim_part_size(&p, i) - 1003.0 / 4) <= 1.0);
    count_labels(&p, counts);
    for (uint32_t i = 0; i < 4; i++)
        for (uint32_t c = 0; c < N_CLASSES; c++)
            assert_true(fabs((double)counts[i * N_CLASSES + c] - target[i * N_CLASSES + c]) < 1.0);
    sim_part_free(&p);
    free_dataset(&d);
}

/* size-skew: institution sizes follow the weights within one image, label mix stays iid. */
static void size_skew_follows_weights(void **state)
{
    struct dataset d;
    struct sim_part p;
    double mix[4 * N_CLASSES], target[4 * N_CLASSES];
    const double w[4] = {0.1, 0.2, 0.3, 0.4};

    (void)state;
    make_dataset(&d, 2000, 0, 6);
    run_rule("size-skew:0.1,0.2,0.3,0.4", 4, &d, 7, &p, mix, target);
    check_disjoint_covering(&d, &p);
    for (uint32_t i = 0; i < 4; i++) {
        assert_true(fabs((double)sim_part_size(&p, i) - 2000.0 * w[i]) <= 1.0);
        for (uint32_t c = 0; c < N_CLASSES; c++)
            assert_true(fabs(target[i * N_CLASSES + c] - 200.0 * w[i]) < 1e-9);
    }
    sim_part_free(&p);
    free_dataset(&d);
}

/* label-skew: the targets are diag(a) * mix * diag(b) with the right sums (equal sizes, exact
 * class totals), the counts round them, and a small alpha gives skewed institutions. */
static void label_skew_follows_mix(void **state)
{
    struct dataset d;
    struct sim_part p;
    double mix[4 * N_CLASSES], target[4 * N_CLASSES];
    uint64_t counts[4 * N_CLASSES];
    double top_share = 0.0;

    (void)state;
    make_dataset(&d, 4000, 0, 8);
    run_rule("label-skew:0.5", 4, &d, 11, &p, mix, target);
    check_disjoint_covering(&d, &p);
    count_labels(&p, counts);
    for (uint32_t i = 0; i < 4; i++) {
        double row = 0.0;
        uint64_t top = 0;
        assert_true(fabs((double)sim_part_size(&p, i) - 1000.0) <= 1.0);
        for (uint32_t c = 0; c < N_CLASSES; c++) {
            row += target[i * N_CLASSES + c];
            assert_true(fabs((double)counts[i * N_CLASSES + c] - target[i * N_CLASSES + c]) < 1.0);
            if (counts[i * N_CLASSES + c] > top)
                top = counts[i * N_CLASSES + c];
        }
        assert_true(fabs(row - 1000.0) < 1e-4);
        top_share += (double)top / 1000.0 / 4.0;
    }
    for (uint32_t c = 0; c < N_CLASSES; c++) {
        double col = 0.0;
        for (uint32_t i = 0; i < 4; i++)
            col += target[i * N_CLASSES + c];
        assert_true(fabs(col - 400.0) < 1e-6);
    }
    /* Cross ratios are invariant under row and column scaling: target = diag(a) mix diag(b). */
    for (uint32_t c = 1; c < N_CLASSES; c++) {
        double t = target[0 * N_CLASSES + 0] * target[1 * N_CLASSES + c] /
                   (target[0 * N_CLASSES + c] * target[1 * N_CLASSES + 0]);
        double m = mix[0 * N_CLASSES + 0] * mix[1 * N_CLASSES + c] /
                   (mix[0 * N_CLASSES + c] * mix[1 * N_CLASSES + 0]);
        assert_true(fabs(log(t) - log(m)) < 1e-6);
    }
    /* Uniform would give a top class share of 0.1. */
    assert_true(top_share > 0.2);
    sim_part_free(&p);
    free_dataset(&d);
}

/* A huge alpha is close to iid. */
static void label_skew_large_alpha_is_near_iid(void **state)
{
    struct dataset d;
    struct sim_part p;
    double mix[4 * N_CLASSES], target[4 * N_CLASSES];
    uint64_t counts[4 * N_CLASSES];

    (void)state;
    make_dataset(&d, 4000, 0, 9);
    run_rule("label-skew:100000", 4, &d, 3, &p, mix, target);
    count_labels(&p, counts);
    for (uint32_t i = 0; i < 4 * N_CLASSES; i++)
        assert_true(llabs((long long)counts[i] - 100) <= 3);
    sim_part_free(&p);
    free_dataset(&d);
}

/* Same seed, same partition; another seed, another one; the input order does not matter. */
static void deterministic_from_seed(void **state)
{
    struct dataset d;
    struct sim_part a, b, c, e;
    double mix[4 * N_CLASSES], target[4 * N_CLASSES];
    struct sim_part_rule rule;
    char err[CWT_ERRLEN];

    (void)state;
    make_dataset(&d, 800, 0, 10);
    run_rule("label-skew:0.3", 4, &d, 99, &a, mix, target);
    run_rule("label-skew:0.3", 4, &d, 99, &b, mix, target);
    run_rule("label-skew:0.3", 4, &d, 100, &c, mix, target);
    assert_memory_equal(a.start, b.start, 5 * sizeof(size_t));
    assert_memory_equal(a.ids, b.ids, d.n * sizeof(uint64_t));
    assert_true(memcmp(a.ids, c.ids, d.n * sizeof(uint64_t)) != 0);
    /* Reversed input gives the same result. */
    for (size_t j = 0; j < d.n / 2; j++) {
        uint64_t t = d.ids[j];
        uint32_t l = d.labels[j];
        d.ids[j] = d.ids[d.n - 1 - j];
        d.labels[j] = d.labels[d.n - 1 - j];
        d.ids[d.n - 1 - j] = t;
        d.labels[d.n - 1 - j] = l;
    }
    assert_int_equal(sim_part_rule_parse("label-skew:0.3", 4, &rule, err, sizeof(err)), 0);
    sim_label_mix(&rule, 4, N_CLASSES, 99, mix);
    assert_int_equal(
        sim_partition(&rule, 4, N_CLASSES, mix, d.ids, d.labels, d.n, 99, 1, &e, err, sizeof(err)),
        0);
    assert_memory_equal(a.ids, e.ids, d.n * sizeof(uint64_t));
    sim_part_free(&a);
    sim_part_free(&b);
    sim_part_free(&c);
    sim_part_free(&e);
    free_dataset(&d);
}

/* More institutions than images of a class, and an empty split, still partition cleanly. */
static void tiny_and_empty(void **state)
{
    struct dataset d;
    struct sim_part p;
    double mix[8 * N_CLASSES], target[8 * N_CLASSES];

    (void)state;
    make_dataset(&d, 13, 0, 12);
    run_rule("label-skew:0.1", 8, &d, 1, &p, mix, target);
    check_disjoint_covering(&d, &p);
    sim_part_free(&p);
    d.n = 0;
    run_rule("iid", 8, &d, 1, &p, mix, target);
    assert_int_equal(p.start[8], 0);
    sim_part_free(&p);
    free_dataset(&d);
}

/* Gamma(shape) has mean and variance shape; the log-space boost handles tiny shapes. */
static void gamma_moments(void **state)
{
    const double shapes[] = {0.05, 0.3, 1.0, 2.5, 10.0};
    const int n = 200000;

    (void)state;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        struct train_rng rng;
        double sum = 0.0, sq = 0.0, mean, var;
        train_rng_seed(&rng, 1234 + s);
        for (int i = 0; i < n; i++) {
            double g = exp(sim_log_gamma_draw(&rng, shapes[s]));
            assert_true(isfinite(g) && g >= 0.0);
            sum += g;
            sq += g * g;
        }
        mean = sum / n;
        var = sq / n - mean * mean;
        if (fabs(mean - shapes[s]) > 0.03 * shapes[s] + 0.002 ||
            fabs(var - shapes[s]) > 0.1 * shapes[s] + 0.002)
            fail_msg("Gamma(%g): mean %g, variance %g (seed %zu)", shapes[s], mean, var, 1234 + s);
    }
}

/* Dirichlet draws sum to 1; with tiny alpha nearly all mass sits on one class. */
static void dirichlet_draws(void **state)
{
    struct train_rng rng;
    double p[N_CLASSES], top_small = 0.0, top_large = 0.0;

    (void)state;
    train_rng_seed(&rng, 77);
    for (int i = 0; i < 2000; i++) {
        double s = 0.0, top = 0.0;
        sim_dirichlet_draw(&rng, 0.01, N_CLASSES, p);
        for (int c = 0; c < N_CLASSES; c++) {
            assert_true(p[c] > 0.0);
            s += p[c];
            top = p[c] > top ? p[c] : top;
        }
        assert_true(fabs(s - 1.0) < 1e-12);
        top_small += top / 2000;
        sim_dirichlet_draw(&rng, 1000.0, N_CLASSES, p);
        top = 0.0;
        for (int c = 0; c < N_CLASSES; c++)
            top = p[c] > top ? p[c] : top;
        top_large += top / 2000;
    }
    assert_true(top_small > 0.9);
    assert_true(top_large < 0.12);
}

/* Bad rules and lists are refused with a sentence. */
static void bad_arguments(void **state)
{
    struct sim_part_rule r;
    char err[CWT_ERRLEN];
    int want[SIM_NHEUR];
    unsigned mods;
    double v[16], mu;
    uint32_t n;

    (void)state;
    assert_int_equal(sim_part_rule_parse("size-skew:1,2,3", 4, &r, err, sizeof(err)), CWT_EINVAL);
    assert_non_null(strstr(err, "3 weights for 4 sites"));
    assert_int_equal(sim_part_rule_parse("size-skew:1,0,3,4", 4, &r, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_part_rule_parse("size-skew:1,2,3,", 3, &r, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_part_rule_parse("label-skew:0", 4, &r, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_part_rule_parse("label-skew:", 4, &r, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_part_rule_parse("dirichlet", 4, &r, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_part_rule_parse("size-skew:1,2", 2, &r, err, sizeof(err)), 0);
    assert_int_equal(r.n_weights, 2);
    assert_int_equal(sim_heur_parse("cwt,cwt+,central", want, &mu, err, sizeof(err)), 0);
    assert_true(want[SIM_CWT] && want[SIM_CWT_PLUS] && want[SIM_CENTRAL] && !want[SIM_SWT]);
    assert_int_equal(sim_heur_parse("cwt,fedavg,fedprox:0.01", want, &mu, err, sizeof(err)), 0);
    assert_true(want[SIM_FEDAVG] && want[SIM_FEDPROX] && mu == 0.01);
    assert_int_equal(sim_heur_parse("cwt,fedprox", want, &mu, err, sizeof(err)), CWT_EINVAL);
    assert_non_null(strstr(err, "'fedprox' is not valid"));
    assert_int_equal(sim_heur_parse("fedprox:0", want, &mu, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_heur_parse("fedprox:1,fedprox:2", want, &mu, err, sizeof(err)),
                     CWT_EINVAL);
    assert_int_equal(sim_heur_parse("cwt,fedsgd", want, &mu, err, sizeof(err)), CWT_EINVAL);
    assert_non_null(strstr(err, "fedsgd"));
    assert_int_equal(sim_heur_parse("cwt,cwt", want, &mu, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_heur_parse("", want, &mu, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_plus_parse("loss,clr", &mods, err, sizeof(err)), 0);
    assert_int_equal(mods, SIM_PLUS_LOSS | SIM_PLUS_CLR);
    assert_int_equal(sim_plus_parse("all", &mods, err, sizeof(err)), 0);
    assert_int_equal(mods, SIM_PLUS_ALL);
    assert_int_equal(sim_plus_parse("momentum", &mods, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_parse_list("0.25,1,5", 1000, v, 16, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    assert_true(v[0] == 0.25 && v[2] == 5.0);
    assert_int_equal(sim_parse_list("1,-2", 1000, v, 16, &n, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_parse_list("1,,2", 1000, v, 16, &n, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_parse_list("1,1", 1000, v, 16, &n, err, sizeof(err)), CWT_EINVAL);
}

/* by-column: a fixed partition keeps every image with its institution, in id order. */
static void fixed_partition(void **state)
{
    const uint64_t ids[6] = {3, 5, 8, 13, 21, 34};
    const uint32_t labels[6] = {0, 1, 2, 0, 1, 2}, inst[6] = {2, 0, 2, 1, 0, 2};
    const uint32_t bad[6] = {0, 0, 0, 0, 0, 3};
    struct sim_part p;
    struct sim_part_rule r;
    char err[CWT_ERRLEN], text[64];

    (void)state;
    assert_int_equal(sim_partition_fixed(3, ids, labels, inst, 6, &p, err, sizeof(err)), 0);
    assert_int_equal(sim_part_size(&p, 0), 2);
    assert_int_equal(sim_part_size(&p, 1), 1);
    assert_int_equal(sim_part_size(&p, 2), 3);
    assert_true(p.ids[0] == 5 && p.ids[1] == 21 && p.ids[2] == 13);
    assert_true(p.ids[3] == 3 && p.ids[4] == 8 && p.ids[5] == 34);
    assert_true(p.labels[0] == 1 && p.labels[5] == 2);
    sim_part_free(&p);
    assert_int_equal(sim_partition_fixed(3, ids, labels, bad, 6, &p, err, sizeof(err)), CWT_EINVAL);
    assert_int_equal(sim_part_rule_parse("by-column:site", 0, &r, err, sizeof(err)), 0);
    assert_int_equal(r.kind, SIM_PART_COLUMN);
    sim_part_rule_format(&r, text, sizeof(text));
    assert_string_equal(text, "by-column:site");
    assert_int_equal(sim_part_rule_parse("by-column:", 0, &r, err, sizeof(err)), CWT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixed_partition),
        cmocka_unit_test(iid_equal_and_covering),
        cmocka_unit_test(size_skew_follows_weights),
        cmocka_unit_test(label_skew_follows_mix),
        cmocka_unit_test(label_skew_large_alpha_is_near_iid),
        cmocka_unit_test(deterministic_from_seed),
        cmocka_unit_test(tiny_and_empty),
        cmocka_unit_test(gamma_moments),
        cmocka_unit_test(dirichlet_draws),
        cmocka_unit_test(bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
