/*
 * store_fixture.h - a temporary store of synthetic training images for the loader tests
 * (test_loader.c, test_augment.c). Include after cmocka.h and engine/train/train.h.
 */
#ifndef CWT_TESTS_UNIT_STORE_FIXTURE_H
#define CWT_TESTS_UNIT_STORE_FIXTURE_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test_tmp.h"

struct fixture {
    char dir[PATH_MAX];
    struct store *st;
    uint64_t *ids;
    size_t n;
};

/* The value of channel k at (y, x) of image img: every stored pixel is this, so tests can
 * recompute what the store holds. */
static inline uint8_t pixel_value(uint32_t img, uint32_t y, uint32_t x, uint32_t k)
{
    return (uint8_t)((img * 37 + y * 11 + x * 5 + k * 70) % 256);
}

/* Creates a fresh store at test_tmp_path(NAME) ($CWT_TEST_TMP/NAME.PID.N), of h x w x c
 * images, puts n training images (image i: label label(i), pixels pixel_value(i, ...)) and
 * lists them into fx->ids (in store order). *state gets the fixture; 0 or -1 (a cmocka setup
 * result). Pair with store_fixture_teardown. */
static inline int store_fixture_setup(void **state, const char *name, uint32_t h, uint32_t w,
                                      uint32_t c, uint32_t n, uint32_t (*label)(uint32_t i))
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    struct store_batch *b = NULL;
    char err[CWT_ERRLEN];
    uint8_t *px = malloc((size_t)h * w * c);

    if (fx == NULL || px == NULL || test_tmp_path(fx->dir, sizeof(fx->dir), name) != 0) {
        free(fx);
        free(px);
        return -1;
    }
    if (store_open(fx->dir, STORE_CREATE, 64u << 20, &fx->st, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        free(fx);
        free(px);
        return -1;
    }
    if (store_set_shape(fx->st, h, w, c) != 0 || store_batch_begin(fx->st, &b) != 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        struct store_image_hdr hdr;
        memset(&hdr, 0, sizeof(hdr));
        hdr.label = label(i);
        hdr.split = STORE_TRAIN;
        hdr.h = h;
        hdr.w = w;
        hdr.c = c;
        memcpy(hdr.source_hash, &i, sizeof(i));
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++)
                for (uint32_t k = 0; k < c; k++)
                    px[(y * w + x) * c + k] = pixel_value(i, y, x, k);
        if (store_put_image(b, &hdr, px, NULL) != 0)
            return -1;
    }
    free(px);
    if (store_batch_commit(b) != 0 || store_read_begin(fx->st) != 0)
        return -1;
    if (store_list(fx->st, STORE_TRAIN, &fx->ids, &fx->n) != 0 || fx->n != n)
        return -1;
    store_read_end(fx->st);
    *state = fx;
    return 0;
}

/* Closes the store of a store_fixture_setup fixture and removes its directory; 0 or -1. */
static inline int store_fixture_teardown(void **state)
{
    struct fixture *fx = *state;
    int rc;

    store_close(fx->st);
    free(fx->ids);
    rc = test_tmp_remove(fx->dir);
    free(fx);
    return rc == 0 ? 0 : -1;
}

#endif
