/*
 * train_state.c - model state to and from safetensors images: exports, imports, checkpoints.
 *
 * Tensor names are the engine's (PyTorch naming, see engine.h); __metadata__ describes the
 * model so that a reader can rebuild it and check that it fits (train.h lists the keys).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/train/train.h"
#include "storage/safetensors.h"

#define STATE_FORMAT "cwt-model-v1"

static int kind_selected(enum eng_tensor_kind kind, int flags)
{
    if (kind == ENG_T_OPTIM)
        return (flags & TRAIN_SAVE_OPTIM) != 0;
    return (flags & TRAIN_SAVE_WEIGHTS) != 0;
}

/* Comma-joined class names, or "" when they do not fit in one metadata value. */
static void join_class_names(const struct cwt_recipe *r, char *out, size_t len)
{
    size_t used = 0;

    out[0] = '\0';
    if (r == NULL || r->n_class_names == 0 || r->n_class_names != r->classes)
        return;
    for (uint32_t k = 0; k < r->n_class_names; k++) {
        int w = snprintf(out + used, len - used, "%s%s", k ? "," : "", r->class_names[k]);
        if (w < 0 || (size_t)w >= len - used) {
            out[0] = '\0';
            return;
        }
        used += (size_t)w;
    }
}

static int add_meta(struct st_writer *w, const char *key, const char *value, char *err,
                    size_t errlen)
{
    int rc = st_writer_meta(w, key, value);

    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "cannot add metadata '%s': %s", key, cwt_strerror(rc));
    return 0;
}

int train_state_save(struct eng_model *m, const struct eng_model_spec *spec,
                     const struct train_norm *norm, const struct cwt_recipe *recipe, int flags,
                     const struct train_kv *extra, size_t n_extra, uint8_t **out, size_t *outlen,
                     char *err, size_t errlen)
{
    struct st_writer *w = NULL;
    uint8_t fp[32];
    char fp_hex[65], buf[256], mean[256], sd[256];
    float *data = NULL;
    uint64_t data_cap = 0;
    uint32_t count = eng_model_tensor_count(m);
    int rc;

    *out = NULL;
    *outlen = 0;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if ((rc = st_writer_new(&w)) != 0)
        return cwt_seterr(err, errlen, rc, "out of memory");
    eng_model_fingerprint(m, fp);
    cwt_hex(fp, sizeof(fp), fp_hex);

#define META(k, v)                                                                                 \
    do {                                                                                           \
        if ((rc = add_meta(w, (k), (v), err, errlen)) != 0)                                        \
            goto done;                                                                             \
    } while (0)
    META("format", STATE_FORMAT);
    META("arch", spec->arch);
    snprintf(buf, sizeof(buf), "%u", spec->depth);
    META("depth", buf);
    snprintf(buf, sizeof(buf), "%.9g", (double)spec->width);
    META("width", buf);
    snprintf(buf, sizeof(buf), "%ux%ux%u", spec->in_h, spec->in_w, spec->in_c);
    META("input", buf);
    snprintf(buf, sizeof(buf), "%u", spec->classes);
    META("classes", buf);
    snprintf(buf, sizeof(buf), "%.9g", (double)spec->dropout);
    META("dropout", buf);
    META("fingerprint", fp_hex);
    if (norm != NULL && norm->channels > 0) {
        train_norm_format(norm, mean, sd, sizeof(mean));
        META("norm_mean", mean);
        META("norm_std", sd);
    }
    join_class_names(recipe, buf, sizeof(buf));
    if (buf[0] != '\0')
        META("class_names", buf);
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)eng_model_step(m));
    META("step", buf);
    for (size_t i = 0; i < n_extra; i++)
        META(extra[i].key, extra[i].value);
#undef META

    for (uint32_t i = 0; i < count; i++) {
        struct eng_tensor_info info;
        uint64_t shape[4];
        if ((rc = eng_model_tensor_info(m, i, &info)) != 0)
            goto done;
        if (!kind_selected(info.kind, flags))
            continue;
        if (info.numel > data_cap) {
            float *bigger;
            size_t bytes;
            if (cwt_mul_size(info.numel, sizeof(float), &bytes) != 0) {
                rc = CWT_ETOOBIG;
                goto done;
            }
            bigger = realloc(data, bytes);
            if (bigger == NULL) {
                rc = CWT_ENOMEM;
                goto done;
            }
            data = bigger;
            data_cap = info.numel;
        }
        if ((rc = eng_model_read_tensor(m, i, data)) != 0) {
            cwt_seterr(err, errlen, rc, "cannot read tensor %s from the device", info.name);
            goto done;
        }
        for (uint32_t d = 0; d < info.ndim && d < 4; d++)
            shape[d] = info.shape[d];
        if ((rc = st_writer_add(w, info.name, ST_F32, info.ndim, shape, data)) != 0) {
            cwt_seterr(err, errlen, rc, "cannot add tensor %s: %s", info.name, cwt_strerror(rc));
            goto done;
        }
    }
    rc = st_writer_finish(w, out, outlen);
    if (rc != 0)
        cwt_seterr(err, errlen, rc, "cannot serialise the model: %s", cwt_strerror(rc));
done:
    if (rc != 0 && err != NULL && errlen > 0 && err[0] == '\0')
        cwt_seterr(err, errlen, rc, "cannot save the model: %s", cwt_strerror(rc));
    free(data);
    st_writer_free(w);
    return rc;
}

/* Value of a metadata key, or NULL. */
static const char *meta_value(const struct st_file *f, const char *key)
{
    for (uint32_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

/* PyTorch's BatchNorm keeps a batch counter, <layer>.num_batches_tracked (int64, 0-d), that
 * cwt does not use; exports add one per batch-norm layer so that load_state_dict(strict=True)
 * accepts them, and imports skip them. */
#define BN_COUNTER      ".num_batches_tracked"
#define BN_RUNNING_MEAN ".running_mean"

/* Length of the layer prefix when name is "<prefix><suffix>", else 0. */
static size_t prefix_len(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);

    return n > s && strcmp(name + n - s, suffix) == 0 ? n - s : 0;
}

/* out = the first p characters of name, then suffix; CWT_ETOOBIG if that is not a valid
 * tensor name length. */
static int layer_tensor_name(char out[ST_NAME_MAX + 1], const char *name, size_t p,
                             const char *suffix)
{
    if (p + strlen(suffix) > ST_NAME_MAX)
        return CWT_ETOOBIG;
    snprintf(out, ST_NAME_MAX + 1, "%.*s%s", (int)p, name, suffix);
    return 0;
}

/* Whether file tensor ft is a BN counter of one of m's batch-norm layers. */
static int is_bn_counter(struct eng_model *m, const struct st_tensor *ft)
{
    size_t p = prefix_len(ft->name, BN_COUNTER);
    char want[ST_NAME_MAX + 1];
    struct eng_tensor_info info;

    if (p == 0 || ft->dtype != ST_I64 || ft->ndim != 0 ||
        layer_tensor_name(want, ft->name, p, BN_RUNNING_MEAN) != 0)
        return 0;
    for (uint32_t i = 0; i < eng_model_tensor_count(m); i++)
        if (eng_model_tensor_info(m, i, &info) == 0 && strcmp(info.name, want) == 0)
            return 1;
    return 0;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    int64_t v;

    if (s == NULL || cwt_parse_i64(s, 0, max, &v) != 0)
        return CWT_EFORMAT;
    *out = (uint32_t)v;
    return 0;
}

/* Reads the descriptive metadata back (arch, shape, norm, step). */
static int read_meta(const struct st_file *f, struct train_model_meta *meta, char *err,
                     size_t errlen)
{
    const char *arch = meta_value(f, "arch"), *input = meta_value(f, "input");
    const char *step = meta_value(f, "step"), *mean = meta_value(f, "norm_mean");
    const char *sd = meta_value(f, "norm_std"), *width = meta_value(f, "width");
    const char *dropout = meta_value(f, "dropout");
    struct eng_model_spec *s = &meta->spec;
    unsigned h, w, c;
    char tail;
    double d;
    int64_t v;

    memset(meta, 0, sizeof(*meta));
    if (arch == NULL || strlen(arch) >= sizeof(s->arch))
        return cwt_seterr(err, errlen, CWT_EFORMAT, "metadata 'arch' is missing or too long");
    strcpy(s->arch, arch);
    if (parse_u32(meta_value(f, "depth"), 1000, &s->depth) != 0 ||
        parse_u32(meta_value(f, "classes"), CWT_MAX_CLASSES, &s->classes) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "metadata 'depth' or 'classes' is invalid");
    if (input == NULL || sscanf(input, "%5ux%5ux%2u%c", &h, &w, &c, &tail) != 3)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "metadata 'input' is not HxWxC");
    s->in_h = h;
    s->in_w = w;
    s->in_c = c;
    if (width == NULL || cwt_parse_double(width, 0, 1000, &d) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "metadata 'width' is invalid");
    s->width = (float)d;
    if (dropout == NULL || cwt_parse_double(dropout, 0, 1, &d) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "metadata 'dropout' is invalid");
    s->dropout = (float)d;
    if (step == NULL || cwt_parse_i64(step, 0, INT64_MAX, &v) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "metadata 'step' is invalid");
    meta->step = (uint64_t)v;
    if (mean != NULL || sd != NULL) {
        if (train_norm_parse(mean, sd, c, &meta->norm) != 0)
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "metadata 'norm_mean'/'norm_std' do not hold %u positive values", c);
        meta->has_norm = 1;
    }
    return 0;
}

int train_state_export(const uint8_t *buf, size_t len, uint8_t **out, size_t *outlen, char *err,
                       size_t errlen)
{
    struct st_file f;
    struct st_writer *w = NULL;
    struct train_model_meta meta;
    uint8_t counter[8];
    int rc;

    memset(&f, 0, sizeof(f));
    if ((rc = st_parse(buf, len, &f, err, errlen)) != 0)
        return rc;
    if ((rc = read_meta(&f, &meta, err, errlen)) != 0)
        goto done;
    for (int i = 0; i < 8; i++) /* safetensors data is little-endian */
        counter[i] = (uint8_t)(meta.step >> (8 * i));
    if ((rc = st_writer_new(&w)) != 0) {
        cwt_seterr(err, errlen, rc, "cannot start the export: %s", cwt_strerror(rc));
        goto done;
    }
    for (uint32_t i = 0; i < f.n_meta; i++)
        if ((rc = add_meta(w, f.meta[i].key, f.meta[i].value, err, errlen)) != 0)
            goto done;
    for (uint32_t i = 0; i < f.n; i++) {
        const struct st_tensor *t = &f.tensors[i];
        size_t p = prefix_len(t->name, BN_RUNNING_MEAN);
        char name[ST_NAME_MAX + 1];

        /* Optimizer state (the daemon's final model is a full bundle payload) is training
         * state, not model: an export holds weights and buffers only (docs/model-export.md). */
        if (strncmp(t->name, "optim.", 6) == 0)
            continue;
        rc = st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, f.data + t->begin);
        if (rc == 0 && p > 0 && (rc = layer_tensor_name(name, t->name, p, BN_COUNTER)) == 0)
            rc = st_writer_add(w, name, ST_I64, 0, NULL, counter);
        if (rc != 0) {
            cwt_seterr(err, errlen, rc, "cannot add tensor %s: %s", t->name, cwt_strerror(rc));
            goto done;
        }
    }
    rc = st_writer_finish(w, out, outlen);
    if (rc != 0)
        cwt_seterr(err, errlen, rc, "cannot serialise the export: %s", cwt_strerror(rc));
done:
    st_writer_free(w);
    st_free(&f);
    return rc;
}

int train_state_load(struct eng_model *m, const uint8_t *buf, size_t len, int flags,
                     struct train_model_meta *meta, char *err, size_t errlen)
{
    struct st_file f;
    struct train_model_meta local;
    uint32_t count = eng_model_tensor_count(m);
    int32_t *file_index = NULL; /* model tensor -> file tensor, or -1 */
    float *data = NULL;
    uint64_t data_cap = 0;
    uint8_t fp[32], fp_file[32];
    const char *format, *fp_text;
    int rc;

    memset(&f, 0, sizeof(f));
    if ((rc = st_parse(buf, len, &f, err, errlen)) != 0)
        return rc;
    format = meta_value(&f, "format");
    if (format == NULL || strcmp(format, STATE_FORMAT) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EFORMAT, "not a cwt model (metadata format is not %s)",
                        STATE_FORMAT);
        goto done;
    }
    if ((rc = read_meta(&f, meta != NULL ? meta : &local, err, errlen)) != 0)
        goto done;
    eng_model_fingerprint(m, fp);
    fp_text = meta_value(&f, "fingerprint");
    if (fp_text == NULL || strlen(fp_text) != 64 || cwt_unhex(fp_text, fp_file, 32) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EFORMAT, "metadata 'fingerprint' is missing or invalid");
        goto done;
    }
    if (memcmp(fp, fp_file, 32) != 0) {
        char want[65];
        cwt_hex(fp, 32, want);
        rc = cwt_seterr(err, errlen, CWT_EB_MODEL,
                        "model fingerprint %.16s... does not match the recipe's model %.16s...",
                        fp_text, want);
        goto done;
    }
    if (meta != NULL)
        memcpy(meta->fingerprint, fp, 32);

    file_index = malloc((count > 0 ? count : 1) * sizeof(int32_t));
    if (file_index == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < count; i++)
        file_index[i] = -1;
    /* Every tensor in the file must be one of the model's, with its shape. */
    for (uint32_t t = 0; t < f.n; t++) {
        const struct st_tensor *ft = &f.tensors[t];
        struct eng_tensor_info info;
        uint32_t i;
        for (i = 0; i < count; i++) {
            if ((rc = eng_model_tensor_info(m, i, &info)) != 0)
                goto done;
            if (strcmp(info.name, ft->name) == 0)
                break;
        }
        if (i == count && is_bn_counter(m, ft))
            continue; /* an export's num_batches_tracked: not used by cwt */
        if (i == count) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT, "tensor '%s' is not part of the model",
                            ft->name);
            goto done;
        }
        if (ft->dtype != ST_F32 || ft->ndim != info.ndim) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT, "tensor '%s' is not F32 of rank %u", ft->name,
                            info.ndim);
            goto done;
        }
        for (uint32_t d = 0; d < info.ndim; d++) {
            if (ft->shape[d] != info.shape[d]) {
                rc = cwt_seterr(err, errlen, CWT_EFORMAT,
                                "tensor '%s' has dimension %u of %llu, the model %u", ft->name, d,
                                (unsigned long long)ft->shape[d], info.shape[d]);
                goto done;
            }
        }
        if (kind_selected(info.kind, flags))
            file_index[i] = (int32_t)t;
    }
    for (uint32_t i = 0; i < count; i++) {
        struct eng_tensor_info info;
        if ((rc = eng_model_tensor_info(m, i, &info)) != 0)
            goto done;
        if (kind_selected(info.kind, flags) && file_index[i] < 0) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT, "tensor '%s' is missing", info.name);
            goto done;
        }
    }
    if ((rc = st_check_finite(&f, err, errlen)) != 0)
        goto done;
    /* Everything checks out: only now touch the model. */
    for (uint32_t i = 0; i < count; i++) {
        const struct st_tensor *ft;
        struct eng_tensor_info info;
        if (file_index[i] < 0)
            continue;
        ft = &f.tensors[file_index[i]];
        if ((rc = eng_model_tensor_info(m, i, &info)) != 0)
            goto done;
        if (info.numel > data_cap) {
            float *bigger = realloc(data, (size_t)info.numel * sizeof(float));
            if (bigger == NULL) {
                rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
                goto done;
            }
            data = bigger;
            data_cap = info.numel;
        }
        /* The data area need not be aligned for floats; copy rather than cast. */
        memcpy(data, f.data + ft->begin, (size_t)info.numel * sizeof(float));
        if ((rc = eng_model_write_tensor(m, i, data)) != 0) {
            cwt_seterr(err, errlen, rc, "cannot write tensor %s to the device", info.name);
            goto done;
        }
    }
    if (flags & TRAIN_SAVE_OPTIM)
        eng_model_set_step(m, meta != NULL ? meta->step : local.step);
    rc = 0;
done:
    free(data);
    free(file_index);
    st_free(&f);
    return rc;
}

int train_load_named(struct eng_device *dev, struct store *st, const char *name,
                     const struct cwt_recipe *r, struct eng_model **model,
                     struct eng_model_spec *spec, struct train_norm *norm, char *err, size_t errlen)
{
    struct eng_optim_spec os;
    struct train_model_meta meta;
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc;

    *model = NULL;
    rc = store_model_get(st, name, &blob, &len);
    if (rc == CWT_ENOENT)
        return cwt_seterr(err, errlen, rc,
                          "no trained model in the store; run 'cwtctl train' first");
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "cannot read model '%s' from the store: %s", name,
                          cwt_strerror(rc));
    if ((rc = train_specs_from_recipe(r, spec, &os, err, errlen)) != 0)
        goto done;
    if ((rc = train_model_from_recipe(dev, r, model, err, errlen)) != 0)
        goto done;
    if ((rc = train_state_load(*model, blob, len, TRAIN_SAVE_WEIGHTS, &meta, err, errlen)) != 0)
        goto done;
    if (!meta.has_norm) {
        rc = cwt_seterr(err, errlen, CWT_EFORMAT, "model '%s' carries no normalisation statistics",
                        name);
        goto done;
    }
    *norm = meta.norm;
done:
    free(blob);
    if (rc != 0 && *model != NULL) {
        eng_model_free(*model);
        *model = NULL;
    }
    return rc;
}
