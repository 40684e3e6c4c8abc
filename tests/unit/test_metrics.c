/*
 * test_metrics.c - evaluation metrics: ROC AUC on hand-computed cases (ties count one half,
 * undefined without positives or negatives), the macro one-vs-rest AUC against a pairwise
 * reference on fresh random scores, confusion matrix, balanced accuracy, per-class recall,
 * two-class sensitivity/specificity, and the learning-rate schedules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/train/train.h"

static void test_auc_hand_cases(void **state)
{
    /* Two negatives 0.1, 0.4 and two positives 0.35, 0.8: 3 of 4 pairs ordered. */
    const float a[] = {0.1f, 0.4f, 0.35f, 0.8f};
    const uint8_t pa[] = {0, 0, 1, 1};
    /* Ties: positives 0.8, 0.5; negatives 0.5, 0.2 -> (1 + 1 + 0.5 + 1) / 4. */
    const float b[] = {0.8f, 0.5f, 0.5f, 0.2f};
    const uint8_t pb[] = {1, 1, 0, 0};
    /* All scores equal: exactly one half. */
    const float c[] = {0.3f, 0.3f, 0.3f, 0.3f, 0.3f};
    const uint8_t pc[] = {1, 0, 1, 0, 0};
    /* Perfectly inverted ranking. */
    const float d[] = {0.9f, 0.8f, 0.1f};
    const uint8_t pd[] = {0, 0, 1};
    const uint8_t none[] = {0, 0, 0, 0};
    (void)state;

    assert_float_equal(train_auc(a, 1, pa, 4), 0.75, 1e-12);
    assert_float_equal(train_auc(b, 1, pb, 4), 0.875, 1e-12);
    assert_float_equal(train_auc(c, 1, pc, 5), 0.5, 1e-12);
    assert_float_equal(train_auc(d, 1, pd, 3), 0.0, 1e-12);
    assert_true(isnan(train_auc(a, 1, none, 4)));
}

static void test_confusion_and_balanced_accuracy(void **state)
{
    /* 3 classes; 4 samples of class 0 (3 right), 1 of class 1 (right), 1 of class 2 (wrong,
     * predicted 0). */
    const float probs[] = {
        0.8f, 0.1f, 0.1f, /* 0 -> 0 */
        0.7f, 0.2f, 0.1f, /* 0 -> 0 */
        0.6f, 0.3f, 0.1f, /* 0 -> 0 */
        0.2f, 0.5f, 0.3f, /* 0 -> 1 */
        0.1f, 0.8f, 0.1f, /* 1 -> 1 */
        0.5f, 0.1f, 0.4f, /* 2 -> 0 */
    };
    const uint32_t labels[] = {0, 0, 0, 0, 1, 2};
    const uint64_t want[9] = {3, 1, 0, 0, 1, 0, 1, 0, 0};
    struct train_metrics m;
    (void)state;

    assert_int_equal(train_metrics_compute(probs, labels, 6, 3, &m), 0);
    assert_int_equal(m.n, 6);
    assert_memory_equal(m.confusion, want, sizeof(want));
    assert_float_equal(m.accuracy, 4.0 / 6.0, 1e-12);
    assert_float_equal(m.recall[0], 0.75, 1e-12);
    assert_float_equal(m.recall[1], 1.0, 1e-12);
    assert_float_equal(m.recall[2], 0.0, 1e-12);
    assert_float_equal(m.balanced_accuracy, (0.75 + 1.0 + 0.0) / 3.0, 1e-12);
    assert_true(isnan(m.sensitivity));
    /* Class 1 is ranked first by its own score among all 6 samples: AUC 1. */
    assert_float_equal(m.class_auc[1], 1.0, 1e-12);
    assert_float_equal(
        m.loss, -(log(0.8) + log(0.7) + log(0.6) + log(0.2) + log(0.8) + log(0.4)) / 6.0, 1e-6);
    train_metrics_free(&m);
}

static void test_absent_class_is_skipped(void **state)
{
    /* Class 2 never occurs: recall NaN, left out of balanced accuracy and of the macro AUC. */
    const float probs[] = {0.9f, 0.05f, 0.05f, 0.2f, 0.7f, 0.1f, 0.6f, 0.3f, 0.1f};
    const uint32_t labels[] = {0, 1, 1};
    struct train_metrics m;
    (void)state;

    assert_int_equal(train_metrics_compute(probs, labels, 3, 3, &m), 0);
    assert_true(isnan(m.recall[2]));
    assert_true(isnan(m.class_auc[2]));
    assert_float_equal(m.balanced_accuracy, (1.0 + 0.5) / 2.0, 1e-12);
    assert_float_equal(m.auc, (m.class_auc[0] + m.class_auc[1]) / 2.0, 1e-12);
    train_metrics_free(&m);
}

static void test_two_classes(void **state)
{
    /* Positive class 1: 2 of 3 positives found (sensitivity 2/3), 2 of 2 negatives
     * (specificity 1). */
    const float p1[] = {0.9f, 0.6f, 0.4f, 0.1f, 0.3f};
    const uint32_t labels[] = {1, 1, 1, 0, 0};
    float probs[10];
    struct train_metrics m;
    (void)state;

    for (int i = 0; i < 5; i++) {
        probs[2 * i] = 1.0f - p1[i];
        probs[2 * i + 1] = p1[i];
    }
    assert_int_equal(train_metrics_compute(probs, labels, 5, 2, &m), 0);
    assert_float_equal(m.sensitivity, 2.0 / 3.0, 1e-12);
    assert_float_equal(m.specificity, 1.0, 1e-12);
    /* Pairs (pos, neg): 0.9, 0.6, 0.4 all above 0.3 and 0.1: AUC 1. */
    assert_float_equal(m.auc, 1.0, 1e-12);
    assert_float_equal(m.class_auc[0], m.class_auc[1], 0);
    train_metrics_free(&m);
}

/* Pairwise reference: P(score_pos > score_neg) + P(equal) / 2. */
static double auc_reference(const float *s, size_t stride, const uint8_t *pos, size_t n)
{
    double hits = 0, pairs = 0;

    for (size_t i = 0; i < n; i++) {
        if (!pos[i])
            continue;
        for (size_t j = 0; j < n; j++) {
            if (pos[j])
                continue;
            pairs++;
            if (s[i * stride] > s[j * stride])
                hits += 1;
            else if (s[i * stride] == s[j * stride])
                hits += 0.5;
        }
    }
    return pairs > 0 ? hits / pairs : NAN;
}

static void test_macro_auc_random(void **state)
{
    enum { N = 300, K = 4 };
    unsigned seed = (unsigned)time(NULL);
    float probs[N * K];
    uint32_t labels[N];
    uint8_t pos[N];
    struct train_rng rng;
    struct train_metrics m;
    double macro = 0;
    (void)state;

    print_message("seed %u\n", seed);
    train_rng_seed(&rng, seed);
    for (int i = 0; i < N; i++) {
        float sum = 0;
        labels[i] = (uint32_t)train_rng_below(&rng, K);
        for (int k = 0; k < K; k++) {
            /* Coarse scores so that ties occur often. */
            probs[i * K + k] = (float)(1 + train_rng_below(&rng, 8)) + (k == (int)labels[i]);
            sum += probs[i * K + k];
        }
        for (int k = 0; k < K; k++)
            probs[i * K + k] /= sum;
    }
    assert_int_equal(train_metrics_compute(probs, labels, N, K, &m), 0);
    for (int k = 0; k < K; k++) {
        double want;
        for (int i = 0; i < N; i++)
            pos[i] = labels[i] == (uint32_t)k;
        want = auc_reference(probs + k, K, pos, N);
        assert_float_equal(m.class_auc[k], want, 1e-9);
        macro += want;
    }
    assert_float_equal(m.auc, macro / K, 1e-9);
    train_metrics_free(&m);
}

static void test_bad_labels(void **state)
{
    const float probs[] = {0.5f, 0.5f};
    const uint32_t labels[] = {2};
    struct train_metrics m;
    (void)state;

    assert_int_equal(train_metrics_compute(probs, labels, 1, 2, &m), CWT_EINVAL);
    assert_int_equal(train_metrics_compute(probs, labels, 1, 0, &m), CWT_EINVAL);
}

static void test_schedules(void **state)
{
    struct cwt_recipe r;
    (void)state;

    memset(&r, 0, sizeof(r));
    r.lr = 0.1;
    r.lr_min = 0.01;
    r.gamma = 0.5;
    r.step_epochs = 2;
    r.cycle_epochs = 4;
    r.schedule = CWT_LR_CONSTANT;
    assert_float_equal(train_lr_at(&r, 7.3, 10), 0.1, 1e-12);
    r.schedule = CWT_LR_STEP;
    assert_float_equal(train_lr_at(&r, 1.99, 10), 0.1, 1e-12);
    assert_float_equal(train_lr_at(&r, 2.0, 10), 0.05, 1e-12);
    assert_float_equal(train_lr_at(&r, 5.5, 10), 0.025, 1e-12);
    r.schedule = CWT_LR_COSINE;
    assert_float_equal(train_lr_at(&r, 0, 10), 0.1, 1e-12);
    assert_float_equal(train_lr_at(&r, 5, 10), 0.055, 1e-12);
    assert_float_equal(train_lr_at(&r, 10, 10), 0.01, 1e-12);
    assert_float_equal(train_lr_at(&r, 12, 10), 0.01, 1e-12);
    r.schedule = CWT_LR_CYCLICAL;
    assert_float_equal(train_lr_at(&r, 0, 10), 0.01, 1e-12);
    assert_float_equal(train_lr_at(&r, 2, 10), 0.055, 1e-12);
    assert_float_equal(train_lr_at(&r, 4, 10), 0.1, 1e-12);
    assert_float_equal(train_lr_at(&r, 6, 10), 0.055, 1e-12);
    assert_float_equal(train_lr_at(&r, 8, 10), 0.01, 1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auc_hand_cases),
        cmocka_unit_test(test_confusion_and_balanced_accuracy),
        cmocka_unit_test(test_absent_class_is_skipped),
        cmocka_unit_test(test_two_classes),
        cmocka_unit_test(test_macro_auc_random),
        cmocka_unit_test(test_bad_labels),
        cmocka_unit_test(test_schedules),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
