/*
 * test_decode.c - PNG and JPEG decoding (images made here with libpng and libjpeg), the
 * resize filter and channel conversion, and bad input: empty files, truncated files, text
 * that calls itself a PNG, and a PNG header that declares 100000x100000 pixels.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <png.h>
#include <jpeglib.h>
#include <zlib.h>

#include "decode/decode.h"
#include "common/cwt.h"
#include "common/fileio.h"
#include "tests/test_tmp.h"

struct membuf {
    uint8_t *data;
    size_t len, cap;
};

static void png_write_mem(png_structp png, png_bytep data, size_t n)
{
    struct membuf *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        size_t cap = (m->len + n) * 2;
        uint8_t *grown = realloc(m->data, cap);
        if (grown == NULL)
            png_error(png, "out of memory");
        m->data = grown;
        m->cap = cap;
    }
    memcpy(m->data + m->len, data, n);
    m->len += n;
}

static void png_flush_mem(png_structp png)
{
    (void)png;
}

/* Writes a w x h PNG of the given type and depth; sample(x, y, ch) gives each sample
 * (0..65535 for 16-bit, palette index for palette images). */
static struct membuf make_png(uint32_t w, uint32_t h, int color, int depth,
                              unsigned (*sample)(uint32_t, uint32_t, int))
{
    struct membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    int channels = color == PNG_COLOR_TYPE_GRAY         ? 1
                   : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                   : color == PNG_COLOR_TYPE_RGB        ? 3
                   : color == PNG_COLOR_TYPE_RGBA       ? 4
                                                        : 1;
    size_t bps = depth == 16 ? 2 : 1;
    uint8_t *row = malloc((size_t)w * channels * bps);

    assert_non_null(png);
    assert_non_null(row);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng failed writing the test image");
    png_set_write_fn(png, &m, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, w, h, depth, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
        png_set_PLTE(png, info, pal, 4);
    }
    png_write_info(png, info);
    for (uint32_t y = 0; y < h; y++) {
        if (depth < 8) {
            /* 1-bit grey: pack eight pixels a byte, most significant first. */
            memset(row, 0, (w + 7) / 8);
            for (uint32_t x = 0; x < w; x++)
                if (sample(x, y, 0))
                    row[x / 8] |= (uint8_t)(0x80 >> (x % 8));
        } else {
            for (uint32_t x = 0; x < w; x++)
                for (int c = 0; c < channels; c++) {
                    unsigned v = sample(x, y, c);
                    if (bps == 2) {
                        row[(x * channels + c) * 2] = (uint8_t)(v >> 8);
                        row[(x * channels + c) * 2 + 1] = (uint8_t)v;
                    } else {
                        row[x * channels + c] = (uint8_t)v;
                    }
                }
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    return m;
}

static struct membuf make_jpeg(uint32_t w, uint32_t h, int components, uint8_t value)
{
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long outlen = 0;
    uint8_t *row = malloc((size_t)w * components);
    struct membuf m = {0};

    assert_non_null(row);
    memset(row, value, (size_t)w * components);
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &out, &outlen);
    cinfo.image_width = w;
    cinfo.image_height = h;
    cinfo.input_components = components;
    cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 95, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < h) {
        JSAMPROW r = row;
        jpeg_write_scanlines(&cinfo, &r, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(row);
    m.data = malloc(outlen);
    assert_non_null(m.data);
    memcpy(m.data, out, outlen);
    m.len = m.cap = outlen;
    free(out);
    return m;
}

static unsigned grey8(uint32_t x, uint32_t y, int c)
{
    (void)c;
    return (x * 16 + y) & 0xff;
}

static unsigned grey16(uint32_t x, uint32_t y, int c)
{
    (void)c;
    return ((x * 16 + y) & 0xff) * 257; /* scales back to exactly grey8 */
}

static unsigned rgba8(uint32_t x, uint32_t y, int c)
{
    return c == 3 ? 77 : (x * 10 + y * 3 + (unsigned)c * 50) & 0xff; /* alpha 77 is dropped */
}

static unsigned bits1(uint32_t x, uint32_t y, int c)
{
    (void)c;
    return (x + y) & 1;
}

static unsigned palette(uint32_t x, uint32_t y, int c)
{
    (void)c;
    return (x + 2 * y) % 4;
}

static void decode_ok(const struct membuf *m, struct decoded_image *img, uint32_t w, uint32_t h,
                      uint32_t c)
{
    char err[CWT_ERRLEN];
    int rc = decode_memory(m->data, m->len, img, err, sizeof(err));
    if (rc != 0)
        fail_msg("decode_memory: %s", err);
    assert_int_equal(img->w, w);
    assert_int_equal(img->h, h);
    assert_int_equal(img->c, c);
}

static void test_png_variants(void **state)
{
    struct decoded_image img;
    struct membuf m;
    (void)state;

    m = make_png(9, 7, PNG_COLOR_TYPE_GRAY, 8, grey8);
    decode_ok(&m, &img, 9, 7, 1);
    for (uint32_t y = 0; y < 7; y++)
        for (uint32_t x = 0; x < 9; x++)
            assert_int_equal(img.pixels[y * 9 + x], grey8(x, y, 0));
    decode_free(&img);
    free(m.data);

    m = make_png(9, 7, PNG_COLOR_TYPE_GRAY, 16, grey16);
    decode_ok(&m, &img, 9, 7, 1);
    for (uint32_t y = 0; y < 7; y++)
        for (uint32_t x = 0; x < 9; x++)
            assert_int_equal(img.pixels[y * 9 + x], grey8(x, y, 0));
    decode_free(&img);
    free(m.data);

    m = make_png(9, 7, PNG_COLOR_TYPE_GRAY_ALPHA, 8, rgba8);
    decode_ok(&m, &img, 9, 7, 1);
    assert_int_equal(img.pixels[3 * 9 + 2], rgba8(2, 3, 0));
    decode_free(&img);
    free(m.data);

    m = make_png(5, 6, PNG_COLOR_TYPE_RGB, 16, grey16);
    decode_ok(&m, &img, 5, 6, 3);
    assert_int_equal(img.pixels[(2 * 5 + 4) * 3 + 1], grey8(4, 2, 1));
    decode_free(&img);
    free(m.data);

    m = make_png(5, 6, PNG_COLOR_TYPE_RGBA, 8, rgba8);
    decode_ok(&m, &img, 5, 6, 3);
    for (uint32_t y = 0; y < 6; y++)
        for (uint32_t x = 0; x < 5; x++)
            for (int c = 0; c < 3; c++)
                assert_int_equal(img.pixels[(y * 5 + x) * 3 + c], rgba8(x, y, c));
    decode_free(&img);
    free(m.data);

    m = make_png(6, 3, PNG_COLOR_TYPE_PALETTE, 8, palette);
    decode_ok(&m, &img, 6, 3, 3);
    /* (x + 2y) % 4 == 3 at x = 1, y = 1: the colour 10, 20, 30 */
    assert_int_equal(img.pixels[(1 * 6 + 1) * 3 + 0], 10);
    assert_int_equal(img.pixels[(1 * 6 + 1) * 3 + 1], 20);
    assert_int_equal(img.pixels[(1 * 6 + 1) * 3 + 2], 30);
    decode_free(&img);
    free(m.data);

    m = make_png(11, 3, PNG_COLOR_TYPE_GRAY, 1, bits1);
    decode_ok(&m, &img, 11, 3, 1);
    assert_int_equal(img.pixels[0], 0);
    assert_int_equal(img.pixels[1], 255);
    decode_free(&img);
    free(m.data);
}

static void test_jpeg(void **state)
{
    struct decoded_image img;
    struct membuf m;
    (void)state;

    m = make_jpeg(40, 30, 1, 100);
    decode_ok(&m, &img, 40, 30, 1);
    for (size_t i = 0; i < 40 * 30; i++)
        assert_true(abs((int)img.pixels[i] - 100) <= 1);
    decode_free(&img);
    free(m.data);

    m = make_jpeg(17, 13, 3, 200);
    decode_ok(&m, &img, 17, 13, 3);
    for (size_t i = 0; i < 17 * 13 * 3; i++)
        assert_true(abs((int)img.pixels[i] - 200) <= 2);
    decode_free(&img);
    free(m.data);
}

static void test_resize_constant_stays_constant(void **state)
{
    static const uint32_t sizes[][2] = {{10, 10}, {1, 1}, {100, 90}, {53, 37}, {3, 200}};
    struct decoded_image img = {.h = 37, .w = 53, .c = 3};
    uint8_t *out = malloc(200 * 200 * 3);
    (void)state;

    img.pixels = malloc(37 * 53 * 3);
    assert_non_null(img.pixels);
    assert_non_null(out);
    memset(img.pixels, 77, 37 * 53 * 3);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = (size_t)sizes[k][0] * sizes[k][1] * 3;
        assert_int_equal(image_prepare(&img, sizes[k][0], sizes[k][1], 3, out), 0);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(out[i], 77);
        /* Grey 77 from RGB 77,77,77. */
        assert_int_equal(image_prepare(&img, sizes[k][0], sizes[k][1], 1, out), 0);
        for (size_t i = 0; i < n / 3; i++)
            assert_int_equal(out[i], 77);
    }
    free(img.pixels);
    free(out);
}

static void test_resize_area_average(void **state)
{
    uint8_t checker[4] = {0, 255, 255, 0}, out[12];
    uint8_t blocks[16] = {10, 10, 50, 50, 10, 10, 50, 50, 90, 90, 130, 130, 90, 90, 130, 130};
    uint8_t line[6] = {0, 30, 60, 90, 120, 150};
    struct decoded_image img = {.h = 2, .w = 2, .c = 1, .pixels = checker};
    (void)state;

    /* A 2x2 checker shrinks to its mean. */
    assert_int_equal(image_prepare(&img, 1, 1, 1, out), 0);
    assert_int_equal(out[0], 128);
    /* 2x2 blocks shrink exactly to the block values. */
    img = (struct decoded_image){.h = 4, .w = 4, .c = 1, .pixels = blocks};
    assert_int_equal(image_prepare(&img, 2, 2, 1, out), 0);
    assert_int_equal(out[0], 10);
    assert_int_equal(out[1], 50);
    assert_int_equal(out[2], 90);
    assert_int_equal(out[3], 130);
    /* A non-integer factor (6 -> 4): each output covers 1.5 inputs with fractional weights.
     * Output 1 covers [1.5, 3): 0.5 * 30 + 60 = 75, over 1.5 -> 50. */
    img = (struct decoded_image){.h = 1, .w = 6, .c = 1, .pixels = line};
    assert_int_equal(image_prepare(&img, 1, 4, 1, out), 0);
    assert_int_equal(out[0], 10);
    assert_int_equal(out[1], 50);
    assert_int_equal(out[2], 100);
    assert_int_equal(out[3], 140);
    /* Grey to RGB copies the grey value into all three channels. */
    img = (struct decoded_image){.h = 2, .w = 2, .c = 1, .pixels = checker};
    assert_int_equal(image_prepare(&img, 2, 2, 3, out), 0);
    assert_int_equal(out[3], 255);
    assert_int_equal(out[4], 255);
    assert_int_equal(out[5], 255);
    assert_int_equal(out[6], 255);
    assert_int_equal(out[9], 0);
    /* Bad arguments. */
    assert_int_equal(image_prepare(&img, 0, 2, 1, out), CWT_EINVAL);
    assert_int_equal(image_prepare(&img, 2, 2, 2, out), CWT_EINVAL);
}

/* A PNG signature and an IHDR chunk (with a valid CRC) declaring w x h, and nothing else. */
static size_t png_header_only(uint8_t *buf, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t *p = buf;
    uLong crc;

    memcpy(p, sig, 8);
    p += 8;
    memcpy(p, "\0\0\0\15IHDR", 8);
    p += 8;
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(w >> (24 - 8 * i));
    for (int i = 0; i < 4; i++)
        p[4 + i] = (uint8_t)(h >> (24 - 8 * i));
    p[8] = 8; /* depth */
    p[9] = 0; /* grey */
    p[10] = p[11] = p[12] = 0;
    crc = crc32(0, buf + 12, 17);
    p += 13;
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(crc >> (24 - 8 * i));
    return (size_t)(p + 4 - buf);
}

static void test_bad_input(void **state)
{
    struct decoded_image img;
    struct membuf m;
    uint8_t hdr[64];
    char err[CWT_ERRLEN], dir[1024], path[1200];
    size_t n;
    double t0;
    (void)state;

    assert_int_equal(decode_memory((const uint8_t *)"", 0, &img, err, sizeof(err)), CWT_EFORMAT);
    assert_non_null(strstr(err, "empty"));

    /* Text in a file named .png; and a zero-byte file. */
    assert_int_equal(test_tmp_path(dir, sizeof(dir), "test_decode"), 0);
    assert_int_equal(file_mkdir_p(dir, 0700, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/notes.png", dir);
    assert_int_equal(file_write_atomic(path, "hello, I am text\n", 17, 0600, err, sizeof(err)), 0);
    assert_int_equal(decode_file(path, &img, err, sizeof(err)), CWT_EFORMAT);
    assert_non_null(strstr(err, "not a PNG, JPEG or DICOM image"));
    assert_null(img.pixels);
    snprintf(path, sizeof(path), "%s/empty.png", dir);
    assert_int_equal(file_write_atomic(path, "", 0, 0600, err, sizeof(err)), 0);
    assert_int_equal(decode_file(path, &img, err, sizeof(err)), CWT_EFORMAT);
    snprintf(path, sizeof(path), "%s/absent.png", dir);
    assert_int_equal(decode_file(path, &img, err, sizeof(err)), CWT_ENOENT);
    assert_int_equal(test_tmp_remove(dir), 0);

    /* Truncated PNG and JPEG. */
    m = make_png(64, 64, PNG_COLOR_TYPE_RGB, 8, rgba8);
    assert_int_equal(decode_memory(m.data, m.len / 2, &img, err, sizeof(err)), CWT_EDECODE);
    assert_null(img.pixels);
    assert_int_equal(decode_memory(m.data, 40, &img, err, sizeof(err)), CWT_EDECODE);
    free(m.data);
    m = make_jpeg(64, 64, 3, 120);
    assert_int_equal(decode_memory(m.data, m.len * 2 / 3, &img, err, sizeof(err)), CWT_EDECODE);
    assert_null(img.pixels);
    assert_int_equal(decode_memory(m.data, 4, &img, err, sizeof(err)), CWT_EDECODE);
    free(m.data);

    /* An ancillary chunk declaring 1.9 GB in a 103-byte file (fuzz/decode found libpng
     * allocating it): a clear error, quickly, nothing decoded. */
    static const uint8_t splt[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x03, 0x00, 0x00, 0x00, 0x9e,
        0x2f, 0x6e, 0x4c, 0x00, 0x00, 0x00, 0x09, 0x50, 0x4c, 0x54, 0x45, 0x00, 0x00, 0x00, 0xc8,
        0x1e, 0x1e, 0x14, 0xdc, 0x5a, 0xac, 0xd2, 0x45, 0x03, 0x00, 0x00, 0x00, 0x09, 0x74, 0x52,
        0x4e, 0x53, 0x80, 0xad, 0x5e, 0x5e, 0x5b, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73,
        0x73, 0x73, 0x73, 0x60, 0x73, 0x50, 0x4c, 0x54, 0x45, 0x00, 0x00, 0x00, 0xc8, 0x1e, 0x1e,
        0x14, 0xdc, 0x5a, 0xac, 0xd2, 0x45, 0x03, 0x00, 0x00, 0x00, 0x01, 0x74, 0x82};
    t0 = cwt_monotonic();
    assert_int_equal(decode_memory(splt, sizeof(splt), &img, err, sizeof(err)), CWT_EDECODE);
    assert_true(cwt_monotonic() - t0 < 0.5);
    assert_non_null(strstr(err, "corrupt PNG"));
    assert_null(img.pixels);

    /* A decompression bomb: refused from the header, at once, allocating nothing (the
     * buffer ends after IHDR, so any attempt to read pixels would fail differently). */
    n = png_header_only(hdr, 100000, 100000);
    t0 = cwt_monotonic();
    assert_int_equal(decode_memory(hdr, n, &img, err, sizeof(err)), CWT_ETOOBIG);
    assert_true(cwt_monotonic() - t0 < 0.5);
    assert_non_null(strstr(err, "100000x100000"));
    assert_null(img.pixels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_variants),
        cmocka_unit_test(test_jpeg),
        cmocka_unit_test(test_resize_constant_stays_constant),
        cmocka_unit_test(test_resize_area_average),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
