/*
 * test_h1_state.c - issue 18, H1: a roster member signed a bundle whose payload metadata
 * "cwt.history" held "...\ncycle=1000"; cwtd copied the text into its saved state, so after a
 * restart it believed it was in cycle 1000 (and an unknown injected key made the state
 * unreadable). Now the history is parsed into numbers (cycle_history_parse) and the state and
 * the trainer's job message are encoded from numbers and validated names only:
 *   - the attack texts do not parse; valid histories round-trip exactly;
 *   - a state round-trips through encode/decode (random values, seed printed);
 *   - the encoder refuses names with control characters, the decoder any control character;
 *   - the job message carries the history as numbers and refuses values out of range.
 */
#include "tests/security/sec_fixture.h"

#include "cycle/cycle.h"
#include "daemon/proto.h"

static void test_injected_history_does_not_parse(void **state)
{
    static const char *const attacks[] = {
        "cur=0 sum=0.5 n=1 best=-1 bestc=0\ncycle=1000",
        "cur=0 sum=0.5 n=1 best=-1 bestc=0\nevil=1",
        "cur=0 sum=0.5 n=1 best=-1 bestc=0 cycle=1000",
        "cur=0 sum=0.5 n=1 best=-1 bestc=0\r",
        "cur=0 sum=nan n=1 best=-1 bestc=0",
        "cur=0 sum=5 n=1 best=-1 bestc=0", /* a mean above 1 */
        "cur=0 sum=0.5 n=1 best=7 bestc=0",
        "cur=-1 sum=0.5 n=1 best=-1 bestc=0",
        "bestc=0 cur=0 sum=0.5 n=1 best=-1",
    };
    struct cycle_history h;
    char err[CWT_ERRLEN];

    (void)state;
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++)
        if (cycle_history_parse(attacks[i], &h, err, sizeof(err)) != CWT_EFORMAT)
            fail_msg("history %zu was accepted: \"%s\"", i, attacks[i]);
}

static void test_history_round_trips(void **state)
{
    struct cycle_history h = {.cur = 3, .n = 2, .bestc = 1, .sum = 1.25, .best = 0.6180339887},
                         back;
    char text[CWTD_HISTORY_MAX + 1], err[CWT_ERRLEN];

    (void)state;
    assert_int_equal(cycle_history_format(&h, text, sizeof(text)), 0);
    assert_int_equal(cycle_history_parse(text, &back, err, sizeof(err)), 0);
    assert_true(back.cur == h.cur && back.n == h.n && back.bestc == h.bestc && back.sum == h.sum &&
                back.best == h.best);
    assert_int_equal(cycle_history_parse("", &back, err, sizeof(err)), 0);
    assert_true(back.best < 0 && back.n == 0);
    h.sum = 3; /* three accuracies cannot come from two visits */
    assert_int_equal(cycle_history_format(&h, text, sizeof(text)), CWT_EINVAL);
}

static double unit_rand(void)
{
    return (double)(rand() % 1000001) / 1000000.0;
}

static void random_state(struct cycle_state *cs)
{
    memset(cs, 0, sizeof(*cs));
    cs->phase = (enum cwtd_phase)(rand() % 5);
    cs->cycle = (uint32_t)rand();
    cs->hop = (uint32_t)rand() % 64;
    cs->has_input = rand() & 1;
    cs->has_parent = rand() & 1;
    randombytes_buf(cs->parent_hash, 32);
    randombytes_buf(cs->in_bundle_id, 16);
    cs->epochs_before = unit_rand() * 100;
    cs->history.cur = (uint32_t)rand();
    cs->history.n = (uint32_t)rand() % 100;
    cs->history.sum = cs->history.n * unit_rand();
    cs->history.best = rand() & 1 ? -1 : unit_rand();
    cs->history.bestc = (uint32_t)rand();
    snprintf(cs->waiting_from, sizeof(cs->waiting_from), "site-%d", rand() % 100);
    cs->since = rand();
    cs->paused = rand() & 1;
    cs->has_out = 1;
    cs->out_seq = (uint64_t)rand();
    snprintf(cs->out_name, sizeof(cs->out_name), "fed-c%d-h1-cycle-to-b.cwtb", rand() % 100);
    cs->out_written = rand() & 1;
    cs->out_kind = (uint8_t)(1 + rand() % 3);
    randombytes_buf(cs->final_hash, 32);
    cs->n_metrics = (uint32_t)rand() % 8;
    for (uint32_t i = 0; i < cs->n_metrics; i++) {
        cs->metrics[i].cycle = i;
        cs->metrics[i].val_accuracy = 0.5; /* written with 6 digits: exact for 0.5 */
    }
    cs->ensemble_mask_lo = (uint32_t)rand();
    cs->sum_steps = (uint64_t)rand();
    cs->sum_epochs = unit_rand();
    cs->sum_train_loss = NAN;
    cs->sum_val_acc = unit_rand();
}

static void test_state_round_trips(void **state)
{
    static struct cycle_state cs, back;
    char text[CWTD_STATE_MAX], text2[CWTD_STATE_MAX], err[CWT_ERRLEN];
    unsigned seed = (unsigned)time(NULL);
    int n;

    (void)state;
    srand(seed);
    for (int i = 0; i < 200; i++) {
        random_state(&cs);
        n = cycle_state_encode(&cs, text, sizeof(text));
        if (n < 0)
            fail_msg("seed %u: encode failed: %d", seed, n);
        if (cycle_state_decode(text, (size_t)n, &back, err, sizeof(err)) != 0)
            fail_msg("seed %u: decode failed: %s\n%s", seed, err, text);
        assert_int_equal(cycle_state_encode(&back, text2, sizeof(text2)), n);
        if (memcmp(text, text2, (size_t)n) != 0)
            fail_msg("seed %u: the state does not round-trip:\n%s\n%s", seed, text, text2);
        assert_memory_equal(&cs.history, &back.history, sizeof(cs.history));
        assert_int_equal(back.cycle, cs.cycle);
    }
}

static void test_state_refuses_control_characters(void **state)
{
    static struct cycle_state cs, back;
    char text[CWTD_STATE_MAX], err[CWT_ERRLEN];
    const char *p;
    int n;

    (void)state;
    random_state(&cs);
    snprintf(cs.out_name, sizeof(cs.out_name), "x.cwtb\ncycle=1000");
    assert_int_equal(cycle_state_encode(&cs, text, sizeof(text)), CWT_EINVAL);
    random_state(&cs);
    snprintf(cs.waiting_from, sizeof(cs.waiting_from), "a\nb");
    assert_int_equal(cycle_state_encode(&cs, text, sizeof(text)), CWT_EINVAL);
    random_state(&cs);
    cs.cycle = 4;
    n = cycle_state_encode(&cs, text, sizeof(text));
    assert_true(n > 0);
    /* The old attack, as it would have been saved: a second cycle line inside history. */
    p = strstr(text, "history=");
    assert_non_null(p);
    {
        char forged[CWTD_STATE_MAX + 64];
        size_t at = (size_t)(strchr(p, '\n') - text);
        snprintf(forged, sizeof(forged), "%.*s\ncycle=1000%s", (int)at, text, text + at);
        assert_int_equal(cycle_state_decode(forged, strlen(forged), &back, err, sizeof(err)),
                         CWT_EFORMAT);
    }
    /* Any control character (other than the line breaks) is refused. */
    text[5] = '\x1b';
    assert_int_equal(cycle_state_decode(text, (size_t)n, &back, err, sizeof(err)), CWT_EFORMAT);
}

static void test_job_carries_numbers(void **state)
{
    struct proto_msg m, out;
    uint8_t buf[PROTO_MAX_MSG];
    char err[CWT_ERRLEN];
    int n;

    (void)state;
    memset(&m, 0, sizeof(m));
    m.type = PROTO_JOB;
    m.fd = -1;
    m.u.job.kind = PROTO_JOB_VISIT;
    snprintf(m.u.job.ckpt, sizeof(m.u.job.ckpt), "cwtd.visit.c0.h1");
    m.u.job.history = (struct cycle_history){.cur = 0, .n = 1, .sum = 0.5, .best = -1};
    n = proto_encode(&m, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(proto_decode(buf, (size_t)n, &out, err, sizeof(err)), 0);
    assert_memory_equal(&out.u.job.history, &m.u.job.history, sizeof(m.u.job.history));
    m.u.job.history.best = 1000;
    assert_int_equal(proto_encode(&m, buf, sizeof(buf)), CWT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_injected_history_does_not_parse),
        cmocka_unit_test(test_history_round_trips),
        cmocka_unit_test(test_state_round_trips),
        cmocka_unit_test(test_state_refuses_control_characters),
        cmocka_unit_test(test_job_carries_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
