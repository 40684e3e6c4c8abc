/*
 * engine.c - the public contract (engine.h) on top of the backends (backend.h): device choice,
 * argument checks, the model's description and initialisation (graph.c, shared by every
 * backend), tensors by name, and the dispatch of everything else to the device's backend.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "engine/model.h"

int eng_device_open(const char *choice, int validation, struct eng_device **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    const char *env = getenv("CWT_VK_DEVICE");
    if (env && *env)
        choice = env;
    if (choice == NULL || *choice == '\0' || strcmp(choice, "auto") == 0) {
        /* A GPU if there is one; else the CPU backend, which is faster than Vulkan on
         * llvmpipe; Vulkan on whatever device exists only if the CPU backend cannot start. */
        int rc = vk_device_open(NULL, ENG_VK_GPU, validation, out, err, errlen);
        if (rc != CWT_ENOENT && rc != CWT_EVULKAN)
            return rc;
        rc = cpu_device_open(out, err, errlen);
        if (rc == 0 || rc == CWT_ENOMEM)
            return rc;
        return vk_device_open(NULL, ENG_VK_ANY, validation, out, err, errlen);
    }
    if (strcmp(choice, "cpu") == 0)
        return cpu_device_open(out, err, errlen);
    if (strcmp(choice, "vulkan") == 0)
        return vk_device_open(NULL, ENG_VK_ANY, validation, out, err, errlen);
    if (strcmp(choice, "lavapipe") == 0)
        return vk_device_open("llvmpipe", ENG_VK_NAMED, validation, out, err, errlen);
    return vk_device_open(choice, ENG_VK_NAMED, validation, out, err, errlen);
}

void eng_device_close(struct eng_device *d)
{
    if (!d)
        return;
    d->be->device_close(d);
    free(d);
}

void eng_device_get_info(const struct eng_device *d, struct eng_device_info *info)
{
    *info = d->info;
}

uint32_t eng_device_validation_errors(const struct eng_device *d)
{
    return d->validation_msgs;
}

/* ------------------------------------------------------------------ models */

static int check_spec(const struct eng_model_spec *spec, const struct eng_optim_spec *opt,
                      uint32_t max_batch, char *err, size_t errlen)
{
    int is_cnn = strcmp(spec->arch, "cnn-small") == 0, is_res = strcmp(spec->arch, "resnet") == 0;
    if (!is_cnn && !is_res)
        return cwt_seterr(err, errlen, CWT_EUNSUPPORTED,
                          "unknown architecture \"%.32s\" (cnn-small or resnet)", spec->arch);
    if (is_res && spec->depth != 8 && spec->depth != 10 && spec->depth != 18)
        return cwt_seterr(err, errlen, CWT_EUNSUPPORTED, "resnet depth %u (8, 10 or 18)",
                          spec->depth);
    if (is_res && !(spec->width > 0.0f && spec->width <= 16.0f))
        return cwt_seterr(err, errlen, CWT_EINVAL, "resnet width must be in (0, 16]");
    if (spec->in_c != 1 && spec->in_c != 3)
        return cwt_seterr(err, errlen, CWT_EINVAL, "input channels must be 1 or 3");
    if (spec->in_h < 4 || spec->in_w < 4 || spec->in_h > 1024 || spec->in_w > 1024)
        return cwt_seterr(err, errlen, CWT_EINVAL, "input size %ux%u out of range", spec->in_h,
                          spec->in_w);
    if (spec->classes < 2 || spec->classes > CWT_MAX_CLASSES)
        return cwt_seterr(err, errlen, CWT_EINVAL, "classes must be in 2..%d", CWT_MAX_CLASSES);
    if (!(spec->dropout >= 0.0f && spec->dropout < 1.0f))
        return cwt_seterr(err, errlen, CWT_EINVAL, "dropout must be in [0, 1)");
    if (max_batch == 0 || max_batch > 65536)
        return cwt_seterr(err, errlen, CWT_EINVAL, "max_batch must be in 1..65536");
    if (opt->kind != ENG_SGD && opt->kind != ENG_ADAM && opt->kind != ENG_ADAMW)
        return cwt_seterr(err, errlen, CWT_EINVAL, "unknown optimizer");
    if (opt->kind != ENG_SGD && !(opt->beta1 >= 0.0f && opt->beta1 < 1.0f && opt->beta2 >= 0.0f &&
                                  opt->beta2 < 1.0f && opt->eps > 0.0f))
        return cwt_seterr(err, errlen, CWT_EINVAL, "Adam needs 0 <= betas < 1 and eps > 0");
    return 0;
}

int eng_model_create(struct eng_device *dev, const struct eng_model_spec *spec,
                     const struct eng_optim_spec *opt, uint32_t max_batch, struct eng_model **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    int rc = check_spec(spec, opt, max_batch, err, errlen);
    if (rc != 0)
        return rc;
    struct eng_model *m = calloc(1, sizeof(*m));
    if (!m)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory creating the model");
    m->d = dev;
    m->spec = *spec;
    m->spec.arch[sizeof(m->spec.arch) - 1] = '\0';
    m->opt = *opt;
    m->max_batch = max_batch;
    rc = eng_graph_build(m, err, errlen);
    if (rc == 0)
        rc = dev->be->model_init(m, err, errlen);
    if (rc == 0)
        rc = eng_graph_init(m, err, errlen);
    if (rc != 0) {
        eng_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void eng_model_free(struct eng_model *m)
{
    if (!m)
        return;
    m->d->be->model_free(m);
    free(m);
}

/* ------------------------------------------------------------------ fine-tuning */

uint32_t eng_model_stages(const struct eng_model *m)
{
    return m->nstages;
}

/* Marks a layer's parameters with their lr multiplier. */
static void scale_layer(struct eng_model *m, const struct layer *l, float scale)
{
    const int idx[4] = {l->w, l->b, l->gamma, l->beta};
    for (int i = 0; i < 4; i++)
        if (idx[i] >= 0)
            m->t[idx[i]].lr_scale = scale;
}

int eng_model_set_finetune(struct eng_model *m, const struct eng_finetune *f, char *err,
                           size_t errlen)
{
    if (m->used)
        return cwt_seterr(err, errlen, CWT_ESTATE,
                          "fine-tuning groups must be set before the first step");
    if (f->freeze_stages > m->nstages)
        return cwt_seterr(
            err, errlen, CWT_EINVAL, "cannot freeze %u stages: the model has %u (stem = stage 0)%s",
            f->freeze_stages, m->nstages, m->nstages == 0 ? "; freezing needs a resnet" : "");
    if (!(f->backbone_lr_scale >= 0.0f && f->backbone_lr_scale <= 1e3f))
        return cwt_seterr(err, errlen, CWT_EINVAL, "backbone lr scale must be in [0, 1000]");
    for (uint32_t i = 0; i < m->nl; i++) {
        struct layer *l = &m->layers[i];
        l->frozen = l->stage < f->freeze_stages;
        scale_layer(m, l,
                    l->stage == ENG_STAGE_HEAD ? 1.0f
                    : l->frozen                ? 0.0f
                                               : f->backbone_lr_scale);
    }
    /* Frozen layers form a prefix of the network (the stem and the first stages), so nothing
     * downstream needs the gradient of what they produce: the first trainable layers skip
     * their data gradient, and no backward work is recorded for the frozen ones. */
    for (uint32_t i = 0; i < m->nacts; i++)
        m->acts[i].needs_grad = i != (uint32_t)m->input;
    for (uint32_t i = 0; i < m->nl; i++)
        if (m->layers[i].frozen)
            m->acts[m->layers[i].out].needs_grad = 0;
    return 0;
}

/* ------------------------------------------------------------------ steps */

int eng_train_begin(struct eng_model *m, const float *x, const uint32_t *labels, uint32_t n,
                    const float *class_weights, float lr)
{
    if (!x || !labels || n == 0 || n > m->max_batch || !isfinite(lr))
        return CWT_EINVAL;
    uint32_t K = m->spec.classes;
    for (uint32_t i = 0; i < n; i++)
        if (labels[i] >= K)
            return CWT_EINVAL;
    if (class_weights)
        for (uint32_t k = 0; k < K; k++)
            if (!isfinite(class_weights[k]) || class_weights[k] < 0.0f)
                return CWT_EINVAL;
    m->used = 1;
    return m->d->be->train_begin(m, x, labels, n, class_weights, lr);
}

int eng_train_end(struct eng_model *m, float *loss, uint32_t *correct)
{
    return m->d->be->train_end(m, loss, correct);
}

int eng_predict(struct eng_model *m, const float *x, uint32_t n, float *probs)
{
    if (!x || !probs || n == 0 || n > m->max_batch)
        return CWT_EINVAL;
    m->used = 1;
    return m->d->be->predict(m, x, n, probs);
}

/* ------------------------------------------------------------------ tensors */

uint32_t eng_model_tensor_count(const struct eng_model *m)
{
    return m->nt;
}

int eng_model_tensor_info(const struct eng_model *m, uint32_t i, struct eng_tensor_info *info)
{
    if (i >= m->nt)
        return CWT_ENOENT;
    const struct mtensor *t = &m->t[i];
    info->name = t->name;
    info->kind = t->kind;
    info->ndim = t->ndim;
    memset(info->shape, 0, sizeof(info->shape));
    memcpy(info->shape, t->shape, t->ndim * sizeof(uint32_t));
    info->numel = t->numel;
    info->lr_scale = t->kind == ENG_T_PARAM ? t->lr_scale : 1.0f;
    return 0;
}

int eng_model_read_tensor(struct eng_model *m, uint32_t i, float *dst)
{
    if (i >= m->nt)
        return CWT_ENOENT;
    return m->d->be->read_tensor(m, i, dst);
}

int eng_model_write_tensor(struct eng_model *m, uint32_t i, const float *src)
{
    if (i >= m->nt)
        return CWT_ENOENT;
    return m->d->be->write_tensor(m, i, src);
}

uint64_t eng_model_step(const struct eng_model *m)
{
    return m->step;
}

void eng_model_set_step(struct eng_model *m, uint64_t step)
{
    m->step = step;
}
