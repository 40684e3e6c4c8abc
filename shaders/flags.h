/*
 * flags.h - bits of the `flags` push constant, shared by the engine (C) and the shaders (GLSL).
 *
 * Included by engine/ops.h and by shaders/common.glsl (GL_GOOGLE_include_directive, glslang
 * -I shaders/), so both sides name the same bit; it must stay valid C and GLSL: #define and
 * comments only. Each group belongs to the kernels named before it.
 */
#ifndef CWT_SHADER_FLAGS_H
#define CWT_SHADER_FLAGS_H

/* GEMM epilogue (gemm.comp, gemm_cpu.comp; also the convolutions built on them). */
#define ENG_EPI_BIAS 1u /* add bias[m] */
#define ENG_EPI_RELU 2u /* max(., 0) */
#define ENG_EPI_MASK 4u /* times (mask[same index] > 0): fused ReLU backward */
#define ENG_EPI_ACC  8u /* add C first: a product summed in parts (over K, over image chunks) */

/* Batch norm (bn.comp). OP_STATS takes ENG_BN_UPDATE_RUNNING, OP_APPLY the others. */
#define ENG_BN_UPDATE_RUNNING 1u /* fold the batch statistics into the running ones */
#define ENG_BN_RELU           1u /* max(., 0) after the affine transform */
#define ENG_BN_EVAL           2u /* normalise with the running statistics */
#define ENG_BN_RESIDUAL       4u /* add the residual input before the ReLU */

/* Max-pool backward (pool.comp OP_MAX_BWD, OP_MAX_BWD_SCATTER). */
#define ENG_POOL_RELU_MASK 1u /* zero the gradient where the pooled input was <= 0 */

/* col2im and the stride-phase join (im2col.comp OP_COL2IM, OP_PHASE2IM). */
#define ENG_COL_MASK 1u /* zero dx where the forward input was <= 0 (fused ReLU backward) */
/* OP_PHASE2IM: ENG_COL_PHASE0 << ph marks stride phase ph as having taps (a phase without is
 * all zeros) */
#define ENG_COL_PHASE0 16u

#endif
