/*
 * test_config_finetune.c - recipe.finetune and the augment_* keys of recipe.train: parsed
 * values, a save/load round trip with an equal fingerprint, a fingerprint that changes with
 * every setting but not with settings left at their defaults (old rosters keep theirs), and
 * out-of-range values refused with the key's name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "config/config.h"
#include "tests/test_tmp.h"

static char tmpdir[PATH_MAX];
static char keyline[256];

static int setup(void **state)
{
    uint8_t spk[32], ssk[64], bpk[32], bsk[32];
    char err[CWT_ERRLEN];

    (void)state;
    if (sodium_init() < 0)
        return -1;
    crypto_sign_keypair(spk, ssk);
    crypto_box_keypair(bpk, bsk);
    if (keyline_format("site-a", spk, bpk, keyline, sizeof(keyline), NULL) != 0)
        return -1;
    if (test_tmp_path(tmpdir, sizeof(tmpdir), "test_config_finetune") != 0)
        return -1;
    return file_mkdir_p(tmpdir, 0700, err, sizeof(err));
}

static int teardown(void **state)
{
    (void)state;
    return test_tmp_remove(tmpdir) == 0 ? 0 : -1;
}

/* Writes a roster whose recipe has model `model` and the extra text in recipe.train and in
 * recipe, and loads it into r; returns roster_load's code (err filled). */
static int load(const char *model, const char *train, const char *recipe, struct cwt_roster *r,
                char *err, size_t errlen)
{
    char path[PATH_MAX], text[4096], e2[CWT_ERRLEN];

    snprintf(path, sizeof(path), "%s/roster.conf", tmpdir);
    snprintf(text, sizeof(text),
             "federation = \"fed\";\nsites = ( { id = \"site-a\"; key = \"%s\"; } );\n"
             "recipe = {\n  model = { %s };\n  classes = 3;\n  train = { %s };\n  %s\n};\n",
             keyline, model, train, recipe);
    unlink(path);
    assert_int_equal(file_write_atomic(path, text, strlen(text), 0644, e2, sizeof(e2)), 0);
    return roster_load(path, r, err, errlen);
}

static void fp_of(const char *model, const char *train, const char *recipe, uint8_t fp[32])
{
    struct cwt_roster *r = calloc(1, sizeof(*r));
    char err[CWT_ERRLEN];

    assert_non_null(r);
    if (load(model, train, recipe, r, err, sizeof(err)) != 0)
        fail_msg("roster refused: %s", err);
    assert_int_equal(roster_fingerprint(r, fp), 0);
    free(r);
}

#define RESNET "name = \"resnet\"; depth = 18;"

static void test_values_and_round_trip(void **state)
{
    struct cwt_roster *r = calloc(1, sizeof(*r)), *r2 = calloc(1, sizeof(*r2));
    char err[CWT_ERRLEN], path[PATH_MAX];
    uint8_t fp1[32], fp2[32];

    (void)state;
    assert_non_null(r);
    assert_non_null(r2);
    assert_int_equal(load(RESNET,
                          "augment_vflip = true; augment_resized_crop = true; "
                          "augment_crop_scale = [0.25, 1.0]; augment_crop_ratio = [0.5, 2.0]; "
                          "augment_rotate = 12.5; augment_brightness = 0.2; "
                          "augment_contrast = 0.3;",
                          "finetune = { freeze_stages = 5; backbone_lr_scale = 0.1; };", r, err,
                          sizeof(err)),
                     0);
    assert_true(r->recipe.augment_vflip && r->recipe.augment_resized_crop);
    assert_true(r->recipe.augment_crop_scale[0] == 0.25 && r->recipe.augment_crop_scale[1] == 1.0);
    assert_true(r->recipe.augment_crop_ratio[0] == 0.5 && r->recipe.augment_crop_ratio[1] == 2.0);
    assert_true(r->recipe.augment_rotate == 12.5);
    assert_true(r->recipe.augment_brightness == 0.2 && r->recipe.augment_contrast == 0.3);
    assert_int_equal(r->recipe.freeze_stages, 5);
    assert_true(r->recipe.backbone_lr_scale == 0.1);
    assert_int_equal(roster_fingerprint(r, fp1), 0);
    snprintf(path, sizeof(path), "%s/saved.conf", tmpdir);
    assert_int_equal(roster_save(path, r, err, sizeof(err)), 0);
    assert_int_equal(roster_load(path, r2, err, sizeof(err)), 0);
    assert_int_equal(roster_fingerprint(r2, fp2), 0);
    assert_memory_equal(fp1, fp2, 32);
    assert_memory_equal(&r->recipe, &r2->recipe, sizeof(r->recipe));
    /* Defaults without the keys: off, torchvision's crop ranges, lr scale 1. */
    assert_int_equal(load(RESNET, "", "", r, err, sizeof(err)), 0);
    assert_false(r->recipe.augment_vflip || r->recipe.augment_resized_crop);
    assert_true(r->recipe.augment_crop_scale[0] == 0.08 &&
                r->recipe.augment_crop_ratio[1] == 4.0 / 3.0);
    assert_int_equal(r->recipe.freeze_stages, 0);
    assert_true(r->recipe.backbone_lr_scale == 1.0);
    free(r);
    free(r2);
}

static void test_fingerprint(void **state)
{
    static const char *const train[] = {
        "augment_vflip = true;",
        "augment_resized_crop = true;",
        "augment_resized_crop = true; augment_crop_scale = [0.5, 1.0];",
        "augment_resized_crop = true; augment_crop_ratio = [0.5, 1.5];",
        "augment_rotate = 5;",
        "augment_brightness = 0.1;",
        "augment_contrast = 0.1;",
    };
    static const char *const recipe[] = {
        "finetune = { freeze_stages = 1; };",
        "finetune = { freeze_stages = 2; };",
        "finetune = { backbone_lr_scale = 0.5; };",
    };
    uint8_t base[32], fp[32], seen[16][32];
    size_t n = 0;

    (void)state;
    fp_of(RESNET, "", "", base);
    /* Settings at their defaults are the roster from before the keys existed. */
    fp_of(RESNET,
          "augment_vflip = false; augment_rotate = 0; augment_brightness = 0.0; "
          "augment_contrast = 0; augment_crop_scale = [0.08, 1.0];",
          "finetune = { freeze_stages = 0; backbone_lr_scale = 1.0; };", fp);
    assert_memory_equal(base, fp, 32);
    for (size_t i = 0; i < sizeof(train) / sizeof(train[0]); i++) {
        fp_of(RESNET, train[i], "", seen[n]);
        assert_memory_not_equal(base, seen[n], 32);
        for (size_t j = 0; j < n; j++)
            assert_memory_not_equal(seen[j], seen[n], 32);
        n++;
    }
    for (size_t i = 0; i < sizeof(recipe) / sizeof(recipe[0]); i++) {
        fp_of(RESNET, "", recipe[i], seen[n]);
        assert_memory_not_equal(base, seen[n], 32);
        for (size_t j = 0; j < n; j++)
            assert_memory_not_equal(seen[j], seen[n], 32);
        n++;
    }
}

static void test_bad_values(void **state)
{
    static const struct {
        const char *model, *train, *recipe, *want;
    } bad[] = {
        {"name = \"cnn-small\";", "", "finetune = { freeze_stages = 1; };", "needs a resnet"},
        {"name = \"resnet\"; depth = 8;", "", "finetune = { freeze_stages = 5; };",
         "recipe.finetune.freeze_stages: expected 0 to 4 for resnet-8"},
        {RESNET, "", "finetune = { freeze_stages = 6; };", "recipe.finetune.freeze_stages"},
        {RESNET, "", "finetune = { freeze_stages = -1; };", "recipe.finetune.freeze_stages"},
        {RESNET, "", "finetune = { backbone_lr_scale = -0.5; };",
         "recipe.finetune.backbone_lr_scale"},
        {RESNET, "", "finetune = { backbone_lr_scale = \"low\"; };",
         "recipe.finetune.backbone_lr_scale: expected a number"},
        {RESNET, "", "finetune = { freeze = 1; };", "recipe.finetune"},
        {RESNET, "", "finetune = 1;", "recipe.finetune"},
        {RESNET, "augment_crop_scale = [0.5, 0.2];", "", "recipe.train.augment_crop_scale"},
        {RESNET, "augment_crop_scale = [0.0, 1.0];", "", "recipe.train.augment_crop_scale"},
        {RESNET, "augment_crop_scale = [0.5, 1.5];", "", "recipe.train.augment_crop_scale"},
        {RESNET, "augment_crop_scale = 0.5;", "", "recipe.train.augment_crop_scale"},
        {RESNET, "augment_crop_ratio = [0.5, 1.0, 2.0];", "", "recipe.train.augment_crop_ratio"},
        {RESNET, "augment_crop_ratio = (\"a\", 1.0);", "", "recipe.train.augment_crop_ratio"},
        {RESNET, "augment_resized_crop = true; augment_crop_pad = 4;", "",
         "cannot be combined with augment_crop_pad"},
        {RESNET, "augment_rotate = 181;", "", "recipe.train.augment_rotate"},
        {RESNET, "augment_rotate = -5;", "", "recipe.train.augment_rotate"},
        {RESNET, "augment_brightness = 1.01;", "", "recipe.train.augment_brightness"},
        {RESNET, "augment_contrast = -0.1;", "", "recipe.train.augment_contrast"},
        {RESNET, "augment_vflip = 1;", "", "recipe.train.augment_vflip: expected true or false"},
    };
    struct cwt_roster *r = calloc(1, sizeof(*r));
    char err[CWT_ERRLEN];

    (void)state;
    assert_non_null(r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (load(bad[i].model, bad[i].train, bad[i].recipe, r, err, sizeof(err)) != CWT_ECONFIG)
            fail_msg("case %zu accepted: %s %s", i, bad[i].train, bad[i].recipe);
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("case %zu said '%s', expected '%s'", i, err, bad[i].want);
        assert_non_null(strstr(err, "roster.conf:")); /* file and line */
    }
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_and_round_trip),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_bad_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
