/*
 * test_cpu.c - the CPU backend (oneDNN) against the Vulkan backend and against itself.
 *
 * Both backends' ops are checked one by one against plain C references and finite
 * differences (test_ops.c, test_cpu_ops.c); here the CPU backend must follow the Vulkan one
 * through whole models (the ops composed: formats between layers, gradient sums, plans per
 * batch size):
 *   - the same spec gives bit-identical initial tensors and fingerprints on both backends;
 *   - three training steps on the same batches (cnn-small with dropout, both stems of resnet,
 *     class weights) give first-step losses within 1e-5 relative (the forward pass on identical
 *     weights), later ones within 2e-3 (1e-2 with Adam), and parameters and
 *     running statistics within 2e-4 of each tensor's largest magnitude (fp32 sums in other
 *     orders) on most seeds, within 5e-2 on all (see cross_run: rare seeds differ more);
 *   - eval-mode predictions after those steps agree within 2e-2 (usually within 5e-4);
 *   - along a resnet trajectory, both backends' gradients at the same weights agree within 1e-4
 *     (test_cross_gradients: why trajectories may still part);
 *   - two runs on the CPU backend give bit-identical tensors and losses, also across batch
 * sizes (several plans);
 *   - tensors written are read back unchanged; cnn-small learns the synthetic set to >= 99%.
 * Needs a Vulkan device (lavapipe without a GPU); nothing is skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "common/cwt.h"
#include "engine/engine.h"
#include "engine/rng.h"
#include "harness.h"
#include "models.h"

struct fix {
    struct eng_device *cpu, *vk;
    uint64_t seed;
};

/* The largest |a - b| of tensor i of two models, relative to the tensor's largest |a|. */
static double tensor_diff(struct eng_model *a, struct eng_model *b, uint32_t i, uint64_t *numel)
{
    struct eng_tensor_info ti;
    assert_int_equal(eng_model_tensor_info(a, i, &ti), 0);
    float *x = calloc(ti.numel, sizeof(float)), *y = calloc(ti.numel, sizeof(float));
    assert_non_null(x);
    assert_non_null(y);
    assert_int_equal(eng_model_read_tensor(a, i, x), 0);
    assert_int_equal(eng_model_read_tensor(b, i, y), 0);
    double mx = 0, d = 0;
    for (uint64_t j = 0; j < ti.numel; j++) {
        mx = fmax(mx, fabs(x[j]));
        d = fmax(d, fabs((double)x[j] - y[j]));
    }
    free(x);
    free(y);
    *numel = ti.numel;
    return mx > 0 ? d / mx : d;
}

static void test_backend_info(void **state)
{
    struct fix *f = *state;
    struct eng_device_info ci, vi;
    eng_device_get_info(f->cpu, &ci);
    eng_device_get_info(f->vk, &vi);
    assert_string_equal(ci.backend, "cpu");
    assert_string_equal(ci.type, "cpu");
    assert_non_null(strstr(ci.driver, "oneDNN"));
    assert_string_equal(vi.backend, "vulkan");
    assert_int_equal(eng_device_validation_errors(f->cpu), 0);
}

/* Same spec => the same tensors, bit for bit, and the same fingerprint on both backends. */
static void test_same_init(void **state)
{
    struct fix *f = *state;
    const char *archs[2] = {"cnn-small", "resnet"};
    for (int a = 0; a < 2; a++) {
        struct eng_model_spec s = spec_of(archs[a], 16, 16, 3, 5, 0.25f, f->seed);
        struct eng_model *mc = make_model(f->cpu, &s, ENG_ADAMW, 4);
        struct eng_model *mv = make_model(f->vk, &s, ENG_ADAMW, 4);
        uint8_t fc[32], fv[32];
        eng_model_fingerprint(mc, fc);
        eng_model_fingerprint(mv, fv);
        assert_memory_equal(fc, fv, 32);
        float *vc, *vv;
        size_t lc, lv;
        read_all(mc, &vc, &lc);
        read_all(mv, &vv, &lv);
        assert_int_equal(lc, lv);
        assert_memory_equal(vc, vv, lc * sizeof(float));
        free(vc);
        free(vv);
        eng_model_free(mc);
        eng_model_free(mv);
    }
}

/* Three steps on the same batches on both backends; then losses, tensors and predictions. */
static void cross_run(struct fix *f, const char *arch, uint32_t hw, float dropout,
                      enum eng_optim opt, int class_weights, uint32_t steps)
{
    struct data ds;
    make_data(&ds, 8 * steps, 3, hw, hw, 4, f->seed);
    struct eng_model_spec s = spec_of(arch, hw, hw, 3, 4, dropout, f->seed);
    /* Adam's eps is 1e-3 here: with 1e-8 its update is about lr * sign(g) wherever |g| is
     * tiny, and there the backends' last bits decide the sign; with 1e-3 it is smooth in g. */
    struct eng_optim_spec o = {opt, 0.9f, opt == ENG_SGD, 1e-4f, 0.9f, 0.999f, 1e-3f};
    struct eng_model *m[2];
    char err[CWT_ERRLEN];
    for (int b = 0; b < 2; b++) {
        int rc = eng_model_create(b ? f->vk : f->cpu, &s, &o, 8, &m[b], err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
    }
    const float cw[4] = {1.0f, 2.0f, 0.5f, 1.5f};
    size_t per = (size_t)3 * hw * hw;
    for (uint32_t i = 0; i < ds.n; i += 8) {
        float loss[2];
        uint32_t correct[2];
        for (int b = 0; b < 2; b++) {
            assert_int_equal(eng_train_begin(m[b], ds.x + i * per, ds.y + i, 8,
                                             class_weights ? cw : NULL, 0.02f),
                             0);
            assert_int_equal(eng_train_end(m[b], &loss[b], &correct[b]), 0);
        }
        double rel = fabs((double)loss[0] - loss[1]) / fmax(1.0, fabs(loss[1]));
        /* The first step's loss is the forward pass on identical weights: fp32 rounding only.
         * Later ones follow diverging weights (see below; Adam divides by sqrt(v), so its
         * differences grow faster). */
        double tol = i == 0 ? 1e-5 : opt == ENG_SGD ? 2e-3 : 1e-2;
        if (rel > tol) {
            fprintf(stderr, "%s %ux%u: step %u loss cpu %.7g vulkan %.7g (seed 0x%llx)\n", arch, hw,
                    hw, i / 8, loss[0], loss[1], (unsigned long long)f->seed);
            fail();
        }
    }
    /* Parameters and running statistics (what training produces; optimizer state is
     * accumulated gradients, compared through the parameters it moved): most agree within 2e-4
     * of their largest value. On some seeds the two trajectories part by a few percent: a
     * pre-activation within the weights' rounding differences of a ReLU's kink flips its mask
     * on one backend only, and the changed gradient spreads through every layer below, while at
     * the same weights the backends' gradients agree to rounding (test_cross_gradients). The
     * test therefore holds every parameter to 5e-2 and reports how many exceed 2e-4 (0 on most
     * seeds). */
    double worst = 0;
    int over = 0;
    int compared = 0;
    for (uint32_t i = 0; i < eng_model_tensor_count(m[0]); i++) {
        uint64_t numel;
        struct eng_tensor_info ti;
        assert_int_equal(eng_model_tensor_info(m[0], i, &ti), 0);
        if (ti.kind == ENG_T_OPTIM)
            continue;
        compared++;
        double d = tensor_diff(m[0], m[1], i, &numel);
        if (d > 2e-4) {
            fprintf(stderr, "%s %ux%u: %s differs by %.3g of its largest value (seed 0x%llx)\n",
                    arch, hw, hw, ti.name, d, (unsigned long long)f->seed);
            over++;
        }
        if (d > 5e-2)
            fail();
        worst = fmax(worst, d);
    }
    fprintf(stderr, "%s %ux%u: %d of %d tensors beyond 2e-4\n", arch, hw, hw, over, compared);
    float p[2][8 * 4];
    for (int b = 0; b < 2; b++)
        assert_int_equal(eng_predict(m[b], ds.x, 8, p[b]), 0);
    double pd = 0;
    for (int j = 0; j < 8 * 4; j++)
        pd = fmax(pd, fabs(p[0][j] - p[1][j]));
    fprintf(stderr, "%s %ux%u: largest prediction difference %.3g\n", arch, hw, hw, pd);
    assert_true(pd < 2e-2);
    fprintf(stderr, "%s %ux%u: largest tensor difference %.3g\n", arch, hw, hw, worst);
    eng_model_free(m[0]);
    eng_model_free(m[1]);
    free_data(&ds);
}

static void test_cross_backend(void **state)
{
    struct fix *f = *state;
    /* The resnet comparisons run on a fixed seed unless CWT_TEST_SEED names one: on some fresh
     * seeds the two backends' resnet weights part by several percent through a ReLU kink (see
     * cross_run and test_cross_gradients), and a test that fails by chance would hide every
     * other result. cnn-small keeps a fresh seed per run. */
    struct fix fixed = *f;
    const char *env = getenv("CWT_TEST_SEED");
    if (env == NULL || *env == '\0')
        fixed.seed = 0x5eed1707u;
    cross_run(f, "cnn-small", 16, 0.3f, ENG_SGD, 1, 3); /* dropout, Nesterov SGD, class weights */
    cross_run(&fixed, "resnet", 16, 0.0f, ENG_ADAM, 0, 3); /* CIFAR stem, BN, residual, Adam */
    /* ImageNet stem (7x7/2 conv, max pool): one step, see above */
    cross_run(&fixed, "resnet", 66, 0.0f, ENG_SGD, 0, 1);
    cross_run(f, "cnn-small", 12, 0.0f, ENG_ADAMW, 1, 3);
}

/* Gradient of every parameter tensor of m's current weights on batch x, y (n images) computed on
 * device d: an SGD step with momentum 0, decay 0 and learning rate L from weights w0 leaves
 * w1 = w0 - L g, so g = (w0 - w1) / L (L = 1e4: w1 is dominated by L g, whose float keeps g
 * to 1e-7). grads[i] is NULL for tensors other than parameters; free with free_grads. */
#define GRAD_LR 1e4f
static void grads_at(struct eng_device *d, struct eng_model *m, const struct eng_model_spec *s,
                     const float *x, const uint32_t *y, uint32_t n, float **grads)
{
    struct eng_optim_spec o = {ENG_SGD, 0.0f, 0, 0.0f, 0.9f, 0.999f, 1e-8f};
    struct eng_model *g = NULL;
    char err[CWT_ERRLEN];
    assert_int_equal(eng_model_create(d, s, &o, n, &g, err, sizeof(err)), 0);
    uint32_t nt = eng_model_tensor_count(g);
    for (uint32_t i = 0; i < nt; i++) {
        struct eng_tensor_info ti;
        assert_int_equal(eng_model_tensor_info(g, i, &ti), 0);
        grads[i] = calloc(ti.numel, sizeof(float));
        assert_non_null(grads[i]);
        assert_int_equal(eng_model_read_tensor(m, i, grads[i]), 0); /* w0 (and buffers) */
        assert_int_equal(eng_model_write_tensor(g, i, grads[i]), 0);
    }
    float loss;
    uint32_t c;
    assert_int_equal(eng_train_begin(g, x, y, n, NULL, GRAD_LR), 0);
    assert_int_equal(eng_train_end(g, &loss, &c), 0);
    float *w1 = NULL;
    for (uint32_t i = 0; i < nt; i++) {
        struct eng_tensor_info ti;
        assert_int_equal(eng_model_tensor_info(g, i, &ti), 0);
        if (ti.kind != ENG_T_PARAM) {
            free(grads[i]);
            grads[i] = NULL;
            continue;
        }
        w1 = realloc(w1, ti.numel * sizeof(float));
        assert_non_null(w1);
        assert_int_equal(eng_model_read_tensor(g, i, w1), 0);
        for (uint64_t j = 0; j < ti.numel; j++)
            grads[i][j] = (float)(((double)grads[i][j] - w1[j]) / GRAD_LR);
    }
    free(w1);
    eng_model_free(g);
}

static void free_grads(float **grads, uint32_t nt)
{
    for (uint32_t i = 0; i < nt; i++) {
        free(grads[i]);
        grads[i] = NULL;
    }
}

/* Why the two backends' resnet trajectories part on some seeds (cross_run pins its resnet runs
 * for it), and that it is no backend difference: along the CPU backend's Adam trajectory, both
 * backends compute each step's gradients at the same weights, and every parameter tensor's
 * gradients must agree within 1e-4 of its largest value (fp32 rounding). Free-running, the
 * weights differ by rounding after a step; where a pre-activation lies within that distance of
 * a ReLU's kink its mask differs, and with it the gradient of every layer below, which Adam
 * carries on. The default seed is one whose trajectories part that way (the diagnosis is in
 * this test's git history). At the same weights a flip needs a pre-activation within the
 * forward's rounding of zero, so the check holds on almost any CWT_TEST_SEED. */
static void test_cross_gradients(void **state)
{
    struct fix *f = *state;
    const char *env = getenv("CWT_TEST_SEED");
    uint64_t seed = env && *env ? f->seed : 0x66200cc0a49fdull;
    const uint32_t hw = 16, steps = 3;
    struct data ds;
    make_data(&ds, 8 * steps, 3, hw, hw, 4, seed);
    struct eng_model_spec s = spec_of("resnet", hw, hw, 3, 4, 0.0f, seed);
    struct eng_optim_spec o = {ENG_ADAM, 0.9f, 0, 1e-4f, 0.9f, 0.999f, 1e-3f};
    struct eng_model *m = NULL;
    char err[CWT_ERRLEN];
    assert_int_equal(eng_model_create(f->cpu, &s, &o, 8, &m, err, sizeof(err)), 0);
    uint32_t nt = eng_model_tensor_count(m);
    float **gc = calloc(nt, sizeof(float *)), **gv = calloc(nt, sizeof(float *));
    assert_non_null(gc);
    assert_non_null(gv);
    size_t per = (size_t)3 * hw * hw;
    double worst = 0;
    for (uint32_t st = 0; st < steps; st++) {
        const float *x = ds.x + (size_t)st * 8 * per;
        const uint32_t *y = ds.y + st * 8;
        grads_at(f->cpu, m, &s, x, y, 8, gc);
        grads_at(f->vk, m, &s, x, y, 8, gv);
        for (uint32_t i = 0; i < nt; i++) {
            struct eng_tensor_info ti;
            assert_int_equal(eng_model_tensor_info(m, i, &ti), 0);
            if (!gc[i])
                continue;
            double mx = 1e-12, d = 0;
            for (uint64_t j = 0; j < ti.numel; j++) {
                mx = fmax(mx, fabs(gv[i][j]));
                d = fmax(d, fabs((double)gc[i][j] - gv[i][j]));
            }
            worst = fmax(worst, d / mx);
            if (!(d / mx <= 1e-4)) {
                fprintf(stderr,
                        "step %u: gradients of %s differ by %.3g of the largest (seed "
                        "0x%llx)\n",
                        st + 1, ti.name, d / mx, (unsigned long long)seed);
                fail();
            }
        }
        free_grads(gc, nt);
        free_grads(gv, nt);
        float loss;
        uint32_t c;
        assert_int_equal(eng_train_begin(m, x, y, 8, NULL, 0.02f), 0);
        assert_int_equal(eng_train_end(m, &loss, &c), 0);
    }
    fprintf(stderr, "resnet 16x16, seed 0x%llx: gradients at the same weights agree within %.3g\n",
            (unsigned long long)seed, worst);
    free(gc);
    free(gv);
    eng_model_free(m);
    free_data(&ds);
}

/* Two runs with the same seed on the CPU backend: the same bits, with a last partial batch
 * (a second plan) and dropout / batch norm. */
static void repeat_runs(struct eng_device *d, uint64_t seed)
{
    struct data ds;
    make_data(&ds, 20, 3, 12, 12, 4, seed);
    const char *archs[2] = {"cnn-small", "resnet"};
    for (int a = 0; a < 2; a++) {
        float *v[2];
        size_t len[2];
        float loss[2];
        for (int run = 0; run < 2; run++) {
            struct eng_model_spec s = spec_of(archs[a], 12, 12, 3, 4, 0.3f, 1234);
            struct eng_model *m = make_model(d, &s, a ? ENG_ADAM : ENG_SGD, 8);
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
            fprintf(stderr, "%s: CPU runs with the same seed differ (seed 0x%llx)\n", archs[a],
                    (unsigned long long)seed);
            fail();
        }
        free(v[0]);
        free(v[1]);
    }
    free_data(&ds);
}

static void test_repeat_bitwise(void **state)
{
    struct fix *f = *state;
    repeat_runs(f->cpu, f->seed);
}

/* Every tensor written comes back unchanged; writes reach the model (a changed fc bias
 * changes the predictions); reads of bad indices fail. */
static void test_tensor_io(void **state)
{
    struct fix *f = *state;
    struct eng_model_spec s = spec_of("resnet", 16, 16, 3, 5, 0.0f, f->seed);
    struct eng_model *m = make_model(f->cpu, &s, ENG_ADAM, 4);
    struct eng_rng r;
    eng_rng_seed(&r, f->seed);
    for (uint32_t i = 0; i < eng_model_tensor_count(m); i++) {
        struct eng_tensor_info ti;
        assert_int_equal(eng_model_tensor_info(m, i, &ti), 0);
        float *a = calloc(ti.numel, sizeof(float)), *b = calloc(ti.numel, sizeof(float));
        assert_non_null(a);
        assert_non_null(b);
        for (uint64_t j = 0; j < ti.numel; j++)
            a[j] = (float)eng_rng_normal(&r);
        if (strstr(ti.name, "running_var"))
            for (uint64_t j = 0; j < ti.numel; j++)
                a[j] = fabsf(a[j]) + 0.5f;
        assert_int_equal(eng_model_write_tensor(m, i, a), 0);
        assert_int_equal(eng_model_read_tensor(m, i, b), 0);
        assert_memory_equal(a, b, ti.numel * sizeof(float));
        free(a);
        free(b);
    }
    float x[4 * 3 * 16 * 16], p[4 * 5];
    for (size_t j = 0; j < sizeof(x) / sizeof(x[0]); j++)
        x[j] = (float)eng_rng_normal(&r);
    assert_int_equal(eng_predict(m, x, 4, p), 0);
    for (int i = 0; i < 4; i++) {
        double sum = 0;
        for (int k = 0; k < 5; k++)
            sum += p[i * 5 + k];
        assert_true(fabs(sum - 1.0) < 1e-5);
    }
    float buf[1];
    assert_int_equal(eng_model_read_tensor(m, eng_model_tensor_count(m), buf), CWT_ENOENT);
    eng_model_free(m);
}

static void test_convergence(void **state)
{
    struct fix *f = *state;
    struct data train;
    eng_model_free(check_convergence(f->cpu, f->seed, "the CPU", &train));
    free_data(&train);
}

static int setup(void **state)
{
    static struct fix f;
    memset(&f, 0, sizeof(f));
    f.seed = th_seed();
    char err[CWT_ERRLEN];
    th_keep_lavapipe_loaded();
    if (eng_device_open("cpu", 0, &f.cpu, err, sizeof(err)) != 0 ||
        eng_device_open("vulkan", 0, &f.vk, err, sizeof(err)) != 0) {
        fprintf(stderr, "test_cpu: %s\n", err);
        return -1;
    }
    struct eng_device_info ci, vi;
    eng_device_get_info(f.cpu, &ci);
    eng_device_get_info(f.vk, &vi);
    fprintf(stderr, "test_cpu: %s (%s) vs %s, seed 0x%llx (CWT_TEST_SEED repeats a run)\n", ci.name,
            ci.driver, vi.name, (unsigned long long)f.seed);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    eng_device_close(f->cpu);
    eng_device_close(f->vk);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_info),   cmocka_unit_test(test_same_init),
        cmocka_unit_test(test_cross_backend),  cmocka_unit_test(test_cross_gradients),
        cmocka_unit_test(test_repeat_bitwise), cmocka_unit_test(test_tensor_io),
        cmocka_unit_test(test_convergence),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
