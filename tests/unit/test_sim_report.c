/*
 * test_sim_report.c - round axis ticks of simulate's plots: the step is 1, 2 or 5 times a
 * power of ten, the ticks cover the range, there are at most as many as asked, and they print
 * as short decimals (0.3, not 0.30000000000000004); results.json of a small report parses,
 * has the schema and provenance keys, writes NaN as null and survives a partition name that
 * is not UTF-8; both SVGs carry <desc> provenance and one series per curve.
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
#include <jansson.h>

#include "sim/sim.h"

static void known_ranges(void **state)
{
    double t[16], lo, hi;
    size_t n;
    char buf[32];

    (void)state;
    n = sim_nice_ticks(0.77, 0.99, 7, 0, t, &lo, &hi);
    assert_int_equal(n, 6);
    assert_true(fabs(lo - 0.75) < 1e-12 && fabs(hi - 1.0) < 1e-12);
    snprintf(buf, sizeof(buf), "%g", t[1]);
    assert_string_equal(buf, "0.8");
    n = sim_nice_ticks(0.0, 14.0, 7, 1, t, &lo, &hi);
    assert_int_equal(n, 4);
    assert_true(lo == 0.0 && hi == 15.0 && t[1] == 5.0);
    /* integer steps: a range of 3 steps is ticked by 1, not 0.5. */
    n = sim_nice_ticks(0.0, 3.0, 7, 1, t, &lo, &hi);
    assert_int_equal(n, 4);
    assert_true(t[1] == 1.0);
    n = sim_nice_ticks(0.2, 0.3, 7, 0, t, &lo, &hi);
    snprintf(buf, sizeof(buf), "%g %g", t[0], t[n - 1]);
    assert_string_equal(buf, "0.2 0.3");
    /* Degenerate ranges still give two ticks. */
    n = sim_nice_ticks(0.5, 0.5, 7, 0, t, &lo, &hi);
    assert_true(n >= 2 && lo <= 0.5 && hi >= 0.5);
    n = sim_nice_ticks(NAN, 1.0, 7, 0, t, &lo, &hi);
    assert_true(n >= 2 && lo == 0.0 && hi == 1.0);
}

/* Random ranges: every step is 1, 2 or 5 x 10^k and the ticks cover the range. */
static void random_ranges(void **state)
{
    unsigned seed = (unsigned)time(NULL);
    double t[16], lo, hi;

    (void)state;
    srand(seed);
    for (int i = 0; i < 10000; i++) {
        double a = (double)rand() / RAND_MAX, b = a + (double)rand() / RAND_MAX * 0.5 + 1e-4;
        size_t n = sim_nice_ticks(a, b, 7, 0, t, &lo, &hi);
        double step = t[1] - t[0], mant = step / pow(10.0, floor(log10(step)));
        if (n < 2 || n > 7 || lo > a + 1e-12 || hi < b - 1e-12 ||
            !(fabs(mant - 1) < 1e-6 || fabs(mant - 2) < 1e-6 || fabs(mant - 5) < 1e-6 ||
              fabs(mant - 10) < 1e-6))
            fail_msg("seed %u: [%g, %g] gave %zu ticks %g..%g step %g", seed, a, b, n, lo, hi,
                     step);
    }
}

static void add(struct sim_report *r, enum sim_heur h, double visit, uint32_t seed_index,
                double acc)
{
    struct sim_outcome o;

    memset(&o, 0, sizeof(o));
    o.heur = h;
    o.visit = visit;
    o.inst = -1;
    o.seed_index = seed_index;
    o.seed = 1 + seed_index;
    o.test_accuracy = acc;
    o.test_balanced_accuracy = acc - 0.2;
    o.test_auc = NAN; /* one class in the test split */
    o.steps = o.budget = 10;
    assert_int_equal(sim_curve_add(&o.curve, 5, acc - 0.1), 0);
    assert_int_equal(sim_curve_add(&o.curve, 10, acc), 0);
    assert_int_equal(sim_report_add(r, &o), 0);
}

static void report_files(void **state)
{
    struct sim_report r;
    json_error_t jerr;
    json_t *o;
    char *text, *svg = NULL;
    size_t len = 0;
    FILE *f;

    (void)state;
    memset(&r, 0, sizeof(r));
    r.sites = 3;
    snprintf(r.partition, sizeof(r.partition), "by-column:s\xff");
    snprintf(r.command, sizeof(r.command), "cwtctl simulate --sites 3 --out caf\xe9 <&\x01>");
    snprintf(r.recipe_text, sizeof(r.recipe_text), "cnn-small, sgd lr 0.01");
    snprintf(r.heuristics, sizeof(r.heuristics), "central,cwt");
    r.n_seeds = 2;
    r.first_seed = 1;
    r.budget_steps = 10;
    r.n_visits = 2;
    r.visits[0] = 0.5;
    r.visits[1] = 1.0;
    for (uint32_t s = 0; s < 2; s++) {
        add(&r, SIM_CENTRAL, 0.0, s, 0.9);
        add(&r, SIM_CWT, 0.5, s, 0.8 + 0.01 * s);
        add(&r, SIM_CWT, 1.0, s, 0.85);
        add(&r, SIM_CWT_PLUS, 0.5, s, 0.82);
    }
    text = sim_report_json_text(&r);
    assert_non_null(text);
    o = json_loads(text, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "schema")), "cwt.simulate-results/1");
    /* Bytes that are not UTF-8 become U+FFFD, as in every cwt document (common/utf8.c). */
    assert_string_equal(json_string_value(json_object_get(o, "partition")),
                        "by-column:s\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(o, "command")),
                        "cwtctl simulate --sites 3 --out caf\xef\xbf\xbd <&\x01>");
    assert_int_equal(json_array_size(json_object_get(o, "heuristics")), 3);
    assert_int_equal(json_array_size(json_object_get(o, "seed_values")), 2);
    assert_true(
        json_is_null(json_object_get(json_array_get(json_object_get(o, "runs"), 0), "test_auc")));
    /* Balanced accuracy per run and its mean and sd per row: cwt v=0.5 had 0.60 and 0.61. */
    assert_true(json_real_value(json_object_get(json_array_get(json_object_get(o, "runs"), 0),
                                                "test_balanced_accuracy")) == 0.9 - 0.2);
    json_t *row = json_array_get(json_object_get(o, "summary"), 1);
    assert_string_equal(json_string_value(json_object_get(row, "label")), "cwt v=0.5");
    assert_true(fabs(json_real_value(json_object_get(row, "test_balanced_accuracy_mean")) - 0.605) <
                1e-12);
    assert_true(fabs(json_real_value(json_object_get(row, "test_balanced_accuracy_sd")) -
                     0.01 / sqrt(2.0)) < 1e-12);
    json_decref(o);
    free(text);

    f = open_memstream(&svg, &len);
    assert_non_null(f);
    sim_svg_curves(&r, f);
    sim_svg_visits(&r, f);
    assert_int_equal(fclose(f), 0);
    assert_non_null(strstr(svg, "<desc>cwt "));
    /* The SVG declares UTF-8: a bad byte or a control character is U+FFFD there too. */
    assert_non_null(
        strstr(svg, "cwtctl simulate --sites 3 --out caf\xef\xbf\xbd &lt;&amp;\xef\xbf\xbd&gt;"));
    assert_non_null(strstr(svg, "class=\"errorbar\""));
    free(svg);
    sim_report_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_ranges),
        cmocka_unit_test(random_ranges),
        cmocka_unit_test(report_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
