/*
 * ops.h - internal: recording of single engine ops (forward and backward) into an eng_rec.
 *
 * Not part of the public contract. The model code builds its training step from these, and
 * tests/engine checks each against a plain C reference. Activations are CNHW: channel-major,
 * so channel c of a batch is one contiguous block of N*H*W floats, and dense activations are
 * [features][N]. Weights use PyTorch layout (conv OIHW, dense [out][in]). Errors are kept in
 * the eng_rec and reported by eng_rec_end().
 */
#ifndef CWT_ENGINE_OPS_H
#define CWT_ENGINE_OPS_H

#include "engine/vk.h"
#include "shaders/flags.h" /* ENG_EPI_*, ENG_BN_*: shared with the shaders */

/* C(m,n) = sum_k A(m,k) B(k,n) with element strides: A(m,k) = A[m*sam + k*sak], etc. */
struct eng_gemm {
    uint32_t M, N, K;
    uint32_t sam, sak, sbk, sbn, scm, scn;
    uint32_t flags; /* ENG_EPI_* (shaders/flags.h) */
};

/* Records C = A*B (+ epilogue). bias: M floats when ENG_EPI_BIAS; mask: same layout as C. */
void op_gemm(struct eng_rec *r, const struct eng_gemm *g, struct eng_tref a, struct eng_tref b,
             struct eng_tref c, struct eng_tref bias, struct eng_tref mask);

/* Convolution geometry: n images, cin x ih x iw in, cout x oh x ow out, kh x kw kernel. */
struct eng_conv {
    uint32_t n, cin, ih, iw, cout, oh, ow, kh, kw, stride, pad;
};

/* Output size of a convolution or pooling window along one axis. */
static inline uint32_t eng_out_dim(uint32_t in, uint32_t k, uint32_t stride, uint32_t pad)
{
    return (in + 2 * pad - k) / stride + 1;
}

/* y[cout][n*oh*ow] = conv(x[cin][n*ih*iw], w[cout][cin][kh][kw]) (+ bias, ReLU per flags). */
void op_conv_fwd(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref x, struct eng_tref w,
                 struct eng_tref bias, struct eng_tref y, uint32_t flags);
/* wt = w rearranged for the data gradient (record before op_conv_bwd_data): [cin][cout][kh][kw],
 * spatially flipped for stride 1; on the CPU path (eng_rec.col set) with stride > 1 it is w
 * transposed to [cin*kh*kw][cout]. Same size as w. */
void op_conv_wt(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref w,
                struct eng_tref wt);
/* dx[cin][n*ih*iw] = data gradient from dy and wt; flags may hold ENG_EPI_MASK with mask =
 * the forward input (fuses the ReLU that produced x). */
void op_conv_bwd_data(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                      struct eng_tref wt, struct eng_tref dx, struct eng_tref mask, uint32_t flags);
/* dw[cout][cin*kh*kw] = filter gradient. scratch: eng_conv_filt_scratch() floats (split-K
 * partial sums; may be 0 bytes when that returns 0). */
void op_conv_bwd_filter(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                        struct eng_tref x, struct eng_tref dw, struct eng_tref scratch);
/* Bytes of im2col scratch (eng_rec.col) for the whole batch n of this geometry on the CPU path
 * (forward, data and filter gradient); smaller scratch works in chunks of images, as long as it
 * holds one image. 0 when the device does not use the CPU path. */
uint64_t eng_conv_col_bytes(const struct eng_device *d, const struct eng_conv *cv);
/* Number of scratch floats op_conv_bwd_filter needs for this geometry (0 = no split). */
uint64_t eng_conv_filt_scratch(const struct eng_device *d, const struct eng_conv *cv);

/* out[i*so] = sum_{j<len} in[i*si + j*sj] (+ out[i*so] when accumulate), i < rows. */
void op_rowsum(struct eng_rec *r, struct eng_tref in, struct eng_tref out, uint32_t rows,
               uint32_t len, uint32_t si, uint32_t sj, uint32_t so, int accumulate);
/* dst (dims d0..d3, contiguous) = src read with strides s0..s3: any axis permutation. */
void op_permute(struct eng_rec *r, struct eng_tref src, struct eng_tref dst, const uint32_t d[4],
                const uint32_t s[4]);
/* Same, reading from src[base + ...]; strides may be negative (two's complement) to flip. */
void op_permute_at(struct eng_rec *r, struct eng_tref src, struct eng_tref dst, const uint32_t d[4],
                   const uint32_t s[4], uint32_t base);

/* y = a + b (ReLU when relu); count floats. */
void op_add(struct eng_rec *r, struct eng_tref a, struct eng_tref b, struct eng_tref y,
            uint32_t count, int relu);
/* dx = y > 0 ? dy : 0. */
void op_relu_bwd(struct eng_rec *r, struct eng_tref dy, struct eng_tref y, struct eng_tref dx,
                 uint32_t count);
/* Inverted dropout with keep probability 1-p; the same (params seed, step, salt) gives the
 * same mask, so the backward pass is the same call on dy. */
void op_dropout(struct eng_rec *r, struct eng_tref x, struct eng_tref y, struct eng_tref params,
                uint32_t count, float p, uint32_t salt);
/* Dropout keep test as the shader computes it (for references in tests). */
int eng_dropout_keep(uint32_t seed_lo, uint32_t seed_hi, uint32_t step, uint32_t salt, uint32_t i,
                     float p);

/* Pooling geometry on CNHW: planes = C*N. */
struct eng_pool {
    uint32_t planes, ih, iw, oh, ow, kh, kw, stride, pad;
};
void op_maxpool_fwd(struct eng_rec *r, const struct eng_pool *pl, struct eng_tref x,
                    struct eng_tref y, struct eng_tref argmax);
/* relu_mask: multiply by (x > 0) (x = the pool input) to fuse the preceding ReLU. */
void op_maxpool_bwd(struct eng_rec *r, const struct eng_pool *pl, struct eng_tref dy,
                    struct eng_tref argmax, struct eng_tref x, struct eng_tref dx, int relu_mask);
void op_avgpool_fwd(struct eng_rec *r, const struct eng_pool *pl, struct eng_tref x,
                    struct eng_tref y);
void op_avgpool_bwd(struct eng_rec *r, const struct eng_pool *pl, struct eng_tref dy,
                    struct eng_tref dx);

/* Batch norm on C channels of L = N*H*W floats. saved: 2*C floats (mean, invstd). flags of
 * op_bn_apply: ENG_BN_RELU, ENG_BN_EVAL, ENG_BN_RESIDUAL (shaders/flags.h). */
void op_bn_stats(struct eng_rec *r, uint32_t C, uint32_t L, float eps, float momentum,
                 struct eng_tref x, struct eng_tref saved, struct eng_tref rmean,
                 struct eng_tref rvar, int update_running);
void op_bn_apply(struct eng_rec *r, uint32_t C, uint32_t L, float eps, uint32_t flags,
                 struct eng_tref x, struct eng_tref saved, struct eng_tref rmean,
                 struct eng_tref rvar, struct eng_tref gamma, struct eng_tref beta,
                 struct eng_tref y, struct eng_tref residual);
/* dgamma, dbeta (parameter gradients) and dx from dy (already through any ReLU). */
void op_bn_bwd(struct eng_rec *r, uint32_t C, uint32_t L, struct eng_tref dy, struct eng_tref x,
               struct eng_tref saved, struct eng_tref gamma, struct eng_tref dgamma,
               struct eng_tref dbeta, struct eng_tref dx);

/* Cross-entropy on logits z[K][N]: ps needs 3*N floats, res 3 floats (mean loss, sum of
 * weights, correct), dz K*N floats (gradient of the mean loss w.r.t. z). */
void op_ce(struct eng_rec *r, uint32_t N, uint32_t K, struct eng_tref z, struct eng_tref labels,
           struct eng_tref cw, struct eng_tref ps, struct eng_tref res, struct eng_tref dz);
/* probs[n*K + k] = softmax over k of z[k][n]. */
void op_softmax(struct eng_rec *r, uint32_t N, uint32_t K, struct eng_tref z,
                struct eng_tref probs);

/* Optimizer updates over count floats. */
void op_sgd(struct eng_rec *r, uint32_t count, float momentum, float wd, int nesterov,
            struct eng_tref w, struct eng_tref g, struct eng_tref buf, struct eng_tref params);
void op_adam(struct eng_rec *r, uint32_t count, float beta1, float beta2, float eps, float wd,
             int decoupled, struct eng_tref w, struct eng_tref g, struct eng_tref m,
             struct eng_tref v, struct eng_tref params);
/* The same with the step's learning rate multiplied by lr_scale (a parameter group's lr). */
void op_sgd_scaled(struct eng_rec *r, uint32_t count, float momentum, float wd, int nesterov,
                   float lr_scale, struct eng_tref w, struct eng_tref g, struct eng_tref buf,
                   struct eng_tref params);
void op_adam_scaled(struct eng_rec *r, uint32_t count, float beta1, float beta2, float eps,
                    float wd, int decoupled, float lr_scale, struct eng_tref w, struct eng_tref g,
                    struct eng_tref m, struct eng_tref v, struct eng_tref params);

/* Layout of the StepParams buffer (shaders/common.glsl). */
struct eng_step_params {
    float lr;
    uint32_t step;
    float bc1, bc2;
    uint32_t seed_lo, seed_hi;
    uint32_t n;
    uint32_t pad;
};

#endif
