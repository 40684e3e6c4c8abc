/*
 * train_norm.c - per-channel normalisation statistics: computed once from the training split,
 * kept in the store's meta, applied to every batch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/train/train.h"

#define NORM_MAGIC    "cwt-norm-v1"
#define NORM_TEXT_MAX 512

int train_norm_sums(struct store *st, const uint64_t *ids, size_t n, struct train_norm_sums *out)
{
    /* Integer sums are exact and independent of the order of the ids: 255^2 * 2^32 pixels
     * per channel would still fit in 64 bits. */
    uint32_t h, w, c;
    int rc;

    memset(out, 0, sizeof(*out));
    if (n == 0)
        return CWT_EINVAL;
    if ((rc = store_get_shape(st, &h, &w, &c)) != 0)
        return rc;
    if (c == 0 || c > TRAIN_MAX_CHANNELS)
        return CWT_EUNSUPPORTED;
    out->channels = c;
    if ((rc = store_read_begin(st)) != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct store_image_hdr hdr;
        const uint8_t *px;
        size_t plane = (size_t)h * w;
        if ((rc = store_get_image(st, ids[i], &hdr, &px)) != 0)
            break;
        if (hdr.h != h || hdr.w != w || hdr.c != c) {
            rc = CWT_EFORMAT;
            break;
        }
        for (size_t p = 0; p < plane; p++) {
            for (uint32_t k = 0; k < c; k++) {
                uint64_t v = px[p * c + k];
                out->sum[k] += v;
                out->sumsq[k] += v * v;
            }
        }
        out->pixels += plane;
    }
    store_read_end(st);
    return rc;
}

int train_norm_from_sums(const struct train_norm_sums *s, struct train_norm *out)
{
    if (s->channels == 0 || s->channels > TRAIN_MAX_CHANNELS || s->pixels == 0)
        return CWT_EINVAL;
    memset(out, 0, sizeof(*out));
    out->channels = s->channels;
    for (uint32_t k = 0; k < s->channels; k++) {
        double mean = (double)s->sum[k] / (double)s->pixels;
        double var = (double)s->sumsq[k] / (double)s->pixels - mean * mean;
        double sd = var > 0 ? sqrt(var) / 255.0 : 0.0;
        out->mean[k] = (float)(mean / 255.0);
        /* A constant channel would divide by zero; leave it centred but unscaled. */
        out->std[k] = sd > 1e-6 ? (float)sd : 1.0f;
    }
    return 0;
}

int train_norm_compute(struct store *st, const uint64_t *ids, size_t n, struct train_norm *out)
{
    struct train_norm_sums s;
    int rc = train_norm_sums(st, ids, n, &s);

    return rc != 0 ? rc : train_norm_from_sums(&s, out);
}

int train_norm_save(struct store *st, const struct train_norm *n)
{
    char text[NORM_TEXT_MAX];
    size_t used;

    if (n->channels == 0 || n->channels > TRAIN_MAX_CHANNELS)
        return CWT_EINVAL;
    used = (size_t)snprintf(text, sizeof(text), "%s %u", NORM_MAGIC, n->channels);
    for (uint32_t k = 0; k < n->channels; k++) {
        if (!isfinite(n->mean[k]) || !(n->std[k] > 0) || !isfinite(n->std[k]))
            return CWT_EINVAL;
        used += (size_t)snprintf(text + used, sizeof(text) - used, " %.9g %.9g", (double)n->mean[k],
                                 (double)n->std[k]);
    }
    return store_meta_put(st, TRAIN_META_NORM, text, used);
}

static int parse_float(const char *tok, float *out)
{
    double d;

    if (tok == NULL || cwt_parse_double(tok, -1e6, 1e6, &d) != 0)
        return CWT_EFORMAT;
    *out = (float)d;
    return 0;
}

int train_norm_load(struct store *st, struct train_norm *out)
{
    char text[NORM_TEXT_MAX + 1];
    char *save = NULL, *tok;
    size_t len;
    int64_t channels;
    uint32_t h, w, c;
    int rc;

    if ((rc = store_meta_get(st, TRAIN_META_NORM, text, NORM_TEXT_MAX, &len)) != 0)
        return rc == CWT_ETOOBIG ? CWT_EFORMAT : rc;
    text[len] = '\0';
    if (strlen(text) != len)
        return CWT_EFORMAT;
    tok = strtok_r(text, " ", &save);
    if (tok == NULL || strcmp(tok, NORM_MAGIC) != 0)
        return CWT_EFORMAT;
    tok = strtok_r(NULL, " ", &save);
    if (tok == NULL || cwt_parse_i64(tok, 1, TRAIN_MAX_CHANNELS, &channels) != 0)
        return CWT_EFORMAT;
    memset(out, 0, sizeof(*out));
    out->channels = (uint32_t)channels;
    for (uint32_t k = 0; k < out->channels; k++) {
        if (parse_float(strtok_r(NULL, " ", &save), &out->mean[k]) != 0 ||
            parse_float(strtok_r(NULL, " ", &save), &out->std[k]) != 0 || !(out->std[k] > 0))
            return CWT_EFORMAT;
    }
    if (strtok_r(NULL, " ", &save) != NULL)
        return CWT_EFORMAT;
    if (store_get_shape(st, &h, &w, &c) == 0 && c != out->channels)
        return CWT_EFORMAT;
    return 0;
}

int train_norm_ensure(struct store *st, struct train_norm *out, char *err, size_t errlen)
{
    uint64_t *ids = NULL;
    size_t n = 0;
    int rc;

    rc = train_norm_load(st, out);
    if (rc == 0)
        return 0;
    if (rc != CWT_ENOENT)
        return cwt_seterr(err, errlen, rc,
                          "the normalisation statistics in the store's meta "
                          "(key '%s') are malformed",
                          TRAIN_META_NORM);
    if ((rc = store_read_begin(st)) != 0)
        return cwt_seterr(err, errlen, rc, "cannot read the store: %s", cwt_strerror(rc));
    rc = store_list(st, STORE_TRAIN, &ids, &n);
    store_read_end(st);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "cannot list the training split: %s", cwt_strerror(rc));
    if (n == 0) {
        free(ids);
        return cwt_seterr(err, errlen, CWT_ENOENT,
                          "the training split is empty; ingest images first");
    }
    rc = train_norm_compute(st, ids, n, out);
    free(ids);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "cannot compute normalisation statistics: %s",
                          cwt_strerror(rc));
    /* A read-only store (cwtctl while cwtd runs) only computes; the next writer stores. */
    rc = train_norm_save(st, out);
    if (rc != 0 && rc != CWT_EPERM)
        return cwt_seterr(err, errlen, rc, "cannot store normalisation statistics: %s",
                          cwt_strerror(rc));
    return 0;
}

void train_norm_format(const struct train_norm *n, char *mean_out, char *std_out, size_t len)
{
    size_t um = 0, us = 0;

    if (len == 0)
        return;
    mean_out[0] = std_out[0] = '\0';
    for (uint32_t k = 0; k < n->channels && k < TRAIN_MAX_CHANNELS; k++) {
        int a = snprintf(mean_out + um, len - um, "%s%.9g", k ? "," : "", (double)n->mean[k]);
        int b = snprintf(std_out + us, len - us, "%s%.9g", k ? "," : "", (double)n->std[k]);
        if (a < 0 || b < 0 || (size_t)a >= len - um || (size_t)b >= len - us)
            return;
        um += (size_t)a;
        us += (size_t)b;
    }
}

static int parse_list(const char *s, uint32_t channels, float *out)
{
    char buf[256];
    char *save = NULL, *tok;
    uint32_t k = 0;

    if (s == NULL || strlen(s) >= sizeof(buf))
        return CWT_EFORMAT;
    strcpy(buf, s);
    for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (k >= channels || parse_float(tok, &out[k]) != 0)
            return CWT_EFORMAT;
        k++;
    }
    return k == channels ? 0 : CWT_EFORMAT;
}

int train_norm_parse(const char *mean, const char *std, uint32_t channels, struct train_norm *out)
{
    struct train_norm n;

    if (channels == 0 || channels > TRAIN_MAX_CHANNELS)
        return CWT_EFORMAT;
    memset(&n, 0, sizeof(n));
    n.channels = channels;
    if (parse_list(mean, channels, n.mean) != 0 || parse_list(std, channels, n.std) != 0)
        return CWT_EFORMAT;
    for (uint32_t k = 0; k < channels; k++)
        if (!(n.std[k] > 0))
            return CWT_EFORMAT;
    *out = n;
    return 0;
}

void train_normalize_images(const struct train_norm *norm, const uint8_t *hwc, uint32_t n,
                            uint32_t h, uint32_t w, uint32_t c, float *out)
{
    size_t plane = (size_t)h * w;
    float lut[TRAIN_MAX_CHANNELS][256];

    for (uint32_t k = 0; k < c && k < TRAIN_MAX_CHANNELS; k++)
        for (int v = 0; v < 256; v++)
            lut[k][v] = ((float)v / 255.0f - norm->mean[k]) / norm->std[k];
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *src = hwc + (size_t)i * plane * c;
        float *dst = out + (size_t)i * plane * c;
        for (uint32_t k = 0; k < c && k < TRAIN_MAX_CHANNELS; k++)
            for (size_t p = 0; p < plane; p++)
                dst[k * plane + p] = lut[k][src[p * c + k]];
    }
}
