/*
 * model.c - the Vulkan backend's model: the arena, and the recording of a training step /
 * inference into one command buffer from the description graph.c built.
 *
 * The description (layers, tensors, names, initialisation) is graph.c's, shared with the CPU
 * backend.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "engine/model.h"

#define BN_EPS      ENG_BN_EPS
#define BN_MOMENTUM ENG_BN_MOMENTUM

static const struct eng_tref NOBUF = {VK_NULL_HANDLE, 0, 0};

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
    for (uint32_t i = 0; i < m->nt; i++) {
        struct mtensor *t = &m->t[i];
        if (t->kind != ENG_T_OPTIM)
            t->off = take(&cur[t->region], t->numel * 4);
    }
    /* gradients and optimizer state mirror the parameter region */
    cur[REG_GRAD] = cur[REG_PARAM];
    for (uint32_t i = 0; i < m->nt; i++) {
        struct mtensor *t = &m->t[i];
        if (t->kind == ENG_T_OPTIM) {
            t->off = m->t[t->param].off;
            cur[t->region] = cur[REG_PARAM];
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

void vk_model_free(struct eng_model *m)
{
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
}

/* The Vulkan backend's model: the arena regions, staging ring and fences. */
int vk_model_init(struct eng_model *m, char *err, size_t errlen)
{
    struct eng_device *dev = m->d;
    m->cur = 0;
    int rc = layout(m, err, errlen);
    for (int r = 0; rc == 0 && r < REG_COUNT; r++)
        if (m->region_size[r] > 0)
            rc = eng_buf_create(dev, m->region_size[r], ENG_MEM_DEVICE, &m->region[r], err, errlen);
    for (int s = 0; rc == 0 && s < ENG_SLOTS; s++) {
        rc = eng_buf_create(dev, m->s_size, ENG_MEM_HOST, &m->staging[s], err, errlen);
        if (rc == 0 && eng_fence_create(dev, &m->fence[s]) != 0)
            rc = cwt_seterr(err, errlen, CWT_EVULKAN, "vkCreateFence failed");
    }
    return rc;
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
    if (!y->has_grad || l->frozen)
        return; /* nothing flows back through this layer, or nothing is wanted from it */
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

/* Records the update of the parameter bytes [start, end) of REG_PARAM with lr * scale. */
static void record_optimizer_range(struct eng_model *m, struct eng_rec *r, VkDeviceSize start,
                                   VkDeviceSize end, float scale)
{
    const struct eng_optim_spec *o = &m->opt;
    struct eng_tref prm = eng_region_ref(m, REG_ACT, m->a_prm, sizeof(struct eng_step_params));
    /* Chunks keep every binding within the storage buffer range (layout() checked the whole
     * region fits, so one chunk is the norm). */
    VkDeviceSize chunk = m->d->info.max_storage_buffer_range / ENG_ALIGN * ENG_ALIGN;
    for (VkDeviceSize off = start; off < end; off += chunk) {
        VkDeviceSize bytes = end - off < chunk ? end - off : chunk;
        uint32_t count = (uint32_t)(bytes / 4);
        struct eng_tref w = eng_region_ref(m, REG_PARAM, off, bytes);
        struct eng_tref g = eng_region_ref(m, REG_GRAD, off, bytes);
        if (o->kind == ENG_SGD) {
            struct eng_tref buf =
                o->momentum != 0.0f ? eng_region_ref(m, REG_OPT1, off, bytes) : NOBUF;
            op_sgd_scaled(r, count, o->momentum, o->weight_decay, o->nesterov, scale, w, g, buf,
                          prm);
        } else {
            op_adam_scaled(r, count, o->beta1, o->beta2, o->eps, o->weight_decay,
                           o->kind == ENG_ADAMW, scale, w, g,
                           eng_region_ref(m, REG_OPT1, off, bytes),
                           eng_region_ref(m, REG_OPT2, off, bytes), prm);
        }
    }
}

/* One run from eng_param_runs, recorded into the eng_rec passed as ctx. */
static void record_optimizer_run(struct eng_model *m, uint32_t first, uint32_t next, float scale,
                                 void *ctx)
{
    VkDeviceSize end = next < m->nt ? m->t[next].off : m->region_size[REG_PARAM];
    record_optimizer_range(m, ctx, m->t[first].off, end, scale);
}

/* One dispatch per run of parameters with the same lr multiplier (parameters are laid out in
 * tensor order, so a model without fine-tuning groups is one run, as before); frozen runs
 * (multiplier 0) are skipped, so their weights and optimizer state never change. */
static void record_optimizer(struct eng_model *m, struct eng_rec *r)
{
    eng_param_runs(m, record_optimizer_run, r);
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
    /* Frozen layers run in eval mode (batch norm on its running statistics). */
    for (uint32_t i = 0; i < m->nl; i++)
        record_forward(m, r, &m->layers[i], n, predict || m->layers[i].frozen);
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
