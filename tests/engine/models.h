/*
 * models.h - whole-model helpers shared by test_train.c (Vulkan) and test_cpu.c (CPU backend,
 * cross-backend): a synthetic separable data set, model specs, epochs, accuracy, all tensors.
 * Include after cmocka.h.
 */
#ifndef CWT_TESTS_ENGINE_MODELS_H
#define CWT_TESTS_ENGINE_MODELS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/rng.h"

struct data {
    uint32_t n, c, h, w, k;
    float *x;
    uint32_t *y;
};

/* Synthetic separable set: class k brightens a k-specific band of rows, plus noise. */
static inline void make_data(struct data *d, uint32_t n, uint32_t c, uint32_t h, uint32_t w,
                             uint32_t k, uint64_t seed)
{
    struct eng_rng r;
    eng_rng_seed(&r, seed);
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->k = k;
    d->x = calloc((size_t)n * c * h * w, sizeof(float));
    d->y = calloc(n, sizeof(uint32_t));
    assert_non_null(d->x);
    assert_non_null(d->y);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t cls = (uint32_t)(eng_rng_next(&r) % k);
        d->y[i] = cls;
        for (uint32_t ch = 0; ch < c; ch++)
            for (uint32_t yy = 0; yy < h; yy++)
                for (uint32_t xx = 0; xx < w; xx++) {
                    float v = (float)(eng_rng_normal(&r) * 0.5);
                    if (yy * k / h == cls)
                        v += 1.0f;
                    d->x[(((size_t)i * c + ch) * h + yy) * w + xx] = v;
                }
    }
}

static inline void free_data(struct data *d)
{
    free(d->x);
    free(d->y);
}

static inline struct eng_model_spec spec_of(const char *arch, uint32_t h, uint32_t w, uint32_t c,
                                            uint32_t k, float dropout, uint64_t seed)
{
    struct eng_model_spec s;
    memset(&s, 0, sizeof(s));
    snprintf(s.arch, sizeof(s.arch), "%s", arch);
    s.depth = 8;
    s.width = 0.5f;
    s.in_h = h;
    s.in_w = w;
    s.in_c = c;
    s.classes = k;
    s.dropout = dropout;
    s.seed = seed;
    return s;
}

static inline struct eng_model *make_model(struct eng_device *d, const struct eng_model_spec *s,
                                           enum eng_optim kind, uint32_t batch)
{
    struct eng_optim_spec o = {kind, 0.9f, kind == ENG_SGD, 1e-4f, 0.9f, 0.999f, 1e-8f};
    struct eng_model *m = NULL;
    char err[CWT_ERRLEN];
    int rc = eng_model_create(d, s, &o, batch, &m, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "eng_model_create: %s\n", err);
    assert_int_equal(rc, 0);
    return m;
}

/* One epoch over d in batches; returns accuracy of the training steps. */
static inline double epoch(struct eng_model *m, const struct data *d, uint32_t batch, float lr,
                           const float *cw)
{
    size_t per = (size_t)d->c * d->h * d->w;
    uint32_t correct = 0;
    for (uint32_t i = 0; i < d->n; i += batch) {
        uint32_t nb = d->n - i < batch ? d->n - i : batch, c = 0;
        float loss;
        assert_int_equal(eng_train_begin(m, d->x + i * per, d->y + i, nb, cw, lr), 0);
        assert_int_equal(eng_train_end(m, &loss, &c), 0);
        assert_true(isfinite(loss));
        correct += c;
    }
    return (double)correct / d->n;
}

static inline double eval_acc(struct eng_model *m, const struct data *d, uint32_t batch)
{
    size_t per = (size_t)d->c * d->h * d->w;
    float *p = calloc((size_t)batch * d->k, sizeof(float));
    assert_non_null(p);
    uint32_t correct = 0;
    for (uint32_t i = 0; i < d->n; i += batch) {
        uint32_t nb = d->n - i < batch ? d->n - i : batch;
        assert_int_equal(eng_predict(m, d->x + i * per, nb, p), 0);
        for (uint32_t j = 0; j < nb; j++) {
            uint32_t am = 0;
            double sum = 0;
            for (uint32_t k = 0; k < d->k; k++) {
                sum += p[j * d->k + k];
                if (p[j * d->k + k] > p[j * d->k + am])
                    am = k;
            }
            assert_true(fabs(sum - 1.0) < 1e-4);
            correct += am == d->y[i + j];
        }
    }
    free(p);
    return (double)correct / d->n;
}

static inline void read_all(struct eng_model *m, float **out, size_t *len)
{
    size_t total = 0;
    for (uint32_t i = 0; i < eng_model_tensor_count(m); i++) {
        struct eng_tensor_info ti;
        assert_int_equal(eng_model_tensor_info(m, i, &ti), 0);
        total += ti.numel;
    }
    float *v = calloc(total, sizeof(float));
    assert_non_null(v);
    size_t off = 0;
    for (uint32_t i = 0; i < eng_model_tensor_count(m); i++) {
        struct eng_tensor_info ti;
        assert_int_equal(eng_model_tensor_info(m, i, &ti), 0);
        assert_int_equal(eng_model_read_tensor(m, i, v + off), 0);
        off += ti.numel;
    }
    *out = v;
    *len = total;
}

/* cnn-small on device d reaches at least 99% on a separable synthetic set within 4 epochs
 * (fails the test with the seed otherwise); returns the model for further checks. label names
 * the backend in the message. */
static inline struct eng_model *check_convergence(struct eng_device *d, uint64_t seed,
                                                  const char *label, struct data *train)
{
    struct data test;
    make_data(train, 384, 1, 16, 16, 4, seed);
    make_data(&test, 128, 1, 16, 16, 4, seed + 1);
    struct eng_model_spec s = spec_of("cnn-small", 16, 16, 1, 4, 0.0f, seed);
    struct eng_model *m = make_model(d, &s, ENG_SGD, 32);
    double acc = 0;
    for (int e = 0; e < 4 && acc < 0.99; e++) {
        epoch(m, train, 32, 0.02f, NULL);
        acc = eval_acc(m, &test, 32);
    }
    free_data(&test);
    if (acc < 0.99) {
        fprintf(stderr, "cnn-small on %s reached only %.3f (seed 0x%llx)\n", label, acc,
                (unsigned long long)seed);
        fail();
    }
    return m;
}

#endif
