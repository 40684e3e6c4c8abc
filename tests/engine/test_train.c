/*
 * test_train.c - whole-model behaviour of the engine: a training step under
 * VK_LAYER_KHRONOS_validation reports nothing; two runs with the same seed give bit-identical
 * tensors; cnn-small learns a synthetic separable set to >= 99%; tensor names, shapes,
 * fingerprints and argument checks; CWT_ENG_PROFILE=1 times every dispatch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "harness.h"
#include "models.h"

/* A few training steps, a prediction and tensor I/O for cnn-small and resnet at h x w under the
 * validation layer; dw_shift (if set) is CWT_ENG_DW_SHIFT while the device opens, and then the
 * filter gradients' GEMM forms replace the lanes along the pixels (CWT_ENG_DW_LANES=0). */
static void validation_run(uint32_t h, uint32_t w, const char *dw_shift)
{
    struct eng_device *d;
    char err[CWT_ERRLEN];
    if (dw_shift) {
        assert_int_equal(setenv("CWT_ENG_DW_SHIFT", dw_shift, 1), 0);
        assert_int_equal(setenv("CWT_ENG_DW_LANES", "0", 1), 0);
    }
    int rc = eng_device_open("vulkan", 1, &d, err, sizeof(err));
    if (dw_shift) {
        assert_int_equal(unsetenv("CWT_ENG_DW_SHIFT"), 0);
        assert_int_equal(unsetenv("CWT_ENG_DW_LANES"), 0);
    }
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    struct data ds;
    make_data(&ds, 6, 3, h, w, 3, 7);
    const char *archs[2] = {"cnn-small", "resnet"};
    for (int a = 0; a < 2; a++) {
        struct eng_model_spec s = spec_of(archs[a], h, w, 3, 3, 0.25f, 42);
        struct eng_model *m = make_model(d, &s, a ? ENG_ADAMW : ENG_SGD, 4);
        epoch(m, &ds, 4, 0.01f, NULL); /* batches of 4 and 2: two recordings */
        float probs[4 * 3];
        assert_int_equal(eng_predict(m, ds.x, 4, probs), 0);
        float *buf = calloc(1 << 20, sizeof(float));
        assert_non_null(buf);
        for (uint32_t i = 0; i < eng_model_tensor_count(m); i++) {
            struct eng_tensor_info ti;
            assert_int_equal(eng_model_tensor_info(m, i, &ti), 0);
            assert_true(ti.numel <= (1 << 20));
            assert_int_equal(eng_model_read_tensor(m, i, buf), 0);
            assert_int_equal(eng_model_write_tensor(m, i, buf), 0);
        }
        free(buf);
        eng_model_free(m);
    }
    free_data(&ds);
    uint32_t msgs = eng_device_validation_errors(d);
    eng_device_close(d);
    assert_int_equal(msgs, 0);
}

/* With the device's defaults at 12x10 (on CPU devices convolutions and filter gradients over
 * the flattened pixels, CONV_FLAT and DWL_FLAT) and 16x16 (rows of whole texel pairs: texel
 * windows at strides 1 and 2 and in the stride phases, GEMM_DWL); at 16x16 with shifted-frame
 * filter gradients everywhere the stride allows, then read from x wherever the shape allows:
 * every CPU convolution path under the layer. */
static void test_validation_clean(void **state)
{
    (void)state;
    validation_run(12, 10, NULL);
    validation_run(16, 16, NULL);
    validation_run(16, 16, "2");
    validation_run(16, 16, "3");
}

static void test_determinism(void **state)
{
    struct th *t = *state;
    struct data ds;
    make_data(&ds, 20, 3, 12, 12, 4, t->seed);
    const char *archs[2] = {"cnn-small", "resnet"};
    for (int a = 0; a < 2; a++) {
        float *v[2];
        size_t len[2];
        float loss[2];
        for (int run = 0; run < 2; run++) {
            struct eng_model_spec s = spec_of(archs[a], 12, 12, 3, 4, 0.3f, 1234);
            struct eng_model *m = make_model(t->d, &s, a ? ENG_ADAM : ENG_SGD, 8);
            for (int e = 0; e < 2; e++)
                epoch(m, &ds, 8, 0.02f, NULL);
            uint32_t c;
            assert_int_equal(eng_train_begin(m, ds.x, ds.y, 8, NULL, 0.01f), 0);
            assert_int_equal(eng_train_end(m, &loss[run], &c), 0);
            assert_int_equal(eng_model_step(m), 7);
            read_all(m, &v[run], &len[run]);
            eng_model_free(m);
        }
        assert_int_equal(len[0], len[1]);
        assert_memory_equal(&loss[0], &loss[1], sizeof(float));
        if (memcmp(v[0], v[1], len[0] * sizeof(float)) != 0) {
            fprintf(stderr, "%s: runs with the same seed differ (seed 0x%llx)\n", archs[a],
                    (unsigned long long)t->seed);
            fail();
        }
        free(v[0]);
        free(v[1]);
    }
    free_data(&ds);
}

static void test_convergence(void **state)
{
    struct th *t = *state;
    struct data train;
    struct eng_model *m = check_convergence(t->d, t->seed, "Vulkan", &train);
    /* class weights are accepted and keep the loss finite */
    const float cw[4] = {1.0f, 2.0f, 0.5f, 1.0f};
    epoch(m, &train, 32, 0.01f, cw);
    eng_model_free(m);
    free_data(&train);
}

static int find(struct eng_model *m, const char *name, struct eng_tensor_info *ti)
{
    for (uint32_t i = 0; i < eng_model_tensor_count(m); i++) {
        assert_int_equal(eng_model_tensor_info(m, i, ti), 0);
        if (strcmp(ti->name, name) == 0)
            return (int)i;
    }
    return -1;
}

static void test_tensors_and_errors(void **state)
{
    struct th *t = *state;
    struct eng_tensor_info ti;
    struct eng_model_spec s = spec_of("cnn-small", 28, 28, 1, 10, 0.0f, 1);
    struct eng_model *m = make_model(t->d, &s, ENG_SGD, 4);
    assert_true(find(m, "conv1.weight", &ti) >= 0);
    assert_int_equal(ti.ndim, 4);
    assert_int_equal(ti.shape[0], 32);
    assert_int_equal(ti.shape[1], 1);
    assert_int_equal(ti.shape[2], 3);
    assert_true(find(m, "fc1.weight", &ti) >= 0);
    assert_int_equal(ti.shape[0], 128);
    assert_int_equal(ti.shape[1], 64 * 7 * 7);
    assert_true(find(m, "fc2.bias", &ti) >= 0);
    assert_int_equal(ti.shape[0], 10);
    assert_true(find(m, "optim.fc2.weight.momentum", &ti) >= 0);
    assert_int_equal(ti.kind, ENG_T_OPTIM);
    /* fingerprints: equal for equal specs whatever the seed and optimizer, else different */
    struct eng_model_spec s2 = s;
    s2.seed = 99;
    struct eng_model *m2 = make_model(t->d, &s2, ENG_ADAM, 2);
    uint8_t f1[32], f2[32];
    eng_model_fingerprint(m, f1);
    eng_model_fingerprint(m2, f2);
    assert_memory_equal(f1, f2, 32);
    eng_model_free(m2);
    s2.classes = 9;
    m2 = make_model(t->d, &s2, ENG_SGD, 2);
    eng_model_fingerprint(m2, f2);
    assert_memory_not_equal(f1, f2, 32);
    eng_model_free(m2);
    /* write/read round trip, step counter */
    int i = find(m, "conv2.bias", &ti);
    float v[64], back[64];
    for (int j = 0; j < 64; j++)
        v[j] = (float)j * 0.5f;
    assert_int_equal(eng_model_write_tensor(m, (uint32_t)i, v), 0);
    assert_int_equal(eng_model_read_tensor(m, (uint32_t)i, back), 0);
    assert_memory_equal(v, back, sizeof(v));
    eng_model_set_step(m, 41);
    assert_int_equal(eng_model_step(m), 41);
    /* argument checks */
    float x[4 * 784] = {0};
    uint32_t y[4] = {0, 1, 2, 10};
    assert_int_equal(eng_train_end(m, NULL, NULL), CWT_ESTATE);
    assert_int_equal(eng_train_begin(m, x, y, 4, NULL, 0.1f), CWT_EINVAL); /* label 10 */
    assert_int_equal(eng_train_begin(m, x, y, 5, NULL, 0.1f), CWT_EINVAL); /* > max_batch */
    assert_int_equal(eng_model_read_tensor(m, 100000, back), CWT_ENOENT);
    eng_model_free(m);
    /* resnet names (torchvision) and shapes */
    s = spec_of("resnet", 32, 32, 3, 5, 0.0f, 1);
    s.width = 1.0f;
    m = make_model(t->d, &s, ENG_ADAM, 2);
    assert_true(find(m, "layer2.0.downsample.0.weight", &ti) >= 0);
    assert_int_equal(ti.shape[0], 32);
    assert_int_equal(ti.shape[1], 16);
    assert_int_equal(ti.shape[2], 1);
    assert_true(find(m, "layer3.0.bn2.running_var", &ti) >= 0);
    assert_int_equal(ti.kind, ENG_T_BUFFER);
    assert_true(find(m, "fc.weight", &ti) >= 0);
    assert_int_equal(ti.shape[1], 64);
    assert_true(find(m, "optim.layer1.0.conv1.weight.v", &ti) >= 0);
    eng_model_free(m);
    s.depth = 18;
    s.width = 0.25f;
    s.in_h = s.in_w = 96; /* ImageNet stem */
    m = make_model(t->d, &s, ENG_SGD, 1);
    assert_true(find(m, "layer4.1.bn2.weight", &ti) >= 0);
    assert_int_equal(ti.shape[0], 128);
    assert_true(find(m, "conv1.weight", &ti) >= 0);
    assert_int_equal(ti.shape[2], 7);
    eng_model_free(m);
    /* invalid specs */
    struct eng_optim_spec o = {ENG_SGD, 0, 0, 0, 0, 0, 0};
    char err[CWT_ERRLEN];
    s.depth = 12;
    assert_int_equal(eng_model_create(t->d, &s, &o, 1, &m, err, sizeof(err)), CWT_EUNSUPPORTED);
    s = spec_of("vgg", 28, 28, 1, 10, 0.0f, 1);
    assert_int_equal(eng_model_create(t->d, &s, &o, 1, &m, err, sizeof(err)), CWT_EUNSUPPORTED);
    assert_true(strlen(err) > 0);
}

/* CWT_ENG_PROFILE=1: the dispatches of a training step and of predict are timed and
 * attributed to their kernels (GEMMs, pooling, loss, optimizer), in the device's totals. */
static void test_profile(void **state)
{
    (void)state;
    struct eng_device *d;
    char err[CWT_ERRLEN];
    assert_int_equal(setenv("CWT_ENG_PROFILE", "1", 1), 0);
    int rc = eng_device_open("vulkan", 0, &d, err, sizeof(err));
    assert_int_equal(unsetenv("CWT_ENG_PROFILE"), 0);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    VkPhysicalDeviceProperties pr;
    vkGetPhysicalDeviceProperties(d->phys, &pr);
    /* without timestamps on compute queues the profiler stays off, and says nothing */
    assert_int_equal(d->profile, pr.limits.timestampComputeAndGraphics ? 1 : 0);
    struct data ds;
    make_data(&ds, 16, 1, 12, 12, 3, 5);
    struct eng_model_spec s = spec_of("cnn-small", 12, 12, 1, 3, 0.0f, 7);
    struct eng_model *m = make_model(d, &s, ENG_SGD, 8);
    epoch(m, &ds, 8, 0.01f, NULL);
    float probs[8 * 3];
    assert_int_equal(eng_predict(m, ds.x, 8, probs), 0);
    if (d->profile) {
        uint64_t calls = 0, sgd = 0;
        double ns = 0;
        for (int i = 0; i <= CWT_SPV_COUNT; i++) {
            calls += d->prof_calls[i];
            ns += d->prof_ns[i];
        }
        sgd = d->prof_calls[cwt_spv_optim(CWT_OPTIM_OP_SGD, CWT_OPTIM_WIDTH_X1)] +
              d->prof_calls[cwt_spv_optim(CWT_OPTIM_OP_SGD, CWT_OPTIM_WIDTH_X4)];
        /* two training steps (one SGD update each) and a predict pass, all timed */
        assert_int_equal(sgd, 2);
        assert_true(calls > 20);
        assert_true(ns > 0);
        assert_true(d->prof_calls[cwt_spv_loss(CWT_LOSS_OP_SOFTMAX)] >= 1);
    }
    eng_model_free(m);
    free_data(&ds);
    eng_device_close(d); /* prints the table on stderr */
}

static int setup(void **state)
{
    static struct th t;
    if (th_open(&t, "vulkan", "test_train") != 0)
        return -1;
    *state = &t;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensors_and_errors),
        cmocka_unit_test(test_validation_clean),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_convergence),
        cmocka_unit_test(test_profile),
    };
    return cmocka_run_group_tests(tests, setup, th_close);
}
