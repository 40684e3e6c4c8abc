/*
 * test_ingest_split.c - the stratified seeded split of ingest (ingest_run with
 * INGEST_SPLIT_STRATIFIED): the same files and seed put the same images, known by their
 * content hash, into the same splits (from a folder, from a CSV whatever its row order, and
 * from IDX files); a different seed changes the assignment; and per class the val and test
 * counts are the fractions of the class size, rounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <png.h>

#include "cli/ingest.h"
#include "common/fileio.h"

#include "tests/test_tmp.h"
#include "tests/unit/png_fixture.h"

#define SIDE      4
#define CLASSES   3
#define VAL_FRAC  0.2
#define TEST_FRAC 0.1

/* Images per class: uneven, so that rounding matters (40 * 0.1 = 4, 13 * 0.2 = 2.6 ...). */
static const uint32_t per_class[CLASSES] = {40, 25, 13};

struct fixture {
    char root[1024];
    char dir[1100];    /* DIR source: one folder per class index */
    char csv[1100];    /* CSV source listing the same files */
    char idx[2][1100]; /* IDX images and labels files */
    unsigned stores;   /* stores made so far, for fresh folder names */
};

/* One stored image as read back: what it is (content hash, label) and where it went. */
struct placed {
    uint8_t hash[32];
    uint32_t label;
    uint8_t split;
};

struct placement {
    struct placed *v;
    size_t n;
};

static void write_png(const char *path, uint32_t serial)
{
    uint8_t rows[SIDE][SIDE];

    /* Distinct content per serial number, so every file has its own hash. */
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++)
            rows[y][x] = (uint8_t)(serial * 13 + (uint32_t)(y * SIDE + x));
    rows[0][0] = (uint8_t)serial;
    rows[0][1] = (uint8_t)(serial >> 8);
    png_fixture_write_gray(path, &rows[0][0], SIDE, SIDE);
}

static void write_file(const char *path, const void *data, size_t len)
{
    char err[CWT_ERRLEN];

    if (file_write_atomic(path, data, len, 0644, err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The sources: PNG files in class folders, a CSV naming them, and IDX files with the same
 * class sizes. */
static int setup(void **state)
{
    static struct fixture fx;
    char err[CWT_ERRLEN], path[1400], line[64];
    uint32_t total = 0, serial = 0;
    uint8_t *images, *labels;
    FILE *csv;

    if (test_tmp_path(fx.root, sizeof(fx.root), "test_ingest_split") != 0)
        return -1;
    snprintf(fx.dir, sizeof(fx.dir), "%s/images", fx.root);
    snprintf(fx.csv, sizeof(fx.csv), "%s/images/list.csv", fx.root);
    snprintf(fx.idx[0], sizeof(fx.idx[0]), "%s/images-idx3-ubyte", fx.root);
    snprintf(fx.idx[1], sizeof(fx.idx[1]), "%s/labels-idx1-ubyte", fx.root);
    for (int c = 0; c < CLASSES; c++) {
        snprintf(path, sizeof(path), "%s/%d", fx.dir, c);
        if (file_mkdir_p(path, 0700, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s\n", err);
            return -1;
        }
        total += per_class[c];
    }
    csv = fopen(fx.csv, "w");
    if (csv == NULL)
        return -1;
    fputs("path,label\n", csv);
    for (int c = 0; c < CLASSES; c++) {
        for (uint32_t i = 0; i < per_class[c]; i++, serial++) {
            snprintf(path, sizeof(path), "%s/%d/img-%03u.png", fx.dir, c, serial);
            write_png(path, serial);
            snprintf(line, sizeof(line), "%d/img-%03u.png,%d\n", c, serial, c);
            fputs(line, csv);
        }
    }
    if (fclose(csv) != 0)
        return -1;

    /* IDX: classes interleaved, pixels distinct per image. */
    images = calloc(16 + (size_t)total * SIDE * SIDE, 1);
    labels = calloc(8 + (size_t)total, 1);
    if (images == NULL || labels == NULL)
        return -1;
    put_be32(images, 0x00000803);
    put_be32(images + 4, total);
    put_be32(images + 8, SIDE);
    put_be32(images + 12, SIDE);
    put_be32(labels, 0x00000801);
    put_be32(labels + 4, total);
    {
        uint32_t left[CLASSES], k = 0;
        memcpy(left, per_class, sizeof(left));
        while (k < total) {
            for (int c = 0; c < CLASSES; c++) {
                if (left[c] == 0)
                    continue;
                left[c]--;
                labels[8 + k] = (uint8_t)c;
                for (int p = 0; p < SIDE * SIDE; p++)
                    images[16 + (size_t)k * SIDE * SIDE + p] = (uint8_t)(k * 7 + (uint32_t)p);
                images[16 + (size_t)k * SIDE * SIDE] = (uint8_t)k;
                k++;
            }
        }
    }
    write_file(fx.idx[0], images, 16 + (size_t)total * SIDE * SIDE);
    write_file(fx.idx[1], labels, 8 + (size_t)total);
    free(images);
    free(labels);
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    return test_tmp_remove(fx->root) == 0 ? 0 : -1;
}

static int cmp_placed(const void *a, const void *b)
{
    return memcmp(((const struct placed *)a)->hash, ((const struct placed *)b)->hash, 32);
}

/* Ingests the inputs into a fresh store with a stratified split under seed, and reads back
 * every image's hash, label and split, sorted by hash. */
static struct placement ingest_split(struct fixture *fx, const char *const *inputs, int ninputs,
                                     uint64_t seed)
{
    struct ingest_options opt = {.split_mode = INGEST_SPLIT_STRATIFIED,
                                 .val_fraction = VAL_FRAC,
                                 .test_fraction = TEST_FRAC,
                                 .seed = seed};
    struct ingest_summary sum;
    struct cwt_recipe recipe;
    struct placement pl = {0};
    struct store *st = NULL;
    char dir[1200], err[CWT_ERRLEN];
    uint32_t total = 0;

    for (int c = 0; c < CLASSES; c++)
        total += per_class[c];
    recipe_defaults(&recipe);
    recipe.input_h = recipe.input_w = SIDE;
    recipe.input_c = 1;
    recipe.classes = CLASSES;
    snprintf(dir, sizeof(dir), "%s/store-%u", fx->root, fx->stores++);
    if (store_open(dir, STORE_CREATE, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    assert_int_equal(store_set_shape(st, SIDE, SIDE, 1), 0);
    if (ingest_run(st, &recipe, inputs, ninputs, &opt, &sum, err, sizeof(err)) != 0)
        fail_msg("ingest_run: %s", err);
    assert_int_equal(sum.ingested, total);
    assert_int_equal(sum.rejected, 0);
    assert_int_equal(sum.items, total);

    pl.v = calloc(total, sizeof(*pl.v));
    assert_non_null(pl.v);
    assert_int_equal(store_read_begin(st), 0);
    for (int s = 0; s < STORE_NSPLITS; s++) {
        uint64_t *ids = NULL;
        size_t n = 0;
        assert_int_equal(store_list(st, (enum store_split)s, &ids, &n), 0);
        for (size_t i = 0; i < n; i++) {
            struct store_image_hdr hdr;
            const uint8_t *px;
            assert_int_equal(store_get_image(st, ids[i], &hdr, &px), 0);
            assert_int_equal(hdr.split, s);
            assert_true(pl.n < total);
            memcpy(pl.v[pl.n].hash, hdr.source_hash, 32);
            pl.v[pl.n].label = hdr.label;
            pl.v[pl.n].split = hdr.split;
            pl.n++;
        }
        free(ids);
    }
    store_read_end(st);
    store_close(st);
    assert_int_equal(pl.n, total);
    qsort(pl.v, pl.n, sizeof(*pl.v), cmp_placed);
    for (size_t i = 1; i < pl.n; i++)
        assert_true(cmp_placed(&pl.v[i - 1], &pl.v[i]) != 0); /* hashes are distinct */
    return pl;
}

static void assert_same_placement(const struct placement *a, const struct placement *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_memory_equal(a->v[i].hash, b->v[i].hash, 32);
        assert_int_equal(a->v[i].label, b->v[i].label);
        assert_int_equal(a->v[i].split, b->v[i].split);
    }
}

static size_t differences(const struct placement *a, const struct placement *b)
{
    size_t d = 0;

    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_memory_equal(a->v[i].hash, b->v[i].hash, 32);
        d += a->v[i].split != b->v[i].split;
    }
    return d;
}

/* Per class: val and test hold the fraction of the class size within rounding, train the
 * rest. */
static void assert_proportions(const struct placement *p)
{
    for (uint32_t c = 0; c < CLASSES; c++) {
        uint32_t count[STORE_NSPLITS] = {0};
        for (size_t i = 0; i < p->n; i++)
            if (p->v[i].label == c)
                count[p->v[i].split]++;
        assert_int_equal(count[STORE_TRAIN] + count[STORE_VAL] + count[STORE_TEST], per_class[c]);
        assert_true(count[STORE_VAL] >= per_class[c] * VAL_FRAC - 0.5);
        assert_true(count[STORE_VAL] <= per_class[c] * VAL_FRAC + 0.5);
        assert_true(count[STORE_TEST] >= per_class[c] * TEST_FRAC - 0.5);
        assert_true(count[STORE_TEST] <= per_class[c] * TEST_FRAC + 0.5);
    }
}

static void free_placement(struct placement *p)
{
    free(p->v);
    memset(p, 0, sizeof(*p));
}

static void test_folder_split_is_deterministic(void **state)
{
    struct fixture *fx = *state;
    const char *inputs[1] = {fx->dir};
    struct placement a, b, other;
    char moved[1200];

    /* list.csv sits at the top of the folder, where a folder ingest would reject it. */
    snprintf(moved, sizeof(moved), "%s/list.csv", fx->root);
    assert_int_equal(rename(fx->csv, moved), 0);
    a = ingest_split(fx, inputs, 1, 42);
    b = ingest_split(fx, inputs, 1, 42);
    other = ingest_split(fx, inputs, 1, 43);
    assert_int_equal(rename(moved, fx->csv), 0);
    assert_same_placement(&a, &b);
    assert_true(differences(&a, &other) > 0);
    assert_proportions(&a);
    assert_proportions(&other);
    free_placement(&a);
    free_placement(&b);
    free_placement(&other);
}

/* The CSV names the same files: the same seed gives the same splits as the folder did, and
 * reordering the rows changes nothing (an image's place depends on its name and the seed
 * only). */
static void test_csv_split_ignores_row_order(void **state)
{
    struct fixture *fx = *state;
    const char *inputs[1] = {fx->csv};
    char reversed[1200], moved[1200], *text = NULL, *lines[256] = {NULL};
    const char *dir_inputs[1] = {fx->dir};
    struct placement from_csv, from_rev, from_dir, other;
    uint8_t *buf = NULL;
    size_t len = 0, n = 0;
    char err[CWT_ERRLEN];
    FILE *f;

    from_csv = ingest_split(fx, inputs, 1, 42);
    other = ingest_split(fx, inputs, 1, 7);

    /* The same rows, last first. */
    if (file_read_all(fx->csv, 1 << 20, &buf, &len, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    text = (char *)buf;
    for (char *p = strtok(text, "\n"); p != NULL && n < 256; p = strtok(NULL, "\n"))
        lines[n++] = p;
    assert_true(n > 2 && n < 256);
    snprintf(reversed, sizeof(reversed), "%s/images/reversed.csv", fx->root);
    f = fopen(reversed, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", lines[0]);
    for (size_t i = n - 1; i >= 1; i--)
        fprintf(f, "%s\n", lines[i]);
    assert_int_equal(fclose(f), 0);
    free(buf);
    inputs[0] = reversed;
    from_rev = ingest_split(fx, inputs, 1, 42);
    assert_int_equal(unlink(reversed), 0);

    snprintf(moved, sizeof(moved), "%s/list.csv", fx->root);
    assert_int_equal(rename(fx->csv, moved), 0);
    from_dir = ingest_split(fx, dir_inputs, 1, 42);
    assert_int_equal(rename(moved, fx->csv), 0);

    assert_same_placement(&from_csv, &from_rev);
    assert_same_placement(&from_csv, &from_dir);
    assert_true(differences(&from_csv, &other) > 0);
    assert_proportions(&from_csv);
    assert_proportions(&other);
    free_placement(&from_csv);
    free_placement(&from_rev);
    free_placement(&from_dir);
    free_placement(&other);
}

static void test_idx_split_is_deterministic(void **state)
{
    struct fixture *fx = *state;
    const char *inputs[2] = {fx->idx[0], fx->idx[1]};
    struct placement a, b, other;

    a = ingest_split(fx, inputs, 2, 2024);
    b = ingest_split(fx, inputs, 2, 2024);
    other = ingest_split(fx, inputs, 2, 2025);
    assert_same_placement(&a, &b);
    assert_true(differences(&a, &other) > 0);
    assert_proportions(&a);
    assert_proportions(&other);
    free_placement(&a);
    free_placement(&b);
    free_placement(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folder_split_is_deterministic),
        cmocka_unit_test(test_csv_split_ignores_row_order),
        cmocka_unit_test(test_idx_split_is_deterministic),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
