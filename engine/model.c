/*
 * model.c - model graphs (cnn-small, resnet), the arena, initialisation, fingerprint, and the
 * recording of a training step / inference into one command buffer.
 *
 * Tensor names and layouts follow PyTorch so an export loads into an equivalent module
 * (docs/engine.md has the module definitions):
 *   cnn-small  conv1.{weight,bias} [32,C,3,3]  conv2.{weight,bias} [64,32,3,3]
 *              fc1.{weight,bias} [128, 64*(H/4)*(W/4)]  fc2.{weight,bias} [K,128]
 *              (torch: Conv2d(C,32,3,padding=1), ReLU, MaxPool2d(2), Conv2d(32,64,3,padding=1),
 *               ReLU, MaxPool2d(2), Flatten, Linear, ReLU, Dropout, Linear)
 *   resnet     torchvision naming: conv1.weight, bn1.{weight,bias,running_mean,running_var},
 *              layerS.B.{conv1,bn1,conv2,bn2}.*, layerS.B.downsample.{0 (conv), 1 (bn)}.*,
 *              fc.{weight,bias}. Convolutions have no bias. num_batches_tracked is not kept
 *              (load with strict=False).
 *   optimizer  optim.<param>.momentum (SGD with momentum), optim.<param>.m / .v (Adam, AdamW)
 * Conv weights are OIHW, dense weights [out, in]; flatten order is PyTorch's (c, h, w).
 *
 * ResNet choices: depth 8 is the CIFAR family (He et al. 2016, 6n+2 with n = 1): three stages
 * of 16/32/64 channels, one basic block each. Depths 10 and 18 are the ImageNet family: four
 * stages of 64/128/256/512 channels with [1,1,1,1] and [2,2,2,2] blocks. Channels are scaled by
 * the width multiplier. Stem: inputs up to 64x64 get the CIFAR stem (3x3 conv, stride 1, BN,
 * ReLU; no pooling) so 28x28 and 32x32 images keep their resolution; larger inputs get the
 * ImageNet stem (7x7 conv stride 2, BN, ReLU, 3x3 max pool stride 2). Shortcuts are identity,
 * or 1x1 conv stride s + BN where the shape changes (option B). Head: global average pool, fc.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/cwt.h"
#include "engine/model.h"
#include "engine/rng.h"

#define BN_EPS      1e-5f
#define BN_MOMENTUM 0.1f

static const struct eng_tref NOBUF = {VK_NULL_HANDLE, 0, 0};

/* ------------------------------------------------------------- graph building */

struct builder {
    struct eng_model *m;
    int failed;
    char *err;
    size_t errlen;
};

static int add_tensor(struct builder *b, const char *name, enum eng_tensor_kind kind,
                      enum eng_region region, uint32_t ndim, const uint32_t *shape)
{
    struct eng_model *m = b->m;
    if (b->failed)
        return -1;
    if (m->nt == ENG_MAX_TENSORS) {
        b->failed = cwt_seterr(b->err, b->errlen, CWT_ETOOBIG, "model has too many tensors");
        return -1;
    }
    struct mtensor *t = &m->t[m->nt];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->kind = kind;
    t->region = region;
    t->ndim = ndim;
    t->numel = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= shape[i];
    }
    return (int)m->nt++;
}

static int add_param(struct builder *b, const char *prefix, const char *suffix, uint32_t ndim,
                     const uint32_t *shape)
{
    char name[96];
    snprintf(name, sizeof(name), "%s.%s", prefix, suffix);
    return add_tensor(b, name, ENG_T_PARAM, REG_PARAM, ndim, shape);
}

static int add_act(struct builder *b, uint32_t c, uint32_t h, uint32_t w, int relu)
{
    struct eng_model *m = b->m;
    if (b->failed)
        return -1;
    if (m->nacts == ENG_MAX_ACTS || c == 0 || h == 0 || w == 0) {
        b->failed =
            cwt_seterr(b->err, b->errlen, c == 0 || h == 0 || w == 0 ? CWT_EINVAL : CWT_ETOOBIG,
                       "model shape is invalid (input too small for the architecture?)");
        return -1;
    }
    struct act *a = &m->acts[m->nacts];
    memset(a, 0, sizeof(*a));
    a->c = c;
    a->h = h;
    a->w = w;
    a->relu = relu;
    a->needs_grad = 1;
    return (int)m->nacts++;
}

static struct layer *add_layer(struct builder *b, enum ltype t, int in)
{
    struct eng_model *m = b->m;
    if (b->failed || in < 0)
        return NULL;
    if (m->nl == ENG_MAX_LAYERS) {
        b->failed = cwt_seterr(b->err, b->errlen, CWT_ETOOBIG, "model has too many layers");
        return NULL;
    }
    struct layer *l = &m->layers[m->nl];
    memset(l, 0, sizeof(*l));
    l->t = t;
    l->in = in;
    l->out = -1;
    l->res = -1;
    l->w = l->b = l->gamma = l->beta = l->rm = l->rv = -1;
    l->salt = m->nl;
    m->nl++;
    return l;
}

static int conv(struct builder *b, const char *name, int in, uint32_t cout, uint32_t k,
                uint32_t stride, uint32_t pad, int bias, int relu)
{
    struct layer *l = add_layer(b, L_CONV, in);
    if (!l)
        return -1;
    const struct act *x = &b->m->acts[in];
    if (x->h + 2 * pad < k || x->w + 2 * pad < k) {
        b->failed = cwt_seterr(b->err, b->errlen, CWT_EINVAL, "input too small for layer %s", name);
        return -1;
    }
    uint32_t shape[4] = {cout, x->c, k, k};
    l->k = k;
    l->stride = stride;
    l->pad = pad;
    l->relu = relu;
    l->w = add_param(b, name, "weight", 4, shape);
    if (bias)
        l->b = add_param(b, name, "bias", 1, shape);
    l->out = add_act(b, cout, eng_out_dim(x->h, k, stride, pad), eng_out_dim(x->w, k, stride, pad),
                     relu);
    return l->out;
}

static int bn(struct builder *b, const char *name, int in, int relu, int res)
{
    struct layer *l = add_layer(b, L_BN, in);
    if (!l)
        return -1;
    const struct act *x = &b->m->acts[in];
    uint32_t shape[1] = {x->c};
    char nm[96];
    l->relu = relu;
    l->res = res;
    l->gamma = add_param(b, name, "weight", 1, shape);
    l->beta = add_param(b, name, "bias", 1, shape);
    snprintf(nm, sizeof(nm), "%s.running_mean", name);
    l->rm = add_tensor(b, nm, ENG_T_BUFFER, REG_BUF, 1, shape);
    snprintf(nm, sizeof(nm), "%s.running_var", name);
    l->rv = add_tensor(b, nm, ENG_T_BUFFER, REG_BUF, 1, shape);
    l->out = add_act(b, x->c, x->h, x->w, relu);
    return l->out;
}

static int pool(struct builder *b, enum ltype t, int in, uint32_t k, uint32_t stride, uint32_t pad)
{
    struct layer *l = add_layer(b, t, in);
    if (!l)
        return -1;
    const struct act *x = &b->m->acts[in];
    if (t == L_GAP) {
        l->out = add_act(b, x->c, 1, 1, 0);
        return l->out;
    }
    if (x->h + 2 * pad < k || x->w + 2 * pad < k) {
        b->failed = cwt_seterr(b->err, b->errlen, CWT_EINVAL, "input too small for pooling");
        return -1;
    }
    l->k = k;
    l->stride = stride;
    l->pad = pad;
    l->out =
        add_act(b, x->c, eng_out_dim(x->h, k, stride, pad), eng_out_dim(x->w, k, stride, pad), 0);
    return l->out;
}

static int flatten(struct builder *b, int in)
{
    struct layer *l = add_layer(b, L_FLATTEN, in);
    if (!l)
        return -1;
    const struct act *x = &b->m->acts[in];
    l->out = add_act(b, x->c * x->h * x->w, 1, 1, 0);
    return l->out;
}

static int dense(struct builder *b, const char *name, int in, uint32_t out, int relu)
{
    struct layer *l = add_layer(b, L_DENSE, in);
    if (!l)
        return -1;
    const struct act *x = &b->m->acts[in];
    uint32_t shape[2] = {out, x->c * x->h * x->w};
    l->relu = relu;
    l->w = add_param(b, name, "weight", 2, shape);
    l->b = add_param(b, name, "bias", 1, shape);
    l->out = add_act(b, out, 1, 1, relu);
    return l->out;
}

static int dropout(struct builder *b, int in, float p)
{
    struct layer *l = add_layer(b, L_DROPOUT, in);
    if (!l)
        return -1;
    const struct act *x = &b->m->acts[in];
    l->p = p;
    l->out = add_act(b, x->c, x->h, x->w, 0);
    return l->out;
}

static void build_cnn_small(struct builder *b, int x)
{
    const struct eng_model_spec *s = &b->m->spec;
    x = conv(b, "conv1", x, 32, 3, 1, 1, 1, 1);
    x = pool(b, L_MAXPOOL, x, 2, 2, 0);
    x = conv(b, "conv2", x, 64, 3, 1, 1, 1, 1);
    x = pool(b, L_MAXPOOL, x, 2, 2, 0);
    x = flatten(b, x);
    x = dense(b, "fc1", x, 128, 1);
    if (s->dropout > 0.0f)
        x = dropout(b, x, s->dropout);
    b->m->logits = dense(b, "fc2", x, s->classes, 0);
}

static uint32_t scaled(uint32_t base, float width)
{
    double c = floor((double)base * width + 0.5);
    return c < 4 ? 4 : c > 4096 ? 4096 : (uint32_t)c;
}

static int basic_block(struct builder *b, const char *name, int x, uint32_t cout, uint32_t stride)
{
    char nm[96];
    const struct act *a = &b->m->acts[x >= 0 ? x : 0];
    int need_proj = stride != 1 || a->c != cout;
    snprintf(nm, sizeof(nm), "%s.conv1", name);
    int y = conv(b, nm, x, cout, 3, stride, 1, 0, 0);
    snprintf(nm, sizeof(nm), "%s.bn1", name);
    y = bn(b, nm, y, 1, -1);
    snprintf(nm, sizeof(nm), "%s.conv2", name);
    y = conv(b, nm, y, cout, 3, 1, 1, 0, 0);
    int sc = x;
    if (need_proj) {
        snprintf(nm, sizeof(nm), "%s.downsample.0", name);
        sc = conv(b, nm, x, cout, 1, stride, 0, 0, 0);
        snprintf(nm, sizeof(nm), "%s.downsample.1", name);
        sc = bn(b, nm, sc, 0, -1);
    }
    snprintf(nm, sizeof(nm), "%s.bn2", name);
    return bn(b, nm, y, 1, sc);
}

static void build_resnet(struct builder *b, int x)
{
    const struct eng_model_spec *s = &b->m->spec;
    static const uint32_t cifar_w[3] = {16, 32, 64}, imnet_w[4] = {64, 128, 256, 512};
    const uint32_t *widths;
    uint32_t stages, blocks;
    if (s->depth == 8) {
        widths = cifar_w;
        stages = 3;
        blocks = 1;
    } else {
        widths = imnet_w;
        stages = 4;
        blocks = s->depth == 10 ? 1 : 2;
    }
    uint32_t c0 = scaled(widths[0], s->width);
    if ((uint64_t)s->in_h * s->in_w <= 64 * 64) {
        x = conv(b, "conv1", x, c0, 3, 1, 1, 0, 0);
        x = bn(b, "bn1", x, 1, -1);
    } else {
        x = conv(b, "conv1", x, c0, 7, 2, 3, 0, 0);
        x = bn(b, "bn1", x, 1, -1);
        x = pool(b, L_MAXPOOL, x, 3, 2, 1);
    }
    char nm[64];
    for (uint32_t st = 0; st < stages; st++)
        for (uint32_t bl = 0; bl < blocks; bl++) {
            snprintf(nm, sizeof(nm), "layer%u.%u", st + 1, bl);
            x = basic_block(b, nm, x, scaled(widths[st], s->width), st > 0 && bl == 0 ? 2 : 1);
        }
    x = pool(b, L_GAP, x, 0, 1, 0);
    b->m->logits = dense(b, "fc", x, s->classes, 0);
}

/* ------------------------------------------------------------------ arena */

static VkDeviceSize take(VkDeviceSize *cursor, VkDeviceSize bytes)
{
    VkDeviceSize off = *cursor;
    *cursor += eng_align(bytes);
    return off;
}

/* Lays out every region; fails if one tensor exceeds the device's storage buffer range. */
static int layout(struct eng_model *m, char *err, size_t errlen)
{
    const uint64_t nb = m->max_batch;
    const uint64_t range = m->d->info.max_storage_buffer_range;
    VkDeviceSize cur[REG_COUNT] = {0};
    uint32_t nparams = m->nt;
    for (uint32_t i = 0; i < nparams; i++) {
        struct mtensor *t = &m->t[i];
        t->off = take(&cur[t->region], t->numel * 4);
    }
    /* gradients and optimizer state mirror the parameter region */
    cur[REG_GRAD] = cur[REG_PARAM];
    int nstates = m->opt.kind == ENG_SGD ? (m->opt.momentum != 0.0f ? 1 : 0) : 2;
    for (int s = 0; s < nstates; s++) {
        cur[REG_OPT1 + s] = cur[REG_PARAM];
        for (uint32_t i = 0; i < nparams; i++) {
            if (m->t[i].kind != ENG_T_PARAM)
                continue;
            char nm[96];
            const char *suffix = m->opt.kind == ENG_SGD ? "momentum" : s == 0 ? "m" : "v";
            if ((size_t)snprintf(nm, sizeof(nm), "optim.%s.%s", m->t[i].name, suffix) >= sizeof(nm))
                return cwt_seterr(err, errlen, CWT_ETOOBIG, "tensor name too long");
            struct builder b = {m, 0, err, errlen};
            int ti = add_tensor(&b, nm, ENG_T_OPTIM, (enum eng_region)(REG_OPT1 + s), m->t[i].ndim,
                                m->t[i].shape);
            if (ti < 0)
                return b.failed;
            m->t[ti].off = m->t[i].off;
        }
    }
    /* activations: values and gradients, sized for max_batch */
    VkDeviceSize *ca = &cur[REG_ACT];
    VkDeviceSize max_act = 0;
    for (uint32_t i = 0; i < m->nacts; i++) {
        struct act *a = &m->acts[i];
        uint64_t bytes = (uint64_t)a->c * a->h * a->w * nb * 4;
        if (bytes > range)
            return cwt_seterr(err, errlen, CWT_ETOOBIG,
                              "an activation of %llu bytes exceeds the device's storage buffer "
                              "range (%llu); use a smaller batch",
                              (unsigned long long)bytes, (unsigned long long)range);
        if (bytes > max_act)
            max_act = bytes;
        a->off = take(ca, bytes);
        if (a->needs_grad)
            a->goff = take(ca, bytes);
    }
    m->temp_bytes = max_act;
    m->a_temp = take(ca, max_act);
    /* im2col scratch of the CPU convolution path, shared by all layers (one op at a time). The
     * ops work in chunks of images that fit it; chunks of about ENG_COL_CHUNK_BYTES stay in the
     * CPU caches between the im2col and the GEMM that reads it, which measured 2-3x faster on
     * lavapipe than whole-batch chunks (64 MiB). At least one image of every layer must fit. */
    VkDeviceSize col = 0;
    for (uint32_t i = 0; i < m->nl; i++) {
        struct layer *l = &m->layers[i];
        if (l->t != L_CONV)
            continue;
        const struct act *x = &m->acts[l->in], *y = &m->acts[l->out];
        struct eng_conv cv = {(uint32_t)nb, x->c, x->h, x->w,      y->c,  y->h,
                              y->w,         l->k, l->k, l->stride, l->pad};
        uint64_t want = eng_conv_col_bytes(m->d, &cv);
        cv.n = 1;
        uint64_t one = eng_conv_col_bytes(m->d, &cv) + 16; /* + rounding of the row stride */
        uint64_t chunk = one > ENG_COL_CHUNK_BYTES ? one : ENG_COL_CHUNK_BYTES;
        if (want > chunk)
            want = chunk;
        if (want > col)
            col = want;
    }
    if (col > range)
        col = range / ENG_ALIGN * ENG_ALIGN;
    m->col_bytes = col;
    m->a_col = take(ca, col);
    for (uint32_t i = 0; i < m->nl; i++) {
        struct layer *l = &m->layers[i];
        const struct act *x = &m->acts[l->in], *y = &m->acts[l->out];
        if (l->t == L_CONV) {
            l->aux = take(ca, m->t[l->w].numel * 4);
            struct eng_conv cv = {(uint32_t)nb, x->c, x->h, x->w,      y->c,  y->h,
                                  y->w,         l->k, l->k, l->stride, l->pad};
            l->scratch_bytes = eng_conv_filt_scratch(m->d, &cv) * 4;
            if (l->scratch_bytes > range)
                l->scratch_bytes = 0; /* op falls back to one split */
            l->scratch = take(ca, l->scratch_bytes);
        } else if (l->t == L_BN) {
            l->aux = take(ca, (VkDeviceSize)x->c * 2 * 4);
        } else if (l->t == L_MAXPOOL) {
            l->aux = take(ca, (uint64_t)y->c * y->h * y->w * nb * 4);
        }
    }
    uint32_t K = m->spec.classes;
    m->a_prm = take(ca, sizeof(struct eng_step_params));
    m->a_labels = take(ca, nb * 4);
    m->a_cw = take(ca, (VkDeviceSize)K * 4);
    m->a_ps = take(ca, nb * 3 * 4);
    m->a_res = take(ca, 4 * 4);
    m->a_probs = take(ca, nb * K * 4);
    for (int r = 0; r < REG_COUNT; r++)
        m->region_size[r] = cur[r];
    if (m->region_size[REG_PARAM] > range)
        return cwt_seterr(err, errlen, CWT_ETOOBIG,
                          "model parameters exceed the device's storage buffer range");

    /* staging slot layout */
    VkDeviceSize s = 0;
    m->s_prm = take(&s, sizeof(struct eng_step_params));
    m->s_labels = take(&s, nb * 4);
    m->s_cw = take(&s, (VkDeviceSize)K * 4);
    const struct act *in = &m->acts[m->input];
    m->s_x = take(&s, (uint64_t)in->c * in->h * in->w * nb * 4);
    m->s_res = take(&s, 4 * 4);
    m->s_probs = take(&s, nb * K * 4);
    m->s_size = s;
    return 0;
}

/* Fingerprint text: "cwt-model-v1", the architecture line, then "name kind d0xd1.." per
 * parameter and buffer tensor (optimizer state excluded: sites may differ in optimizer). */
static void fingerprint(struct eng_model *m)
{
    crypto_generichash_state st;
    char line[256];
    const struct eng_model_spec *s = &m->spec;
    crypto_generichash_init(&st, NULL, 0, 32);
    int n = snprintf(line, sizeof(line),
                     "cwt-model-v1\narch=%s depth=%u width=%.6g in=%ux%ux%u "
                     "classes=%u\n",
                     s->arch, strcmp(s->arch, "resnet") == 0 ? s->depth : 0,
                     strcmp(s->arch, "resnet") == 0 ? (double)s->width : 0.0, s->in_c, s->in_h,
                     s->in_w, s->classes);
    crypto_generichash_update(&st, (const unsigned char *)line, (size_t)n);
    for (uint32_t i = 0; i < m->nt; i++) {
        const struct mtensor *t = &m->t[i];
        if (t->kind == ENG_T_OPTIM)
            continue;
        n = snprintf(line, sizeof(line), "%s %s ", t->name,
                     t->kind == ENG_T_PARAM ? "param" : "buffer");
        for (uint32_t d = 0; d < t->ndim; d++)
            n += snprintf(line + n, sizeof(line) - (size_t)n, d ? "x%u" : "%u", t->shape[d]);
        n += snprintf(line + n, sizeof(line) - (size_t)n, "\n");
        crypto_generichash_update(&st, (const unsigned char *)line, (size_t)n);
    }
    crypto_generichash_final(&st, m->fingerprint, 32);
}

void eng_model_fingerprint(const struct eng_model *m, uint8_t out[32])
{
    memcpy(out, m->fingerprint, 32);
}

/* He (Kaiming) normal init for conv and dense weights, std = sqrt(2 / fan_in); zero biases;
 * batch norm gamma 1, beta 0, running mean 0, running var 1; optimizer state 0. Values are
 * drawn in tensor order from one generator seeded with spec->seed. */
static int init_weights(struct eng_model *m, char *err, size_t errlen)
{
    struct eng_rng rng;
    eng_rng_seed(&rng, m->spec.seed);
    for (uint32_t i = 0; i < m->nt; i++) {
        struct mtensor *t = &m->t[i];
        float *v = calloc(t->numel ? t->numel : 1, sizeof(float));
        if (!v)
            return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory initialising %s", t->name);
        size_t len = strlen(t->name);
        int is_weight = len > 7 && strcmp(t->name + len - 7, ".weight") == 0;
        if (t->kind == ENG_T_PARAM && is_weight && t->ndim >= 2) {
            double fan_in = (double)(t->numel / t->shape[0]);
            double std = sqrt(2.0 / fan_in);
            for (uint64_t j = 0; j < t->numel; j++)
                v[j] = (float)(eng_rng_normal(&rng) * std);
        } else if ((t->kind == ENG_T_PARAM && is_weight) ||
                   (len > 12 && strcmp(t->name + len - 12, ".running_var") == 0)) {
            for (uint64_t j = 0; j < t->numel; j++)
                v[j] = 1.0f; /* BN gamma, running var */
        }
        int rc = eng_model_write_tensor(m, i, v);
        free(v);
        if (rc != 0)
            return cwt_seterr(err, errlen, rc, "initialising %s failed", t->name);
    }
    return 0;
}

void eng_model_free(struct eng_model *m)
{
    if (!m)
        return;
    struct eng_device *d = m->d;
    vkDeviceWaitIdle(d->dev);
    for (int i = 0; i < ENG_MAX_RECS; i++)
        if (m->recs[i].used)
            eng_rec_free(&m->recs[i].rec);
    for (int i = 0; i < ENG_SLOTS; i++) {
        if (m->fence[i])
            vkDestroyFence(d->dev, m->fence[i], NULL);
        eng_buf_free(d, &m->staging[i]);
    }
    for (int r = 0; r < REG_COUNT; r++)
        eng_buf_free(d, &m->region[r]);
    free(m);
}

int eng_model_create(struct eng_device *dev, const struct eng_model_spec *spec,
                     const struct eng_optim_spec *opt, uint32_t max_batch, struct eng_model **out,
                     char *err, size_t errlen)
{
    *out = NULL;
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

    struct eng_model *m = calloc(1, sizeof(*m));
    if (!m)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory creating the model");
    m->d = dev;
    m->spec = *spec;
    m->spec.arch[sizeof(m->spec.arch) - 1] = '\0';
    m->opt = *opt;
    m->max_batch = max_batch;
    m->cur = 0;

    struct builder b = {m, 0, err, errlen};
    m->input = add_act(&b, spec->in_c, spec->in_h, spec->in_w, 0);
    if (m->input >= 0)
        m->acts[m->input].needs_grad = 0;
    if (is_cnn)
        build_cnn_small(&b, m->input);
    else
        build_resnet(&b, m->input);
    int rc = b.failed;
    if (rc == 0)
        rc = layout(m, err, errlen);
    for (int r = 0; rc == 0 && r < REG_COUNT; r++)
        if (m->region_size[r] > 0)
            rc = eng_buf_create(dev, m->region_size[r], ENG_MEM_DEVICE, &m->region[r], err, errlen);
    for (int s = 0; rc == 0 && s < ENG_SLOTS; s++) {
        rc = eng_buf_create(dev, m->s_size, ENG_MEM_HOST, &m->staging[s], err, errlen);
        if (rc == 0 && eng_fence_create(dev, &m->fence[s]) != 0)
            rc = cwt_seterr(err, errlen, CWT_EVULKAN, "vkCreateFence failed");
    }
    if (rc == 0)
        rc = init_weights(m, err, errlen);
    if (rc != 0) {
        eng_model_free(m);
        return rc;
    }
    fingerprint(m);
    *out = m;
    return 0;
}

/* ------------------------------------------------------------------ recording */

static struct eng_tref val(const struct eng_model *m, int a, uint32_t n)
{
    const struct act *x = &m->acts[a];
    return eng_region_ref(m, REG_ACT, x->off, (VkDeviceSize)x->c * x->h * x->w * n * 4);
}

static struct eng_tref grad(const struct eng_model *m, int a, uint32_t n)
{
    const struct act *x = &m->acts[a];
    return eng_region_ref(m, REG_ACT, x->goff, (VkDeviceSize)x->c * x->h * x->w * n * 4);
}

static uint32_t act_count(const struct eng_model *m, int a, uint32_t n)
{
    const struct act *x = &m->acts[a];
    return x->c * x->h * x->w * n;
}

static struct eng_tref tens(const struct eng_model *m, int t, enum eng_region reg)
{
    if (t < 0)
        return NOBUF;
    return eng_region_ref(m, reg, m->t[t].off, m->t[t].numel * 4);
}

/* Where a gradient contribution for activation a goes: its gradient buffer the first time,
 * the temp buffer afterwards (then grad_done adds it in). */
static struct eng_tref grad_target(const struct eng_model *m, int a, uint32_t n)
{
    if (!m->acts[a].has_grad)
        return grad(m, a, n);
    return eng_region_ref(m, REG_ACT, m->a_temp, (VkDeviceSize)act_count(m, a, n) * 4);
}

static void grad_done(struct eng_model *m, struct eng_rec *r, int a, uint32_t n, int masked)
{
    struct act *x = &m->acts[a];
    if (!x->has_grad) {
        x->has_grad = 1;
        x->grad_masked = masked;
        return;
    }
    struct eng_tref g = grad(m, a, n);
    op_add(r, g, grad_target(m, a, n), g, act_count(m, a, n), 0);
    x->grad_masked = x->grad_masked && masked;
}

static void conv_geom(const struct eng_model *m, const struct layer *l, uint32_t n,
                      struct eng_conv *cv)
{
    const struct act *x = &m->acts[l->in], *y = &m->acts[l->out];
    *cv = (struct eng_conv){n, x->c, x->h, x->w, y->c, y->h, y->w, l->k, l->k, l->stride, l->pad};
}

static void pool_geom(const struct eng_model *m, const struct layer *l, uint32_t n,
                      struct eng_pool *pl)
{
    const struct act *x = &m->acts[l->in], *y = &m->acts[l->out];
    if (l->t == L_GAP)
        *pl = (struct eng_pool){x->c * n, x->h, x->w, 1, 1, x->h, x->w, 1, 0};
    else
        *pl = (struct eng_pool){x->c * n, x->h, x->w, y->h, y->w, l->k, l->k, l->stride, l->pad};
}

static void dense_fwd(struct eng_rec *r, const struct eng_model *m, const struct layer *l,
                      uint32_t n)
{
    const struct act *y = &m->acts[l->out];
    uint32_t in = act_count(m, l->in, 1);
    struct eng_gemm g = {y->c, n, in, in, 1,
                         n,    1, n,  1,  ENG_EPI_BIAS | (l->relu ? ENG_EPI_RELU : 0)};
    op_gemm(r, &g, tens(m, l->w, REG_PARAM), val(m, l->in, n), val(m, l->out, n),
            tens(m, l->b, REG_PARAM), NOBUF);
}

static void record_forward(struct eng_model *m, struct eng_rec *r, const struct layer *l,
                           uint32_t n, int eval)
{
    const struct act *x = &m->acts[l->in];
    struct eng_tref prm = eng_region_ref(m, REG_ACT, m->a_prm, sizeof(struct eng_step_params));
    switch (l->t) {
    case L_CONV: {
        struct eng_conv cv;
        conv_geom(m, l, n, &cv);
        uint32_t fl = (l->b >= 0 ? ENG_EPI_BIAS : 0) | (l->relu ? ENG_EPI_RELU : 0);
        op_conv_fwd(r, &cv, val(m, l->in, n), tens(m, l->w, REG_PARAM), tens(m, l->b, REG_PARAM),
                    val(m, l->out, n), fl);
        break;
    }
    case L_BN: {
        uint32_t L = n * x->h * x->w;
        struct eng_tref saved = eng_region_ref(m, REG_ACT, l->aux, (VkDeviceSize)x->c * 8);
        if (!eval)
            op_bn_stats(r, x->c, L, BN_EPS, BN_MOMENTUM, val(m, l->in, n), saved,
                        tens(m, l->rm, REG_BUF), tens(m, l->rv, REG_BUF), 1);
        uint32_t fl = (l->relu ? ENG_BN_RELU : 0) | (eval ? ENG_BN_EVAL : 0) |
                      (l->res >= 0 ? ENG_BN_RESIDUAL : 0);
        op_bn_apply(r, x->c, L, BN_EPS, fl, val(m, l->in, n), saved, tens(m, l->rm, REG_BUF),
                    tens(m, l->rv, REG_BUF), tens(m, l->gamma, REG_PARAM),
                    tens(m, l->beta, REG_PARAM), val(m, l->out, n),
                    l->res >= 0 ? val(m, l->res, n) : NOBUF);
        break;
    }
    case L_MAXPOOL: {
        struct eng_pool pl;
        pool_geom(m, l, n, &pl);
        op_maxpool_fwd(
            r, &pl, val(m, l->in, n), val(m, l->out, n),
            eng_region_ref(m, REG_ACT, l->aux, (VkDeviceSize)act_count(m, l->out, n) * 4));
        break;
    }
    case L_GAP: {
        struct eng_pool pl;
        pool_geom(m, l, n, &pl);
        op_avgpool_fwd(r, &pl, val(m, l->in, n), val(m, l->out, n));
        break;
    }
    case L_FLATTEN: {
        /* [c][n][hw] -> [c*hw][n] */
        uint32_t hw = x->h * x->w;
        const uint32_t d[4] = {1, x->c, hw, n}, s[4] = {0, n * hw, 1, hw};
        op_permute(r, val(m, l->in, n), val(m, l->out, n), d, s);
        break;
    }
    case L_DENSE:
        dense_fwd(r, m, l, n);
        break;
    case L_DROPOUT:
        if (eval)
            eng_rec_copy(r, m->region[REG_ACT].buf, m->acts[l->in].off, m->region[REG_ACT].buf,
                         m->acts[l->out].off, (VkDeviceSize)act_count(m, l->in, n) * 4);
        else
            op_dropout(r, val(m, l->in, n), val(m, l->out, n), prm, act_count(m, l->in, n), l->p,
                       l->salt);
        break;
    }
}

static void record_backward(struct eng_model *m, struct eng_rec *r, const struct layer *l,
                            uint32_t n)
{
    struct act *x = &m->acts[l->in], *y = &m->acts[l->out];
    struct eng_tref dy = grad(m, l->out, n);
    struct eng_tref prm = eng_region_ref(m, REG_ACT, m->a_prm, sizeof(struct eng_step_params));
    if (!y->has_grad)
        return; /* nothing flows back through this layer */
    if (y->relu && !y->grad_masked)
        op_relu_bwd(r, dy, val(m, l->out, n), dy, act_count(m, l->out, n));
    int want_dx = x->needs_grad;
    switch (l->t) {
    case L_CONV: {
        struct eng_conv cv;
        conv_geom(m, l, n, &cv);
        op_conv_bwd_filter(r, &cv, dy, val(m, l->in, n), tens(m, l->w, REG_GRAD),
                           eng_region_ref(m, REG_ACT, l->scratch, l->scratch_bytes));
        if (l->b >= 0)
            op_rowsum(r, dy, tens(m, l->b, REG_GRAD), y->c, n * y->h * y->w, n * y->h * y->w, 1, 1,
                      0);
        if (want_dx) {
            struct eng_tref wt = eng_region_ref(m, REG_ACT, l->aux, m->t[l->w].numel * 4);
            op_conv_wt(r, &cv, tens(m, l->w, REG_PARAM), wt);
            op_conv_bwd_data(r, &cv, dy, wt, grad_target(m, l->in, n), val(m, l->in, n),
                             x->relu ? ENG_EPI_MASK : 0);
            grad_done(m, r, l->in, n, x->relu);
        }
        break;
    }
    case L_BN: {
        uint32_t L = n * x->h * x->w;
        struct eng_tref saved = eng_region_ref(m, REG_ACT, l->aux, (VkDeviceSize)x->c * 8);
        if (l->res >= 0) {
            /* the residual branch receives dy unchanged */
            struct act *ra = &m->acts[l->res];
            if (ra->needs_grad) {
                if (!ra->has_grad)
                    eng_rec_copy(r, m->region[REG_ACT].buf, y->goff, m->region[REG_ACT].buf,
                                 ra->goff, (VkDeviceSize)act_count(m, l->res, n) * 4);
                else
                    op_add(r, grad(m, l->res, n), dy, grad(m, l->res, n), act_count(m, l->res, n),
                           0);
                ra->grad_masked = 0;
                ra->has_grad = 1;
            }
        }
        op_bn_bwd(r, x->c, L, dy, val(m, l->in, n), saved, tens(m, l->gamma, REG_PARAM),
                  tens(m, l->gamma, REG_GRAD), tens(m, l->beta, REG_GRAD),
                  grad_target(m, l->in, n));
        grad_done(m, r, l->in, n, 0);
        break;
    }
    case L_MAXPOOL: {
        struct eng_pool pl;
        pool_geom(m, l, n, &pl);
        op_maxpool_bwd(
            r, &pl, dy,
            eng_region_ref(m, REG_ACT, l->aux, (VkDeviceSize)act_count(m, l->out, n) * 4),
            val(m, l->in, n), grad_target(m, l->in, n), x->relu);
        grad_done(m, r, l->in, n, x->relu);
        break;
    }
    case L_GAP: {
        struct eng_pool pl;
        pool_geom(m, l, n, &pl);
        op_avgpool_bwd(r, &pl, dy, grad_target(m, l->in, n));
        grad_done(m, r, l->in, n, 0);
        break;
    }
    case L_FLATTEN: {
        /* [c*hw][n] -> [c][n][hw] */
        uint32_t hw = x->h * x->w;
        const uint32_t d[4] = {1, x->c, n, hw}, s[4] = {0, hw * n, 1, n};
        op_permute(r, dy, grad_target(m, l->in, n), d, s);
        grad_done(m, r, l->in, n, 0);
        break;
    }
    case L_DENSE: {
        uint32_t in = act_count(m, l->in, 1), out = y->c;
        struct eng_gemm gw = {out, in, n, n, 1, 1, n, in, 1, 0};
        op_gemm(r, &gw, dy, val(m, l->in, n), tens(m, l->w, REG_GRAD), NOBUF, NOBUF);
        op_rowsum(r, dy, tens(m, l->b, REG_GRAD), out, n, n, 1, 1, 0);
        if (want_dx) {
            struct eng_gemm gx = {in, n, out, 1, in, n, 1, n, 1, x->relu ? ENG_EPI_MASK : 0};
            op_gemm(r, &gx, tens(m, l->w, REG_PARAM), dy, grad_target(m, l->in, n), NOBUF,
                    val(m, l->in, n));
            grad_done(m, r, l->in, n, x->relu);
        }
        break;
    }
    case L_DROPOUT:
        op_dropout(r, dy, grad_target(m, l->in, n), prm, act_count(m, l->in, n), l->p, l->salt);
        grad_done(m, r, l->in, n, 0);
        break;
    }
}

static void record_optimizer(struct eng_model *m, struct eng_rec *r)
{
    const struct eng_optim_spec *o = &m->opt;
    struct eng_tref prm = eng_region_ref(m, REG_ACT, m->a_prm, sizeof(struct eng_step_params));
    /* Chunks keep every binding within the storage buffer range (layout() checked the whole
     * region fits, so one chunk is the norm). */
    VkDeviceSize total = m->region_size[REG_PARAM];
    VkDeviceSize chunk = m->d->info.max_storage_buffer_range / ENG_ALIGN * ENG_ALIGN;
    for (VkDeviceSize off = 0; off < total; off += chunk) {
        VkDeviceSize bytes = total - off < chunk ? total - off : chunk;
        uint32_t count = (uint32_t)(bytes / 4);
        struct eng_tref w = eng_region_ref(m, REG_PARAM, off, bytes);
        struct eng_tref g = eng_region_ref(m, REG_GRAD, off, bytes);
        if (o->kind == ENG_SGD) {
            struct eng_tref buf =
                o->momentum != 0.0f ? eng_region_ref(m, REG_OPT1, off, bytes) : NOBUF;
            op_sgd(r, count, o->momentum, o->weight_decay, o->nesterov, w, g, buf, prm);
        } else {
            op_adam(r, count, o->beta1, o->beta2, o->eps, o->weight_decay, o->kind == ENG_ADAMW, w,
                    g, eng_region_ref(m, REG_OPT1, off, bytes),
                    eng_region_ref(m, REG_OPT2, off, bytes), prm);
        }
    }
}

int eng_model_record(struct eng_model *m, struct eng_rec *r, uint32_t n, int predict, int slot,
                     char *err, size_t errlen)
{
    int rc = eng_rec_begin(r, err, errlen);
    if (rc != 0)
        return rc;
    r->col = m->col_bytes ? eng_region_ref(m, REG_ACT, m->a_col, m->col_bytes) : NOBUF;
    VkBuffer sb = m->staging[slot].buf, ab = m->region[REG_ACT].buf;
    const struct act *in = &m->acts[m->input];
    uint32_t K = m->spec.classes;
    /* The previous submission may still read what these copies overwrite. */
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask =
            VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT,
    };
    vkCmdPipelineBarrier(r->cb,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0,
                         1, &mb, 0, NULL, 0, NULL);
    eng_rec_copy(r, sb, m->s_x, ab, in->off, (VkDeviceSize)in->c * in->h * in->w * n * 4);
    if (!predict) {
        eng_rec_copy(r, sb, m->s_prm, ab, m->a_prm, sizeof(struct eng_step_params));
        eng_rec_copy(r, sb, m->s_labels, ab, m->a_labels, (VkDeviceSize)n * 4);
        eng_rec_copy(r, sb, m->s_cw, ab, m->a_cw, (VkDeviceSize)K * 4);
    }
    for (uint32_t i = 0; i < m->nl; i++)
        record_forward(m, r, &m->layers[i], n, predict);
    struct eng_tref logits = val(m, m->logits, n);
    if (predict) {
        struct eng_tref probs = eng_region_ref(m, REG_ACT, m->a_probs, (VkDeviceSize)n * K * 4);
        op_softmax(r, n, K, logits, probs);
        eng_rec_copy(r, ab, m->a_probs, sb, m->s_probs, (VkDeviceSize)n * K * 4);
        return eng_rec_end(r, err, errlen);
    }
    for (uint32_t i = 0; i < m->nacts; i++)
        m->acts[i].has_grad = m->acts[i].grad_masked = 0;
    op_ce(r, n, K, logits, eng_region_ref(m, REG_ACT, m->a_labels, (VkDeviceSize)n * 4),
          eng_region_ref(m, REG_ACT, m->a_cw, (VkDeviceSize)K * 4),
          eng_region_ref(m, REG_ACT, m->a_ps, (VkDeviceSize)n * 12),
          eng_region_ref(m, REG_ACT, m->a_res, 16), grad(m, m->logits, n));
    m->acts[m->logits].has_grad = 1;
    for (uint32_t i = m->nl; i-- > 0;)
        record_backward(m, r, &m->layers[i], n);
    record_optimizer(m, r);
    eng_rec_copy(r, ab, m->a_res, sb, m->s_res, 16);
    return eng_rec_end(r, err, errlen);
}
