/*
 * test_augment.c - the loader's augmentations for larger images (struct train_augment):
 * batches repeat bit for bit for a seed and differ for another, draws do not depend on the
 * order samples are taken in; each augmentation on a synthetic image: flips mirror exactly,
 * a resized crop at scale 1 and the image's own ratio is the identity and a half-size crop
 * of a ramp is the ramp zoomed twice, rotation by 0 is the identity and by 90 degrees turns
 * the image counter-clockwise, jitter 1 is the identity, brightness scales and contrast 0
 * gives the mean grey; crop windows stay inside the image and in the scale range; the option
 * checks refuse out-of-range values.
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

#define H        12
#define W        10
#define C        3
#define N_IMAGES 20

static uint32_t image_label(uint32_t i)
{
    return i % 2;
}

static int setup(void **state)
{
    return store_fixture_setup(state, "test_augment", H, W, C, N_IMAGES, image_label);
}

static int teardown(void **state)
{
    return store_fixture_teardown(state);
}

/* Every augmentation on, as a recipe for 128-256 px images would have it. */
static struct train_loader_opts all_opts(uint64_t seed)
{
    struct train_loader_opts o;

    memset(&o, 0, sizeof(o));
    o.batch_size = 6;
    o.seed = seed;
    o.shuffle = 1;
    o.hflip = 1;
    o.aug.vflip = 1;
    o.aug.resized_crop = 1;
    o.aug.crop_scale[0] = 0.08;
    o.aug.crop_scale[1] = 1.0;
    o.aug.crop_ratio[0] = 0.75;
    o.aug.crop_ratio[1] = 4.0 / 3.0;
    o.aug.rotate = 15.0;
    o.aug.brightness = 0.3;
    o.aug.contrast = 0.3;
    o.norm.channels = C;
    for (int k = 0; k < C; k++) {
        o.norm.mean[k] = 0.5f;
        o.norm.std[k] = 0.25f;
    }
    return o;
}

/* Two epochs of batches as one float array (caller frees). */
static float *two_epochs(struct fixture *fx, const struct train_loader_opts *o, size_t *len)
{
    struct train_loader *l = NULL;
    char err[CWT_ERRLEN];
    size_t per = (size_t)H * W * C, got = 0;
    float *all = calloc(2 * N_IMAGES * per, sizeof(float));
    uint32_t labels[8], n;

    assert_non_null(all);
    assert_int_equal(train_loader_new(fx->st, fx->ids, fx->n, 2, o, &l, err, sizeof(err)), 0);
    for (uint64_t b = 0; b < 2 * train_loader_batches_per_epoch(l); b++) {
        assert_int_equal(train_loader_next(l, all + got * per, labels, NULL, &n, NULL), 0);
        got += n;
    }
    assert_int_equal(got, 2 * N_IMAGES);
    train_loader_free(l);
    *len = got * per;
    return all;
}

static void test_batches_repeat_per_seed(void **state)
{
    struct fixture *fx = *state;
    struct train_loader_opts o = all_opts(42), other = all_opts(43);
    size_t n1, n2, n3;
    float *a = two_epochs(fx, &o, &n1), *b = two_epochs(fx, &o, &n2),
          *c = two_epochs(fx, &other, &n3);

    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * sizeof(float));
    assert_int_equal(n1, n3);
    assert_memory_not_equal(a, c, n1 * sizeof(float));
    free(a);
    free(b);
    free(c);
}

/* The draws are a pure function of (seed, epoch, position): taking samples backwards gives
 * the same images, so no running state (and no thread schedule) can change a batch. */
static void test_draws_do_not_depend_on_order(void **state)
{
    struct train_loader_opts o = all_opts(7);
    uint8_t in[H * W * C], fwd[16][H * W * C], back[H * W * C];

    (void)state;
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 13 % 251);
    for (uint64_t p = 0; p < 16; p++)
        train_augment_image(&o, 3, p, in, H, W, C, fwd[p]);
    for (uint64_t p = 16; p-- > 0;) {
        train_augment_image(&o, 3, p, in, H, W, C, back);
        assert_memory_equal(back, fwd[p], sizeof(back));
    }
}

static void neutral(struct train_aug_draw *d)
{
    memset(d, 0, sizeof(*d));
    d->crop_h = H;
    d->crop_w = W;
    d->brightness = d->contrast = 1.0;
}

static void fill(uint8_t *img, uint32_t h, uint32_t w)
{
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (uint32_t k = 0; k < C; k++)
                img[((size_t)y * w + x) * C + k] = pixel_value(5, y, x, k);
}

static void test_flips_mirror_exactly(void **state)
{
    uint8_t in[H * W * C], out[H * W * C];
    struct train_aug_draw d;

    (void)state;
    fill(in, H, W);
    for (int mode = 1; mode <= 3; mode++) {
        neutral(&d);
        d.hflip = mode & 1;
        d.vflip = (mode & 2) != 0;
        train_augment_apply(&d, in, H, W, C, out);
        for (uint32_t y = 0; y < H; y++)
            for (uint32_t x = 0; x < W; x++) {
                uint32_t sy = d.vflip ? H - 1 - y : y, sx = d.hflip ? W - 1 - x : x;
                assert_memory_equal(out + (y * W + x) * C, in + (sy * W + sx) * C, C);
            }
    }
}

static void test_identity_settings(void **state)
{
    struct train_loader_opts o = all_opts(1);
    uint8_t in[H * W * C], out[H * W * C];
    struct train_aug_draw d;

    (void)state;
    fill(in, H, W);
    /* Neutral draws: rotation 0, jitter factors 1, whole-image window. */
    neutral(&d);
    train_augment_apply(&d, in, H, W, C, out);
    assert_memory_equal(in, out, sizeof(in));
    /* A resized crop of scale 1 at the image's own aspect ratio is the whole image resized to
     * its own size, for every sample; jitter options at 0 draw factor 1. */
    memset(&o.aug, 0, sizeof(o.aug));
    o.hflip = 0;
    o.aug.resized_crop = 1;
    o.aug.crop_scale[0] = o.aug.crop_scale[1] = 1.0;
    o.aug.crop_ratio[0] = o.aug.crop_ratio[1] = (double)W / H;
    for (uint64_t p = 0; p < 20; p++) {
        train_augment_draw(&o, 0, p, H, W, &d);
        assert_int_equal(d.crop_h, H);
        assert_int_equal(d.crop_w, W);
        assert_true(d.brightness == 1.0 && d.contrast == 1.0 && d.angle == 0.0);
        train_augment_image(&o, 0, p, in, H, W, C, out);
        assert_memory_equal(in, out, sizeof(in));
    }
    /* Square images with ratio 1, as the brief of the option says. */
    uint8_t sq[W * W * C], sq_out[W * W * C];
    fill(sq, W, W);
    o.aug.crop_ratio[0] = o.aug.crop_ratio[1] = 1.0;
    train_augment_image(&o, 2, 9, sq, W, W, C, sq_out);
    assert_memory_equal(sq, sq_out, sizeof(sq));
}

/* A horizontal ramp v = 20 * x cropped to half its width and resized back is the ramp of the
 * window with half the slope, sampled at the output pixel centres (bilinear is exact on a
 * linear function away from the clamped edge). */
static void test_resized_crop_zooms(void **state)
{
    uint8_t in[H * W * C], out[H * W * C];
    struct train_aug_draw d;

    (void)state;
    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 0; x < W; x++)
            for (uint32_t k = 0; k < C; k++)
                in[(y * W + x) * C + k] = (uint8_t)(20 * x);
    neutral(&d);
    d.crop_x = 3;
    d.crop_w = W / 2;
    d.crop_y = 2;
    d.crop_h = H / 2;
    train_augment_apply(&d, in, H, W, C, out);
    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 1; x + 1 < W; x++) {
            double src = d.crop_x + (x + 0.5) * 0.5 - 0.5;
            assert_int_equal(out[(y * W + x) * C], (int)nearbyint(20.0 * src));
        }
}

static void test_rotation(void **state)
{
    uint8_t sq[W * W * C], out[W * W * C];
    struct train_aug_draw d;

    (void)state;
    fill(sq, W, W);
    neutral(&d);
    d.crop_h = d.crop_w = W;
    d.angle = 90.0;
    train_augment_apply(&d, sq, W, W, C, out);
    /* Counter-clockwise: the output's row y, column x shows the input's row x, column
     * W - 1 - y (the top-right corner comes to the top left). */
    for (uint32_t y = 0; y < W; y++)
        for (uint32_t x = 0; x < W; x++)
            assert_memory_equal(out + (y * W + x) * C, sq + (x * W + (W - 1 - y)) * C, C);
    /* 45 degrees: the corners come from outside the image and are black; the centre stays. */
    memset(sq, 200, sizeof(sq));
    d.angle = 45.0;
    train_augment_apply(&d, sq, W, W, C, out);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[(W * W - 1) * C], 0);
    assert_int_equal(out[((W / 2) * W + W / 2) * C], 200);
}

static void test_jitter(void **state)
{
    uint8_t in[H * W * C], out[H * W * C];
    struct train_aug_draw d;
    double mean = 0.0;

    (void)state;
    fill(in, H, W);
    neutral(&d);
    d.brightness = 0.5;
    train_augment_apply(&d, in, H, W, C, out);
    for (size_t i = 0; i < sizeof(in); i++)
        assert_int_equal(out[i], (int)nearbyint(0.5 * in[i]));
    d.brightness = 3.0; /* clamped at white */
    train_augment_apply(&d, in, H, W, C, out);
    for (size_t i = 0; i < sizeof(in); i++)
        assert_int_equal(out[i], in[i] >= 85 ? 255 : (int)nearbyint(3.0 * in[i]));
    /* Contrast 0: every value is the mean grey (ITU-R 601 weights). */
    for (size_t p = 0; p < (size_t)H * W; p++)
        mean += 0.299 * in[p * C] + 0.587 * in[p * C + 1] + 0.114 * in[p * C + 2];
    mean /= (double)H * W;
    d.brightness = 1.0;
    d.contrast = 0.0;
    train_augment_apply(&d, in, H, W, C, out);
    for (size_t i = 0; i < sizeof(in); i++)
        assert_int_equal(out[i], (int)nearbyint(mean));
}

/* Drawn windows lie inside the image, cover scale-range areas (up to rounding), and angles
 * and factors stay in their ranges. */
static void test_draws_in_bounds(void **state)
{
    struct train_loader_opts o = all_opts(99);
    struct train_aug_draw d;
    const uint32_t h = 200, w = 160;
    int flips = 0;

    (void)state;
    o.aug.crop_scale[0] = 0.3;
    o.aug.crop_scale[1] = 0.6;
    for (uint64_t p = 0; p < 2000; p++) {
        train_augment_draw(&o, p % 3, p, h, w, &d);
        assert_true(d.crop_h >= 1 && d.crop_w >= 1);
        assert_true(d.crop_y + d.crop_h <= h && d.crop_x + d.crop_w <= w);
        double frac = (double)d.crop_h * d.crop_w / ((double)h * w);
        assert_true(frac > 0.3 * 0.97 && frac < 0.6 * 1.03);
        double ratio = (double)d.crop_w / d.crop_h;
        assert_true(ratio > 0.75 * 0.97 && ratio < 4.0 / 3.0 * 1.03);
        assert_true(fabs(d.angle) <= 15.0);
        assert_true(d.brightness >= 0.7 && d.brightness <= 1.3);
        assert_true(d.contrast >= 0.7 && d.contrast <= 1.3);
        flips += d.hflip + d.vflip;
    }
    assert_true(flips > 1800 && flips < 2200); /* p = 1/2 each */
}

static void test_option_checks(void **state)
{
    struct train_loader_opts o = all_opts(1);
    char err[CWT_ERRLEN];

    (void)state;
    assert_int_equal(train_augment_check(&o, err, sizeof(err)), 0);
    o.crop_pad = 2;
    assert_int_equal(train_augment_check(&o, err, sizeof(err)), CWT_EINVAL);
    assert_non_null(strstr(err, "crop"));
    o = all_opts(1);
    o.aug.crop_scale[0] = 0.7;
    o.aug.crop_scale[1] = 0.5;
    assert_int_equal(train_augment_check(&o, err, sizeof(err)), CWT_EINVAL);
    o = all_opts(1);
    o.aug.rotate = 181.0;
    assert_int_equal(train_augment_check(&o, err, sizeof(err)), CWT_EINVAL);
    o = all_opts(1);
    o.aug.brightness = 1.5;
    assert_int_equal(train_augment_check(&o, err, sizeof(err)), CWT_EINVAL);
    o.aug.brightness = NAN;
    assert_int_equal(train_augment_check(&o, err, sizeof(err)), CWT_EINVAL);
}

/* The recipe's keys reach the loader's options. */
static void test_from_recipe(void **state)
{
    struct cwt_recipe r;
    struct train_loader_opts o;

    (void)state;
    recipe_defaults(&r);
    memset(&o, 0, sizeof(o));
    train_loader_augment_from_recipe(&r, &o);
    assert_false(o.hflip || o.crop_pad || o.aug.vflip || o.aug.resized_crop);
    assert_true(o.aug.rotate == 0.0 && o.aug.brightness == 0.0 && o.aug.contrast == 0.0);
    r.augment_vflip = 1;
    r.augment_resized_crop = 1;
    r.augment_rotate = 10.0;
    r.augment_contrast = 0.2;
    train_loader_augment_from_recipe(&r, &o);
    assert_true(o.aug.vflip && o.aug.resized_crop);
    assert_true(o.aug.crop_scale[0] == 0.08 && o.aug.crop_ratio[1] == 4.0 / 3.0);
    assert_true(o.aug.rotate == 10.0 && o.aug.contrast == 0.2 && o.aug.brightness == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_repeat_per_seed),
        cmocka_unit_test(test_draws_do_not_depend_on_order),
        cmocka_unit_test(test_flips_mirror_exactly),
        cmocka_unit_test(test_identity_settings),
        cmocka_unit_test(test_resized_crop_zooms),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_jitter),
        cmocka_unit_test(test_draws_in_bounds),
        cmocka_unit_test(test_option_checks),
        cmocka_unit_test(test_from_recipe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
