/*
 * decode_jpeg.c - JPEG through libjpeg-turbo: baseline, extended and progressive, grey or
 * colour (converted to RGB). Corrupt-data warnings (a truncated file, which libjpeg would
 * otherwise pad with grey) are errors here: a damaged image must not enter training.
 */
/* jpeglib.h needs size_t and FILE declared first. */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "decode/decode_internal.h"

/* Progressive files can hold thousands of tiny scans that cost minutes to decode; real
 * encoders write about ten. */
#define JPEG_MAX_SCANS  500
#define JPEG_MAX_MEMORY (512L << 20)

struct jpeg_ctx {
    struct jpeg_error_mgr mgr; /* first, so the library's pointer is also ours */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    uint8_t *pixels;
};

static void jpeg_on_error(j_common_ptr cinfo)
{
    struct jpeg_ctx *ctx = (struct jpeg_ctx *)cinfo->err;

    cinfo->err->format_message(cinfo, ctx->msg);
    longjmp(ctx->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    /* level -1 is a corrupt-data warning; positive levels are trace output. */
    if (level < 0)
        jpeg_on_error(cinfo);
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
    struct jpeg_ctx *ctx = (struct jpeg_ctx *)cinfo->err;

    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > JPEG_MAX_SCANS) {
        snprintf(ctx->msg, sizeof(ctx->msg), "more than %d scans", JPEG_MAX_SCANS);
        longjmp(ctx->jump, 1);
    }
}

int decode_jpeg(const uint8_t *buf, size_t len, struct decoded_image *out, char *err, size_t errlen)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_ctx ctx;
    size_t npix, rowbytes, total;
    volatile int rc = 0; /* set after setjmp: must survive the longjmp */

    memset(out, 0, sizeof(*out));
    memset(&ctx, 0, sizeof(ctx));
    memset(&cinfo, 0, sizeof(cinfo));
    if (len > (unsigned long)-1)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "JPEG is too large");
    cinfo.err = jpeg_std_error(&ctx.mgr);
    ctx.mgr.error_exit = jpeg_on_error;
    ctx.mgr.emit_message = jpeg_on_message;
    if (setjmp(ctx.jump)) {
        rc = cwt_seterr(err, errlen, CWT_EDECODE, "corrupt JPEG: %s", ctx.msg);
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    ctx.progress.progress_monitor = jpeg_on_progress;
    cinfo.progress = &ctx.progress;
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    (void)jpeg_read_header(&cinfo, TRUE);
    /* Decompression bombs: refuse from the header, before jpeg_start_decompress allocates. */
    if (cwt_mul_size(cinfo.image_width, cinfo.image_height, &npix) != 0 ||
        npix > DECODE_MAX_PIXELS) {
        rc = cwt_seterr(err, errlen, CWT_ETOOBIG,
                        "JPEG of %ux%u pixels is over the limit of %u pixels", cinfo.image_width,
                        cinfo.image_height, DECODE_MAX_PIXELS);
        goto done;
    }
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB;
        break;
    default:
        rc = cwt_seterr(err, errlen, CWT_EUNSUPPORTED,
                        "JPEG colour space %d (CMYK or YCCK) is not supported",
                        (int)cinfo.jpeg_color_space);
        goto done;
    }
    (void)jpeg_start_decompress(&cinfo);
    rowbytes = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    if (cwt_mul_size(rowbytes, cinfo.output_height, &total) != 0) {
        rc = cwt_seterr(err, errlen, CWT_ETOOBIG, "JPEG is too large");
        goto done;
    }
    ctx.pixels = malloc(total);
    if (ctx.pixels == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for a %ux%u JPEG",
                        cinfo.output_width, cinfo.output_height);
        goto done;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = ctx.pixels + (size_t)cinfo.output_scanline * rowbytes;
        (void)jpeg_read_scanlines(&cinfo, &row, 1);
    }
    (void)jpeg_finish_decompress(&cinfo);
    out->h = cinfo.output_height;
    out->w = cinfo.output_width;
    out->c = (uint32_t)cinfo.output_components;
    out->pixels = ctx.pixels;
    ctx.pixels = NULL;
done:
    jpeg_destroy_decompress(&cinfo);
    free(ctx.pixels);
    return rc;
}
