/*
 * test_finetune.c - fine-tuning groups (eng_model_set_finetune) on both backends: the CPU
 * backend (oneDNN) and Vulkan (lavapipe without a GPU).
 *   - freezing: after AdamW steps with weight decay, every tensor of the frozen stages
 *     (weights, batch-norm running statistics, optimizer moments) is bit-identical to its
 *     initial value, and every parameter and running statistic of the other layers changed;
 *   - lr multiplier: one plain SGD step with backbone scale s moves every backbone parameter by
 *     s times the step without scaling (within float rounding of the weights) and the head by
 *     exactly the same amount;
 *   - the frozen model trains to the same losses on both backends (within the tolerance
 *     test_cpu.c uses for whole models);
 *   - errors: freezing cnn-small, more stages than the model has, a negative scale, and
 *     setting the groups after the first step.
 * Fresh seed per run, printed; CWT_TEST_SEED repeats a run.
 */
#include <float.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "common/cwt.h"
#include "engine/engine.h"
#include "harness.h"
#include "models.h"

struct fix {
    struct eng_device *dev[2]; /* cpu, vulkan */
    const char *label[2];
    uint64_t seed;
};

/* The tensors of the first `frozen` stages of a resnet by name (stem = conv1 / bn1, then
 * layer1, layer2 ...), optimizer state included. */
static int in_frozen(const char *name, uint32_t frozen)
{
    if (strncmp(name, "optim.", 6) == 0)
        name += 6;
    if (frozen >= 1 && (strncmp(name, "conv1.", 6) == 0 || strncmp(name, "bn1.", 4) == 0))
        return 1;
    for (uint32_t s = 1; s < frozen; s++) {
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "layer%u.", s);
        if (strncmp(name, prefix, strlen(prefix)) == 0)
            return 1;
    }
    return 0;
}

static struct eng_model *resnet(struct eng_device *d, enum eng_optim kind, float mom, float wd,
                                uint64_t seed, uint32_t freeze, float scale)
{
    struct eng_model_spec s = spec_of("resnet", 16, 16, 1, 3, 0.0f, seed);
    struct eng_optim_spec o = {kind, mom, 0, wd, 0.9f, 0.999f, 1e-8f};
    struct eng_model *m = NULL;
    char err[CWT_ERRLEN];
    int rc = eng_model_create(d, &s, &o, 8, &m, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "eng_model_create: %s\n", err);
    assert_int_equal(rc, 0);
    struct eng_finetune f = {freeze, scale};
    rc = eng_model_set_finetune(m, &f, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "eng_model_set_finetune: %s\n", err);
    assert_int_equal(rc, 0);
    return m;
}

static void steps(struct eng_model *m, const struct data *d, uint32_t n, float lr, float *losses)
{
    size_t per = (size_t)d->c * d->h * d->w;
    for (uint32_t i = 0; i < n; i++) {
        float loss;
        uint32_t at = (i * 8) % (d->n - 8);
        assert_int_equal(eng_train_begin(m, d->x + at * per, d->y + at, 8, NULL, lr), 0);
        assert_int_equal(eng_train_end(m, &loss, NULL), 0);
        assert_true(isfinite(loss));
        if (losses)
            losses[i] = loss;
    }
}

static void check_freeze(struct eng_device *d, const char *label, uint64_t seed, uint32_t freeze,
                         float *losses)
{
    struct data data;
    make_data(&data, 64, 1, 16, 16, 3, seed);
    struct eng_model *m = resnet(d, ENG_ADAMW, 0.0f, 0.05f, seed, freeze, 0.5f);
    float *before, *after;
    size_t len, len2;
    read_all(m, &before, &len);
    steps(m, &data, 3, 0.01f, losses);
    read_all(m, &after, &len2);
    assert_int_equal(len, len2);
    size_t off = 0;
    uint32_t frozen_tensors = 0, moved_tensors = 0;
    for (uint32_t i = 0; i < eng_model_tensor_count(m); i++) {
        struct eng_tensor_info ti;
        assert_int_equal(eng_model_tensor_info(m, i, &ti), 0);
        int same = memcmp(before + off, after + off, ti.numel * sizeof(float)) == 0;
        if (in_frozen(ti.name, freeze)) {
            if (!same)
                fprintf(stderr, "%s: frozen %s changed (seed 0x%llx)\n", label, ti.name,
                        (unsigned long long)seed);
            assert_true(same);
            frozen_tensors++;
        } else {
            if (same)
                fprintf(stderr, "%s: trainable %s did not change (seed 0x%llx)\n", label, ti.name,
                        (unsigned long long)seed);
            assert_false(same);
            moved_tensors++;
        }
        off += ti.numel;
    }
    assert_true(frozen_tensors > 0);
    assert_true(moved_tensors > 0);
    free(before);
    free(after);
    free_data(&data);
    eng_model_free(m);
}

static void test_freeze(void **state)
{
    struct fix *f = *state;
    float losses[2][3];
    for (int b = 0; b < 2; b++) {
        check_freeze(f->dev[b], f->label[b], f->seed, 2, losses[b]);
        check_freeze(f->dev[b], f->label[b], f->seed + 1, 4, NULL); /* all but the head */
    }
    /* Both backends run the frozen (eval-mode) batch norms and skip the same backward work. */
    for (int i = 0; i < 3; i++) {
        double tol = i == 0 ? 1e-5 : 1e-2;
        if (fabs(losses[0][i] - losses[1][i]) > tol * fmax(1.0, fabs(losses[1][i]))) {
            fprintf(stderr, "step %d loss cpu %.7g vulkan %.7g (seed 0x%llx)\n", i, losses[0][i],
                    losses[1][i], (unsigned long long)f->seed);
            fail();
        }
    }
}

static void test_lr_scale(void **state)
{
    struct fix *f = *state;
    const float s = 0.25f, lr = 0.05f;
    struct data data;
    make_data(&data, 16, 1, 16, 16, 3, f->seed);
    for (int b = 0; b < 2; b++) {
        struct eng_model *m1 = resnet(f->dev[b], ENG_SGD, 0.0f, 0.0f, f->seed, 0, 1.0f);
        struct eng_model *ms = resnet(f->dev[b], ENG_SGD, 0.0f, 0.0f, f->seed, 0, s);
        float *w0, *w1, *ws;
        size_t len;
        read_all(m1, &w0, &len);
        steps(m1, &data, 1, lr, NULL);
        steps(ms, &data, 1, lr, NULL);
        read_all(m1, &w1, &len);
        read_all(ms, &ws, &len);
        size_t off = 0;
        for (uint32_t i = 0; i < eng_model_tensor_count(m1); i++) {
            struct eng_tensor_info ti;
            assert_int_equal(eng_model_tensor_info(m1, i, &ti), 0);
            if (ti.kind != ENG_T_PARAM) {
                off += ti.numel;
                continue;
            }
            int head = strncmp(ti.name, "fc.", 3) == 0;
            double wmax = 0, dmax = 0;
            for (uint64_t j = 0; j < ti.numel; j++) {
                wmax = fmax(wmax, fabs(w0[off + j]));
                dmax = fmax(dmax, fabs(w1[off + j] - w0[off + j]));
            }
            /* Each update is a rounded float subtraction: its error is a few ulps of w. */
            double tol = 4.0 * FLT_EPSILON * wmax + 1e-6 * dmax;
            for (uint64_t j = 0; j < ti.numel; j++) {
                double d1 = (double)w1[off + j] - w0[off + j];
                double ds = (double)ws[off + j] - w0[off + j];
                double want = head ? d1 : s * d1;
                if (fabs(ds - want) > (head ? 0.0 : tol)) {
                    fprintf(stderr, "%s: %s[%llu] moved %.9g, want %.9g (seed 0x%llx)\n",
                            f->label[b], ti.name, (unsigned long long)j, ds, want,
                            (unsigned long long)f->seed);
                    fail();
                }
            }
            assert_true(dmax > 0.0);
            off += ti.numel;
        }
        free(w0);
        free(w1);
        free(ws);
        eng_model_free(m1);
        eng_model_free(ms);
    }
    free_data(&data);
}

static void test_errors(void **state)
{
    struct fix *f = *state;
    char err[CWT_ERRLEN] = "";
    for (int b = 0; b < 2; b++) {
        struct eng_model_spec cs = spec_of("cnn-small", 16, 16, 1, 3, 0.0f, f->seed);
        struct eng_model *c = make_model(f->dev[b], &cs, ENG_SGD, 4);
        struct eng_finetune one = {1, 1.0f}, scale_only = {0, 0.1f};
        assert_int_equal(eng_model_stages(c), 0);
        assert_int_equal(eng_model_set_finetune(c, &one, err, sizeof(err)), CWT_EINVAL);
        assert_non_null(strstr(err, "resnet"));
        assert_int_equal(eng_model_set_finetune(c, &scale_only, err, sizeof(err)), 0);
        eng_model_free(c);

        struct eng_model *m = resnet(f->dev[b], ENG_SGD, 0.9f, 0.0f, f->seed, 0, 1.0f);
        assert_int_equal(eng_model_stages(m), 4); /* resnet-8: stem + 3 stages */
        struct eng_finetune too_many = {5, 1.0f}, negative = {1, -0.5f}, ok = {4, 0.5f};
        assert_int_equal(eng_model_set_finetune(m, &too_many, err, sizeof(err)), CWT_EINVAL);
        assert_non_null(strstr(err, "5 stages"));
        assert_int_equal(eng_model_set_finetune(m, &negative, err, sizeof(err)), CWT_EINVAL);
        assert_int_equal(eng_model_set_finetune(m, &ok, err, sizeof(err)), 0);
        struct data data;
        make_data(&data, 16, 1, 16, 16, 3, f->seed);
        steps(m, &data, 1, 0.01f, NULL);
        assert_int_equal(eng_model_set_finetune(m, &ok, err, sizeof(err)), CWT_ESTATE);
        free_data(&data);
        eng_model_free(m);
    }
}

static int setup(void **state)
{
    static struct fix f;
    memset(&f, 0, sizeof(f));
    f.seed = th_seed();
    f.label[0] = "cpu";
    f.label[1] = "vulkan";
    char err[CWT_ERRLEN];
    th_keep_lavapipe_loaded();
    if (eng_device_open("cpu", 0, &f.dev[0], err, sizeof(err)) != 0 ||
        eng_device_open("vulkan", 0, &f.dev[1], err, sizeof(err)) != 0) {
        fprintf(stderr, "test_finetune: %s\n", err);
        return -1;
    }
    fprintf(stderr, "test_finetune: seed 0x%llx (CWT_TEST_SEED repeats a run)\n",
            (unsigned long long)f.seed);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    eng_device_close(f->dev[0]);
    eng_device_close(f->dev[1]);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_freeze),
        cmocka_unit_test(test_lr_scale),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
