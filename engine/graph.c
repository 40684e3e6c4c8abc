/*
 * graph.c - the model description both backends share: layer list, activation shapes,
 * tensors (names, PyTorch shapes, kinds), He initialisation from the seed and the fingerprint.
 * Built once per model by engine.c before the backend allocates anything, so equal seeds give
 * equal initial weights on every backend.
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

/* ------------------------------------------------------------- graph building */

struct builder {
    struct eng_model *m;
    uint32_t stage; /* stage of the layers added next (eng_finetune) */
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
    t->lr_scale = 1.0f;
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
    l->stage = b->stage;
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
    b->stage = ENG_STAGE_HEAD;
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
            b->stage = st + 1;
            x = basic_block(b, nm, x, scaled(widths[st], s->width), st > 0 && bl == 0 ? 2 : 1);
        }
    b->m->nstages = stages + 1; /* the stem is stage 0 */
    b->stage = ENG_STAGE_HEAD;
    x = pool(b, L_GAP, x, 0, 1, 0);
    b->m->logits = dense(b, "fc", x, s->classes, 0);
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
void eng_param_runs(struct eng_model *m,
                    void (*fn)(struct eng_model *m, uint32_t first, uint32_t next, float scale,
                               void *ctx),
                    void *ctx)
{
    uint32_t first = 0;
    float scale = 1.0f;
    int open = 0;
    for (uint32_t i = 0; i < m->nt; i++) {
        const struct mtensor *t = &m->t[i];
        if (t->kind != ENG_T_PARAM)
            continue;
        if (open && t->lr_scale == scale)
            continue;
        if (open && scale != 0.0f)
            fn(m, first, i, scale, ctx);
        first = i;
        scale = t->lr_scale;
        open = 1;
    }
    if (open && scale != 0.0f)
        fn(m, first, m->nt, scale, ctx);
}

int eng_graph_init(struct eng_model *m, char *err, size_t errlen)
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

/* Optimizer state tensors mirror the parameters: "optim.<param>.momentum" (SGD with momentum)
 * or ".m" then ".v" (Adam, AdamW), appended after every parameter and buffer. */
static int add_optim_tensors(struct eng_model *m, char *err, size_t errlen)
{
    uint32_t nparams = m->nt;
    int nstates = m->opt.kind == ENG_SGD ? (m->opt.momentum != 0.0f ? 1 : 0) : 2;
    for (int s = 0; s < nstates; s++)
        for (uint32_t i = 0; i < nparams; i++) {
            if (m->t[i].kind != ENG_T_PARAM)
                continue;
            char nm[96];
            const char *suffix = m->opt.kind == ENG_SGD ? "momentum" : s == 0 ? "m" : "v";
            if ((size_t)snprintf(nm, sizeof(nm), "optim.%s.%s", m->t[i].name, suffix) >= sizeof(nm))
                return cwt_seterr(err, errlen, CWT_ETOOBIG, "tensor name too long");
            struct builder b = {m, 0, 0, err, errlen};
            int ti = add_tensor(&b, nm, ENG_T_OPTIM, (enum eng_region)(REG_OPT1 + s), m->t[i].ndim,
                                m->t[i].shape);
            if (ti < 0)
                return b.failed;
            m->t[ti].param = (int)i;
        }
    return 0;
}

int eng_graph_build(struct eng_model *m, char *err, size_t errlen)
{
    struct builder b = {m, 0, 0, err, errlen};
    m->input = add_act(&b, m->spec.in_c, m->spec.in_h, m->spec.in_w, 0);
    if (m->input >= 0)
        m->acts[m->input].needs_grad = 0;
    if (strcmp(m->spec.arch, "cnn-small") == 0)
        build_cnn_small(&b, m->input);
    else
        build_resnet(&b, m->input);
    if (b.failed)
        return b.failed;
    int rc = add_optim_tensors(m, err, errlen);
    if (rc == 0)
        fingerprint(m);
    return rc;
}
