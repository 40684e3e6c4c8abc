/*
 * decode.c - format dispatch by content, channel conversion and resizing.
 *
 * Resizing is separable. Shrinking uses exact area averaging (a box filter as wide as one
 * output pixel, with fractional coverage at the edges), which is the anti-aliasing filter
 * that keeps every input pixel's weight equal; enlarging uses a triangle (bilinear) filter
 * with pixel centres aligned. Weights are computed once per axis.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode_internal.h"
#include "common/fileio.h"

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

int decode_memory(const uint8_t *buf, size_t len, struct decoded_image *out, char *err,
                  size_t errlen)
{
    return decode_memory_fd(buf, len, -1, out, err, errlen);
}

int decode_memory_fd(const uint8_t *buf, size_t len, int fd, struct decoded_image *out, char *err,
                     size_t errlen)
{
    if (out == NULL || (buf == NULL && len > 0))
        return cwt_seterr(err, errlen, CWT_EINVAL, "no image buffer");
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "empty file");
    if (len > DECODE_MAX_FILE)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "file is larger than %u bytes",
                          DECODE_MAX_FILE);
    if (len >= sizeof(png_magic) && memcmp(buf, png_magic, sizeof(png_magic)) == 0)
        return decode_png(buf, len, out, err, errlen);
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return decode_jpeg(buf, len, out, err, errlen);
    /* DICOM Part 10: a 128-byte preamble, then "DICM". */
    if (len >= 132 && memcmp(buf + 128, "DICM", 4) == 0) {
        int rc = decode_dicom_scan(buf, len, DECODE_MAX_DICOM_DEPTH, err, errlen);
        return rc != 0 ? rc : decode_dicom_fd(buf, len, fd, out, err, errlen);
    }
    return cwt_seterr(err, errlen, CWT_EFORMAT, "not a PNG, JPEG or DICOM image");
}

int decode_file(const char *path, struct decoded_image *out, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    char msg[CWT_ERRLEN];
    int rc;

    if (path == NULL || out == NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL, "no image path");
    memset(out, 0, sizeof(*out));
    rc = file_read_all(path, DECODE_MAX_FILE, &buf, &len, msg, sizeof(msg));
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "%s", msg);
    rc = decode_memory(buf, len, out, msg, sizeof(msg));
    free(buf);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "%s: %s", path, msg);
    return 0;
}

void decode_free(struct decoded_image *img)
{
    if (img == NULL)
        return;
    free(img->pixels);
    memset(img, 0, sizeof(*img));
}

/* Input taps of one output position along one axis. */
struct axis {
    uint32_t taps;   /* taps per output position (the widest; unused ones weigh 0) */
    uint32_t *first; /* first input index of each output position */
    float *weights;  /* out_len * taps */
};

static void axis_free(struct axis *a)
{
    free(a->first);
    free(a->weights);
}

static int axis_init(struct axis *a, uint32_t in_len, uint32_t out_len)
{
    double scale = (double)in_len / out_len;
    size_t nweights;

    memset(a, 0, sizeof(*a));
    /* A box of width scale covers at most ceil(scale) + 1 input pixels. */
    a->taps = in_len > out_len ? (uint32_t)ceil(scale) + 1 : 2;
    if (cwt_mul_size(out_len, a->taps, &nweights) != 0)
        return CWT_ETOOBIG;
    a->first = calloc(out_len, sizeof(*a->first));
    a->weights = calloc(nweights, sizeof(*a->weights));
    if (a->first == NULL || a->weights == NULL) {
        axis_free(a);
        return CWT_ENOMEM;
    }
    for (uint32_t i = 0; i < out_len; i++) {
        float *w = a->weights + (size_t)i * a->taps;
        if (in_len > out_len) {
            double lo = i * scale, hi = (i + 1) * scale;
            uint32_t j0 = (uint32_t)floor(lo);
            a->first[i] = j0;
            for (uint32_t t = 0; t < a->taps; t++) {
                uint32_t j = j0 + t;
                double cover;
                if (j >= in_len)
                    break;
                cover = fmin(hi, j + 1.0) - fmax(lo, (double)j);
                if (cover > 0)
                    w[t] = (float)(cover / scale);
            }
        } else {
            double x = (i + 0.5) * scale - 0.5;
            double f;
            int64_t j0;
            if (x < 0)
                x = 0;
            j0 = (int64_t)floor(x);
            f = x - (double)j0;
            if ((uint32_t)j0 + 1 >= in_len) {
                /* The right edge: clamp, the second tap is unused. */
                a->first[i] = in_len - 1;
                w[0] = 1.0f;
            } else {
                a->first[i] = (uint32_t)j0;
                w[0] = (float)(1.0 - f);
                w[1] = (float)f;
            }
        }
    }
    return 0;
}

static uint8_t to_u8(float v)
{
    v += 0.5f;
    if (v <= 0.0f)
        return 0;
    if (v >= 255.0f)
        return 255;
    return (uint8_t)v;
}

/* Resizes a c-channel image (c = 1 or 3) from h_in x w_in to h_out x w_out. */
static int resize(const uint8_t *in, uint32_t h_in, uint32_t w_in, uint32_t c, uint8_t *out,
                  uint32_t h_out, uint32_t w_out)
{
    struct axis ax, ay;
    size_t tmp_len;
    float *tmp;
    int rc;

    if (h_in == h_out && w_in == w_out) {
        memcpy(out, in, (size_t)h_in * w_in * c);
        return 0;
    }
    if (cwt_mul_size(h_in, w_out, &tmp_len) != 0 || cwt_mul_size(tmp_len, c, &tmp_len) != 0)
        return CWT_ETOOBIG;
    rc = axis_init(&ax, w_in, w_out);
    if (rc != 0)
        return rc;
    rc = axis_init(&ay, h_in, h_out);
    if (rc != 0) {
        axis_free(&ax);
        return rc;
    }
    tmp = malloc(tmp_len * sizeof(*tmp));
    if (tmp == NULL) {
        axis_free(&ax);
        axis_free(&ay);
        return CWT_ENOMEM;
    }
    /* Horizontal pass: h_in rows of w_out pixels, kept in float. */
    for (uint32_t y = 0; y < h_in; y++) {
        const uint8_t *row = in + (size_t)y * w_in * c;
        float *trow = tmp + (size_t)y * w_out * c;
        for (uint32_t x = 0; x < w_out; x++) {
            const float *w = ax.weights + (size_t)x * ax.taps;
            for (uint32_t ch = 0; ch < c; ch++) {
                float acc = 0.0f;
                for (uint32_t t = 0; t < ax.taps; t++) {
                    uint32_t j = ax.first[x] + t;
                    if (w[t] != 0.0f)
                        acc += w[t] * row[(size_t)j * c + ch];
                }
                trow[(size_t)x * c + ch] = acc;
            }
        }
    }
    /* Vertical pass. */
    for (uint32_t y = 0; y < h_out; y++) {
        const float *w = ay.weights + (size_t)y * ay.taps;
        uint8_t *orow = out + (size_t)y * w_out * c;
        for (size_t i = 0; i < (size_t)w_out * c; i++) {
            float acc = 0.0f;
            for (uint32_t t = 0; t < ay.taps; t++)
                if (w[t] != 0.0f)
                    acc += w[t] * tmp[(size_t)(ay.first[y] + t) * w_out * c + i];
            orow[i] = to_u8(acc);
        }
    }
    free(tmp);
    axis_free(&ax);
    axis_free(&ay);
    return 0;
}

int image_prepare(const struct decoded_image *in, uint32_t h_out, uint32_t w_out, uint32_t c_out,
                  uint8_t *out)
{
    const uint8_t *src;
    uint8_t *grey = NULL;
    size_t in_px, out_px;
    int rc;

    if (in == NULL || in->pixels == NULL || out == NULL || in->h == 0 || in->w == 0 || h_out == 0 ||
        w_out == 0 || (in->c != 1 && in->c != 3) || (c_out != 1 && c_out != 3))
        return CWT_EINVAL;
    if (cwt_mul_size(in->h, in->w, &in_px) != 0 || in_px > DECODE_MAX_PIXELS ||
        cwt_mul_size(h_out, w_out, &out_px) != 0 || out_px > DECODE_MAX_PIXELS)
        return CWT_ETOOBIG;
    src = in->pixels;
    if (in->c == 3 && c_out == 1) {
        /* Luma first, so the resize works on one channel. ITU-R BT.601 weights. */
        grey = malloc(in_px);
        if (grey == NULL)
            return CWT_ENOMEM;
        for (size_t i = 0; i < in_px; i++) {
            const uint8_t *p = in->pixels + 3 * i;
            grey[i] = (uint8_t)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
        }
        src = grey;
    }
    if (in->c == 1 && c_out == 3) {
        /* Resize the grey image into the first third of out, then spread it from the end
         * backwards so nothing is overwritten before it is read. */
        rc = resize(src, in->h, in->w, 1, out, h_out, w_out);
        if (rc == 0)
            for (size_t i = out_px; i-- > 0;)
                out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = out[i];
    } else {
        rc = resize(src, in->h, in->w, c_out, out, h_out, w_out);
    }
    free(grey);
    return rc;
}
