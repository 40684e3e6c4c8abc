/*
 * test_visit_resume.c - the rule by which cwtd's trainer resumes a visit checkpoint
 * (store_visit_begin, storage/store.h): this visit's checkpoint or none. A job keeps its own
 * visit's records only when they were made from the same input weights (their recorded
 * BLAKE2b-256 equals the job's); a checkpoint with another input hash (an earlier run's with
 * the same cycle and hop) or with none (written by an older cwtd) is deleted, not resumed;
 * every other visit's records go at the start of every job; nothing else is touched. Run on
 * a trainer's handle (STORE_TRAINER), as in cwtd.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cwt.h"
#include "storage/store.h"
#include "tests/test_tmp.h"

struct fx {
    char dir[PATH_MAX];
    struct store *st;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct store *st = NULL;
    char err[CWT_ERRLEN];

    if (fx == NULL)
        return -1;
    if (test_tmp_path(fx->dir, sizeof(fx->dir), "test_visit_resume") != 0) {
        free(fx);
        return -1;
    }
    /* Made as cwtd's monitor makes it, then held as its trainer holds it. */
    if (store_open(fx->dir, STORE_CREATE | STORE_MONITOR, 64u << 20, &st, err, sizeof(err)) != 0 ||
        store_model_put(st, "cwtd.input", "in", 2) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        free(fx);
        return -1;
    }
    store_close(st);
    if (store_open(fx->dir, STORE_TRAINER, 64u << 20, &fx->st, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    int rc;

    store_close(fx->st);
    rc = test_tmp_remove(fx->dir);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static int has(struct store *st, const char *name)
{
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc = store_model_get(st, name, &blob, &len);

    free(blob);
    assert_true(rc == 0 || rc == CWT_ENOENT);
    return rc == 0;
}

/* What a training job writes during visit name: its checkpoint, swt's best and plateau. */
static void train_some(struct store *st, const char *name)
{
    char sub[96];

    assert_int_equal(store_model_put(st, name, "ckpt", 4), 0);
    snprintf(sub, sizeof(sub), "%s.best", name);
    assert_int_equal(store_model_put(st, sub, "best", 4), 0);
    snprintf(sub, sizeof(sub), "%s.plateau", name);
    assert_int_equal(store_model_put(st, sub, "epoch=1", 7), 0);
}

static void test_same_input_resumes(void **state)
{
    struct fx *fx = *state;
    uint8_t h1[32];
    int resume = -1;

    memset(h1, 1, sizeof(h1));
    assert_int_equal(store_visit_begin(fx->st, "cwtd.visit.c1.h1", h1, &resume), 0);
    assert_int_equal(resume, 0); /* nothing to resume yet */
    train_some(fx->st, "cwtd.visit.c1.h1");

    /* Killed and started again with the same input: its own checkpoint is resumed. */
    assert_int_equal(store_visit_begin(fx->st, "cwtd.visit.c1.h1", h1, &resume), 0);
    assert_int_equal(resume, 1);
    assert_true(has(fx->st, "cwtd.visit.c1.h1"));
    assert_true(has(fx->st, "cwtd.visit.c1.h1.best"));
    assert_true(has(fx->st, "cwtd.visit.c1.h1.plateau"));
}

static void test_other_input_is_deleted_not_resumed(void **state)
{
    struct fx *fx = *state;
    uint8_t h1[32], h2[32], *blob = NULL;
    size_t len = 0;
    int resume = -1;

    memset(h1, 1, sizeof(h1));
    memset(h2, 2, sizeof(h2));
    assert_int_equal(store_visit_begin(fx->st, "cwtd.visit.c2.h1", h1, &resume), 0);
    train_some(fx->st, "cwtd.visit.c2.h1");

    /* A job of the same cycle and hop from other weights (a stale checkpoint of an earlier
     * run): its records go and the new input's hash is recorded. */
    assert_int_equal(store_visit_begin(fx->st, "cwtd.visit.c2.h1", h2, &resume), 0);
    assert_int_equal(resume, 0);
    assert_false(has(fx->st, "cwtd.visit.c2.h1"));
    assert_false(has(fx->st, "cwtd.visit.c2.h1.best"));
    assert_false(has(fx->st, "cwtd.visit.c2.h1.plateau"));
    assert_int_equal(store_model_get(fx->st, "cwtd.visit.c2.h1.input", &blob, &len), 0);
    assert_int_equal(len, 32);
    assert_memory_equal(blob, h2, 32);
    free(blob);

    /* The first input again is another input too: no mix of the two. */
    train_some(fx->st, "cwtd.visit.c2.h1");
    assert_int_equal(store_visit_begin(fx->st, "cwtd.visit.c2.h1", h1, &resume), 0);
    assert_int_equal(resume, 0);
    assert_false(has(fx->st, "cwtd.visit.c2.h1"));
}

static void test_unrecorded_input_is_deleted(void **state)
{
    struct fx *fx = *state;
    uint8_t h[32];
    int resume = -1;

    /* A checkpoint written by a cwtd that did not record the input. */
    memset(h, 3, sizeof(h));
    train_some(fx->st, "cwtd.visit.c3.h1");
    assert_int_equal(store_visit_begin(fx->st, "cwtd.visit.c3.h1", h, &resume), 0);
    assert_int_equal(resume, 0);
    assert_false(has(fx->st, "cwtd.visit.c3.h1"));
    assert_false(has(fx->st, "cwtd.visit.c3.h1.best"));
}

static void test_other_visits_go_the_rest_stays(void **state)
{
    struct fx *fx = *state;
    uint8_t h[32];
    int resume = -1;

    memset(h, 4, sizeof(h));
    train_some(fx->st, "cwtd.visit.c0.h1");
    train_some(fx->st, "cwtd.visit.c4.h10"); /* shares "cwtd.visit.c4.h1" as a prefix */
    assert_int_equal(store_model_put(fx->st, "cwtd.layout", "layout", 6), 0);
    assert_int_equal(store_model_put(fx->st, "train.resume", "cwtctl", 6), 0);
    assert_int_equal(store_visit_begin(fx->st, "cwtd.visit.c4.h1", h, &resume), 0);
    train_some(fx->st, "cwtd.visit.c4.h1");

    assert_int_equal(store_visit_begin(fx->st, "cwtd.visit.c4.h1", h, &resume), 0);
    assert_int_equal(resume, 1);
    assert_false(has(fx->st, "cwtd.visit.c0.h1"));
    assert_false(has(fx->st, "cwtd.visit.c0.h1.plateau"));
    assert_false(has(fx->st, "cwtd.visit.c4.h10"));
    assert_false(has(fx->st, "cwtd.visit.c4.h10.best"));
    assert_false(has(fx->st, "cwtd.visit.c1.h1"));
    assert_true(has(fx->st, "cwtd.visit.c4.h1"));
    assert_true(has(fx->st, "cwtd.visit.c4.h1.best"));
    assert_true(has(fx->st, "cwtd.visit.c4.h1.input"));
    assert_true(has(fx->st, "cwtd.layout"));
    assert_true(has(fx->st, "train.resume"));
    assert_true(has(fx->st, "cwtd.input")); /* the monitor's, in main */
}

static void test_bad_names(void **state)
{
    struct fx *fx = *state;
    uint8_t h[32] = {0};
    int resume = -1;

    assert_int_equal(store_visit_begin(fx->st, "cwtd.visit.", h, &resume), CWT_EINVAL);
    assert_int_equal(store_visit_begin(fx->st, "cwtd.layout", h, &resume), CWT_EINVAL);
    assert_int_equal(store_visit_begin(fx->st, NULL, h, &resume), CWT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_input_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_input_is_deleted_not_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unrecorded_input_is_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_visits_go_the_rest_stays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
