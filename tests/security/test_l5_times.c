/*
 * test_l5_times.c - issue 18, L5: a roster member seals a bundle created at 2^62 that expires
 * one second later. It is neither expired nor plausible; it must be refused by the "times"
 * rule (CWT_EB_TIME) with nothing written and the ledger unchanged. So must a bundle whose
 * lifetime exceeds the roster's bundle_ttl_days, while one within the stated clock skew
 * (BUNDLE_CLOCK_SKEW) opens.
 */
#include "tests/security/sec_fixture.h"

/* Seals from site-a with the given times and opens at site-b; returns the open's code. */
static int seal_and_open(struct sec_fixture *fx, int64_t created, int64_t expires, char *err,
                         size_t errlen)
{
    struct bundle_header h;
    struct bundle_info info;
    uint8_t fp[32];

    memset(fp, 0x42, 32);
    sec_header(&h, fp);
    h.created = created;
    h.expires = expires;
    sec_write_payload(fx->weights);
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, fx->bundle, &info, err, errlen), 0);
    return bundle_open(&fx->keys[1], &fx->roster, fx->st, fx->bundle, fx->out, fp, &info, err,
                       errlen);
}

static void test_created_far_in_the_future_is_refused(void **state)
{
    struct sec_fixture *fx = *state;
    char err[CWT_ERRLEN];
    int64_t t = (int64_t)1 << 62;

    assert_int_equal(seal_and_open(fx, t, t + 1, err, sizeof(err)), CWT_EB_TIME);
    assert_non_null(strstr(err, "ahead of this site's clock"));
    assert_false(sec_exists(fx->out));
    assert_int_equal(sec_ledger_count(fx), 0);
}

static void test_lifetime_beyond_ttl_is_refused(void **state)
{
    struct sec_fixture *fx = *state;
    char err[CWT_ERRLEN];
    int64_t now = cwt_now(), ttl = (int64_t)fx->roster.recipe.bundle_ttl_days * 86400;

    assert_true(ttl > 0);
    assert_int_equal(seal_and_open(fx, now, now + ttl + BUNDLE_CLOCK_SKEW + 3600, err, sizeof(err)),
                     CWT_EB_TIME);
    assert_non_null(strstr(err, "bundle_ttl_days"));
    assert_false(sec_exists(fx->out));
    assert_int_equal(sec_ledger_count(fx), 0);
}

static void test_small_clock_skew_is_accepted(void **state)
{
    struct sec_fixture *fx = *state;
    char err[CWT_ERRLEN];
    int64_t now = cwt_now();

    /* The sender's clock an hour ahead, a lifetime of the roster's TTL: fine. */
    assert_int_equal(seal_and_open(fx, now + 3600,
                                   now + 3600 + (int64_t)fx->roster.recipe.bundle_ttl_days * 86400,
                                   err, sizeof(err)),
                     0);
    assert_true(sec_exists(fx->out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_created_far_in_the_future_is_refused, sec_setup,
                                        sec_teardown),
        cmocka_unit_test_setup_teardown(test_lifetime_beyond_ttl_is_refused, sec_setup,
                                        sec_teardown),
        cmocka_unit_test_setup_teardown(test_small_clock_skew_is_accepted, sec_setup, sec_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
