/*
 * decode_png.c - PNG through libpng: 1/2/4/8/16-bit grey, grey+alpha, RGB, RGBA, palette,
 * interlaced or not. Alpha is dropped (medical and dataset images carry none that means
 * anything); 16-bit samples are scaled to 8 bits with rounding.
 */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode_internal.h"

/* Everything the error path must free lives here, not in locals that setjmp would clobber. */
struct png_ctx {
    const uint8_t *buf;
    size_t len, pos;
    char msg[200];
    uint8_t *pixels;
    png_bytep *rows;
};

static void png_read_mem(png_structp png, png_bytep data, size_t n)
{
    struct png_ctx *ctx = png_get_io_ptr(png);

    if (n > ctx->len - ctx->pos)
        png_error(png, "file is truncated");
    memcpy(data, ctx->buf + ctx->pos, n);
    ctx->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_ctx *ctx = png_get_error_ptr(png);

    snprintf(ctx->msg, sizeof(ctx->msg), "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* warnings (bad gamma chunk, unknown chunks) do not stop decoding */
}

int decode_png(const uint8_t *buf, size_t len, struct decoded_image *out, char *err, size_t errlen)
{
    struct png_ctx ctx = {.buf = buf, .len = len};
    png_structp png;
    png_infop info = NULL;
    png_uint_32 width, height;
    int depth, color, channels;
    size_t npix, rowbytes, total;
    volatile int rc = 0; /* set after setjmp: must survive the longjmp */

    memset(out, 0, sizeof(*out));
    /* Decompression bombs: IHDR must be the first chunk (PNG spec 5.6), so its size is known
     * before libpng reads on (png_read_info goes on up to the first IDAT). */
    if (len >= 24 && memcmp(buf + 12, "IHDR", 4) == 0) {
        uint32_t w = ((uint32_t)buf[16] << 24) | ((uint32_t)buf[17] << 16) |
                     ((uint32_t)buf[18] << 8) | buf[19];
        uint32_t h = ((uint32_t)buf[20] << 24) | ((uint32_t)buf[21] << 16) |
                     ((uint32_t)buf[22] << 8) | buf[23];
        if (cwt_mul_size(w, h, &npix) != 0 || npix > DECODE_MAX_PIXELS)
            return cwt_seterr(err, errlen, CWT_ETOOBIG,
                              "PNG of %lux%lu pixels is over the limit of %u pixels",
                              (unsigned long)w, (unsigned long)h, DECODE_MAX_PIXELS);
    }
    /* Every chunk must fit in the file. libpng allocates an ancillary chunk's buffer at its
     * declared length before reading it, and only warns when that length is over its limit
     * (a "benign" error): a 103-byte file declaring a 1.9 GB sPLT chunk made it allocate
     * 1.9 GB (found by fuzz/decode). */
    for (size_t at = 8; len >= 8 && at + 12 <= len;) {
        uint32_t clen = ((uint32_t)buf[at] << 24) | ((uint32_t)buf[at + 1] << 16) |
                        ((uint32_t)buf[at + 2] << 8) | buf[at + 3];
        if (clen > len - at - 12)
            return cwt_seterr(err, errlen, CWT_EDECODE,
                              "corrupt PNG: a chunk declares %lu bytes, the file has %lu left",
                              (unsigned long)clen, (unsigned long)(len - at - 12));
        if (memcmp(buf + at + 4, "IEND", 4) == 0)
            break;
        at += 12 + (size_t)clen;
    }
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    if (png == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory starting the PNG decoder");
    info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory starting the PNG decoder");
    }
    if (setjmp(png_jmpbuf(png))) {
        rc = cwt_seterr(err, errlen, CWT_EDECODE, "corrupt PNG: %s", ctx.msg);
        goto done;
    }
    png_set_read_fn(png, &ctx, png_read_mem);
    /* libpng's own dimension limit, a second line behind the pixel check below. */
    png_set_user_limits(png, 1u << 20, 1u << 20);
    png_read_info(png, info);
    png_get_IHDR(png, info, &width, &height, &depth, &color, NULL, NULL, NULL);
    /* The same check on what libpng parsed, before any pixel is allocated. */
    if (cwt_mul_size(width, height, &npix) != 0 || npix > DECODE_MAX_PIXELS) {
        rc = cwt_seterr(err, errlen, CWT_ETOOBIG,
                        "PNG of %lux%lu pixels is over the limit of %u pixels",
                        (unsigned long)width, (unsigned long)height, DECODE_MAX_PIXELS);
        goto done;
    }
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16)
        png_set_scale_16(png);
    /* A tRNS chunk becomes an alpha channel when the palette is expanded: strip it too. */
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_strip_alpha(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);
    channels = png_get_channels(png, info);
    rowbytes = png_get_rowbytes(png, info);
    if ((channels != 1 && channels != 3) || rowbytes != (size_t)width * (size_t)channels) {
        rc = cwt_seterr(err, errlen, CWT_EUNSUPPORTED, "unsupported PNG layout (%d channels)",
                        channels);
        goto done;
    }
    if (cwt_mul_size(rowbytes, height, &total) != 0) {
        rc = cwt_seterr(err, errlen, CWT_ETOOBIG, "PNG is too large");
        goto done;
    }
    ctx.pixels = malloc(total);
    ctx.rows = malloc(sizeof(*ctx.rows) * height);
    if (ctx.pixels == NULL || ctx.rows == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for a %lux%lu PNG",
                        (unsigned long)width, (unsigned long)height);
        goto done;
    }
    for (png_uint_32 y = 0; y < height; y++)
        ctx.rows[y] = ctx.pixels + (size_t)y * rowbytes;
    png_read_image(png, ctx.rows);
    png_read_end(png, NULL);
    out->h = height;
    out->w = width;
    out->c = (uint32_t)channels;
    out->pixels = ctx.pixels;
    ctx.pixels = NULL;
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(ctx.rows);
    free(ctx.pixels);
    return rc;
}
