/*
 * train_eval.c - evaluation over store images and prediction on decoded images.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/train/train.h"

int train_evaluate(struct eng_model *m, struct store *st, const uint64_t *ids, size_t n,
                   uint32_t classes, const struct train_norm *norm, uint32_t batch_size,
                   struct train_metrics *out, float **probs_out, char *err, size_t errlen)
{
    struct train_loader_opts o;
    struct train_loader *l = NULL;
    float *x = NULL, *probs = NULL;
    uint32_t *labels = NULL, h, w, c;
    size_t chw, done = 0, bytes;
    int rc;

    memset(out, 0, sizeof(*out));
    if (probs_out != NULL)
        *probs_out = NULL;
    memset(&o, 0, sizeof(o));
    o.batch_size = batch_size > 0 ? batch_size : 1;
    o.norm = *norm;
    if ((rc = train_loader_new(st, ids, n, classes, &o, &l, err, errlen)) != 0)
        return rc;
    train_loader_shape(l, &h, &w, &c);
    chw = (size_t)h * w * c;
    if (cwt_mul_size(chw * sizeof(float), o.batch_size, &bytes) != 0 ||
        (x = malloc(bytes)) == NULL || (labels = malloc(n * sizeof(uint32_t))) == NULL ||
        cwt_mul_size(n * sizeof(float), classes, &bytes) != 0 || (probs = malloc(bytes)) == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for evaluating %zu images", n);
        goto done;
    }
    while (done < n) {
        uint32_t got;
        if ((rc = train_loader_next(l, x, labels + done, NULL, &got, NULL)) != 0) {
            cwt_seterr(err, errlen, rc, "cannot read images: %s", cwt_strerror(rc));
            goto done;
        }
        if ((rc = eng_predict(m, x, got, probs + done * classes)) != 0) {
            cwt_seterr(err, errlen, rc, "inference failed: %s", cwt_strerror(rc));
            goto done;
        }
        done += got;
    }
    if ((rc = train_metrics_compute(probs, labels, n, classes, out)) != 0) {
        cwt_seterr(err, errlen, rc, "cannot compute metrics: %s", cwt_strerror(rc));
        goto done;
    }
    if (probs_out != NULL) {
        *probs_out = probs;
        probs = NULL;
    }
done:
    free(x);
    free(labels);
    free(probs);
    train_loader_free(l);
    return rc;
}

int train_predict_images(struct eng_model *m, const struct eng_model_spec *spec,
                         const struct train_norm *norm, const uint8_t *hwc, uint32_t n,
                         uint32_t max_batch, float *probs)
{
    size_t chw = (size_t)spec->in_h * spec->in_w * spec->in_c, bytes;
    uint32_t chunk = max_batch > 0 ? max_batch : 1;
    float *x;
    int rc = 0;

    if (norm->channels != spec->in_c)
        return CWT_EINVAL;
    if (n < chunk)
        chunk = n > 0 ? n : 1;
    if (cwt_mul_size(chw * sizeof(float), chunk, &bytes) != 0)
        return CWT_ETOOBIG;
    if ((x = malloc(bytes)) == NULL)
        return CWT_ENOMEM;
    for (uint32_t i = 0; i < n && rc == 0; i += chunk) {
        uint32_t k = n - i < chunk ? n - i : chunk;
        train_normalize_images(norm, hwc + (size_t)i * chw, k, spec->in_h, spec->in_w, spec->in_c,
                               x);
        rc = eng_predict(m, x, k, probs + (size_t)i * spec->classes);
    }
    free(x);
    return rc;
}
