/*
 * png_fixture.h - writes small test images as PNG files (test_ingest_split.c,
 * tests/security/test_m4_decoder_timeout.c). Include after cmocka.h and png.h.
 */
#ifndef CWT_TESTS_UNIT_PNG_FIXTURE_H
#define CWT_TESTS_UNIT_PNG_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Writes px (h rows of w 8-bit grey pixels, row-major) to path as a grey PNG; fails the
 * running cmocka test if the file cannot be written. */
static inline void png_fixture_write_gray(const char *path, const uint8_t *px, uint32_t w,
                                          uint32_t h)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_bytep *row_ptrs = malloc(h * sizeof(*row_ptrs));

    assert_non_null(f);
    assert_non_null(info);
    assert_non_null(row_ptrs);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng failed writing %s", path);
    for (uint32_t y = 0; y < h; y++)
        row_ptrs[y] = (png_bytep)(px + (size_t)y * w);
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, row_ptrs);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row_ptrs);
    assert_int_equal(fclose(f), 0);
}

#endif
