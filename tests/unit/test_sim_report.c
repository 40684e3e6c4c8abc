/*
 * test_sim_report.c - round axis ticks of simulate's plots: the step is 1, 2 or 5 times a
 * power of ten, the ticks cover the range, there are at most as many as asked, and they print
 * as short decimals (0.3, not 0.30000000000000004).
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_ranges),
        cmocka_unit_test(random_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
