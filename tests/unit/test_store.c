/*
 * test_store.c - the store core: image round trips, the split/label index, counts, meta,
 * the input shape, idempotent sources, batches that abort, read-only reopening, and per-image
 * metadata (round trip, value rules, stores made before it stay readable).
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
#include <lmdb.h>

#include "common/fileio.h"
#include "storage/store.h"
#include "tests/test_tmp.h"

#define H 4
#define W 5
#define C 3

struct fixture {
    char root[1024];
    char dir[1100];
    unsigned seed;
};

static int setup(void **state)
{
    static struct fixture fx;
    char err[CWT_ERRLEN];

    if (test_tmp_path(fx.root, sizeof(fx.root), "test_store") != 0)
        return -1;
    snprintf(fx.dir, sizeof(fx.dir), "%s/store", fx.root);
    if (file_mkdir_p(fx.dir, 0700, err, sizeof(err)) != 0)
        return -1;
    fx.seed = (unsigned)getpid();
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    return test_tmp_remove(fx->root) == 0 ? 0 : -1;
}

static struct store *open_store(struct fixture *fx, int flags)
{
    struct store *st = NULL;
    char err[CWT_ERRLEN];
    int rc = store_open(fx->dir, flags, 64u << 20, &st, err, sizeof(err));
    if (rc != 0)
        fail_msg("store_open: %s", err);
    return st;
}

/* Image i: its pixels, label and split follow from i, so reads can be checked. */
static void make_image(uint32_t i, struct store_image_hdr *hdr, uint8_t *px)
{
    memset(hdr, 0, sizeof(*hdr));
    hdr->label = i % 4;
    hdr->split = (uint8_t)(i % 3);
    hdr->h = H;
    hdr->w = W;
    hdr->c = C;
    memcpy(hdr->source_hash, &i, sizeof(i)); /* distinct per i */
    hdr->source_hash[31] = 0x5a;
    for (size_t k = 0; k < H * W * C; k++)
        px[k] = (uint8_t)(i * 7 + k);
}

static void put_images(struct store *st, uint32_t from, uint32_t to)
{
    struct store_batch *b;
    struct store_image_hdr hdr;
    uint8_t px[H * W * C];

    assert_int_equal(store_batch_begin(st, &b), 0);
    for (uint32_t i = from; i < to; i++) {
        make_image(i, &hdr, px);
        assert_int_equal(store_put_image(b, &hdr, px, NULL), 0);
    }
    assert_int_equal(store_batch_commit(b), 0);
}

static void test_round_trip_and_index(void **state)
{
    struct fixture *fx = *state;
    struct store *st = open_store(fx, STORE_CREATE);
    struct store_image_hdr hdr, want;
    uint8_t px[H * W * C];
    const uint8_t *got;
    uint64_t *ids;
    size_t n, total = 0;

    assert_int_equal(store_set_shape(st, H, W, C), 0);
    put_images(st, 0, 100);
    put_images(st, 100, 150);
    assert_int_equal(store_read_begin(st), 0);
    assert_int_equal(store_read_begin(st), CWT_ESTATE); /* no nesting */
    for (int s = 0; s < STORE_NSPLITS; s++) {
        assert_int_equal(store_list(st, (enum store_split)s, &ids, &n), 0);
        total += n;
        for (size_t k = 0; k < n; k++) {
            if (k > 0)
                assert_true(ids[k] > ids[k - 1]); /* ascending */
            assert_int_equal(store_get_image(st, ids[k], &hdr, &got), 0);
            /* Ids start at 1 and follow insertion order. */
            make_image((uint32_t)(ids[k] - 1), &want, px);
            assert_int_equal(hdr.split, s);
            assert_int_equal(hdr.label, want.label);
            assert_int_equal(hdr.h, H);
            assert_int_equal(hdr.w, W);
            assert_int_equal(hdr.c, C);
            assert_memory_equal(hdr.source_hash, want.source_hash, 32);
            assert_memory_equal(got, px, sizeof(px));
        }
        free(ids);
    }
    assert_int_equal(total, 150);
    assert_int_equal(store_list_label(st, STORE_VAL, 2, &ids, &n), 0);
    /* i % 3 == 1 and i % 4 == 2: i = 10, 22, ..., i.e. i % 12 == 10 */
    assert_int_equal(n, 12);
    for (size_t k = 0; k < n; k++)
        assert_int_equal((ids[k] - 1) % 12, 10);
    free(ids);
    assert_int_equal(store_get_image(st, 9999, &hdr, &got), CWT_ENOENT);
    store_read_end(st);
    assert_int_equal(store_get_image(st, 1, &hdr, &got), CWT_ESTATE);
    store_close(st);
}

static void test_counts(void **state)
{
    struct fixture *fx = *state;
    struct store *st = open_store(fx, STORE_CREATE);
    uint64_t(*counts)[CWT_MAX_CLASSES] = calloc(STORE_NSPLITS, sizeof(*counts));
    uint64_t expect[STORE_NSPLITS][4] = {{0}};

    assert_non_null(counts);
    assert_int_equal(store_set_shape(st, H, W, C), 0);
    put_images(st, 0, 123);
    for (uint32_t i = 0; i < 123; i++)
        expect[i % 3][i % 4]++;
    assert_int_equal(store_counts(st, CWT_MAX_CLASSES, counts), 0);
    for (int s = 0; s < STORE_NSPLITS; s++)
        for (int l = 0; l < 4; l++)
            assert_int_equal(counts[s][l], expect[s][l]);
    /* Labels at or over max_labels are left out. */
    assert_int_equal(store_counts(st, 2, counts), 0);
    assert_int_equal(counts[0][2], 0);
    assert_int_equal(counts[0][0], expect[0][0]);
    free(counts);
    store_close(st);
}

static void test_duplicate_sources(void **state)
{
    struct fixture *fx = *state;
    struct store *st = open_store(fx, STORE_CREATE);
    struct store_batch *b, *second;
    struct store_image_hdr hdr;
    uint8_t px[H * W * C];
    uint64_t id;

    assert_int_equal(store_set_shape(st, H, W, C), 0);
    make_image(7, &hdr, px);
    assert_int_equal(store_has_source(st, hdr.source_hash), 0);
    assert_int_equal(store_batch_begin(st, &b), 0);
    assert_int_equal(store_batch_begin(st, &second), CWT_ESTATE); /* one at a time */
    assert_int_equal(store_put_image(b, &hdr, px, &id), 0);
    assert_int_equal(id, 1);
    /* The same content again in the same batch, even with another label. */
    hdr.label = 3;
    assert_int_equal(store_put_image(b, &hdr, px, NULL), CWT_EDUPLICATE);
    assert_int_equal(store_batch_commit(b), 0);
    assert_int_equal(store_has_source(st, hdr.source_hash), 1);
    assert_int_equal(store_batch_begin(st, &b), 0);
    assert_int_equal(store_put_image(b, &hdr, px, NULL), CWT_EDUPLICATE);
    /* A wrong shape is refused. */
    make_image(8, &hdr, px);
    hdr.w = W + 1;
    assert_int_equal(store_put_image(b, &hdr, px, NULL), CWT_EINVAL);
    store_batch_abort(b);
    store_close(st);
}

static void test_abort_stores_nothing(void **state)
{
    struct fixture *fx = *state;
    struct store *st = open_store(fx, STORE_CREATE);
    struct store_batch *b;
    struct store_image_hdr hdr;
    uint8_t px[H * W * C];
    uint64_t *ids;
    size_t n;

    assert_int_equal(store_set_shape(st, H, W, C), 0);
    assert_int_equal(store_batch_begin(st, &b), 0);
    for (uint32_t i = 0; i < 20; i++) {
        make_image(i, &hdr, px);
        assert_int_equal(store_put_image(b, &hdr, px, NULL), 0);
    }
    store_batch_abort(b);
    make_image(0, &hdr, px);
    assert_int_equal(store_has_source(st, hdr.source_hash), 0);
    assert_int_equal(store_list(st, STORE_TRAIN, &ids, &n), 0);
    assert_int_equal(n, 0);
    free(ids);
    store_close(st);
}

static void test_shape_and_meta(void **state)
{
    struct fixture *fx = *state;
    struct store *st = open_store(fx, STORE_CREATE);
    struct store_batch *b;
    uint32_t h, w, c;
    char buf[16];
    size_t len;

    assert_int_equal(store_get_shape(st, &h, &w, &c), CWT_ENOENT);
    assert_int_equal(store_batch_begin(st, &b), CWT_ESTATE); /* no shape yet */
    assert_int_equal(store_set_shape(st, 0, 1, 1), CWT_EINVAL);
    assert_int_equal(store_set_shape(st, 28, 28, 1), 0);
    assert_int_equal(store_set_shape(st, 28, 28, 1), 0);
    assert_int_equal(store_set_shape(st, 32, 32, 3), CWT_ESTATE);
    assert_int_equal(store_get_shape(st, &h, &w, &c), 0);
    assert_int_equal(h, 28);
    assert_int_equal(w, 28);
    assert_int_equal(c, 1);

    assert_int_equal(store_meta_get(st, "greeting", buf, sizeof(buf), &len), CWT_ENOENT);
    assert_int_equal(store_meta_put(st, "greeting", "hello", 5), 0);
    assert_int_equal(store_meta_get(st, "greeting", buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(store_meta_get(st, "greeting", buf, 2, &len), CWT_ETOOBIG);
    assert_int_equal(len, 5);
    assert_int_equal(store_meta_put(st, "", "x", 1), CWT_EINVAL);
    store_close(st);
}

static void test_reopen_read_only(void **state)
{
    struct fixture *fx = *state;
    struct store *st = open_store(fx, STORE_CREATE), *ro, *missing = NULL;
    struct store_batch *b;
    struct store_image_hdr hdr, want;
    uint8_t px[H * W * C];
    const uint8_t *got;
    char err[CWT_ERRLEN], other[1100];
    uint64_t bytes;

    assert_int_equal(store_set_shape(st, H, W, C), 0);
    put_images(st, 0, 10);
    store_close(st);

    ro = open_store(fx, STORE_RDONLY);
    assert_int_equal(store_batch_begin(ro, &b), CWT_EPERM);
    assert_int_equal(store_meta_put(ro, "k", "v", 1), CWT_EPERM);
    assert_int_equal(store_read_begin(ro), 0);
    assert_int_equal(store_get_image(ro, 4, &hdr, &got), 0);
    make_image(3, &want, px);
    assert_memory_equal(got, px, sizeof(px));
    store_read_end(ro);
    assert_int_equal(store_disk_bytes(ro, &bytes), 0);
    assert_true(bytes > 0);
    store_close(ro);

    /* Read-only never creates: a folder without a store is CWT_ENOENT. */
    snprintf(other, sizeof(other), "%s/empty", fx->dir);
    assert_int_equal(file_mkdir_p(other, 0700, err, sizeof(err)), 0);
    assert_int_equal(store_open(other, STORE_RDONLY, 0, &missing, err, sizeof(err)), CWT_ENOENT);
    assert_null(missing);

    /* An empty data.mdb (the creator between its open and its first header write) is
     * "no store yet" too. */
    {
        char datafile[1200];
        FILE *f;

        snprintf(datafile, sizeof(datafile), "%s/data.mdb", other);
        assert_non_null(f = fopen(datafile, "w"));
        assert_int_equal(fclose(f), 0);
        assert_int_equal(store_open(other, STORE_RDONLY, 0, &missing, err, sizeof(err)),
                         CWT_ENOENT);
        assert_null(missing);
        assert_int_equal(unlink(datafile), 0);
    }

    /* An environment whose creator was killed before its first commit (data.mdb exists, no
     * databases) is still "no store yet" to a reader, not a damaged store. */
    {
        MDB_env *env;
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
        assert_int_equal(mdb_env_open(env, other, 0, 0600), 0);
        mdb_env_close(env);
    }
    assert_int_equal(store_open(other, STORE_RDONLY, 0, &missing, err, sizeof(err)), CWT_ENOENT);
    assert_non_null(strstr(err, "nothing ingested yet"));
    assert_null(missing);
}

static int count_meta(uint64_t id, const struct store_imeta *m, void *ctx)
{
    uint64_t *n = ctx;
    assert_true(id % 2 == 1);
    assert_string_equal(store_imeta_get(m, "site"), id % 4 == 1 ? "north" : "süd");
    (*n)++;
    return 0;
}

static void test_image_meta(void **state)
{
    struct fixture *fx = *state;
    struct store *st = open_store(fx, STORE_CREATE), *ro;
    struct store_batch *b;
    struct store_image_hdr hdr;
    struct store_imeta m, got;
    uint8_t px[H * W * C], enc[STORE_IMETA_BYTES_MAX];
    const uint8_t *pixels;
    char long_value[STORE_IMETA_VALUE_MAX + 2];
    size_t len;
    uint64_t id, n = 0;

    /* Value and name rules. */
    memset(long_value, 'x', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    assert_int_equal(store_imeta_value_check("Zürich 3"), 0);
    assert_int_equal(store_imeta_value_check(long_value), CWT_ETOOBIG);
    long_value[STORE_IMETA_VALUE_MAX] = '\0';
    assert_int_equal(store_imeta_value_check(long_value), 0);
    assert_int_equal(store_imeta_value_check(""), CWT_EINVAL);
    assert_int_equal(store_imeta_value_check("a\tb"), CWT_EPERM);
    assert_int_equal(store_imeta_value_check("a\x7f"), CWT_EPERM);
    assert_int_equal(store_imeta_value_check("a\xc2\x85"), CWT_EPERM); /* C1 NEL */
    assert_int_equal(store_imeta_value_check("\xff"), CWT_EFORMAT);
    assert_int_equal(store_imeta_value_check("\xc0\xaf"), CWT_EFORMAT);     /* overlong */
    assert_int_equal(store_imeta_value_check("\xed\xa0\x80"), CWT_EFORMAT); /* surrogate */
    assert_int_equal(store_imeta_value_check("\xe2\x82"), CWT_EFORMAT);     /* truncated */
    assert_true(store_imeta_name_ok("site_id-2.b"));
    assert_false(store_imeta_name_ok("site id"));
    assert_false(store_imeta_name_ok(""));

    /* Encoding: names sorted, a round trip, malformed buffers refused. */
    memset(&m, 0, sizeof(m));
    assert_int_equal(store_imeta_set(&m, "site", "north"), 0);
    assert_int_equal(store_imeta_set(&m, "scanner", "X1"), 0);
    assert_int_equal(store_imeta_set(&m, "site", "again"), CWT_EEXIST);
    assert_string_equal(m.kv[0].name, "scanner");
    assert_int_equal(store_imeta_encode(&m, enc, sizeof(enc), &len), 0);
    assert_int_equal(store_imeta_decode(enc, len, &got), 0);
    assert_int_equal(got.n, 2);
    assert_string_equal(store_imeta_get(&got, "site"), "north");
    assert_int_equal(store_imeta_decode(enc, len - 1, &got), CWT_ESTORE);
    enc[0] = 0;
    assert_int_equal(store_imeta_decode(enc, len, &got), CWT_ESTORE);

    /* Odd images get a site; even ones none. */
    assert_int_equal(store_set_shape(st, H, W, C), 0);
    assert_int_equal(store_batch_begin(st, &b), 0);
    for (uint32_t i = 0; i < 8; i++) {
        make_image(i, &hdr, px);
        assert_int_equal(store_put_image(b, &hdr, px, &id), 0);
        memset(&m, 0, sizeof(m));
        if (id % 2 == 1)
            assert_int_equal(store_imeta_set(&m, "site", id % 4 == 1 ? "north" : "süd"), 0);
        assert_int_equal(store_put_image_meta(b, id, &m), 0);
    }
    assert_int_equal(store_batch_commit(b), 0);
    store_close(st);
    ro = open_store(fx, STORE_RDONLY);
    assert_int_equal(store_read_begin(ro), 0);
    assert_int_equal(store_get_image_meta(ro, 3, &got), 0);
    assert_string_equal(store_imeta_get(&got, "site"), "süd");
    assert_int_equal(store_get_image_meta(ro, 2, &got), 0);
    assert_int_equal(got.n, 0);
    assert_int_equal(store_each_image_meta(ro, count_meta, &n), 0);
    assert_int_equal(n, 4);
    store_read_end(ro);
    store_close(ro);

    /* A store made before metadata existed (no imeta database) opens read-only, its images
     * without metadata; opening it read-write adds the database. */
    {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
        assert_int_equal(mdb_env_set_mapsize(env, 64u << 20), 0);
        assert_int_equal(mdb_env_open(env, fx->dir, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "imeta", 0, &dbi), 0);
        assert_int_equal(mdb_drop(txn, dbi, 1), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
    }
    ro = open_store(fx, STORE_RDONLY);
    assert_int_equal(store_read_begin(ro), 0);
    assert_int_equal(store_get_image(ro, 3, &hdr, &pixels), 0);
    assert_int_equal(store_get_image_meta(ro, 3, &got), 0);
    assert_int_equal(got.n, 0);
    n = 0;
    assert_int_equal(store_each_image_meta(ro, count_meta, &n), 0);
    assert_int_equal(n, 0);
    store_read_end(ro);
    store_close(ro);
    st = open_store(fx, STORE_CREATE);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_and_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shape_and_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_meta, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
