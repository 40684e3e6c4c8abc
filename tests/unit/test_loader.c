/*
 * test_loader.c - the data loader over a store: seeded shuffles are permutations and repeat
 * for the same seed, augmentation keeps shapes and is a crop-with-padding plus flip of the
 * original, normalisation statistics match a direct computation and round-trip through meta,
 * class-balanced sampling draws every class equally often, and a loader set to a saved cursor
 * continues with exactly the batches the original would have produced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/train/train.h"

#include "store_fixture.h"

/* Non-square and 3 channels so that swapped axes show. */
#define H        6
#define W        8
#define C        3
#define N_IMAGES 50
#define CLASSES  3
#define N_CLASS0 36 /* class 0: 36 images, class 1: 14, class 2: none */

static uint32_t image_label(uint32_t i)
{
    return i < N_CLASS0 ? 0 : 1;
}

static int setup(void **state)
{
    return store_fixture_setup(state, "test_loader", H, W, C, N_IMAGES, image_label);
}

static int teardown(void **state)
{
    return store_fixture_teardown(state);
}

static struct train_loader_opts default_opts(uint32_t batch, uint64_t seed)
{
    struct train_loader_opts o;

    memset(&o, 0, sizeof(o));
    o.batch_size = batch;
    o.seed = seed;
    o.shuffle = 1;
    o.norm.channels = C;
    for (int k = 0; k < C; k++) {
        o.norm.mean[k] = 0.5f;
        o.norm.std[k] = 0.25f;
    }
    return o;
}

static struct train_loader *make_loader(struct fixture *fx, const struct train_loader_opts *o)
{
    struct train_loader *l = NULL;
    char err[CWT_ERRLEN];
    int rc = train_loader_new(fx->st, fx->ids, fx->n, CLASSES, o, &l, err, sizeof(err));

    if (rc != 0)
        fail_msg("train_loader_new: %s", err);
    return l;
}

/* Ids of one epoch, batch by batch. */
static void epoch_ids(struct train_loader *l, uint64_t *out)
{
    float x[7 * H * W * C];
    uint32_t labels[7], n, total = 0;
    int end = 0;

    while (!end) {
        assert_int_equal(train_loader_next(l, x, labels, out + total, &n, &end), 0);
        assert_true(n >= 1 && n <= 7);
        total += n;
    }
    assert_int_equal(total, N_IMAGES);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static void test_shuffle_is_seeded_permutation(void **state)
{
    struct fixture *fx = *state;
    struct train_loader_opts o = default_opts(7, 1234);
    struct train_loader *a = make_loader(fx, &o), *b = make_loader(fx, &o), *c;
    uint64_t ea0[N_IMAGES], ea1[N_IMAGES], eb0[N_IMAGES], ec0[N_IMAGES], sorted[N_IMAGES];

    assert_int_equal(train_loader_batches_per_epoch(a), (N_IMAGES + 6) / 7);
    epoch_ids(a, ea0);
    epoch_ids(a, ea1);
    epoch_ids(b, eb0);
    assert_memory_equal(ea0, eb0, sizeof(ea0));
    assert_memory_not_equal(ea0, ea1, sizeof(ea0));
    memcpy(sorted, ea1, sizeof(sorted));
    qsort(sorted, N_IMAGES, sizeof(uint64_t), cmp_u64);
    assert_memory_equal(sorted, fx->ids, sizeof(sorted));

    o.seed = 1235;
    c = make_loader(fx, &o);
    epoch_ids(c, ec0);
    assert_memory_not_equal(ea0, ec0, sizeof(ea0));
    train_loader_free(a);
    train_loader_free(b);
    train_loader_free(c);

    /* Without shuffling the ids come in the given order. */
    o.shuffle = 0;
    a = make_loader(fx, &o);
    epoch_ids(a, ea0);
    assert_memory_equal(ea0, fx->ids, sizeof(ea0));
    train_loader_free(a);
}

static void test_drop_last(void **state)
{
    struct fixture *fx = *state;
    struct train_loader_opts o = default_opts(16, 5);
    struct train_loader *l;
    float x[16 * H * W * C];
    uint32_t labels[16], n;
    int end;

    o.drop_last = 1;
    l = make_loader(fx, &o);
    assert_int_equal(train_loader_batches_per_epoch(l), N_IMAGES / 16);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(train_loader_next(l, x, labels, NULL, &n, &end), 0);
        assert_int_equal(n, 16);
        assert_int_equal(end, i == 2);
    }
    train_loader_free(l);
}

static void test_augmentation(void **state)
{
    struct fixture *fx = *state;
    struct train_loader_opts o = default_opts(5, 99);
    uint8_t in[H * W * C], out[H * W * C];
    int seen_flip[2] = {0, 0}, seen_dx[5] = {0};
    (void)fx;

    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 0; x < W; x++)
            for (uint32_t k = 0; k < C; k++)
                in[(y * W + x) * C + k] = (uint8_t)(1 + pixel_value(3, y, x, k) % 255);
    /* Flip only: either the image or its mirror. */
    o.hflip = 1;
    for (uint64_t pos = 0; pos < 64; pos++) {
        int same = 1, mirrored = 1;
        train_augment_image(&o, 0, pos, in, H, W, C, out);
        for (uint32_t y = 0; y < H; y++)
            for (uint32_t x = 0; x < W; x++)
                for (uint32_t k = 0; k < C; k++) {
                    uint8_t v = out[(y * W + x) * C + k];
                    same &= v == in[(y * W + x) * C + k];
                    mirrored &= v == in[(y * W + (W - 1 - x)) * C + k];
                }
        assert_true(same || mirrored);
        seen_flip[mirrored]++;
    }
    assert_true(seen_flip[0] > 10 && seen_flip[1] > 10);

    /* Crop with padding 2 (and flip): some offset (dy, dx) in [-2, 2] explains every pixel,
     * with black outside the image; every offset occurs. */
    o.crop_pad = 2;
    for (uint64_t pos = 0; pos < 200; pos++) {
        int found = 0;
        train_augment_image(&o, 3, pos, in, H, W, C, out);
        for (int flip = 0; flip < 2 && !found; flip++)
            for (int dy = -2; dy <= 2 && !found; dy++)
                for (int dx = -2; dx <= 2 && !found; dx++) {
                    int ok = 1;
                    for (int y = 0; y < H && ok; y++)
                        for (int x = 0; x < W && ok; x++) {
                            int sy = y + dy, sx = (flip ? W - 1 - x : x) + dx;
                            for (int k = 0; k < C; k++) {
                                uint8_t want = (sy < 0 || sy >= H || sx < 0 || sx >= W)
                                                   ? 0
                                                   : in[(sy * W + sx) * C + k];
                                ok &= out[(y * W + x) * C + k] == want;
                            }
                        }
                    if (ok) {
                        found = 1;
                        seen_dx[dx + 2]++;
                    }
                }
        assert_true(found);
    }
    for (int i = 0; i < 5; i++)
        assert_true(seen_dx[i] > 0);
}

static void test_batch_is_normalised_nchw(void **state)
{
    struct fixture *fx = *state;
    struct train_loader_opts o = default_opts(4, 7);
    struct train_loader *l;
    float x[4 * H * W * C];
    uint32_t labels[4], n;
    uint64_t ids[4];
    int end;

    o.shuffle = 0;
    o.norm.mean[1] = 0.25f;
    o.norm.std[2] = 0.5f;
    l = make_loader(fx, &o);
    assert_int_equal(train_loader_next(l, x, labels, ids, &n, &end), 0);
    assert_int_equal(n, 4);
    assert_int_equal(end, 0);
    for (uint32_t i = 0; i < n; i++) {
        /* Ids are assigned in ingest order, so image i of the store is the i-th id. */
        uint32_t img = (uint32_t)(ids[i] - fx->ids[0]);
        assert_int_equal(labels[i], img < N_CLASS0 ? 0 : 1);
        for (uint32_t k = 0; k < C; k++)
            for (uint32_t y = 0; y < H; y++)
                for (uint32_t xx = 0; xx < W; xx++) {
                    float want = ((float)pixel_value(img, y, xx, k) / 255.0f - o.norm.mean[k]) /
                                 o.norm.std[k];
                    assert_float_equal(x[((i * C + k) * H + y) * W + xx], want, 1e-6);
                }
    }
    train_loader_free(l);
}

static void test_norm_statistics(void **state)
{
    struct fixture *fx = *state;
    struct train_norm n, back, ensured;
    char err[CWT_ERRLEN], mean[256], sd[256];

    assert_int_equal(train_norm_compute(fx->st, fx->ids, fx->n, &n), 0);
    assert_int_equal(n.channels, C);
    for (uint32_t k = 0; k < C; k++) {
        double s = 0, s2 = 0, cnt = 0;
        for (uint32_t i = 0; i < N_IMAGES; i++)
            for (uint32_t y = 0; y < H; y++)
                for (uint32_t x = 0; x < W; x++) {
                    double v = pixel_value(i, y, x, k) / 255.0;
                    s += v;
                    s2 += v * v;
                    cnt++;
                }
        assert_float_equal(n.mean[k], s / cnt, 1e-6);
        assert_float_equal(n.std[k], sqrt(s2 / cnt - (s / cnt) * (s / cnt)), 1e-6);
    }
    assert_int_equal(train_norm_load(fx->st, &back), CWT_ENOENT);
    assert_int_equal(train_norm_ensure(fx->st, &ensured, err, sizeof(err)), 0);
    assert_memory_equal(&ensured, &n, sizeof(n));
    assert_int_equal(train_norm_load(fx->st, &back), 0);
    assert_memory_equal(&back, &n, sizeof(n));

    /* Explicitly set statistics win over computing again. */
    back.mean[0] = 0.125f;
    assert_int_equal(train_norm_save(fx->st, &back), 0);
    assert_int_equal(train_norm_ensure(fx->st, &ensured, err, sizeof(err)), 0);
    assert_float_equal(ensured.mean[0], 0.125f, 0);

    /* Metadata text round-trips exactly and rejects wrong channel counts. */
    train_norm_format(&n, mean, sd, sizeof(mean));
    assert_int_equal(train_norm_parse(mean, sd, C, &back), 0);
    assert_memory_equal(&back, &n, sizeof(n));
    assert_int_equal(train_norm_parse(mean, sd, 1, &back), CWT_EFORMAT);
    assert_int_equal(train_norm_parse("0.5,0.5,0.5", "1,0,1", 3, &back), CWT_EFORMAT);
}

static void test_balanced_sampling(void **state)
{
    struct fixture *fx = *state;
    struct train_loader_opts o = default_opts(10, 2024);
    struct train_loader *l;
    uint32_t order[N_IMAGES];
    uint64_t per_class[CLASSES] = {0}, per_image[N_IMAGES] = {0}, total = 0;
    const uint64_t *counts;
    float w[CLASSES];
    enum { EPOCHS = 400 };

    o.balanced = 1;
    l = make_loader(fx, &o);
    counts = train_loader_class_counts(l);
    assert_int_equal(counts[0], N_CLASS0);
    assert_int_equal(counts[1], N_IMAGES - N_CLASS0);
    assert_int_equal(counts[2], 0);
    for (uint64_t e = 0; e < EPOCHS; e++) {
        train_loader_epoch_order(l, e, order);
        for (int i = 0; i < N_IMAGES; i++) {
            per_image[order[i]]++;
            per_class[order[i] < N_CLASS0 ? 0 : 1]++;
            total++;
        }
    }
    /* 20000 draws, p = 1/2 per present class: 5 standard deviations is about 0.018. */
    assert_float_equal((double)per_class[0] / total, 0.5, 0.02);
    assert_int_equal(per_class[2], 0);
    /* Within a class each image has p = 1/(2 count): minority images ~2.6x as frequent. */
    {
        double minority = 0, majority = 0;
        for (int i = 0; i < N_IMAGES; i++) {
            if (i < N_CLASS0)
                majority += (double)per_image[i];
            else
                minority += (double)per_image[i];
        }
        minority /= N_IMAGES - N_CLASS0;
        majority /= N_CLASS0;
        assert_float_equal(minority / majority, (double)N_CLASS0 / (N_IMAGES - N_CLASS0), 0.2);
    }
    train_class_weights(counts, CLASSES, w);
    assert_float_equal(w[0], 50.0 / (2.0 * N_CLASS0), 1e-6);
    assert_float_equal(w[1], 50.0 / (2.0 * (N_IMAGES - N_CLASS0)), 1e-6);
    assert_float_equal(w[2], 1.0, 0);
    train_loader_free(l);
}

static void test_cursor_resume(void **state)
{
    struct fixture *fx = *state;
    struct train_loader_opts o = default_opts(6, 77);
    struct train_loader *a, *b;
    struct train_cursor cur;
    float xa[6 * H * W * C], xb[6 * H * W * C];
    uint32_t la[6], lb[6], na, nb;
    int ea, eb;

    o.hflip = 1;
    o.crop_pad = 2;
    o.balanced = 0;
    a = make_loader(fx, &o);
    /* Stop in the middle of the second epoch. */
    for (int i = 0; i < 11; i++)
        assert_int_equal(train_loader_next(a, xa, la, NULL, &na, &ea), 0);
    cur = train_loader_get_cursor(a);
    assert_int_equal(cur.epoch, 1);
    b = make_loader(fx, &o);
    train_loader_set_cursor(b, cur);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(train_loader_next(a, xa, la, NULL, &na, &ea), 0);
        assert_int_equal(train_loader_next(b, xb, lb, NULL, &nb, &eb), 0);
        assert_int_equal(na, nb);
        assert_int_equal(ea, eb);
        assert_memory_equal(la, lb, na * sizeof(uint32_t));
        assert_memory_equal(xa, xb, na * H * W * C * sizeof(float));
    }
    train_loader_free(a);
    train_loader_free(b);
}

static void test_rejects_bad_input(void **state)
{
    struct fixture *fx = *state;
    struct train_loader_opts o = default_opts(4, 1);
    struct train_loader *l = NULL;
    char err[CWT_ERRLEN];

    /* Label 1 does not fit a one-class model. */
    assert_int_equal(train_loader_new(fx->st, fx->ids, fx->n, 1, &o, &l, err, sizeof(err)),
                     CWT_EFORMAT);
    assert_null(l);
    assert_int_equal(train_loader_new(fx->st, fx->ids, 0, CLASSES, &o, &l, err, sizeof(err)),
                     CWT_EINVAL);
    o.norm.channels = 1;
    assert_int_equal(train_loader_new(fx->st, fx->ids, fx->n, CLASSES, &o, &l, err, sizeof(err)),
                     CWT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shuffle_is_seeded_permutation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_augmentation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_is_normalised_nchw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_norm_statistics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_balanced_sampling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejects_bad_input, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
