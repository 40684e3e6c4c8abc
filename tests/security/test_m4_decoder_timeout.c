/*
 * test_m4_decoder_timeout.c - issue 18, M4: a file that makes the decoder child spin costs
 * that file only. With the per-file limit lowered to 2 s (decoder_test_limits) and a marker
 * that makes a forked child spin as a slow parser would:
 *
 *   - the decoder API: the spinning file is refused within the limit (plus slack for a busy
 *     machine) as "decoder timed out on NAME", the child is killed, and the next file decodes
 *     in a fresh child;
 *   - ingest: among valid PNGs in class folders, the spinning file is one rejected item
 *     (counted as corrupt, reported with its path and "timed out"), and every other image is
 *     stored.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <png.h>

#include "cli/ingest.h"
#include "common/cwt.h"
#include "common/fileio.h"
#include "decode/decoder.h"

#include "tests/test_tmp.h"
#include "tests/unit/png_fixture.h"

#define SIDE      8
#define PER_CLASS 3
#define LIMIT_S   2
/* A busy shared machine: the kill must come well before the 60 s default, not to the tick. */
#define SLACK_S 15

static const char spin_marker[] = "cwt-test-spin\n";

static char root[PATH_MAX];
static char images[PATH_MAX + 16];
static char spin_path[PATH_MAX + 32];
static char good_path[PATH_MAX + 32];

static void write_png(const char *path, uint32_t serial)
{
    uint8_t rows[SIDE][SIDE];

    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++)
            rows[y][x] = (uint8_t)(serial * 29 + (uint32_t)(y * SIDE + x));
    png_fixture_write_gray(path, &rows[0][0], SIDE, SIDE);
}

/* Two class folders of PNGs; the spinning file sits in class 0 between them. */
static int setup(void **state)
{
    char err[CWT_ERRLEN], path[PATH_MAX + 64];
    uint32_t serial = 0;

    (void)state;
    if (test_tmp_path(root, sizeof(root), "test_m4_decoder_timeout") != 0)
        return -1;
    snprintf(images, sizeof(images), "%s/images", root);
    for (int c = 0; c < 2; c++) {
        snprintf(path, sizeof(path), "%s/%d", images, c);
        if (file_mkdir_p(path, 0700, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s\n", err);
            return -1;
        }
        for (int i = 0; i < PER_CLASS; i++, serial++) {
            snprintf(path, sizeof(path), "%s/%d/img-%02u.png", images, c, serial);
            write_png(path, serial);
        }
    }
    snprintf(good_path, sizeof(good_path), "%s/0/img-00.png", images);
    snprintf(spin_path, sizeof(spin_path), "%s/0/img-01-spin.png", images);
    if (file_write_atomic(spin_path, spin_marker, sizeof(spin_marker) - 1, 0644, err,
                          sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    decoder_test_limits(LIMIT_S, spin_marker);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    decoder_test_limits(0, NULL);
    return test_tmp_remove(root) == 0 ? 0 : -1;
}

static void test_spinning_file_times_out_and_next_file_decodes(void **state)
{
    struct decoder *d = NULL;
    uint8_t px[SIDE * SIDE];
    char err[CWT_ERRLEN];
    double t0, took;
    int rc;

    (void)state;
    assert_int_equal(decoder_open(&d), 0);
    rc = decoder_decode_file(d, good_path, SIDE, SIDE, 1, px, err, sizeof(err));
    if (rc != 0)
        fail_msg("the good file before: %s", err);

    t0 = cwt_monotonic();
    rc = decoder_decode_file(d, spin_path, SIDE, SIDE, 1, px, err, sizeof(err));
    took = cwt_monotonic() - t0;
    print_message("spinning file: %s (after %.1f s)\n", err, took);
    assert_int_equal(rc, CWT_EDECODE);
    assert_non_null(strstr(err, "decoder timed out on"));
    assert_non_null(strstr(err, spin_path));
    assert_true(took >= LIMIT_S - 0.5);
    assert_true(took < LIMIT_S + SLACK_S);

    /* A fresh child for the next file. */
    rc = decoder_decode_file(d, good_path, SIDE, SIDE, 1, px, err, sizeof(err));
    if (rc != 0)
        fail_msg("the good file after the timeout: %s", err);
    decoder_close(d);
    /* No child left behind: the killed one was reaped, the last one by decoder_close. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_ingest_goes_on_past_a_spinning_file(void **state)
{
    struct ingest_options opt = {.split_mode = INGEST_SPLIT_DEFAULT};
    struct ingest_summary sum;
    struct cwt_recipe recipe;
    struct store *st = NULL;
    const char *inputs[1] = {images};
    char dir[PATH_MAX + 16], err[CWT_ERRLEN], *report = NULL;
    size_t report_len = 0;
    FILE *rep;

    (void)state;
    recipe_defaults(&recipe);
    recipe.input_h = recipe.input_w = SIDE;
    recipe.input_c = 1;
    recipe.classes = 2;
    snprintf(dir, sizeof(dir), "%s/store", root);
    if (store_open(dir, STORE_CREATE, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    assert_int_equal(store_set_shape(st, SIDE, SIDE, 1), 0);
    rep = open_memstream(&report, &report_len);
    assert_non_null(rep);
    opt.report = rep;
    if (ingest_run(st, &recipe, inputs, 1, &opt, &sum, err, sizeof(err)) != 0)
        fail_msg("ingest_run: %s", err);
    assert_int_equal(fclose(rep), 0);
    print_message("%s", report);
    assert_int_equal(sum.items, 2 * PER_CLASS + 1);
    assert_int_equal(sum.ingested, 2 * PER_CLASS);
    assert_int_equal(sum.rejected, 1);
    assert_int_equal(sum.reasons[INGEST_R_CORRUPT], 1);
    assert_non_null(strstr(report, "img-01-spin.png"));
    assert_non_null(strstr(report, "timed out"));
    free(report);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spinning_file_times_out_and_next_file_decodes),
        cmocka_unit_test(test_ingest_goes_on_past_a_spinning_file),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
