/*
 * test_visit_steps.c - fractional visits carry their remainder (issue 20 item 7): the steps
 * that train_plan_steps plans for N visits at one site, with the daemon's carry kept in the
 * saved cycle state, sum to round(N x visit x steps per epoch) exactly; a restart between
 * visits (the state encoded and decoded) or in the middle of one (the visit planned again from
 * the same state) keeps the sum; the state of an older cwtd (version 1, no carry) still loads
 * and the steps derived from the cycle alone keep the sum; malformed carry lines do not parse.
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

/* One visit as cwtd plans and commits it: the monitor passes the carry when it counts the
 * visits before this cycle, the trainer plans, the monitor commits visits and steps. */
static uint64_t visit(struct cycle_state *cs, enum cwt_visit_unit unit, double length, uint64_t spe,
                      size_t n)
{
    struct train_plan p = {.unit = unit, .length = length, .visit = cs->cycle};
    uint64_t steps, before;

    if (cs->carry_visits == cs->cycle) {
        p.has_before = 1;
        p.steps_before = cs->carry_steps;
    }
    steps = train_plan_steps(&p, spe, n);
    before = train_plan_steps_before(&p, spe, n);
    /* Killed in the middle: the visit is planned again from the same state. */
    assert_int_equal(train_plan_steps(&p, spe, n), steps);
    cs->carry_visits = cs->cycle + 1;
    cs->carry_steps = before + steps;
    cs->cycle++;
    return steps;
}

/* Restarts the daemon: the state goes through its text and back. */
static void restart(struct cycle_state *cs)
{
    char text[CWTD_STATE_MAX], err[CWT_ERRLEN];
    int len = cycle_state_encode(cs, text, sizeof(text));
    struct cycle_state back;

    assert_true(len > 0);
    assert_int_equal(cycle_state_decode(text, (size_t)len, &back, err, sizeof(err)), 0);
    assert_int_equal(back.cycle, cs->cycle);
    assert_int_equal(back.carry_visits, cs->carry_visits);
    assert_true(back.carry_steps == cs->carry_steps);
    *cs = back;
}

static void fresh_state(struct cycle_state *cs)
{
    memset(cs, 0, sizeof(*cs));
    cycle_history_init(&cs->history);
}

static void test_epoch_visits_sum_exactly(void **state)
{
    unsigned seed = (unsigned)time(NULL);
    /* Quarter-epoch visits on 10 batches an epoch: 2.5 steps, the ties of rounding. */
    const double fixed[][2] = {{0.25, 10}, {0.25, 16}, {1.0 / 3.0, 7}, {0.7, 13}, {1.5, 3}};

    (void)state;
    srand(seed);
    for (int t = 0; t < 200; t++) {
        struct cycle_state cs;
        double len;
        uint64_t spe, sum = 0, want;
        uint32_t cycles = 1 + (uint32_t)(rand() % 40), cut = (uint32_t)(rand() % cycles);
        if (t < (int)(sizeof(fixed) / sizeof(fixed[0]))) {
            len = fixed[t][0];
            spe = (uint64_t)fixed[t][1];
            cycles = 19;
        } else {
            spe = 1 + (uint64_t)(rand() % 500);
            len = (double)(1 + rand() % 1000) / 200.0; /* 0.005 .. 5 epochs */
        }
        if (len * (double)spe < 1.0)
            continue; /* below one step a visit is one step: the next test */
        fresh_state(&cs);
        for (uint32_t c = 0; c < cycles; c++) {
            if (c == cut)
                restart(&cs);
            sum += visit(&cs, CWT_VISIT_EPOCHS, len, spe, spe * 32);
        }
        /* x = visit x steps per epoch first, as the plan has it: a tie at .5 rounds the
         * same way only when the product is taken in the same order. */
        want = (uint64_t)floor((double)cycles * (len * (double)spe) + 0.5);
        if (sum != want)
            fail_msg("seed %u: %u visits of %.17g epochs x %llu steps took %llu steps, not %llu",
                     seed, cycles, len, (unsigned long long)spe, (unsigned long long)sum,
                     (unsigned long long)want);
    }
}

static void test_proportional_and_steps_units(void **state)
{
    struct cycle_state cs;
    uint64_t sum = 0;

    (void)state;
    /* cwtctl init's default: 3.90625 steps per 1000 samples on 1000 samples. */
    fresh_state(&cs);
    for (int c = 0; c < 19; c++)
        sum += visit(&cs, CWT_VISIT_PROPORTIONAL, 3.90625, 16, 1000);
    assert_true(sum == (uint64_t)floor(19 * 3.90625 + 0.5));
    fresh_state(&cs);
    sum = 0;
    for (int c = 0; c < 7; c++)
        sum += visit(&cs, CWT_VISIT_STEPS, 2.5, 16, 1000);
    assert_true(sum == 18); /* round(17.5) */
}

static void test_short_visits_take_one_step(void **state)
{
    struct cycle_state cs;

    (void)state;
    fresh_state(&cs);
    for (int c = 0; c < 10; c++)
        assert_true(visit(&cs, CWT_VISIT_EPOCHS, 0.05, 4, 128) == 1);
}

static void test_old_state_loads_and_keeps_the_sum(void **state)
{
    /* A version 1 state (before the carry) in the middle of a run: cycle 3 to train. */
    const char *v1 = "version=1\nphase=training\ncycle=3\nhop=1\nhas_input=1\n";
    struct cycle_state cs;
    char err[CWT_ERRLEN];
    uint64_t sum = 0;

    (void)state;
    assert_int_equal(cycle_state_decode(v1, strlen(v1), &cs, err, sizeof(err)), 0);
    assert_int_equal(cs.carry_visits, 0);
    /* Visits 0..2 took round(3 x 2.5) = 8 steps under the cycle-derived rule. */
    sum = 8;
    for (int c = 3; c < 19; c++)
        sum += visit(&cs, CWT_VISIT_EPOCHS, 0.25, 10, 320);
    assert_true(sum == 48); /* round(19 x 2.5) = round(47.5) */
}

static void test_malformed_carry_is_refused(void **state)
{
    const char *bad[] = {"carry=1\n",
                         "carry=-1,5\n",
                         "carry=1,-5\n",
                         "carry=1,2,3\n",
                         "carry=,5\n",
                         "carry=4294967296,1\n",
                         "carry=1,x\n",
                         "version=3\ncarry=1,2\n",
                         "carry=1,2\ncarry=1,2\n"};
    struct cycle_state cs;
    char err[CWT_ERRLEN];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (cycle_state_decode(bad[i], strlen(bad[i]), &cs, err, sizeof(err)) != CWT_EFORMAT)
            fail_msg("decoded \"%s\"", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epoch_visits_sum_exactly),
        cmocka_unit_test(test_proportional_and_steps_units),
        cmocka_unit_test(test_short_visits_take_one_step),
        cmocka_unit_test(test_old_state_loads_and_keeps_the_sum),
        cmocka_unit_test(test_malformed_carry_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
