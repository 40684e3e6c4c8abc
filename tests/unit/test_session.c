/*
 * test_session.c - the training session and checkpoints, on a small CPU stand-in for the
 * engine (softmax regression with SGD momentum behind engine.h), so that the driver's logic is
 * tested without a Vulkan device and under the sanitizers:
 *   * two runs with the same seed end with bit-identical state images;
 *   * a run stopped mid-epoch and resumed from its checkpoint in a new session ends exactly
 *     like the uninterrupted run (weights, optimizer state, step, best model);
 *   * the model learns a separable set; per-epoch results and the best model are reported;
 *   * state images are strict on load: other fingerprints, unknown or missing tensors,
 *     wrong shapes and non-finite values are refused without touching the model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/train/train.h"
#include "storage/safetensors.h"
#include "tests/test_tmp.h"

/* ------------------------------------------------------------ the stand-in engine */

struct eng_device {
    int unused;
};

struct eng_model {
    struct eng_model_spec spec;
    struct eng_optim_spec opt;
    uint32_t d, k, max_batch;
    float *w, *b, *mw, *mb; /* weights [k][d], bias [k], momentum of both */
    uint64_t step;
    float pending_loss;
    uint32_t pending_correct;
};

int eng_device_open(const char *choice, int validation, struct eng_device **out, char *err,
                    size_t errlen)
{
    (void)choice;
    (void)validation;
    (void)err;
    (void)errlen;
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : CWT_ENOMEM;
}

void eng_device_close(struct eng_device *dev)
{
    free(dev);
}

void eng_device_get_info(const struct eng_device *dev, struct eng_device_info *info)
{
    (void)dev;
    memset(info, 0, sizeof(*info));
    strcpy(info->name, "test stand-in");
}

uint32_t eng_device_validation_errors(const struct eng_device *dev)
{
    (void)dev;
    return 0;
}

int eng_model_create(struct eng_device *dev, const struct eng_model_spec *spec,
                     const struct eng_optim_spec *opt, uint32_t max_batch, struct eng_model **out,
                     char *err, size_t errlen)
{
    struct eng_model *m = calloc(1, sizeof(*m));
    struct train_rng rng;
    (void)dev;
    (void)err;
    (void)errlen;

    if (m == NULL)
        return CWT_ENOMEM;
    m->spec = *spec;
    m->opt = *opt;
    m->d = spec->in_h * spec->in_w * spec->in_c;
    m->k = spec->classes;
    m->max_batch = max_batch;
    m->w = calloc((size_t)m->d * m->k, sizeof(float));
    m->mw = calloc((size_t)m->d * m->k, sizeof(float));
    m->b = calloc(m->k, sizeof(float));
    m->mb = calloc(m->k, sizeof(float));
    if (!m->w || !m->mw || !m->b || !m->mb) {
        eng_model_free(m);
        return CWT_ENOMEM;
    }
    train_rng_seed(&rng, spec->seed);
    for (size_t i = 0; i < (size_t)m->d * m->k; i++)
        m->w[i] = (float)(train_rng_unit(&rng) - 0.5) * 0.01f;
    *out = m;
    return 0;
}

void eng_model_free(struct eng_model *m)
{
    if (m == NULL)
        return;
    free(m->w);
    free(m->mw);
    free(m->b);
    free(m->mb);
    free(m);
}

/* The fake model has one group: fine-tuning recipes are tested in tests/engine. */
int eng_model_set_finetune(struct eng_model *m, const struct eng_finetune *f, char *err,
                           size_t errlen)
{
    (void)m;
    (void)f;
    (void)err;
    (void)errlen;
    return 0;
}

void eng_model_fingerprint(const struct eng_model *m, uint8_t out[32])
{
    uint32_t dims[2] = {m->d, m->k};

    crypto_generichash(out, 32, (const uint8_t *)dims, sizeof(dims), NULL, 0);
}

static void forward(const struct eng_model *m, const float *x, float *p)
{
    float mx = -INFINITY, sum = 0;

    for (uint32_t j = 0; j < m->k; j++) {
        float z = m->b[j];
        for (uint32_t i = 0; i < m->d; i++)
            z += m->w[(size_t)j * m->d + i] * x[i];
        p[j] = z;
        mx = fmaxf(mx, z);
    }
    for (uint32_t j = 0; j < m->k; j++) {
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    for (uint32_t j = 0; j < m->k; j++)
        p[j] /= sum;
}

int eng_train_begin(struct eng_model *m, const float *x, const uint32_t *labels, uint32_t n,
                    const float *class_weights, float lr)
{
    float p[8], gb[8] = {0};
    float *gw = calloc((size_t)m->d * m->k, sizeof(float));
    double loss = 0;

    if (gw == NULL || n == 0 || n > m->max_batch || m->k > 8)
        return free(gw), CWT_EINVAL;
    m->pending_correct = 0;
    for (uint32_t s = 0; s < n; s++) {
        const float *xs = x + (size_t)s * m->d;
        uint32_t best = 0;
        float cw = class_weights ? class_weights[labels[s]] : 1.0f;
        forward(m, xs, p);
        for (uint32_t j = 1; j < m->k; j++)
            if (p[j] > p[best])
                best = j;
        m->pending_correct += best == labels[s];
        loss -= cw * logf(fmaxf(p[labels[s]], 1e-12f));
        for (uint32_t j = 0; j < m->k; j++) {
            float g = cw * (p[j] - (j == labels[s])) / (float)n;
            gb[j] += g;
            for (uint32_t i = 0; i < m->d; i++)
                gw[(size_t)j * m->d + i] += g * xs[i];
        }
    }
    for (size_t i = 0; i < (size_t)m->d * m->k; i++) {
        m->mw[i] = m->opt.momentum * m->mw[i] + gw[i];
        m->w[i] -= lr * m->mw[i];
    }
    for (uint32_t j = 0; j < m->k; j++) {
        m->mb[j] = m->opt.momentum * m->mb[j] + gb[j];
        m->b[j] -= lr * m->mb[j];
    }
    free(gw);
    m->pending_loss = (float)(loss / n);
    m->step++;
    return 0;
}

int eng_train_end(struct eng_model *m, float *loss, uint32_t *correct)
{
    if (loss)
        *loss = m->pending_loss;
    if (correct)
        *correct = m->pending_correct;
    return 0;
}

int eng_predict(struct eng_model *m, const float *x, uint32_t n, float *probs)
{
    for (uint32_t s = 0; s < n; s++)
        forward(m, x + (size_t)s * m->d, probs + (size_t)s * m->k);
    return 0;
}

uint32_t eng_model_tensor_count(const struct eng_model *m)
{
    (void)m;
    return 4;
}

int eng_model_tensor_info(const struct eng_model *m, uint32_t i, struct eng_tensor_info *info)
{
    static const char *const names[4] = {"fc.weight", "fc.bias", "optim.fc.weight.m",
                                         "optim.fc.bias.m"};

    if (i >= 4)
        return CWT_EINVAL;
    memset(info, 0, sizeof(*info));
    info->name = names[i];
    info->kind = i < 2 ? ENG_T_PARAM : ENG_T_OPTIM;
    info->ndim = (i % 2 == 0) ? 2 : 1;
    info->shape[0] = m->k;
    info->shape[1] = (i % 2 == 0) ? m->d : 0;
    info->numel = (i % 2 == 0) ? (uint64_t)m->k * m->d : m->k;
    return 0;
}

static float *tensor_ptr(struct eng_model *m, uint32_t i)
{
    float *p[4] = {m->w, m->b, m->mw, m->mb};

    return p[i];
}

int eng_model_read_tensor(struct eng_model *m, uint32_t i, float *dst)
{
    struct eng_tensor_info info;

    if (eng_model_tensor_info(m, i, &info) != 0)
        return CWT_EINVAL;
    memcpy(dst, tensor_ptr(m, i), info.numel * sizeof(float));
    return 0;
}

int eng_model_write_tensor(struct eng_model *m, uint32_t i, const float *src)
{
    struct eng_tensor_info info;

    if (eng_model_tensor_info(m, i, &info) != 0)
        return CWT_EINVAL;
    memcpy(tensor_ptr(m, i), src, info.numel * sizeof(float));
    return 0;
}

uint64_t eng_model_step(const struct eng_model *m)
{
    return m->step;
}

void eng_model_set_step(struct eng_model *m, uint64_t step)
{
    m->step = step;
}

/* ------------------------------------------------------------ fixture */

#define H       4
#define W       4
#define C       1
#define CLASSES 3
#define PER     40 /* images per class in train; a quarter of that in val */

struct fixture {
    char dir[PATH_MAX];
    struct store *st;
    uint64_t *train, *val;
    size_t n_train, n_val;
    struct cwt_recipe recipe;
    struct eng_device *dev;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    struct store_batch *b = NULL;
    struct train_rng rng;
    char err[CWT_ERRLEN];
    uint32_t serial = 0;

    if (fx == NULL || sodium_init() < 0)
        return -1;
    if (test_tmp_path(fx->dir, sizeof(fx->dir), "test_session") != 0) {
        free(fx);
        return -1;
    }
    if (store_open(fx->dir, STORE_CREATE, 64u << 20, &fx->st, err, sizeof(err)) != 0)
        return -1;
    if (store_set_shape(fx->st, H, W, C) != 0 || store_batch_begin(fx->st, &b) != 0)
        return -1;
    /* Class k lights up pixel row k; noise elsewhere. */
    train_rng_seed(&rng, 42);
    for (int split = 0; split < 2; split++) {
        for (uint32_t k = 0; k < CLASSES; k++) {
            for (uint32_t i = 0; i < (split ? PER / 4 : PER); i++) {
                struct store_image_hdr hdr;
                uint8_t px[H * W * C];
                memset(&hdr, 0, sizeof(hdr));
                hdr.label = k;
                hdr.split = split ? STORE_VAL : STORE_TRAIN;
                hdr.h = H;
                hdr.w = W;
                hdr.c = C;
                memcpy(hdr.source_hash, &serial, sizeof(serial));
                serial++;
                for (int p = 0; p < H * W; p++)
                    px[p] = (uint8_t)(p / W == (int)k ? 200 + train_rng_below(&rng, 56)
                                                      : train_rng_below(&rng, 120));
                if (store_put_image(b, &hdr, px, NULL) != 0)
                    return -1;
            }
        }
    }
    if (store_batch_commit(b) != 0 || store_read_begin(fx->st) != 0)
        return -1;
    if (store_list(fx->st, STORE_TRAIN, &fx->train, &fx->n_train) != 0 ||
        store_list(fx->st, STORE_VAL, &fx->val, &fx->n_val) != 0)
        return -1;
    store_read_end(fx->st);
    memset(&fx->recipe, 0, sizeof(fx->recipe));
    strcpy(fx->recipe.model, "cnn-small");
    fx->recipe.input_h = H;
    fx->recipe.input_w = W;
    fx->recipe.input_c = C;
    fx->recipe.classes = CLASSES;
    fx->recipe.seed = 7;
    fx->recipe.batch_size = 16;
    fx->recipe.lr = 0.05;
    fx->recipe.lr_min = 0.001;
    fx->recipe.momentum = 0.9;
    fx->recipe.schedule = CWT_LR_COSINE;
    if (eng_device_open(NULL, 0, &fx->dev, err, sizeof(err)) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc;

    eng_device_close(fx->dev);
    store_close(fx->st);
    free(fx->train);
    free(fx->val);
    rc = test_tmp_remove(fx->dir);
    free(fx);
    return rc == 0 ? 0 : -1;
}

/* What a run's callbacks see and do: stop_at > 0 stops it after that many steps. */
struct run_ctx {
    uint64_t stop_at;
    uint32_t epochs_seen;
    double last_val;
    struct train_epoch_result last; /* train_session_last_epoch() after the run */
};

static int stop_progress(const struct train_progress *p, void *ctx)
{
    struct run_ctx *rc = ctx;

    return rc->stop_at > 0 && p->step >= rc->stop_at;
}

static int count_epoch(const struct train_epoch_result *r, void *ctx)
{
    struct run_ctx *rc = ctx;

    rc->epochs_seen++;
    rc->last_val = r->val_accuracy;
    assert_true(r->images > 0 && isfinite(r->train_loss));
    return 0;
}

/* Trains `epochs` epochs in a fresh session (resuming from "ckpt" if asked); on success
 * *state_out (if not NULL) gets the final state image, which the caller frees. */
static int run(struct fixture *fx, uint32_t epochs, uint64_t stop_at, int resume,
               struct run_ctx *ctx, uint8_t **state_out, size_t *state_len)
{
    struct eng_model_spec spec;
    struct eng_optim_spec os;
    struct eng_model *m = NULL;
    struct train_loader_opts lo;
    struct train_loader *l = NULL;
    struct train_session_opts so;
    struct train_session *s = NULL;
    char err[CWT_ERRLEN];
    int rc;

    ctx->stop_at = stop_at;
    assert_int_equal(train_specs_from_recipe(&fx->recipe, &spec, &os, err, sizeof(err)), 0);
    assert_int_equal(train_model_from_recipe(fx->dev, &fx->recipe, &m, err, sizeof(err)), 0);
    memset(&lo, 0, sizeof(lo));
    lo.batch_size = fx->recipe.batch_size;
    lo.seed = 0xfedcba9876543210ull; /* all 64 bits, as cwtctl train uses */
    lo.shuffle = 1;
    lo.hflip = 1;
    assert_int_equal(train_norm_ensure(fx->st, &lo.norm, err, sizeof(err)), 0);
    assert_int_equal(
        train_loader_new(fx->st, fx->train, fx->n_train, CLASSES, &lo, &l, err, sizeof(err)), 0);
    memset(&so, 0, sizeof(so));
    so.recipe = &fx->recipe;
    so.plan.unit = CWT_VISIT_EPOCHS;
    so.plan.length = epochs;
    so.val_ids = fx->val;
    so.n_val = fx->n_val;
    so.ckpt_name = "ckpt";
    so.ckpt_every_steps = 3;
    so.best_name = "best";
    so.on_progress = stop_progress;
    so.on_epoch = count_epoch;
    so.ctx = ctx;
    assert_int_equal(train_session_new(m, &spec, l, fx->st, &so, &s, err, sizeof(err)), 0);
    if (resume)
        assert_int_equal(train_session_resume(s, "ckpt", err, sizeof(err)), 0);
    rc = train_session_run(s, err, sizeof(err));
    train_session_last_epoch(s, &ctx->last);
    if (rc == 0 && state_out != NULL)
        assert_int_equal(train_state_save(m, &spec, &lo.norm, &fx->recipe, TRAIN_SAVE_ALL, NULL, 0,
                                          state_out, state_len, err, sizeof(err)),
                         0);
    train_session_free(s);
    train_loader_free(l);
    eng_model_free(m);
    return rc;
}

static void test_same_seed_same_state(void **state)
{
    struct fixture *fx = *state;
    struct run_ctx c1 = {0}, c2 = {0};
    uint8_t *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;

    assert_int_equal(run(fx, 4, 0, 0, &c1, &a, &la), 0);
    assert_int_equal(run(fx, 4, 0, 0, &c2, &b, &lb), 0);
    assert_int_equal(c1.epochs_seen, 4);
    assert_true(c1.last_val >= 0.99);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
}

static void test_resume_matches_uninterrupted(void **state)
{
    struct fixture *fx = *state;
    struct run_ctx full = {0}, part = {0}, rest = {0};
    uint8_t *a = NULL, *b = NULL, *best_a = NULL, *best_b = NULL;
    size_t la = 0, lb = 0, lba = 0, lbb = 0;

    assert_int_equal(run(fx, 3, 0, 0, &full, &a, &la), 0);
    assert_int_equal(store_model_get(fx->st, "best", &best_a, &lba), 0);
    /* 8 steps per epoch: stop at step 13, in the middle of epoch 2. */
    assert_int_equal(run(fx, 3, 13, 0, &part, NULL, NULL), CWT_ESTATE);
    assert_int_equal(part.epochs_seen, 1);
    assert_int_equal(run(fx, 3, 0, 1, &rest, &b, &lb), 0);
    assert_int_equal(rest.epochs_seen, 2);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    assert_int_equal(store_model_get(fx->st, "best", &best_b, &lbb), 0);
    assert_int_equal(lba, lbb);
    assert_memory_equal(best_a, best_b, lba);
    free(a);
    free(b);
    free(best_a);
    free(best_b);
}

/* A run resumed from its final checkpoint has nothing left to train and still reports the
 * last epoch's metrics (the daemon reads them after a trainer restart at a visit's end). */
static void test_resume_at_end_keeps_last_epoch(void **state)
{
    struct fixture *fx = *state;
    struct run_ctx full = {0}, again = {0};

    assert_int_equal(run(fx, 2, 0, 0, &full, NULL, NULL), 0);
    assert_int_equal(full.last.epoch, 2);
    assert_int_equal(run(fx, 2, 0, 1, &again, NULL, NULL), 0);
    assert_int_equal(again.epochs_seen, 0);
    assert_int_equal(again.last.epoch, full.last.epoch);
    assert_int_equal(again.last.step, full.last.step);
    assert_int_equal(again.last.images, full.last.images);
    assert_int_equal(again.last.best, full.last.best);
    assert_true(again.last.train_loss == full.last.train_loss);
    assert_true(again.last.train_accuracy == full.last.train_accuracy);
    assert_true(again.last.val_accuracy == full.last.val_accuracy);
    assert_true(again.last.val_auc == full.last.val_auc);
    assert_true(again.last.lr == full.last.lr);
}

/* Rewrites one tensor's bytes or a metadata value of a state image via the writer. */
static uint8_t *rebuild(const uint8_t *buf, size_t len, const char *drop, const char *rename_to,
                        const char *meta_key, const char *meta_value, int nan_first, size_t *outlen)
{
    struct st_file f;
    struct st_writer *w = NULL;
    uint8_t *out = NULL;
    char err[CWT_ERRLEN];

    assert_int_equal(st_parse(buf, len, &f, err, sizeof(err)), 0);
    assert_int_equal(st_writer_new(&w), 0);
    for (uint32_t i = 0; i < f.n_meta; i++)
        assert_int_equal(st_writer_meta(w, f.meta[i].key,
                                        meta_key && strcmp(meta_key, f.meta[i].key) == 0
                                            ? meta_value
                                            : f.meta[i].value),
                         0);
    for (uint32_t t = 0; t < f.n; t++) {
        const struct st_tensor *ft = &f.tensors[t];
        size_t bytes = ft->end - ft->begin;
        float *data = malloc(bytes);
        assert_non_null(data);
        memcpy(data, f.data + ft->begin, bytes);
        if (nan_first && t == 0)
            data[0] = NAN;
        if (drop == NULL || strcmp(drop, ft->name) != 0)
            assert_int_equal(st_writer_add(w, ft->name, ft->dtype, ft->ndim, ft->shape, data), 0);
        else if (rename_to != NULL)
            assert_int_equal(st_writer_add(w, rename_to, ft->dtype, ft->ndim, ft->shape, data), 0);
        free(data);
    }
    assert_int_equal(st_writer_finish(w, &out, outlen), 0);
    st_writer_free(w);
    st_free(&f);
    return out;
}

static void test_state_load_is_strict(void **state)
{
    struct fixture *fx = *state;
    struct eng_model *m = NULL, *other = NULL;
    struct eng_model_spec spec;
    struct eng_optim_spec os;
    struct train_norm norm;
    struct train_model_meta meta;
    struct cwt_recipe r4 = fx->recipe;
    char err[CWT_ERRLEN];
    uint8_t *img = NULL, *bad;
    size_t len = 0, blen;
    float before[CLASSES], after[CLASSES];

    assert_int_equal(train_specs_from_recipe(&fx->recipe, &spec, &os, err, sizeof(err)), 0);
    assert_int_equal(train_model_from_recipe(fx->dev, &fx->recipe, &m, err, sizeof(err)), 0);
    assert_int_equal(train_norm_ensure(fx->st, &norm, err, sizeof(err)), 0);
    m->b[1] = 0.5f;
    assert_int_equal(train_state_save(m, &spec, &norm, &fx->recipe, TRAIN_SAVE_WEIGHTS, NULL, 0,
                                      &img, &len, err, sizeof(err)),
                     0);
    /* Round trip, metadata read back. */
    m->b[1] = 0;
    assert_int_equal(train_state_load(m, img, len, TRAIN_SAVE_WEIGHTS, &meta, err, sizeof(err)), 0);
    assert_float_equal(m->b[1], 0.5f, 0);
    assert_int_equal(meta.has_norm, 1);
    assert_memory_equal(&meta.norm, &norm, sizeof(norm));
    assert_string_equal(meta.spec.arch, "cnn-small");
    assert_int_equal(meta.spec.classes, CLASSES);
    /* The export form adds batch-norm counters only: this model has none, so the same bytes;
     * a cut image is refused. */
    {
        uint8_t *exp = NULL;
        size_t elen = 0;
        assert_int_equal(train_state_export(img, len, &exp, &elen, err, sizeof(err)), 0);
        assert_int_equal(elen, len);
        assert_memory_equal(exp, img, len);
        free(exp);
        exp = NULL;
        assert_int_equal(train_state_export(img, 20, &exp, &elen, err, sizeof(err)), CWT_EFORMAT);
        assert_null(exp);
    }
    /* A full image (weights and optimizer state, as the daemon installs a bundle payload)
     * exports without the optimizer state, and loads as weights. */
    {
        uint8_t *full = NULL, *exp = NULL;
        size_t flen = 0, elen = 0;
        m->b[1] = 0.5f;
        assert_int_equal(train_state_save(m, &spec, &norm, &fx->recipe, TRAIN_SAVE_ALL, NULL, 0,
                                          &full, &flen, err, sizeof(err)),
                         0);
        assert_true(flen > len);
        assert_int_equal(train_state_export(full, flen, &exp, &elen, err, sizeof(err)), 0);
        assert_null(memmem(exp, elen, "optim.", 6));
        assert_int_equal(train_state_load(m, exp, elen, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)),
                         0);
        assert_float_equal(m->b[1], 0.5f, 0);
        free(full);
        free(exp);
    }
    /* Weights-only images lack the optimizer state a full load needs. */
    assert_int_equal(train_state_load(m, img, len, TRAIN_SAVE_ALL, NULL, err, sizeof(err)),
                     CWT_EFORMAT);

    /* Another architecture: refused by fingerprint. */
    r4.classes = 4;
    assert_int_equal(train_model_from_recipe(fx->dev, &r4, &other, err, sizeof(err)), 0);
    assert_int_equal(train_state_load(other, img, len, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)),
                     CWT_EB_MODEL);
    assert_non_null(strstr(err, "fingerprint"));
    eng_model_free(other);

    memcpy(before, m->b, sizeof(before));
    m->b[0] = 0.25f;
    memcpy(before, m->b, sizeof(before));
    bad = rebuild(img, len, "fc.bias", NULL, NULL, NULL, 0, &blen); /* missing tensor */
    assert_int_equal(train_state_load(m, bad, blen, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    assert_non_null(strstr(err, "fc.bias"));
    free(bad);
    bad = rebuild(img, len, "fc.bias", "fc.extra", NULL, NULL, 0, &blen); /* unknown tensor */
    assert_int_equal(train_state_load(m, bad, blen, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    assert_non_null(strstr(err, "fc.extra"));
    free(bad);
    /* a batch-norm counter for a layer that is no batch norm is an unknown tensor */
    bad = rebuild(img, len, "fc.bias", "fc.num_batches_tracked", NULL, NULL, 0, &blen);
    assert_int_equal(train_state_load(m, bad, blen, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    free(bad);
    bad = rebuild(img, len, NULL, NULL, NULL, NULL, 1, &blen); /* NaN */
    assert_int_equal(train_state_load(m, bad, blen, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)),
                     CWT_ENUMERIC);
    free(bad);
    bad = rebuild(img, len, NULL, NULL, "format", "something-else", 0, &blen);
    assert_int_equal(train_state_load(m, bad, blen, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    free(bad);
    bad = rebuild(img, len, NULL, NULL, "norm_std", "0", 0, &blen);
    assert_int_equal(train_state_load(m, bad, blen, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    free(bad);
    assert_int_equal(train_state_load(m, img, 20, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)) < 0,
                     1);
    /* None of the refused images changed the model. */
    memcpy(after, m->b, sizeof(after));
    assert_memory_equal(before, after, sizeof(before));
    free(img);
    eng_model_free(m);
}

static void test_resume_refuses_other_data(void **state)
{
    struct fixture *fx = *state;
    struct run_ctx c = {0};
    struct eng_model_spec spec;
    struct eng_optim_spec os;
    struct eng_model *m = NULL;
    struct train_loader_opts lo;
    struct train_loader *l = NULL;
    struct train_session_opts so;
    struct train_session *s = NULL;
    char err[CWT_ERRLEN];

    assert_int_equal(run(fx, 2, 5, 0, &c, NULL, NULL), CWT_ESTATE);
    assert_int_equal(train_specs_from_recipe(&fx->recipe, &spec, &os, err, sizeof(err)), 0);
    assert_int_equal(train_model_from_recipe(fx->dev, &fx->recipe, &m, err, sizeof(err)), 0);
    memset(&lo, 0, sizeof(lo));
    lo.batch_size = fx->recipe.batch_size;
    lo.seed = 0xfedcba9876543210ull; /* all 64 bits, as cwtctl train uses */
    assert_int_equal(train_norm_ensure(fx->st, &lo.norm, err, sizeof(err)), 0);
    /* Half the images: the checkpoint's cursor would mean something else. */
    assert_int_equal(
        train_loader_new(fx->st, fx->train, fx->n_train / 2, CLASSES, &lo, &l, err, sizeof(err)),
        0);
    memset(&so, 0, sizeof(so));
    so.recipe = &fx->recipe;
    so.plan.unit = CWT_VISIT_STEPS;
    so.plan.length = 10;
    assert_int_equal(train_session_new(m, &spec, l, fx->st, &so, &s, err, sizeof(err)), 0);
    assert_int_equal(train_session_steps_planned(s), 10);
    assert_int_equal(train_session_resume(s, "ckpt", err, sizeof(err)), CWT_ESTATE);
    assert_int_equal(train_session_resume(s, "nothing", err, sizeof(err)), CWT_ENOENT);
    train_session_free(s);
    train_loader_free(l);
    eng_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_seed_same_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_matches_uninterrupted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_at_end_keeps_last_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_load_is_strict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_refuses_other_data, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
