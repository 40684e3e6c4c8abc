/*
 * train_loader.c - batches of normalised float images from the site store.
 *
 * Every random choice is derived from (seed, epoch, position) with train_hash3, never from a
 * running generator, so the cursor alone restores the loader exactly (see train.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/train/train.h"

/* Stream tags keep the shuffle and the augmentation draws independent. */
#define STREAM_SHUFFLE 0x73687566666c6531ull /* "shuffle1" */
#define STREAM_AUGMENT 0x6175676d656e7431ull /* "augment1" */
#define STREAM_AUG2    0x6175676d656e7432ull /* "augment2": draws of struct train_augment */

struct train_loader {
    struct store *st;
    struct train_loader_opts o;
    uint32_t h, w, c, classes;
    size_t n;
    uint64_t *ids;
    uint32_t *labels;
    uint64_t *counts;    /* [classes] */
    uint32_t *by_class;  /* sample indices grouped by class (balanced sampling) */
    size_t *class_start; /* [classes + 1] offsets into by_class */
    uint32_t *order;     /* order of order_epoch */
    uint64_t order_epoch;
    int order_valid;
    uint64_t epoch_samples; /* samples taken per epoch (n, less with drop_last) */
    struct train_cursor cur;
    uint8_t *aug; /* one augmented image */
    float lut[TRAIN_MAX_CHANNELS][256];
};

void train_loader_free(struct train_loader *l)
{
    if (l == NULL)
        return;
    free(l->ids);
    free(l->labels);
    free(l->counts);
    free(l->by_class);
    free(l->class_start);
    free(l->order);
    free(l->aug);
    free(l);
}

static int read_labels(struct train_loader *l, char *err, size_t errlen)
{
    int rc;

    if ((rc = store_read_begin(l->st)) != 0)
        return cwt_seterr(err, errlen, rc, "cannot read the store: %s", cwt_strerror(rc));
    for (size_t i = 0; i < l->n; i++) {
        struct store_image_hdr hdr;
        const uint8_t *px;
        rc = store_get_image(l->st, l->ids[i], &hdr, &px);
        if (rc != 0) {
            store_read_end(l->st);
            return cwt_seterr(err, errlen, rc, "cannot read image %llu: %s",
                              (unsigned long long)l->ids[i], cwt_strerror(rc));
        }
        if (hdr.h != l->h || hdr.w != l->w || hdr.c != l->c || hdr.label >= l->classes) {
            store_read_end(l->st);
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "image %llu (%ux%ux%u, label %u) does not fit the model "
                              "(%ux%ux%u, %u classes)",
                              (unsigned long long)l->ids[i], hdr.h, hdr.w, hdr.c, hdr.label, l->h,
                              l->w, l->c, l->classes);
        }
        l->labels[i] = hdr.label;
        l->counts[hdr.label]++;
    }
    store_read_end(l->st);
    return 0;
}

static int group_by_class(struct train_loader *l)
{
    size_t *fill;

    l->by_class = malloc(l->n * sizeof(uint32_t));
    l->class_start = calloc((size_t)l->classes + 1, sizeof(size_t));
    fill = calloc(l->classes, sizeof(size_t));
    if (l->by_class == NULL || l->class_start == NULL || fill == NULL) {
        free(fill);
        return CWT_ENOMEM;
    }
    for (uint32_t k = 0; k < l->classes; k++)
        l->class_start[k + 1] = l->class_start[k] + l->counts[k];
    for (size_t i = 0; i < l->n; i++) {
        uint32_t k = l->labels[i];
        l->by_class[l->class_start[k] + fill[k]++] = (uint32_t)i;
    }
    free(fill);
    return 0;
}

int train_loader_new(struct store *st, const uint64_t *ids, size_t n, uint32_t classes,
                     const struct train_loader_opts *o, struct train_loader **out, char *err,
                     size_t errlen)
{
    struct train_loader *l;
    size_t image_bytes;
    uint64_t bpe;
    int rc;

    *out = NULL;
    if (n == 0)
        return cwt_seterr(err, errlen, CWT_EINVAL, "the data loader got no images");
    if (n > UINT32_MAX)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "too many images for one loader (%zu)", n);
    if (o->batch_size == 0 || classes == 0 || classes > CWT_MAX_CLASSES)
        return cwt_seterr(err, errlen, CWT_EINVAL, "invalid batch size or class count");
    if (o->norm.channels == 0 || o->norm.channels > TRAIN_MAX_CHANNELS)
        return cwt_seterr(err, errlen, CWT_EINVAL, "normalisation statistics are missing");
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    l->st = st;
    l->o = *o;
    l->n = n;
    l->classes = classes;
    rc = store_get_shape(st, &l->h, &l->w, &l->c);
    if (rc != 0) {
        train_loader_free(l);
        return cwt_seterr(err, errlen, rc, "the store has no input shape: %s", cwt_strerror(rc));
    }
    if ((rc = train_augment_check(o, err, errlen)) != 0) {
        train_loader_free(l);
        return rc;
    }
    if (l->c != o->norm.channels || o->crop_pad > l->h || o->crop_pad > l->w) {
        uint32_t c = l->c;
        train_loader_free(l);
        if (c != o->norm.channels)
            return cwt_seterr(err, errlen, CWT_EINVAL,
                              "normalisation statistics have %u channels, images %u",
                              o->norm.channels, c);
        return cwt_seterr(err, errlen, CWT_EINVAL, "crop padding %u exceeds the image size",
                          o->crop_pad);
    }
    image_bytes = (size_t)l->h * l->w * l->c;
    l->ids = malloc(n * sizeof(uint64_t));
    l->labels = malloc(n * sizeof(uint32_t));
    l->counts = calloc(classes, sizeof(uint64_t));
    l->order = malloc(n * sizeof(uint32_t));
    l->aug = malloc(image_bytes);
    if (l->ids == NULL || l->labels == NULL || l->counts == NULL || l->order == NULL ||
        l->aug == NULL) {
        train_loader_free(l);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for %zu images", n);
    }
    memcpy(l->ids, ids, n * sizeof(uint64_t));
    if ((rc = read_labels(l, err, errlen)) != 0) {
        train_loader_free(l);
        return rc;
    }
    if (o->balanced && (rc = group_by_class(l)) != 0) {
        train_loader_free(l);
        return cwt_seterr(err, errlen, rc, "out of memory");
    }
    for (uint32_t k = 0; k < l->c; k++)
        for (int v = 0; v < 256; v++)
            l->lut[k][v] = ((float)v / 255.0f - o->norm.mean[k]) / o->norm.std[k];
    bpe = train_loader_batches_per_epoch(l);
    l->epoch_samples = o->drop_last && n >= o->batch_size ? bpe * o->batch_size : n;
    *out = l;
    return 0;
}

void train_loader_shape(const struct train_loader *l, uint32_t *h, uint32_t *w, uint32_t *c)
{
    *h = l->h;
    *w = l->w;
    *c = l->c;
}

size_t train_loader_size(const struct train_loader *l)
{
    return l->n;
}

uint64_t train_loader_batches_per_epoch(const struct train_loader *l)
{
    uint64_t bs = l->o.batch_size;

    if (l->o.drop_last && l->n >= bs)
        return l->n / bs;
    return (l->n + bs - 1) / bs;
}

const uint64_t *train_loader_class_counts(const struct train_loader *l)
{
    return l->counts;
}

void train_loader_epoch_order(const struct train_loader *l, uint64_t epoch, uint32_t *out)
{
    struct train_rng rng;

    train_rng_seed(&rng, train_hash3(l->o.seed ^ STREAM_SHUFFLE, epoch, 0));
    if (l->o.balanced) {
        /* A class uniformly among those present, then a sample uniformly within it: exactly
         * p(i) proportional to 1 / count(label(i)), in integers only. */
        uint32_t present[CWT_MAX_CLASSES], n_present = 0;
        for (uint32_t k = 0; k < l->classes; k++)
            if (l->counts[k] > 0)
                present[n_present++] = k;
        for (size_t i = 0; i < l->n; i++) {
            uint32_t k = present[train_rng_below(&rng, n_present)];
            size_t j = (size_t)train_rng_below(&rng, l->counts[k]);
            out[i] = l->by_class[l->class_start[k] + j];
        }
        return;
    }
    for (size_t i = 0; i < l->n; i++)
        out[i] = (uint32_t)i;
    if (!l->o.shuffle)
        return;
    for (size_t i = l->n - 1; i > 0; i--) {
        size_t j = (size_t)train_rng_below(&rng, (uint64_t)i + 1);
        uint32_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

/* Whether any option of struct train_augment is on: those samples take the affine path. */
static int aug_on(const struct train_augment *a)
{
    return a->vflip || a->resized_crop || a->rotate > 0.0 || a->brightness > 0.0 ||
           a->contrast > 0.0;
}

int train_augment_check(const struct train_loader_opts *o, char *err, size_t errlen)
{
    const struct train_augment *a = &o->aug;

    if (a->resized_crop && !(a->crop_scale[0] > 0.0 && a->crop_scale[0] <= a->crop_scale[1] &&
                             a->crop_scale[1] <= 1.0 && a->crop_ratio[0] > 0.0 &&
                             a->crop_ratio[0] <= a->crop_ratio[1] && isfinite(a->crop_ratio[1])))
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "resized crop needs 0 < scale low <= high <= 1 and 0 < ratio low <= "
                          "high");
    if (a->resized_crop && o->crop_pad > 0)
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "resized crop and crop padding cannot be combined (choose one crop)");
    if (!(a->rotate >= 0.0 && a->rotate <= 180.0))
        return cwt_seterr(err, errlen, CWT_EINVAL, "rotation must be 0 to 180 degrees");
    if (!(a->brightness >= 0.0 && a->brightness <= 1.0 && a->contrast >= 0.0 && a->contrast <= 1.0))
        return cwt_seterr(err, errlen, CWT_EINVAL, "brightness and contrast must be 0 to 1");
    return 0;
}

void train_loader_augment_from_recipe(const struct cwt_recipe *r, struct train_loader_opts *o)
{
    o->hflip = r->augment_hflip;
    o->crop_pad = r->augment_crop_pad;
    memset(&o->aug, 0, sizeof(o->aug));
    o->aug.vflip = r->augment_vflip;
    o->aug.resized_crop = r->augment_resized_crop;
    memcpy(o->aug.crop_scale, r->augment_crop_scale, sizeof(o->aug.crop_scale));
    memcpy(o->aug.crop_ratio, r->augment_crop_ratio, sizeof(o->aug.crop_ratio));
    o->aug.rotate = r->augment_rotate;
    o->aug.brightness = r->augment_brightness;
    o->aug.contrast = r->augment_contrast;
}

/* Uniform in [lo, hi) (lo exactly when lo == hi, so a range of one value is that value). */
static double uniform(struct train_rng *rng, double lo, double hi)
{
    return lo + (hi - lo) * train_rng_unit(rng);
}

/* torchvision's RandomResizedCrop.get_params: ten tries at an area fraction and a log-uniform
 * aspect ratio that fit, else a centre crop with the ratio clamped into range. */
static void draw_crop(const struct train_augment *a, struct train_rng *rng, uint32_t h, uint32_t w,
                      struct train_aug_draw *d)
{
    double area = (double)h * w, lr0 = log(a->crop_ratio[0]), lr1 = log(a->crop_ratio[1]);
    double in_ratio = (double)w / h;

    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * uniform(rng, a->crop_scale[0], a->crop_scale[1]);
        double aspect = exp(uniform(rng, lr0, lr1));
        double cw = nearbyint(sqrt(target * aspect)), ch = nearbyint(sqrt(target / aspect));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            d->crop_w = (uint32_t)cw;
            d->crop_h = (uint32_t)ch;
            d->crop_y = (uint32_t)train_rng_below(rng, h - d->crop_h + 1);
            d->crop_x = (uint32_t)train_rng_below(rng, w - d->crop_w + 1);
            return;
        }
    }
    d->crop_w = w;
    d->crop_h = h;
    if (in_ratio < a->crop_ratio[0])
        d->crop_h = (uint32_t)fmax(1.0, nearbyint(w / a->crop_ratio[0]));
    else if (in_ratio > a->crop_ratio[1])
        d->crop_w = (uint32_t)fmax(1.0, nearbyint(h * a->crop_ratio[1]));
    d->crop_h = d->crop_h > h ? h : d->crop_h;
    d->crop_w = d->crop_w > w ? w : d->crop_w;
    d->crop_y = (h - d->crop_h) / 2;
    d->crop_x = (w - d->crop_w) / 2;
}

void train_augment_draw(const struct train_loader_opts *o, uint64_t epoch, uint64_t pos, uint32_t h,
                        uint32_t w, struct train_aug_draw *d)
{
    const struct train_augment *a = &o->aug;
    struct train_rng rng;

    memset(d, 0, sizeof(*d));
    d->crop_h = h;
    d->crop_w = w;
    d->brightness = d->contrast = 1.0;
    /* Each draw is taken only when its option is on, always in this order. */
    train_rng_seed(&rng, train_hash3(o->seed ^ STREAM_AUG2, epoch, pos));
    if (a->resized_crop)
        draw_crop(a, &rng, h, w, d);
    if (o->crop_pad > 0) {
        d->pad_dy =
            (int32_t)train_rng_below(&rng, 2 * (uint64_t)o->crop_pad + 1) - (int32_t)o->crop_pad;
        d->pad_dx =
            (int32_t)train_rng_below(&rng, 2 * (uint64_t)o->crop_pad + 1) - (int32_t)o->crop_pad;
    }
    if (o->hflip)
        d->hflip = (int)(train_rng_next(&rng) >> 63);
    if (a->vflip)
        d->vflip = (int)(train_rng_next(&rng) >> 63);
    if (a->rotate > 0.0)
        d->angle = uniform(&rng, -a->rotate, a->rotate);
    /* torchvision's ColorJitter draws factors in [max(0, 1 - x), 1 + x]. */
    if (a->brightness > 0.0)
        d->brightness = uniform(&rng, fmax(0.0, 1.0 - a->brightness), 1.0 + a->brightness);
    if (a->contrast > 0.0)
        d->contrast = uniform(&rng, fmax(0.0, 1.0 - a->contrast), 1.0 + a->contrast);
}

/* One source coordinate: -1 for "outside" (more than half a pixel beyond the image), else the
 * coordinate clamped into [0, n - 1]. */
static double src_coord(double v, uint32_t n)
{
    if (v < -0.5 || v > (double)n - 0.5)
        return -1.0;
    return v < 0.0 ? 0.0 : v > (double)(n - 1) ? (double)(n - 1) : v;
}

/* Rounds to the nearest integer (ties to even) and clamps into 0..255. */
static uint8_t to_u8(double v)
{
    v = nearbyint(v);
    return v <= 0.0 ? 0 : v >= 255.0 ? 255 : (uint8_t)v;
}

void train_augment_apply(const struct train_aug_draw *d, const uint8_t *in, uint32_t h, uint32_t w,
                         uint32_t c, uint8_t *out)
{
    /* Output pixel centre -> rotation about the centre (inverse) -> flips -> crop window
     * resized to h x w (pixel centres, as align_corners=False) -> crop_pad shift. */
    const double pi = 3.14159265358979323846;
    double th = d->angle * pi / 180.0, cs = cos(th), sn = sin(th);
    double cx = ((double)w - 1.0) / 2.0, cy = ((double)h - 1.0) / 2.0;
    double kx = (double)d->crop_w / w, ky = (double)d->crop_h / h;

    if (d->angle == 0.0) {
        cs = 1.0; /* rotation 0 must be the identity map exactly, whatever libm returns */
        sn = 0.0;
    }
    for (uint32_t oy = 0; oy < h; oy++)
        for (uint32_t ox = 0; ox < w; ox++) {
            double dx = ox - cx, dy = oy - cy;
            double u = cx + cs * dx - sn * dy, v = cy + sn * dx + cs * dy;
            uint8_t *dst = out + ((size_t)oy * w + ox) * c;
            if (d->hflip)
                u = (double)w - 1.0 - u;
            if (d->vflip)
                v = (double)h - 1.0 - v;
            u = d->crop_x + (u + 0.5) * kx - 0.5 + d->pad_dx;
            v = d->crop_y + (v + 0.5) * ky - 0.5 + d->pad_dy;
            u = src_coord(u, w);
            v = src_coord(v, h);
            if (u < 0.0 || v < 0.0) {
                memset(dst, 0, c);
                continue;
            }
            uint32_t x0 = (uint32_t)u, y0 = (uint32_t)v;
            uint32_t x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
            double fx = u - x0, fy = v - y0;
            for (uint32_t k = 0; k < c; k++) {
                double p00 = in[((size_t)y0 * w + x0) * c + k],
                       p01 = in[((size_t)y0 * w + x1) * c + k];
                double p10 = in[((size_t)y1 * w + x0) * c + k],
                       p11 = in[((size_t)y1 * w + x1) * c + k];
                double top = (1.0 - fx) * p00 + fx * p01, bot = (1.0 - fx) * p10 + fx * p11;
                dst[k] = to_u8((1.0 - fy) * top + fy * bot);
            }
        }
    if (d->brightness == 1.0 && d->contrast == 1.0)
        return;
    /* Brightness scales every value; contrast blends with the mean grey of the brightened
     * image (ITU-R 601 weights for 3 channels, as torchvision's rgb_to_grayscale). */
    size_t plane = (size_t)h * w;
    double sum = 0.0;
    for (size_t p = 0; p < plane; p++) {
        const uint8_t *px = out + p * c;
        if (c == 3)
            sum += 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2];
        else
            for (uint32_t k = 0; k < c; k++)
                sum += px[k] / (double)c;
    }
    double mean = d->brightness * sum / (double)plane;
    for (size_t i = 0; i < plane * c; i++)
        out[i] = to_u8(d->contrast * (d->brightness * out[i]) + (1.0 - d->contrast) * mean);
}

void train_augment_image(const struct train_loader_opts *o, uint64_t epoch, uint64_t pos,
                         const uint8_t *in, uint32_t h, uint32_t w, uint32_t c, uint8_t *out)
{
    if (aug_on(&o->aug)) {
        struct train_aug_draw d;
        train_augment_draw(o, epoch, pos, h, w, &d);
        train_augment_apply(&d, in, h, w, c, out);
        return;
    }
    /* hflip and crop_pad alone keep their original draws, so recipes without the newer
     * options give the batches they always gave. */
    uint64_t r = train_hash3(o->seed ^ STREAM_AUGMENT, epoch, pos);
    int flip = o->hflip ? (int)(r & 1) : 0;
    uint32_t span = 2 * o->crop_pad + 1;
    /* Offsets of the crop window in the padded image, minus the padding: in [-pad, pad]. */
    int64_t dy = o->crop_pad ? (int64_t)((r >> 8) % span) - o->crop_pad : 0;
    int64_t dx = o->crop_pad ? (int64_t)((r >> 32) % span) - o->crop_pad : 0;

    for (uint32_t y = 0; y < h; y++) {
        int64_t sy = (int64_t)y + dy;
        for (uint32_t x = 0; x < w; x++) {
            int64_t xc = flip ? (int64_t)(w - 1 - x) : (int64_t)x;
            int64_t sx = xc + dx;
            uint8_t *dst = out + ((size_t)y * w + x) * c;
            if (sy < 0 || sy >= h || sx < 0 || sx >= w)
                memset(dst, 0, c);
            else
                memcpy(dst, in + ((size_t)sy * w + (size_t)sx) * c, c);
        }
    }
}

static void normalize_one(const struct train_loader *l, const uint8_t *hwc, float *out)
{
    size_t plane = (size_t)l->h * l->w;

    for (uint32_t k = 0; k < l->c; k++)
        for (size_t p = 0; p < plane; p++)
            out[k * plane + p] = l->lut[k][hwc[p * l->c + k]];
}

int train_loader_next(struct train_loader *l, float *x, uint32_t *labels, uint64_t *ids,
                      uint32_t *n, int *epoch_end)
{
    size_t chw = (size_t)l->h * l->w * l->c;
    uint64_t count;
    int augment = l->o.hflip || l->o.crop_pad > 0 || aug_on(&l->o.aug);
    int rc;

    *n = 0;
    if (l->cur.pos >= l->epoch_samples) {
        l->cur.epoch++;
        l->cur.pos = 0;
    }
    if (!l->order_valid || l->order_epoch != l->cur.epoch) {
        train_loader_epoch_order(l, l->cur.epoch, l->order);
        l->order_epoch = l->cur.epoch;
        l->order_valid = 1;
    }
    count = l->epoch_samples - l->cur.pos;
    if (count > l->o.batch_size)
        count = l->o.batch_size;
    if ((rc = store_read_begin(l->st)) != 0)
        return rc;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t pos = l->cur.pos + i;
        uint32_t idx = l->order[pos];
        struct store_image_hdr hdr;
        const uint8_t *px;
        rc = store_get_image(l->st, l->ids[idx], &hdr, &px);
        if (rc != 0)
            break;
        /* The store may have changed since the loader was made; never read past an image. */
        if (hdr.h != l->h || hdr.w != l->w || hdr.c != l->c) {
            rc = CWT_EFORMAT;
            break;
        }
        if (augment) {
            train_augment_image(&l->o, l->cur.epoch, pos, px, l->h, l->w, l->c, l->aug);
            px = l->aug;
        }
        normalize_one(l, px, x + i * chw);
        labels[i] = l->labels[idx];
        if (ids != NULL)
            ids[i] = l->ids[idx];
    }
    store_read_end(l->st);
    if (rc != 0)
        return rc;
    l->cur.pos += count;
    *n = (uint32_t)count;
    if (epoch_end != NULL)
        *epoch_end = l->cur.pos >= l->epoch_samples;
    return 0;
}

struct train_cursor train_loader_get_cursor(const struct train_loader *l)
{
    return l->cur;
}

void train_loader_set_cursor(struct train_loader *l, struct train_cursor c)
{
    l->cur = c;
}

void train_class_weights(const uint64_t *counts, uint32_t classes, float *out)
{
    uint64_t total = 0;
    uint32_t present = 0;

    for (uint32_t k = 0; k < classes; k++) {
        total += counts[k];
        present += counts[k] > 0;
    }
    for (uint32_t k = 0; k < classes; k++)
        out[k] =
            counts[k] > 0 ? (float)((double)total / ((double)present * (double)counts[k])) : 1.0f;
}

const struct train_loader_opts *train_loader_opts(const struct train_loader *l)
{
    return &l->o;
}
