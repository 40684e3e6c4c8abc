/*
 * test_safetensors.c - the strict safetensors reader and the writer: round trip, and each
 * malformed header refused with its reason (overlaps, out-of-range offsets, unknown dtype,
 * oversize header, overflowing shape, duplicate keys, holes, bad JSON), plus NaN/Inf checks
 * in memory and streamed from a file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "common/fileio.h"
#include "storage/safetensors.h"
#include "tests/test_tmp.h"

/* 8-byte length + json + data_len zero bytes; caller frees. */
static uint8_t *image(const char *json, size_t data_len, size_t *len)
{
    size_t j = strlen(json);
    uint8_t *buf = calloc(1, 8 + j + data_len + 1);

    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)j >> (8 * i));
    memcpy(buf + 8, json, j);
    *len = 8 + j + data_len;
    return buf;
}

static void expect_bad(const char *json, size_t data_len, int code, const char *needle)
{
    struct st_file f;
    char err[512] = "";
    size_t len;
    uint8_t *buf = image(json, data_len, &len);
    int rc = st_parse(buf, len, &f, err, sizeof(err));

    if (rc != code || strstr(err, needle) == NULL)
        fail_msg("%s: want %d with \"%s\", got %d: %s", json, code, needle, rc, err);
    free(buf);
}

/* A header of many tiny values is refused before a JSON tree is built for it: the reader's
 * memory stays bounded by the number of tensors it accepts, not by the header's size. */
static void test_value_bound(void **state)
{
    size_t n = 200000;
    char *json = malloc(n + 3);

    (void)state;
    assert_non_null(json);
    json[0] = '{';
    memset(json + 1, '[', n);
    json[n + 1] = '}';
    json[n + 2] = '\0';
    expect_bad(json, 0, CWT_ETOOBIG, "JSON values");
    free(json);
    /* Separators inside strings do not count. */
    {
        static const char ok[] = "{\"__metadata__\":{\"k\":\"[[[,,,:::{{{\"}}";
        struct st_file f;
        char err[512] = "";
        size_t len;
        uint8_t *buf = image(ok, 0, &len);
        assert_int_equal(st_parse(buf, len, &f, err, sizeof(err)), 0);
        assert_string_equal(f.meta[0].value, "[[[,,,:::{{{");
        st_free(&f);
        free(buf);
    }
}

static void test_round_trip(void **state)
{
    struct st_writer *w;
    struct st_file f;
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t b[2] = {-1, 7};
    uint64_t sa[2] = {2, 3}, sb[1] = {2};
    uint8_t *buf;
    size_t len;
    uint64_t hlen = 0;

    (void)state;
    assert_int_equal(st_writer_new(&w), 0);
    assert_int_equal(st_writer_add(w, "z.weight", ST_F32, 2, sa, a), 0);
    assert_int_equal(st_writer_add(w, "a.bias \"q\"", ST_I64, 1, sb, b), 0);
    assert_int_equal(st_writer_add(w, "z.weight", ST_F32, 2, sa, a), CWT_EEXIST);
    assert_int_equal(st_writer_meta(w, "format", "cwt-model-v1"), 0);
    assert_int_equal(st_writer_finish(w, &buf, &len), 0);
    st_writer_free(w);
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    assert_int_equal((8 + hlen) % 8, 0);
    assert_int_equal(st_parse(buf, len, &f, NULL, 0), 0);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.tensors[0].name, "a.bias \"q\""); /* sorted by name */
    assert_int_equal(f.tensors[0].begin, 0);                /* and laid out in that order */
    assert_int_equal(f.n_meta, 1);
    assert_string_equal(f.meta[0].value, "cwt-model-v1");
    int i = st_find(&f, "z.weight");
    assert_true(i >= 0);
    assert_int_equal(f.tensors[i].ndim, 2);
    assert_memory_equal(f.data + f.tensors[i].begin, a, sizeof(a));
    assert_int_equal(st_find(&f, "nope"), -1);
    assert_int_equal(st_check_finite(&f, NULL, 0), 0);
    st_free(&f);
    free(buf);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, CWT_EFORMAT, "overlaps");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, CWT_EFORMAT,
               "outside the data area");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, CWT_EFORMAT,
               "outside");
    expect_bad("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, CWT_EFORMAT,
               "unknown dtype");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,8]}}",
               8, CWT_EFORMAT, "overflows");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],"
               "\"data_offsets\":[0,8]}}",
               8, CWT_EFORMAT, "too large");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, CWT_EFORMAT,
               "need");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, CWT_EFORMAT,
               "cover 4 of 8");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, CWT_EFORMAT,
               "hole");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, CWT_EFORMAT, "twice");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],"
               "\"data_offsets\":[0,4]}}",
               4, CWT_EFORMAT, "duplicate key");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, CWT_EFORMAT, "lacks");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
               CWT_EFORMAT, "unknown field");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, CWT_EFORMAT,
               "integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, CWT_EFORMAT,
               "integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, CWT_EFORMAT,
               "leading zero");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
               "\"data_offsets\":[0,4]}}",
               4, CWT_EFORMAT, "more than 8");
    expect_bad("{} x", 0, CWT_EFORMAT, "trailing");
    expect_bad("{\"\\q\":1}", 0, CWT_EFORMAT, "unknown escape");
    expect_bad("{\"\xc0\xaf\":1}", 0, CWT_EFORMAT, "UTF-8");
    expect_bad("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, CWT_EFORMAT, "duplicate");
    expect_bad("{\"__metadata__\":{\"k\":{}}}", 0, CWT_EFORMAT, "expected '\"'");
    expect_bad("[", 0, CWT_EFORMAT, "expected '{'");
    {
        /* Header length beyond the limit, and beyond the file. */
        uint8_t buf[16] = {0};
        struct st_file f;
        char err[256];
        uint64_t big = (uint64_t)ST_MAX_HEADER + 1;
        for (int i = 0; i < 8; i++)
            buf[i] = (uint8_t)(big >> (8 * i));
        assert_int_equal(st_parse(buf, sizeof(buf), &f, err, sizeof(err)), CWT_ETOOBIG);
        assert_non_null(strstr(err, "exceeds"));
        buf[0] = 100;
        buf[1] = buf[2] = buf[3] = 0;
        assert_int_equal(st_parse(buf, sizeof(buf), &f, err, sizeof(err)), CWT_EFORMAT);
        assert_int_equal(st_parse(buf, 5, &f, err, sizeof(err)), CWT_EFORMAT);
    }
}

static void test_finite(void **state)
{
    struct st_writer *w;
    struct st_file f;
    float v[300000];
    uint16_t h[4] = {0x3c00, 0x7c00, 0, 0}; /* F16 1.0, +Inf */
    uint64_t shape[1] = {300000}, sh[1] = {4};
    uint8_t *buf;
    size_t len;
    char err[256], dir[512], path[600];

    (void)state;
    for (size_t i = 0; i < 300000; i++)
        v[i] = (float)i;
    v[299999] = NAN;
    assert_int_equal(st_writer_new(&w), 0);
    assert_int_equal(st_writer_add(w, "big", ST_F32, 1, shape, v), 0);
    assert_int_equal(st_writer_finish(w, &buf, &len), 0);
    st_writer_free(w);
    assert_int_equal(st_parse(buf, len, &f, NULL, 0), 0);
    assert_int_equal(st_check_finite(&f, err, sizeof(err)), CWT_ENUMERIC);
    assert_non_null(strstr(err, "element 299999"));
    st_free(&f);
    /* The streamed check reads the file in blocks and finds the same element. */
    assert_int_equal(test_tmp_path(dir, sizeof(dir), "test_safetensors"), 0);
    assert_int_equal(file_mkdir_p(dir, 0700, NULL, 0), 0);
    snprintf(path, sizeof(path), "%s/finite.safetensors", dir);
    assert_int_equal(file_write_atomic(path, buf, len, 0600, NULL, 0), 0);
    assert_int_equal(st_check_file(path, err, sizeof(err)), CWT_ENUMERIC);
    assert_non_null(strstr(err, "element 299999"));
    free(buf);
    assert_int_equal(st_writer_new(&w), 0);
    assert_int_equal(st_writer_add(w, "half", ST_F16, 1, sh, h), 0);
    assert_int_equal(st_writer_finish(w, &buf, &len), 0);
    st_writer_free(w);
    assert_int_equal(file_write_atomic(path, buf, len, 0600, NULL, 0), 0);
    assert_int_equal(st_check_file(path, err, sizeof(err)), CWT_ENUMERIC);
    assert_non_null(strstr(err, "element 1"));
    free(buf);
    assert_int_equal(test_tmp_remove(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_value_bound),
        cmocka_unit_test(test_finite),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
