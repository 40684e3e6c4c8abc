/*
 * train.c - the Vulkan backend's training steps, inference and tensor access: the host side of
 * the staging ring and the cache of recorded command buffers; the backend's table.
 */
#include <math.h>
#include <string.h>

#include "common/cwt.h"
#include "engine/model.h"

/* Waits for the submission pending in slot s. */
static int wait_slot(struct eng_model *m, int s)
{
    int rc = eng_wait(m->d, m->fence[s]);
    m->pending[s] = 0;
    if (rc == 0 && m->inflight[s])
        eng_rec_profile_collect(m->inflight[s]);
    m->inflight[s] = NULL;
    return rc;
}

int eng_model_sync(struct eng_model *m)
{
    int rc = 0;
    for (int s = 0; s < ENG_SLOTS; s++)
        if (m->pending[s]) {
            int r = wait_slot(m, s);
            if (r != 0)
                rc = r;
        }
    return rc;
}

/* Returns the command buffer recorded for (n, predict, slot), recording it on first use;
 * the least recently used entry is re-recorded when the cache is full. Recording happens
 * once per batch shape, never per step. */
static int get_rec(struct eng_model *m, uint32_t n, int predict, int slot, struct eng_rec **out)
{
    struct rec_entry *victim = NULL;
    m->clock++;
    for (int i = 0; i < ENG_MAX_RECS; i++) {
        struct rec_entry *e = &m->recs[i];
        if (e->used && e->n == n && e->predict == predict && e->slot == slot) {
            e->last_use = m->clock;
            *out = &e->rec;
            return 0;
        }
    }
    for (int i = 0; i < ENG_MAX_RECS && !victim; i++)
        if (!m->recs[i].used)
            victim = &m->recs[i];
    if (!victim) {
        victim = &m->recs[0];
        for (int i = 1; i < ENG_MAX_RECS; i++)
            if (m->recs[i].last_use < victim->last_use)
                victim = &m->recs[i];
    }
    char err[CWT_ERRLEN];
    if (victim->used) {
        /* it may belong to a submission still in flight */
        int rc = eng_model_sync(m);
        if (rc != 0)
            return rc;
    } else {
        int rc = eng_rec_init(m->d, &victim->rec, err, sizeof(err));
        if (rc != 0)
            return rc;
        victim->used = 1;
    }
    victim->n = n;
    victim->predict = predict;
    victim->slot = slot;
    victim->last_use = m->clock;
    int rc = eng_model_record(m, &victim->rec, n, predict, slot, err, sizeof(err));
    if (rc != 0) {
        eng_rec_free(&victim->rec);
        victim->used = 0;
        return rc;
    }
    *out = &victim->rec;
    return 0;
}

/* NCHW (host) -> CNHW (engine) while copying into the staging slot. */
static void put_input(const struct eng_model *m, float *dst, const float *x, uint32_t n)
{
    uint32_t C = m->spec.in_c;
    size_t hw = (size_t)m->spec.in_h * m->spec.in_w;
    if (C == 1) {
        memcpy(dst, x, (size_t)n * hw * sizeof(float));
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t c = 0; c < C; c++)
            memcpy(dst + ((size_t)c * n + i) * hw, x + ((size_t)i * C + c) * hw,
                   hw * sizeof(float));
}

int vk_train_begin(struct eng_model *m, const float *x, const uint32_t *labels, uint32_t n,
                   const float *class_weights, float lr)
{
    uint32_t K = m->spec.classes;
    int slot = (m->cur + 1) % ENG_SLOTS;
    if (m->pending[slot]) {
        int rc = wait_slot(m, slot);
        if (rc != 0)
            return rc;
    }
    struct eng_rec *rec;
    int rc = get_rec(m, n, 0, slot, &rec);
    if (rc != 0)
        return rc;
    uint8_t *s = m->staging[slot].map;
    uint64_t t = m->step + 1;
    struct eng_step_params p = {
        .lr = lr,
        .step = (uint32_t)t,
        .bc1 = 1.0f,
        .bc2 = 1.0f,
        .seed_lo = (uint32_t)m->spec.seed,
        .seed_hi = (uint32_t)(m->spec.seed >> 32),
        .n = n,
    };
    if (m->opt.kind != ENG_SGD) {
        p.bc1 = (float)(1.0 / (1.0 - pow((double)m->opt.beta1, (double)t)));
        p.bc2 = (float)(1.0 / (1.0 - pow((double)m->opt.beta2, (double)t)));
    }
    memcpy(s + m->s_prm, &p, sizeof(p));
    memcpy(s + m->s_labels, labels, (size_t)n * 4);
    float *cw = (float *)(void *)(s + m->s_cw);
    for (uint32_t k = 0; k < K; k++)
        cw[k] = class_weights ? class_weights[k] : 1.0f;
    put_input(m, (float *)(void *)(s + m->s_x), x, n);
    rc = eng_submit(m->d, rec->cb, m->fence[slot]);
    if (rc != 0)
        return rc;
    m->pending[slot] = 1;
    m->inflight[slot] = rec;
    m->cur = slot;
    m->step = t;
    return 0;
}

int vk_train_end(struct eng_model *m, float *loss, uint32_t *correct)
{
    int slot = m->cur;
    if (!m->pending[slot])
        return CWT_ESTATE;
    int rc = wait_slot(m, slot);
    if (rc != 0)
        return rc;
    const float *res = (const float *)(const void *)((uint8_t *)m->staging[slot].map + m->s_res);
    if (loss)
        *loss = res[0];
    if (correct)
        *correct = (uint32_t)res[2];
    return isfinite(res[0]) ? 0 : CWT_ENUMERIC;
}

int vk_predict(struct eng_model *m, const float *x, uint32_t n, float *probs)
{
    int rc = eng_model_sync(m);
    if (rc != 0)
        return rc;
    struct eng_rec *rec;
    rc = get_rec(m, n, 1, 0, &rec);
    if (rc != 0)
        return rc;
    uint8_t *s = m->staging[0].map;
    put_input(m, (float *)(void *)(s + m->s_x), x, n);
    rc = eng_submit(m->d, rec->cb, m->fence[0]);
    if (rc != 0)
        return rc;
    m->pending[0] = 1;
    m->inflight[0] = rec;
    if ((rc = wait_slot(m, 0)) != 0)
        return rc;
    memcpy(probs, s + m->s_probs, (size_t)n * m->spec.classes * sizeof(float));
    return 0;
}

/* ------------------------------------------------------------------ tensors */

/* Copies between host memory and a tensor: directly when the region is mapped (unified
 * memory), else through a temporary host buffer and a one-off copy command. */
static int xfer(struct eng_model *m, uint32_t i, float *host, int to_device)
{
    int rc = eng_model_sync(m);
    if (rc != 0)
        return rc;
    const struct mtensor *t = &m->t[i];
    struct eng_buf *rb = &m->region[t->region];
    size_t bytes = t->numel * sizeof(float);
    if (rb->map) {
        uint8_t *p = (uint8_t *)rb->map + t->off;
        if (to_device)
            memcpy(p, host, bytes);
        else
            memcpy(host, p, bytes);
        return 0;
    }
    char err[CWT_ERRLEN];
    struct eng_buf tmp;
    rc = eng_buf_create(m->d, bytes, ENG_MEM_HOST, &tmp, err, sizeof(err));
    if (rc != 0)
        return rc;
    struct eng_rec r;
    rc = eng_rec_init(m->d, &r, err, sizeof(err));
    if (rc == 0) {
        rc = eng_rec_begin(&r, err, sizeof(err));
        if (rc == 0 && to_device) {
            memcpy(tmp.map, host, bytes);
            eng_rec_copy(&r, tmp.buf, 0, rb->buf, t->off, bytes);
        } else if (rc == 0) {
            eng_rec_copy(&r, rb->buf, t->off, tmp.buf, 0, bytes);
        }
        if (rc == 0)
            rc = eng_rec_run(&r, err, sizeof(err));
        if (rc == 0 && !to_device)
            memcpy(host, tmp.map, bytes);
        eng_rec_free(&r);
    }
    eng_buf_free(m->d, &tmp);
    return rc;
}

int vk_read_tensor(struct eng_model *m, uint32_t i, float *dst)
{
    return xfer(m, i, dst, 0);
}

int vk_write_tensor(struct eng_model *m, uint32_t i, const float *src)
{
    return xfer(m, i, (float *)(uintptr_t)src, 1);
}

/* The Vulkan backend's table, kept with the step functions so that model.c (recording) needs
 * nothing from train.c (running): calls go train.c -> model.c -> ops.c -> device.c only. */
const struct eng_backend eng_backend_vulkan = {
    .name = "vulkan",
    .device_close = vk_device_close,
    .model_init = vk_model_init,
    .model_free = vk_model_free,
    .train_begin = vk_train_begin,
    .train_end = vk_train_end,
    .predict = vk_predict,
    .read_tensor = vk_read_tensor,
    .write_tensor = vk_write_tensor,
};
