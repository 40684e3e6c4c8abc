/*
 * cpu_model.c - the CPU backend's model: plans of oneDNN primitives and plain C steps for a
 * training step or an inference, built from graph.c's description once per batch size, and
 * their execution.
 *
 * Semantics are the Vulkan backend's (model.c's recording): the same layers, fused ReLUs,
 * batch norm with a residual join, dropout masks from the same hash, the same loss and
 * optimizer formulas. Layout: parameters, gradients and optimizer state are flat float arrays
 * in PyTorch layout (one optimizer loop covers them); activations and their gradients use the
 * formats oneDNN's primitives choose (format_tag_any; blocked, e.g. nChw16c), one format per
 * activation, read by every consumer. Weights are reordered into the primitives' formats once
 * per step and filter gradients back into PyTorch layout. Nothing is allocated inside a step:
 * plans (primitives, memory objects, workspaces) are made on a batch size's first use.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "engine/cpu.h"
#include "engine/cpu_ops.h"

#define CPU_MAX_PLANS 4
#define CPU_ALIGNF    16 /* floats: every tensor and buffer starts on a 64-byte line */
#define CPU_MAX_PRIMS (8 * ENG_MAX_LAYERS)
#define CPU_MAX_MEMS  (20 * ENG_MAX_LAYERS)
#define CPU_MAX_BUFS  (8 * ENG_MAX_LAYERS)
#define CPU_MAX_STEPS (12 * ENG_MAX_LAYERS)
#define CPU_MAX_ARGS  12

/* One step of a plan: a oneDNN primitive or a plain C loop over count floats. */
enum cop {
    C_PRIM = 0,
    C_MASK,      /* a[i] = b[i] > 0 ? a[i] : 0 (ReLU backward on the gradient a, output b) */
    C_RES,       /* a[i] = a[i] + b[i], then ReLU when relu (residual join) */
    C_COPY,      /* a = b */
    C_ADD,       /* a += b */
    C_DROPOUT,   /* a = keep ? b * scale : 0 over an [n][f] matrix, index f * n + i as Vulkan */
    C_BN_RUNNING /* running statistics from the batch's (biased) variance */
};

struct cstep {
    enum cop op;
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[CPU_MAX_ARGS];
    float *a, *b, *c, *d;
    size_t count;
    uint32_t n, f, salt, relu;
    float p;
};

struct cpu_plan {
    int used, predict;
    uint32_t n;
    uint64_t last_use;
    dnnl_memory_desc_t md[ENG_MAX_ACTS]; /* format of each activation (and its gradient) */
    struct cstep *fwd, *bwd;
    uint32_t nfwd, nbwd;
    dnnl_primitive_t prims[CPU_MAX_PRIMS];
    dnnl_memory_t mems[CPU_MAX_MEMS];
    void *bufs[CPU_MAX_BUFS];
    uint32_t nprims, nmems, nbufs;
};

struct cpu_model {
    float *reg[REG_COUNT]; /* REG_PARAM, REG_GRAD, REG_OPT1, REG_OPT2 (nparam floats), REG_BUF */
    size_t reg_floats[REG_COUNT];
    size_t off[ENG_MAX_TENSORS]; /* floats into the tensor's region */
    float *val[ENG_MAX_ACTS], *grad[ENG_MAX_ACTS];
    size_t cap[ENG_MAX_ACTS]; /* bytes of val / grad */
    int alias[ENG_MAX_ACTS];  /* flatten outputs share their input's memory; else -1 */
    float *temp;              /* second and later gradient contributions */
    size_t temp_cap;
    uint32_t *labels;
    float *cw;
    float loss, correct;
    int done; /* a step has run whose results train_end has not returned */
    struct cpu_plan *plans[CPU_MAX_PLANS];
    uint64_t clock;
};

/* ------------------------------------------------------------------ memory */

static void *falloc(size_t bytes)
{
    size_t n = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p)
        memset(p, 0, n ? n : 64);
    return p;
}

static int act_of(const struct cpu_model *cm, int a)
{
    while (cm->alias[a] >= 0)
        a = cm->alias[a];
    return a;
}

static void md_init(dnnl_memory_desc_t *md, int nd, const dnnl_dim_t *dims, dnnl_format_tag_t tag)
{
    dnnl_dims_t d;
    for (int i = 0; i < nd; i++)
        d[i] = dims[i];
    dnnl_memory_desc_init_by_tag(md, nd, d, dnnl_f32, tag);
}

/* ------------------------------------------------------------------ plans */

/* What a layer's forward pass leaves for its backward pass. */
struct lctx {
    dnnl_primitive_desc_t hint; /* the forward primitive descriptor */
    void *ws;                   /* workspace (max pooling, batch norm with fused ReLU) */
    dnnl_memory_desc_t wsmd;
    float *mean, *var; /* batch norm: the batch's statistics */
    unsigned flags;    /* batch norm flags */
};

struct pb { /* plan builder */
    struct eng_model *m;
    struct cpu_model *cm;
    struct cpu_plan *p;
    dnnl_engine_t eng;
    char *err;
    size_t errlen;
    int rc;
    int has[ENG_MAX_ACTS]; /* backward: the activation's gradient holds a contribution */
    struct lctx lc[ENG_MAX_LAYERS];
};

#define PB_CHECK(pb, call, what)                                                                   \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success && (pb)->rc == 0)                                                  \
            (pb)->rc = cpu_dnnl_err(st_, what, (pb)->err, (pb)->errlen);                           \
    } while (0)

static void *pb_buf(struct pb *b, size_t bytes)
{
    if (b->rc)
        return NULL;
    void *v = b->p->nbufs < CPU_MAX_BUFS ? falloc(bytes) : NULL;
    if (!v) {
        b->rc = cwt_seterr(b->err, b->errlen, CWT_ENOMEM, "out of memory building a CPU plan");
        return NULL;
    }
    b->p->bufs[b->p->nbufs++] = v;
    return v;
}

static dnnl_memory_t pb_mem(struct pb *b, const dnnl_memory_desc_t *md, void *ptr)
{
    if (b->rc)
        return NULL;
    if (b->p->nmems == CPU_MAX_MEMS) {
        b->rc = cwt_seterr(b->err, b->errlen, CWT_ETOOBIG, "CPU plan has too many memories");
        return NULL;
    }
    dnnl_memory_t mem = NULL;
    PB_CHECK(b, dnnl_memory_create(&mem, md, b->eng, ptr), "dnnl_memory_create");
    if (mem)
        b->p->mems[b->p->nmems++] = mem;
    return mem;
}

/* Creates the primitive of pd (which it destroys). */
static dnnl_primitive_t pb_prim(struct pb *b, dnnl_primitive_desc_t pd, const char *what)
{
    dnnl_primitive_t pr = NULL;
    if (!pd)
        return NULL;
    if (b->rc == 0 && b->p->nprims == CPU_MAX_PRIMS)
        b->rc = cwt_seterr(b->err, b->errlen, CWT_ETOOBIG, "CPU plan has too many primitives");
    if (b->rc == 0)
        PB_CHECK(b, dnnl_primitive_create(&pr, pd), what);
    dnnl_primitive_desc_destroy(pd);
    if (pr)
        b->p->prims[b->p->nprims++] = pr;
    return pr;
}

static struct cstep *pb_step(struct pb *b, int bwd)
{
    struct cpu_plan *p = b->p;
    uint32_t *n = bwd ? &p->nbwd : &p->nfwd;
    if (b->rc)
        return NULL;
    if (*n == CPU_MAX_STEPS) {
        b->rc = cwt_seterr(b->err, b->errlen, CWT_ETOOBIG, "CPU plan has too many steps");
        return NULL;
    }
    struct cstep *s = &(bwd ? p->bwd : p->fwd)[(*n)++];
    memset(s, 0, sizeof(*s));
    return s;
}

/* Appends primitive pr with (arg, memory) pairs terminated by arg < 0. */
static void pb_exec(struct pb *b, int bwd, dnnl_primitive_t pr, const int *ids,
                    const dnnl_memory_t *mems)
{
    if (b->rc || !pr)
        return;
    struct cstep *s = pb_step(b, bwd);
    if (!s)
        return;
    s->op = C_PRIM;
    s->prim = pr;
    for (int i = 0; ids[i] >= 0 && i < CPU_MAX_ARGS; i++) {
        s->args[i].arg = ids[i];
        s->args[i].memory = mems[i];
        s->nargs = i + 1;
    }
}

static void pb_loop(struct pb *b, int bwd, enum cop op, float *a, float *x, size_t count)
{
    struct cstep *s = pb_step(b, bwd);
    if (!s)
        return;
    s->op = op;
    s->a = a;
    s->b = x;
    s->count = count;
}

/* A reorder from memory `from` to memory `to` (formats differ), run as a step. */
static void pb_reorder(struct pb *b, int bwd, const dnnl_memory_desc_t *fmd, void *from,
                       const dnnl_memory_desc_t *tmd, void *to)
{
    dnnl_primitive_desc_t pd = NULL;
    if (b->rc)
        return;
    PB_CHECK(b, dnnl_reorder_primitive_desc_create(&pd, fmd, b->eng, tmd, b->eng, NULL),
             "creating a reorder");
    dnnl_primitive_t pr = pb_prim(b, pd, "creating a reorder");
    const int ids[3] = {DNNL_ARG_FROM, DNNL_ARG_TO, -1};
    dnnl_memory_t mems[2] = {pb_mem(b, fmd, from), pb_mem(b, tmd, to)};
    pb_exec(b, bwd, pr, ids, mems);
}

/* Weights for a primitive that wants format want: the user (PyTorch) array itself when the
 * formats agree, else a buffer refreshed by a reorder step. */
static void *pb_weights(struct pb *b, int bwd, const dnnl_memory_desc_t *user, float *uptr,
                        const dnnl_memory_desc_t *want)
{
    if (b->rc)
        return NULL;
    if (dnnl_memory_desc_equal(user, want))
        return uptr;
    void *buf = pb_buf(b, dnnl_memory_desc_get_size(want));
    pb_reorder(b, bwd, user, uptr, want, buf);
    return buf;
}

static const dnnl_memory_desc_t *q(dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

static size_t md_floats(const dnnl_memory_desc_t *md)
{
    return dnnl_memory_desc_get_size(md) / sizeof(float);
}

static float *tparam(struct cpu_model *cm, const struct eng_model *m, int t, enum eng_region r)
{
    (void)m;
    return t < 0 ? NULL : cm->reg[r] + cm->off[t];
}

static float *val(struct pb *b, int a)
{
    return b->cm->val[act_of(b->cm, a)];
}

static float *grad(struct pb *b, int a)
{
    return b->cm->grad[act_of(b->cm, a)];
}

/* Sets activation a's format, checking that it fits the buffers sized at model creation. */
static void set_md(struct pb *b, int a, const dnnl_memory_desc_t *md)
{
    if (b->rc || !md)
        return;
    b->p->md[a] = *md;
    if (dnnl_memory_desc_get_size(md) > b->cm->cap[act_of(b->cm, a)])
        b->rc = cwt_seterr(b->err, b->errlen, CWT_EUNSUPPORTED,
                           "oneDNN chose an activation format larger than its buffer");
}

/* Where a gradient contribution for activation a goes: its gradient the first time, the
 * temporary buffer afterwards (grad_done adds it in). */
static float *grad_target(struct pb *b, int a)
{
    return b->has[act_of(b->cm, a)] ? b->cm->temp : grad(b, a);
}

static void grad_done(struct pb *b, int a)
{
    int r = act_of(b->cm, a);
    if (b->has[r])
        pb_loop(b, 1, C_ADD, grad(b, a), b->cm->temp, md_floats(&b->p->md[a]));
    b->has[r] = 1;
}

/* Creates the forward primitive descriptor of op descriptor od, with a fused ReLU post-op
 * when relu. */
static dnnl_primitive_desc_t pb_pd(struct pb *b, const void *od, int relu,
                                   const_dnnl_primitive_desc_t hint, const char *what)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if (b->rc)
        return NULL;
    if (relu) {
        PB_CHECK(b, dnnl_primitive_attr_create(&attr), "creating attributes");
        PB_CHECK(b, dnnl_post_ops_create(&po), "creating post-ops");
        PB_CHECK(b, dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f),
                 "appending a ReLU post-op");
        PB_CHECK(b, dnnl_primitive_attr_set_post_ops(attr, po), "setting post-ops");
    }
    if (b->rc == 0)
        PB_CHECK(b, dnnl_primitive_desc_create(&pd, od, attr, b->eng, hint), what);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return b->rc ? NULL : pd;
}

/* Runs pd's primitive as a forward step and keeps pd as the backward hint (training). */
static void pb_fwd(struct pb *b, const struct layer *l, dnnl_primitive_desc_t pd, const int *ids,
                   const dnnl_memory_t *mems, const char *what)
{
    if (!pd)
        return;
    if (!b->p->predict)
        PB_CHECK(b, dnnl_primitive_desc_clone(&b->lc[l - b->m->layers].hint, pd), what);
    pb_exec(b, 0, pb_prim(b, pd, what), ids, mems);
}

static dnnl_prop_kind_t fwd_prop(const struct pb *b)
{
    return b->p->predict ? dnnl_forward_inference : dnnl_forward_training;
}

/* PyTorch-layout weight descriptor of a convolution or dense layer; any = format_tag_any. */
static void weights_md(const struct pb *b, const struct layer *l, int any, dnnl_memory_desc_t *md)
{
    const struct act *x = &b->m->acts[l->in], *y = &b->m->acts[l->out];
    const dnnl_memory_desc_t *src = &b->p->md[l->in];
    if (l->t == L_CONV) {
        const dnnl_dim_t wd[4] = {y->c, x->c, l->k, l->k};
        md_init(md, 4, wd, any ? dnnl_format_tag_any : dnnl_oihw);
    } else if (src->ndims == 4) {
        const dnnl_dim_t wd[4] = {y->c, src->dims[1], src->dims[2], src->dims[3]};
        md_init(md, 4, wd, any ? dnnl_format_tag_any : dnnl_oihw);
    } else {
        const dnnl_dim_t wd[2] = {y->c, (dnnl_dim_t)x->c * x->h * x->w};
        md_init(md, 2, wd, any ? dnnl_format_tag_any : dnnl_oi);
    }
}

static void vec_md(dnnl_memory_desc_t *md, uint32_t c)
{
    const dnnl_dim_t d[1] = {c};
    md_init(md, 1, d, dnnl_x);
}

/* Convolution (conv) or inner product (dense) forward. */
static void wlayer_fwd(struct pb *b, const struct layer *l)
{
    struct eng_model *m = b->m;
    struct cpu_model *cm = b->cm;
    const struct act *y = &m->acts[l->out];
    const dnnl_memory_desc_t *src = &b->p->md[l->in];
    dnnl_memory_desc_t wu, wany, bmd, dst;
    weights_md(b, l, 0, &wu);
    weights_md(b, l, 1, &wany);
    vec_md(&bmd, y->c);
    int has_b = l->b >= 0, conv = l->t == L_CONV;
    dnnl_dims_t st = {l->stride, l->stride}, pad = {l->pad, l->pad};
    dnnl_convolution_desc_t cd;
    dnnl_inner_product_desc_t id;
    const void *od;
    if (conv) {
        const dnnl_dim_t dd[4] = {b->p->n, y->c, y->h, y->w};
        md_init(&dst, 4, dd, dnnl_format_tag_any);
        PB_CHECK(b,
                 dnnl_convolution_forward_desc_init(&cd, fwd_prop(b), dnnl_convolution_direct, src,
                                                    &wany, has_b ? &bmd : NULL, &dst, st, pad, pad),
                 "describing a convolution");
        od = &cd;
    } else {
        const dnnl_dim_t dd[2] = {b->p->n, y->c};
        md_init(&dst, 2, dd, dnnl_nc);
        PB_CHECK(b, dnnl_inner_product_forward_desc_init(&id, fwd_prop(b), src, &wany, &bmd, &dst),
                 "describing an inner product");
        od = &id;
    }
    dnnl_primitive_desc_t pd = pb_pd(b, od, l->relu, NULL, "creating a forward primitive");
    if (!pd)
        return;
    set_md(b, l->out, q(pd, dnnl_query_dst_md));
    const dnnl_memory_desc_t *wmd = q(pd, dnnl_query_weights_md);
    void *wf = pb_weights(b, 0, &wu, tparam(cm, m, l->w, REG_PARAM), wmd);
    const int ids[5] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, has_b ? DNNL_ARG_BIAS : -1,
                        -1};
    dnnl_memory_t mems[4] = {pb_mem(b, src, val(b, l->in)), pb_mem(b, wmd, wf),
                             pb_mem(b, &b->p->md[l->out], val(b, l->out)),
                             has_b ? pb_mem(b, &bmd, tparam(cm, m, l->b, REG_PARAM)) : NULL};
    pb_fwd(b, l, pd, ids, mems, "creating a forward primitive");
}

/* Convolution or inner product backward: filter (and bias) gradient, then the data gradient. */
static void wlayer_bwd(struct pb *b, const struct layer *l)
{
    struct eng_model *m = b->m;
    struct cpu_model *cm = b->cm;
    const struct act *x = &m->acts[l->in], *y = &m->acts[l->out];
    const dnnl_memory_desc_t *src = &b->p->md[l->in], *dst = &b->p->md[l->out];
    const_dnnl_primitive_desc_t hint = b->lc[l - m->layers].hint;
    dnnl_memory_desc_t wu, wany, bmd;
    weights_md(b, l, 0, &wu);
    weights_md(b, l, 1, &wany);
    vec_md(&bmd, y->c);
    int has_b = l->b >= 0, conv = l->t == L_CONV;
    dnnl_dims_t st = {l->stride, l->stride}, pad = {l->pad, l->pad};
    dnnl_convolution_desc_t cd;
    dnnl_inner_product_desc_t id;
    if (conv)
        PB_CHECK(b,
                 dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, src,
                                                             &wany, has_b ? &bmd : NULL, dst, st,
                                                             pad, pad),
                 "describing a filter gradient");
    else
        PB_CHECK(b, dnnl_inner_product_backward_weights_desc_init(&id, src, &wany, &bmd, dst),
                 "describing a weight gradient");
    dnnl_primitive_desc_t pd =
        pb_pd(b, conv ? (const void *)&cd : (const void *)&id, 0, hint, "weight gradient");
    if (!pd)
        return;
    dnnl_memory_desc_t dwmd = *q(pd, dnnl_query_diff_weights_md);
    float *gw = tparam(cm, m, l->w, REG_GRAD);
    int direct = dnnl_memory_desc_equal(&dwmd, &wu);
    void *dw = direct ? (void *)gw : pb_buf(b, dnnl_memory_desc_get_size(&dwmd));
    const int ids[5] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS,
                        has_b ? DNNL_ARG_DIFF_BIAS : -1, -1};
    dnnl_memory_t mems[4] = {pb_mem(b, src, val(b, l->in)), pb_mem(b, dst, grad(b, l->out)),
                             pb_mem(b, &dwmd, dw),
                             has_b ? pb_mem(b, &bmd, tparam(cm, m, l->b, REG_GRAD)) : NULL};
    pb_exec(b, 1, pb_prim(b, pd, "creating a weight gradient"), ids, mems);
    if (!direct)
        pb_reorder(b, 1, &dwmd, dw, &wu, gw);
    if (!x->needs_grad || b->rc)
        return;
    if (conv)
        PB_CHECK(b,
                 dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, src, &wany,
                                                          dst, st, pad, pad),
                 "describing a data gradient");
    else
        PB_CHECK(b, dnnl_inner_product_backward_data_desc_init(&id, src, &wany, dst),
                 "describing a data gradient");
    pd = pb_pd(b, conv ? (const void *)&cd : (const void *)&id, 0, hint, "data gradient");
    if (!pd)
        return;
    const dnnl_memory_desc_t *wmd = q(pd, dnnl_query_weights_md);
    void *wb = pb_weights(b, 1, &wu, tparam(cm, m, l->w, REG_PARAM), wmd);
    const int dids[4] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC, -1};
    dnnl_memory_t dm[3] = {pb_mem(b, dst, grad(b, l->out)), pb_mem(b, wmd, wb),
                           pb_mem(b, src, grad_target(b, l->in))};
    pb_exec(b, 1, pb_prim(b, pd, "creating a data gradient"), dids, dm);
    grad_done(b, l->in);
}

static void bn_fwd(struct pb *b, const struct layer *l)
{
    struct eng_model *m = b->m;
    struct cpu_model *cm = b->cm;
    struct lctx *c = &b->lc[l - m->layers];
    const struct act *x = &m->acts[l->in];
    const dnnl_memory_desc_t *data = &b->p->md[l->in];
    dnnl_memory_desc_t cmd;
    vec_md(&cmd, x->c);
    /* A ReLU without a residual join is fused (the backward masks with the workspace). */
    c->flags = dnnl_use_scale | dnnl_use_shift | (l->relu && l->res < 0 ? dnnl_fuse_norm_relu : 0u);
    /* A frozen layer (eng_model_set_finetune) normalises as in eval mode and has no backward. */
    int train = !b->p->predict && !l->frozen;
    dnnl_batch_normalization_desc_t bd;
    PB_CHECK(b,
             dnnl_batch_normalization_forward_desc_init(
                 &bd, train ? dnnl_forward_training : dnnl_forward_inference, data, ENG_BN_EPS,
                 c->flags | (train ? 0u : dnnl_use_global_stats)),
             "describing a batch norm");
    dnnl_primitive_desc_t pd = pb_pd(b, &bd, 0, NULL, "creating a batch norm");
    if (!pd)
        return;
    set_md(b, l->out, q(pd, dnnl_query_dst_md));
    c->mean = train ? pb_buf(b, x->c * 4) : tparam(cm, m, l->rm, REG_BUF);
    c->var = train ? pb_buf(b, x->c * 4) : tparam(cm, m, l->rv, REG_BUF);
    if (train && (c->flags & dnnl_fuse_norm_relu)) {
        c->wsmd = *q(pd, dnnl_query_workspace_md);
        c->ws = pb_buf(b, dnnl_memory_desc_get_size(&c->wsmd));
    }
    const int ids[8] = {DNNL_ARG_SRC,
                        DNNL_ARG_DST,
                        DNNL_ARG_SCALE,
                        DNNL_ARG_SHIFT,
                        DNNL_ARG_MEAN,
                        DNNL_ARG_VARIANCE,
                        c->ws ? DNNL_ARG_WORKSPACE : -1,
                        -1};
    dnnl_memory_t mems[7] = {pb_mem(b, data, val(b, l->in)),
                             pb_mem(b, &b->p->md[l->out], val(b, l->out)),
                             pb_mem(b, &cmd, tparam(cm, m, l->gamma, REG_PARAM)),
                             pb_mem(b, &cmd, tparam(cm, m, l->beta, REG_PARAM)),
                             pb_mem(b, &cmd, c->mean),
                             pb_mem(b, &cmd, c->var),
                             c->ws ? pb_mem(b, &c->wsmd, c->ws) : NULL};
    pb_fwd(b, l, pd, ids, mems, "creating a batch norm");
    struct cstep *s;
    if (train && (s = pb_step(b, 0)) != NULL) {
        s->op = C_BN_RUNNING;
        s->a = tparam(cm, m, l->rm, REG_BUF);
        s->b = tparam(cm, m, l->rv, REG_BUF);
        s->c = c->mean;
        s->d = c->var;
        s->count = x->c;
        s->n = b->p->n * x->h * x->w; /* elements per channel */
    }
    if (l->res >= 0 && b->rc == 0) {
        /* The join reads the residual in the output's format: straight where oneDNN chose the
         * same format for both (the usual case), else through a reorder into a buffer. */
        float *r = val(b, l->res);
        if (!dnnl_memory_desc_equal(&b->p->md[l->res], &b->p->md[l->out])) {
            r = pb_buf(b, dnnl_memory_desc_get_size(&b->p->md[l->out]));
            pb_reorder(b, 0, &b->p->md[l->res], val(b, l->res), &b->p->md[l->out], r);
        }
        if ((s = pb_step(b, 0)) != NULL) {
            s->op = C_RES;
            s->a = val(b, l->out);
            s->b = r;
            s->count = md_floats(&b->p->md[l->out]);
            s->relu = (uint32_t)l->relu;
        }
    }
}

static void bn_bwd(struct pb *b, const struct layer *l)
{
    struct eng_model *m = b->m;
    struct cpu_model *cm = b->cm;
    struct lctx *c = &b->lc[l - m->layers];
    const struct act *x = &m->acts[l->in];
    const dnnl_memory_desc_t *data = &b->p->md[l->in], *dmd = &b->p->md[l->out];
    dnnl_memory_desc_t cmd;
    vec_md(&cmd, x->c);
    if (l->res >= 0 && m->acts[l->res].needs_grad) {
        /* the residual branch receives dy unchanged (in its own format) */
        int r = act_of(cm, l->res);
        const dnnl_memory_desc_t *rmd = &b->p->md[l->res];
        if (dnnl_memory_desc_equal(rmd, dmd)) {
            pb_loop(b, 1, b->has[r] ? C_ADD : C_COPY, grad(b, l->res), grad(b, l->out),
                    md_floats(dmd));
        } else {
            pb_reorder(b, 1, dmd, grad(b, l->out), rmd, grad_target(b, l->res));
            if (b->has[r])
                pb_loop(b, 1, C_ADD, grad(b, l->res), cm->temp, md_floats(rmd));
        }
        b->has[r] = 1;
    }
    dnnl_batch_normalization_desc_t bd;
    PB_CHECK(b,
             dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, dmd, data, ENG_BN_EPS,
                                                         c->flags),
             "describing a batch norm gradient");
    dnnl_primitive_desc_t pd = pb_pd(b, &bd, 0, c->hint, "creating a batch norm gradient");
    if (!pd)
        return;
    /* SHIFT is an input of the backward in oneDNN 2.6 too, though the gradient ignores it */
    const int ids[11] = {DNNL_ARG_SRC,
                         DNNL_ARG_MEAN,
                         DNNL_ARG_VARIANCE,
                         DNNL_ARG_DIFF_DST,
                         DNNL_ARG_SCALE,
                         DNNL_ARG_SHIFT,
                         DNNL_ARG_DIFF_SRC,
                         DNNL_ARG_DIFF_SCALE,
                         DNNL_ARG_DIFF_SHIFT,
                         c->ws ? DNNL_ARG_WORKSPACE : -1,
                         -1};
    dnnl_memory_t mems[10] = {pb_mem(b, data, val(b, l->in)),
                              pb_mem(b, &cmd, c->mean),
                              pb_mem(b, &cmd, c->var),
                              pb_mem(b, dmd, grad(b, l->out)),
                              pb_mem(b, &cmd, tparam(cm, m, l->gamma, REG_PARAM)),
                              pb_mem(b, &cmd, tparam(cm, m, l->beta, REG_PARAM)),
                              pb_mem(b, data, grad_target(b, l->in)),
                              pb_mem(b, &cmd, tparam(cm, m, l->gamma, REG_GRAD)),
                              pb_mem(b, &cmd, tparam(cm, m, l->beta, REG_GRAD)),
                              c->ws ? pb_mem(b, &c->wsmd, c->ws) : NULL};
    pb_exec(b, 1, pb_prim(b, pd, "creating a batch norm gradient"), ids, mems);
    grad_done(b, l->in);
}

static void pool_desc(const struct pb *b, const struct layer *l, dnnl_dims_t st, dnnl_dims_t k,
                      dnnl_dims_t pad, dnnl_alg_kind_t *alg)
{
    const struct act *x = &b->m->acts[l->in];
    int gap = l->t == L_GAP;
    st[0] = st[1] = gap ? 1 : l->stride;
    k[0] = gap ? x->h : l->k;
    k[1] = gap ? x->w : l->k;
    pad[0] = pad[1] = gap ? 0 : l->pad;
    *alg = gap ? dnnl_pooling_avg_include_padding : dnnl_pooling_max;
}

static void pool_fwd(struct pb *b, const struct layer *l)
{
    const struct act *y = &b->m->acts[l->out];
    struct lctx *c = &b->lc[l - b->m->layers];
    const dnnl_memory_desc_t *src = &b->p->md[l->in];
    dnnl_memory_desc_t dany;
    const dnnl_dim_t dd[4] = {b->p->n, y->c, y->h, y->w};
    md_init(&dany, 4, dd, dnnl_format_tag_any);
    dnnl_dims_t st, k, pad;
    dnnl_alg_kind_t alg;
    pool_desc(b, l, st, k, pad, &alg);
    dnnl_pooling_desc_t pdsc;
    PB_CHECK(b,
             dnnl_pooling_forward_desc_init(&pdsc, fwd_prop(b), alg, src, &dany, st, k, pad, pad),
             "describing a pooling");
    dnnl_primitive_desc_t pd = pb_pd(b, &pdsc, 0, NULL, "creating a pooling");
    if (!pd)
        return;
    set_md(b, l->out, q(pd, dnnl_query_dst_md));
    if (!b->p->predict && alg == dnnl_pooling_max) {
        c->wsmd = *q(pd, dnnl_query_workspace_md);
        c->ws = pb_buf(b, dnnl_memory_desc_get_size(&c->wsmd));
    }
    const int ids[4] = {DNNL_ARG_SRC, DNNL_ARG_DST, c->ws ? DNNL_ARG_WORKSPACE : -1, -1};
    dnnl_memory_t mems[3] = {pb_mem(b, src, val(b, l->in)),
                             pb_mem(b, &b->p->md[l->out], val(b, l->out)),
                             c->ws ? pb_mem(b, &c->wsmd, c->ws) : NULL};
    pb_fwd(b, l, pd, ids, mems, "creating a pooling");
}

static void pool_bwd(struct pb *b, const struct layer *l)
{
    struct lctx *c = &b->lc[l - b->m->layers];
    if (!b->m->acts[l->in].needs_grad)
        return;
    dnnl_dims_t st, k, pad;
    dnnl_alg_kind_t alg;
    pool_desc(b, l, st, k, pad, &alg);
    dnnl_pooling_desc_t pdsc;
    const dnnl_memory_desc_t *src = &b->p->md[l->in], *dst = &b->p->md[l->out];
    PB_CHECK(b, dnnl_pooling_backward_desc_init(&pdsc, alg, src, dst, st, k, pad, pad),
             "describing a pooling gradient");
    dnnl_primitive_desc_t pd = pb_pd(b, &pdsc, 0, c->hint, "creating a pooling gradient");
    if (!pd)
        return;
    const int ids[4] = {DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC, c->ws ? DNNL_ARG_WORKSPACE : -1, -1};
    dnnl_memory_t mems[3] = {pb_mem(b, dst, grad(b, l->out)), pb_mem(b, src, grad_target(b, l->in)),
                             c->ws ? pb_mem(b, &c->wsmd, c->ws) : NULL};
    pb_exec(b, 1, pb_prim(b, pd, "creating a pooling gradient"), ids, mems);
    grad_done(b, l->in);
}

static void dropout_fwd(struct pb *b, const struct layer *l)
{
    set_md(b, l->out, &b->p->md[l->in]);
    struct cstep *s = pb_step(b, 0);
    if (!s)
        return;
    s->op = b->p->predict ? C_COPY : C_DROPOUT;
    s->a = val(b, l->out);
    s->b = val(b, l->in);
    s->count = (size_t)b->m->acts[l->in].c * b->p->n;
    s->n = b->p->n;
    s->f = b->m->acts[l->in].c;
    s->p = l->p;
    s->salt = l->salt;
}

static void dropout_bwd(struct pb *b, const struct layer *l)
{
    struct cstep *s = pb_step(b, 1);
    if (!s)
        return;
    s->op = C_DROPOUT;
    s->a = grad_target(b, l->in);
    s->b = grad(b, l->out);
    s->count = (size_t)b->m->acts[l->in].c * b->p->n;
    s->n = b->p->n;
    s->f = b->m->acts[l->in].c;
    s->p = l->p;
    s->salt = l->salt;
    grad_done(b, l->in);
}

static void plan_free(struct cpu_plan *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < p->nprims; i++)
        dnnl_primitive_destroy(p->prims[i]);
    for (uint32_t i = 0; i < p->nmems; i++)
        dnnl_memory_destroy(p->mems[i]);
    for (uint32_t i = 0; i < p->nbufs; i++)
        free(p->bufs[i]);
    free(p->fwd);
    free(p->bwd);
    free(p);
}

/* Builds the plan for batch size n: forward steps in layer order (training or inference) and,
 * for training, backward steps in reverse layer order as model.c records them (the ReLU mask
 * of the layer's output unless fused, parameter gradients, the data gradient, gradient sums
 * where an activation feeds two layers). */
static int plan_build(struct eng_model *m, uint32_t n, int predict, struct cpu_plan **out,
                      char *err, size_t errlen)
{
    struct cpu_model *cm = m->cpu;
    struct cpu_plan *p = calloc(1, sizeof(*p));
    struct pb *b = calloc(1, sizeof(*b));
    if (p) {
        p->fwd = calloc(CPU_MAX_STEPS, sizeof(struct cstep));
        p->bwd = calloc(CPU_MAX_STEPS, sizeof(struct cstep));
    }
    if (!p || !b || !p->fwd || !p->bwd) {
        plan_free(p);
        free(b);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory building a CPU plan");
    }
    *b = (struct pb){.m = m, .cm = cm, .p = p, .eng = m->d->cpu->eng, .err = err, .errlen = errlen};
    p->n = n;
    p->predict = predict;
    const struct act *in = &m->acts[m->input];
    const dnnl_dim_t id[4] = {n, in->c, in->h, in->w};
    md_init(&p->md[m->input], 4, id, dnnl_nchw);
    for (uint32_t i = 0; i < m->nl && b->rc == 0; i++) {
        const struct layer *l = &m->layers[i];
        switch (l->t) {
        case L_CONV:
        case L_DENSE:
            wlayer_fwd(b, l);
            break;
        case L_BN:
            bn_fwd(b, l);
            break;
        case L_MAXPOOL:
        case L_GAP:
            pool_fwd(b, l);
            break;
        case L_FLATTEN:
            set_md(b, l->out, &p->md[l->in]);
            break;
        case L_DROPOUT:
            dropout_fwd(b, l);
            break;
        }
    }
    if (!predict) {
        b->has[act_of(cm, m->logits)] = 1;
        for (uint32_t i = m->nl; i-- > 0 && b->rc == 0;) {
            const struct layer *l = &m->layers[i];
            const struct act *y = &m->acts[l->out];
            if (!b->has[act_of(cm, l->out)] || l->frozen)
                continue; /* nothing flows back through this layer, or nothing is wanted */
            if (y->relu && !(l->t == L_BN && (b->lc[i].flags & dnnl_fuse_norm_relu)))
                pb_loop(b, 1, C_MASK, grad(b, l->out), val(b, l->out), md_floats(&p->md[l->out]));
            switch (l->t) {
            case L_CONV:
            case L_DENSE:
                wlayer_bwd(b, l);
                break;
            case L_BN:
                bn_bwd(b, l);
                break;
            case L_MAXPOOL:
            case L_GAP:
                pool_bwd(b, l);
                break;
            case L_FLATTEN:
                b->has[act_of(cm, l->in)] = 1; /* the same memory */
                break;
            case L_DROPOUT:
                dropout_bwd(b, l);
                break;
            }
        }
    }
    for (uint32_t i = 0; i < m->nl; i++)
        if (b->lc[i].hint)
            dnnl_primitive_desc_destroy(b->lc[i].hint);
    int rc = b->rc;
    free(b);
    if (rc) {
        plan_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* ------------------------------------------------------------------ execution */

/* The plain C steps. Elementwise loops only (no reductions across threads), so their results
 * do not depend on the thread count. */
static void run_loop(const struct cstep *s, const struct eng_model *m)
{
    float *a = s->a;
    const float *x = s->b;
    long count = (long)s->count;
    switch (s->op) {
    case C_MASK:
#pragma omp parallel for schedule(static)
        for (long i = 0; i < count; i++)
            a[i] = x[i] > 0.0f ? a[i] : 0.0f;
        break;
    case C_RES:
        if (s->relu) {
#pragma omp parallel for schedule(static)
            for (long i = 0; i < count; i++) {
                float v = a[i] + x[i];
                a[i] = v > 0.0f ? v : 0.0f;
            }
        } else {
#pragma omp parallel for schedule(static)
            for (long i = 0; i < count; i++)
                a[i] = a[i] + x[i];
        }
        break;
    case C_COPY:
        memcpy(a, x, s->count * sizeof(float));
        break;
    case C_ADD:
#pragma omp parallel for schedule(static)
        for (long i = 0; i < count; i++)
            a[i] = a[i] + x[i];
        break;
    case C_DROPOUT: {
        /* [n][f] here, [f][n] on Vulkan: the mask index is the Vulkan one, f * n + i */
        uint32_t seed_lo = (uint32_t)m->spec.seed, seed_hi = (uint32_t)(m->spec.seed >> 32);
        uint32_t step = (uint32_t)m->step, N = s->n, F = s->f;
        float scale = s->p < 1.0f ? 1.0f / (1.0f - s->p) : 0.0f;
#pragma omp parallel for schedule(static)
        for (long r = 0; r < (long)N; r++)
            for (uint32_t f = 0; f < F; f++) {
                size_t i = (size_t)r * F + f;
                int keep =
                    eng_dropout_keep(seed_lo, seed_hi, step, s->salt, f * N + (uint32_t)r, s->p);
                a[i] = keep ? x[i] * scale : 0.0f;
            }
        break;
    }
    case C_BN_RUNNING: {
        float L = (float)s->n, mom = ENG_BN_MOMENTUM;
        for (size_t c = 0; c < s->count; c++) {
            float var = s->d[c];
            float unb = s->n > 1 ? var * L / (float)(s->n - 1) : var;
            s->a[c] = (1.0f - mom) * s->a[c] + mom * s->c[c];
            s->b[c] = (1.0f - mom) * s->b[c] + mom * unb;
        }
        break;
    }
    case C_PRIM:
        break;
    }
}

static int run_steps(struct eng_model *m, const struct cstep *s, uint32_t n)
{
    dnnl_stream_t stream = m->d->cpu->stream;
    for (uint32_t i = 0; i < n; i++) {
        if (s[i].op == C_PRIM) {
            dnnl_status_t st = dnnl_primitive_execute(s[i].prim, stream, s[i].nargs, s[i].args);
            if (st != dnnl_success) {
                const_dnnl_primitive_desc_t pd = NULL;
                const char *info = NULL;
                dnnl_primitive_get_primitive_desc(s[i].prim, &pd);
                if (pd)
                    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info);
                fprintf(stderr, "cwt engine (cpu): oneDNN primitive %s failed (status %d)\n",
                        info ? info : "?", (int)st);
                return CWT_EUNSUPPORTED;
            }
            continue;
        }
        /* CPU streams execute in order in the calling thread; the wait is a formality that
         * keeps the loops correct on an asynchronous runtime too. */
        if (dnnl_stream_wait(stream) != dnnl_success)
            return CWT_EUNSUPPORTED;
        run_loop(&s[i], m);
    }
    return dnnl_stream_wait(stream) == dnnl_success ? 0 : CWT_EUNSUPPORTED;
}

/* The plan for (n, predict), built on first use; the least recently used one is dropped when
 * the cache is full (a batch size's plan is built once, not per step). */
static int get_plan(struct eng_model *m, uint32_t n, int predict, struct cpu_plan **out)
{
    struct cpu_model *cm = m->cpu;
    int free_slot = -1, lru = 0;
    cm->clock++;
    for (int i = 0; i < CPU_MAX_PLANS; i++) {
        struct cpu_plan *p = cm->plans[i];
        if (!p) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (p->n == n && p->predict == predict) {
            p->last_use = cm->clock;
            *out = p;
            return 0;
        }
        if (cm->plans[lru] && p->last_use < cm->plans[lru]->last_use)
            lru = i;
    }
    int slot = free_slot >= 0 ? free_slot : lru;
    char err[CWT_ERRLEN];
    struct cpu_plan *p = NULL;
    int rc = plan_build(m, n, predict, &p, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "cwt engine (cpu): %s\n", err);
        return rc;
    }
    plan_free(cm->plans[slot]);
    cm->plans[slot] = p;
    p->last_use = cm->clock;
    *out = p;
    return 0;
}

static void cpu_model_free(struct eng_model *m)
{
    struct cpu_model *cm = m->cpu;
    if (!cm)
        return;
    for (int i = 0; i < CPU_MAX_PLANS; i++)
        plan_free(cm->plans[i]);
    for (int r = 0; r < REG_COUNT; r++)
        free(cm->reg[r]);
    for (uint32_t i = 0; i < m->nacts; i++) {
        free(cm->val[i]);
        free(cm->grad[i]);
    }
    free(cm->temp);
    free(cm->labels);
    free(cm->cw);
    free(cm);
    m->cpu = NULL;
}

static int cpu_model_init(struct eng_model *m, char *err, size_t errlen)
{
    struct cpu_model *cm = calloc(1, sizeof(*cm));
    if (!cm)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory creating the model");
    m->cpu = cm;
    /* Parameters, gradients and optimizer state share offsets (one optimizer loop). */
    size_t cur[REG_COUNT] = {0};
    for (uint32_t i = 0; i < m->nt; i++) {
        struct mtensor *t = &m->t[i];
        if (t->kind == ENG_T_OPTIM)
            continue;
        cm->off[i] = cur[t->region];
        cur[t->region] += (t->numel + CPU_ALIGNF - 1) / CPU_ALIGNF * CPU_ALIGNF;
    }
    for (uint32_t i = 0; i < m->nt; i++)
        if (m->t[i].kind == ENG_T_OPTIM)
            cm->off[i] = cm->off[m->t[i].param];
    cm->reg_floats[REG_PARAM] = cm->reg_floats[REG_GRAD] = cur[REG_PARAM];
    cm->reg_floats[REG_BUF] = cur[REG_BUF];
    int nstates = m->opt.kind == ENG_SGD ? (m->opt.momentum != 0.0f ? 1 : 0) : 2;
    for (int s = 0; s < nstates; s++)
        cm->reg_floats[REG_OPT1 + s] = cur[REG_PARAM];
    for (int r = 0; r < REG_COUNT; r++)
        if (cm->reg_floats[r] && !(cm->reg[r] = falloc(cm->reg_floats[r] * sizeof(float))))
            return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for the model's tensors");
    /* Activations: room for max_batch images in any format whose channel blocks are at most
     * 16 wide (checked against oneDNN's choice when a plan is built). */
    for (uint32_t i = 0; i < m->nacts; i++)
        cm->alias[i] = -1;
    for (uint32_t i = 0; i < m->nl; i++)
        if (m->layers[i].t == L_FLATTEN)
            cm->alias[m->layers[i].out] = m->layers[i].in;
    for (uint32_t i = 0; i < m->nacts; i++) {
        const struct act *a = &m->acts[i];
        if (cm->alias[i] >= 0)
            continue;
        uint64_t floats = (uint64_t)m->max_batch * ((a->c + 15u) / 16u * 16u) * a->h * a->w;
        if (floats > SIZE_MAX / 8)
            return cwt_seterr(err, errlen, CWT_ETOOBIG, "activation too large");
        cm->cap[i] = (size_t)floats * sizeof(float);
        cm->val[i] = falloc(cm->cap[i]);
        cm->grad[i] = a->needs_grad ? falloc(cm->cap[i]) : NULL;
        if (!cm->val[i] || (a->needs_grad && !cm->grad[i]))
            return cwt_seterr(err, errlen, CWT_ENOMEM,
                              "out of memory for activations (max_batch %u)", m->max_batch);
        if (cm->cap[i] > cm->temp_cap)
            cm->temp_cap = cm->cap[i];
    }
    cm->temp = falloc(cm->temp_cap);
    cm->labels = calloc(m->max_batch, sizeof(uint32_t));
    cm->cw = calloc(m->spec.classes, sizeof(float));
    if (!cm->temp || !cm->labels || !cm->cw)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory creating the model");
    return 0;
}

/* Weighted softmax cross-entropy on logits z[n][K] with loss.comp's float arithmetic: dz gets
 * the gradient of the mean loss, cm->loss / cm->correct the results. */
static void cross_entropy(struct eng_model *m, const float *z, float *dz, uint32_t n)
{
    struct cpu_model *cm = m->cpu;
    uint32_t K = m->spec.classes;
    float l = 0.0f, sw = 0.0f, c = 0.0f;
    for (uint32_t i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * K;
        float *di = dz + (size_t)i * K;
        float mx = zi[0];
        uint32_t am = 0;
        for (uint32_t k = 1; k < K; k++)
            if (zi[k] > mx) {
                mx = zi[k];
                am = k;
            }
        float s = 0.0f;
        for (uint32_t k = 0; k < K; k++)
            s += expf(zi[k] - mx);
        float inv = 1.0f / s;
        for (uint32_t k = 0; k < K; k++)
            di[k] = expf(zi[k] - mx) * inv;
        uint32_t y = cm->labels[i];
        float w = cm->cw[y];
        l += w * (logf(s) - (zi[y] - mx));
        sw += w;
        c += am == y ? 1.0f : 0.0f;
    }
    cm->loss = sw > 0.0f ? l / sw : 0.0f;
    cm->correct = c;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t y = cm->labels[i];
        float scale = sw > 0.0f ? cm->cw[y] / sw : 0.0f;
        for (uint32_t k = 0; k < K; k++)
            dz[(size_t)i * K + k] = (dz[(size_t)i * K + k] - (k == y ? 1.0f : 0.0f)) * scale;
    }
}

/* optim.comp's SGD / Adam / AdamW over the parameter floats [start, end) with lr. */
static void optimize_range(struct eng_model *m, long start, long end, float lr, float bc1,
                           float bc2)
{
    struct cpu_model *cm = m->cpu;
    const struct eng_optim_spec *o = &m->opt;
    float *w = cm->reg[REG_PARAM], *g = cm->reg[REG_GRAD];
    float *m1 = cm->reg[REG_OPT1], *v1 = cm->reg[REG_OPT2];
    if (o->kind == ENG_SGD) {
        float mom = o->momentum, wd = o->weight_decay;
        int nes = o->nesterov != 0;
#pragma omp parallel for schedule(static)
        for (long i = start; i < end; i++) {
            float gr = g[i] + wd * w[i];
            if (mom != 0.0f) {
                float bb = mom * m1[i] + gr;
                m1[i] = bb;
                gr = nes ? gr + mom * bb : bb;
            }
            w[i] = w[i] - lr * gr;
        }
        return;
    }
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps, wd = o->weight_decay;
    int dec = o->kind == ENG_ADAMW;
#pragma omp parallel for schedule(static)
    for (long i = start; i < end; i++) {
        float wi = w[i], gr = g[i];
        if (dec)
            wi *= 1.0f - lr * wd;
        else
            gr += wd * wi;
        float mi = b1 * m1[i] + (1.0f - b1) * gr;
        float vi = b2 * v1[i] + (1.0f - b2) * gr * gr;
        m1[i] = mi;
        v1[i] = vi;
        w[i] = wi - lr * bc1 * mi / (sqrtf(vi * bc2) + eps);
    }
}

struct optimize_step {
    float lr, bc1, bc2;
};

/* One run from eng_param_runs: the rate is lr * multiplier (the same float product as the
 * shader's). */
static void optimize_run(struct eng_model *m, uint32_t first, uint32_t next, float scale, void *ctx)
{
    const struct optimize_step *st = ctx;
    struct cpu_model *cm = m->cpu;
    long end = next < m->nt ? (long)cm->off[next] : (long)cm->reg_floats[REG_PARAM];
    optimize_range(m, (long)cm->off[first], end, st->lr * scale, st->bc1, st->bc2);
}

/* One loop per run of parameters with the same lr multiplier; frozen runs are skipped. */
static void optimize(struct eng_model *m, float lr, float bc1, float bc2)
{
    struct optimize_step st = {lr, bc1, bc2};
    eng_param_runs(m, optimize_run, &st);
}

static void put_input(struct eng_model *m, const float *x, uint32_t n)
{
    const struct act *in = &m->acts[m->input];
    memcpy(m->cpu->val[m->input], x, (size_t)n * in->c * in->h * in->w * sizeof(float));
}

/* The whole step runs here (the CPU is the device); train_end returns its results. */
static int cpu_train_begin(struct eng_model *m, const float *x, const uint32_t *labels, uint32_t n,
                           const float *class_weights, float lr)
{
    struct cpu_model *cm = m->cpu;
    struct cpu_plan *p;
    int rc = get_plan(m, n, 0, &p);
    if (rc != 0)
        return rc;
    uint64_t t = m->step + 1;
    float bc1 = 1.0f, bc2 = 1.0f;
    if (m->opt.kind != ENG_SGD) {
        bc1 = (float)(1.0 / (1.0 - pow((double)m->opt.beta1, (double)t)));
        bc2 = (float)(1.0 / (1.0 - pow((double)m->opt.beta2, (double)t)));
    }
    memcpy(cm->labels, labels, (size_t)n * sizeof(uint32_t));
    for (uint32_t k = 0; k < m->spec.classes; k++)
        cm->cw[k] = class_weights ? class_weights[k] : 1.0f;
    put_input(m, x, n);
    m->step = t; /* dropout masks use this step's number */
    cm->done = 0;
    if ((rc = run_steps(m, p->fwd, p->nfwd)) != 0)
        return rc;
    cross_entropy(m, cm->val[act_of(cm, m->logits)], cm->grad[act_of(cm, m->logits)], n);
    if ((rc = run_steps(m, p->bwd, p->nbwd)) != 0)
        return rc;
    optimize(m, lr, bc1, bc2);
    cm->done = 1;
    return 0;
}

static int cpu_train_end(struct eng_model *m, float *loss, uint32_t *correct)
{
    struct cpu_model *cm = m->cpu;
    if (!cm->done)
        return CWT_ESTATE;
    cm->done = 0;
    if (loss)
        *loss = cm->loss;
    if (correct)
        *correct = (uint32_t)cm->correct;
    return isfinite(cm->loss) ? 0 : CWT_ENUMERIC;
}

static int cpu_predict(struct eng_model *m, const float *x, uint32_t n, float *probs)
{
    struct cpu_plan *p;
    int rc = get_plan(m, n, 1, &p);
    if (rc != 0)
        return rc;
    put_input(m, x, n);
    if ((rc = run_steps(m, p->fwd, p->nfwd)) != 0)
        return rc;
    uint32_t K = m->spec.classes;
    const float *z = m->cpu->val[act_of(m->cpu, m->logits)];
    for (uint32_t i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * K;
        float mx = zi[0];
        for (uint32_t k = 1; k < K; k++)
            mx = fmaxf(mx, zi[k]);
        float s = 0.0f;
        for (uint32_t k = 0; k < K; k++)
            s += expf(zi[k] - mx);
        for (uint32_t k = 0; k < K; k++)
            probs[(size_t)i * K + k] = expf(zi[k] - mx) / s;
    }
    return 0;
}

static float *tensor_ptr(struct eng_model *m, uint32_t i)
{
    const struct mtensor *t = &m->t[i];
    return m->cpu->reg[t->region] + m->cpu->off[i];
}

static int cpu_read_tensor(struct eng_model *m, uint32_t i, float *dst)
{
    memcpy(dst, tensor_ptr(m, i), m->t[i].numel * sizeof(float));
    return 0;
}

static int cpu_write_tensor(struct eng_model *m, uint32_t i, const float *src)
{
    memcpy(tensor_ptr(m, i), src, m->t[i].numel * sizeof(float));
    return 0;
}

/* ------------------------------------------------------------------ test interface */

int cpu_ops_forward(struct eng_model *m, uint32_t n, int predict)
{
    struct cpu_plan *p;
    int rc = get_plan(m, n, predict, &p);
    return rc ? rc : run_steps(m, p->fwd, p->nfwd);
}

int cpu_ops_backward(struct eng_model *m, uint32_t n)
{
    struct cpu_plan *p;
    int rc = get_plan(m, n, 0, &p);
    return rc ? rc : run_steps(m, p->bwd, p->nbwd);
}

int cpu_ops_act(struct eng_model *m, uint32_t n, int predict, int a, int grad, float *plain,
                int write)
{
    struct cpu_model *cm = m->cpu;
    struct cpu_plan *p;
    int rc = get_plan(m, n, predict, &p);
    if (rc != 0)
        return rc;
    float *buf = (grad ? cm->grad : cm->val)[act_of(cm, a)];
    if (!buf)
        return CWT_ESTATE;
    const dnnl_memory_desc_t *md = &p->md[a];
    dnnl_memory_desc_t pmd;
    md_init(&pmd, md->ndims, md->dims, md->ndims == 4 ? dnnl_nchw : dnnl_nc);
    const dnnl_memory_desc_t *from = write ? &pmd : md, *to = write ? md : &pmd;
    dnnl_engine_t eng = m->d->cpu->eng;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t pr = NULL;
    dnnl_memory_t mf = NULL, mt = NULL;
    int ok = dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL) == dnnl_success &&
             dnnl_primitive_create(&pr, pd) == dnnl_success &&
             dnnl_memory_create(&mf, from, eng, write ? (void *)plain : buf) == dnnl_success &&
             dnnl_memory_create(&mt, to, eng, write ? (void *)buf : plain) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, mf}, {DNNL_ARG_TO, mt}};
        ok = dnnl_primitive_execute(pr, m->d->cpu->stream, 2, args) == dnnl_success &&
             dnnl_stream_wait(m->d->cpu->stream) == dnnl_success;
    }
    dnnl_memory_destroy(mf);
    dnnl_memory_destroy(mt);
    dnnl_primitive_destroy(pr);
    dnnl_primitive_desc_destroy(pd);
    return ok ? 0 : CWT_EUNSUPPORTED;
}

float *cpu_ops_tensor(struct eng_model *m, uint32_t i, enum eng_region r)
{
    return tparam(m->cpu, m, (int)i, r);
}

void cpu_ops_loss(struct eng_model *m, uint32_t n, const uint32_t *labels, const float *cw,
                  const float *z, float *dz, float *loss, uint32_t *correct)
{
    struct cpu_model *cm = m->cpu;
    memcpy(cm->labels, labels, (size_t)n * sizeof(uint32_t));
    for (uint32_t k = 0; k < m->spec.classes; k++)
        cm->cw[k] = cw ? cw[k] : 1.0f;
    cross_entropy(m, z, dz, n);
    *loss = cm->loss;
    *correct = (uint32_t)cm->correct;
}

void cpu_ops_optimize(struct eng_model *m, float lr, float bc1, float bc2)
{
    optimize(m, lr, bc1, bc2);
}

const struct eng_backend eng_backend_cpu = {
    .name = "cpu",
    .device_close = cpu_device_close,
    .model_init = cpu_model_init,
    .model_free = cpu_model_free,
    .train_begin = cpu_train_begin,
    .train_end = cpu_train_end,
    .predict = cpu_predict,
    .read_tensor = cpu_read_tensor,
    .write_tensor = cpu_write_tensor,
};
