#version 450
// bn.comp - batch normalisation over CNHW activations: channel c is the contiguous block
// x[c*L .. c*L+L-1], L = N*H*W. Per-channel sums use one workgroup of 64 per channel: each
// invocation sums a fixed strided subset in order, then a fixed tree in shared memory, so the
// result does not depend on scheduling (bit-identical runs).
//   OP_STATS     mean and biased variance (two passes) -> saved[c] = mean, saved[C+c] = 1/std;
//                updates running stats (momentum, unbiased variance) as PyTorch does
//   OP_APPLY     y = (x - mean) * invstd * gamma + beta (+ residual) (ReLU); eval mode uses the
//                running statistics
//   OP_BWD_SUMS  dgamma = sum dy * xhat, dbeta = sum dy
//   OP_BWD       dx = gamma * invstd / L * (L * dy - dbeta - xhat * dgamma)
// Per-element inputs are uniform texel buffers (bindings 8, 9) and per-channel values are read
// at the top of main, before any branch, from a workgroup-uniform channel index: on llvmpipe
// both are vector / scalar loads, where a storage-buffer load in a branch or loop is a loop
// over the lanes. APPLY and BWD run a grid of (column blocks, C): no division per element;
// their VEC4 variants (CPU devices, L % 4 == 0) handle four elements per invocation.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    uint C, L;
    float eps, momentum;
    uint flags; // flags.h: APPLY ENG_BN_RELU, _EVAL, _RESIDUAL; STATS ENG_BN_UPDATE_RUNNING
} p;

#if defined(OP_STATS) || defined(OP_BWD_SUMS)
// BN_WG invocations per channel: 64 on CPU devices (each barrier switches coroutines there),
// 512 on GPUs (with 16-64 channels, 64 per channel left most of a GPU idle: a third of a
// resnet-8 step on an H200)
#ifndef BN_WG
#define BN_WG 64
#endif
#define WG_SIZE BN_WG
layout(local_size_x = BN_WG) in;
#include "wg_sum.glsl"
#endif

layout(set = 0, binding = 8) uniform samplerBuffer TX;
layout(set = 0, binding = 9) uniform samplerBuffer TY;
// Items per channel: elements, or vec4s in the VEC4 variants (L % 4 == 0); HSUM adds up the
// components of an item (sums then run over four interleaved partial sums per invocation)
#if defined(VEC4)
#define SPAN (p.L >> 2)
#define HSUM(v) (((v).x + (v).y) + ((v).z + (v).w))
#else
#define SPAN p.L
#define HSUM(v) (v)
#endif

// The elementwise passes (APPLY, BWD) over item j of channel c (i: its index). The VEC4
// variants (CPU devices) get a grid that covers the channel, BN_ITEMS items per invocation in
// a loop of constant trip count (unrolled): llvmpipe runs a store inside a real loop as a loop
// over the lanes (one item per invocation without a loop: bn_apply4 11.7 -> 9.3 ms per call in
// resnet-8, bn_bwd4 10.9 -> 8.6), and each per-channel storage-buffer load at the top is a
// loop over the lanes too (its address comes from the workgroup id), paid once per BN_ITEMS
// items (4 items: a further 10-20%). The scalar variants loop over the channel.
#define BN_ITEMS 4u
#if defined(VEC4)
#define ELEM_LOOP_BEGIN                                                                        \
    for (uint u = 0u; u < BN_ITEMS; u++) {                                                     \
        uint j0 = gl_GlobalInvocationID.x * BN_ITEMS + u, j = min(j0, SPAN - 1u);               \
        int i = int(c * SPAN + j);
#define ELEM_LOOP_END(STORE)                                                                   \
        if (j0 < SPAN)                                                                         \
            STORE;                                                                             \
    }
#else
#define ELEM_LOOP_BEGIN                                                                        \
    for (uint j = gl_GlobalInvocationID.x; j < SPAN; j += gl_NumWorkGroups.x * 64u) {          \
        int i = int(c * SPAN + j);
#define ELEM_LOOP_END(STORE)                                                                   \
        STORE;                                                                                 \
    }
#endif

#if defined(OP_STATS)
BUF_RW(1, saved);
BUF_RW(2, rmean);
BUF_RW(3, rvar);
void main()
{
    uint c = gl_WorkGroupID.x, lid = gl_LocalInvocationID.x;
    uint base = c * SPAN;
    VT s = VT(0.0);
    for (uint j = lid; j < SPAN; j += BN_WG)
        s += TFETCH(TX, base + j);
    float mean = wg_sum(HSUM(s)) / float(p.L);
    VT q = VT(0.0);
    for (uint j = lid; j < SPAN; j += BN_WG) {
        VT d = TFETCH(TX, base + j) - mean;
        q += d * d;
    }
    float var = wg_sum(HSUM(q)) / float(p.L);
    if (lid == 0u) {
        saved[c] = mean;
        saved[p.C + c] = inversesqrt(var + p.eps);
        if ((p.flags & ENG_BN_UPDATE_RUNNING) != 0u) {
            float unb = p.L > 1u ? var * float(p.L) / float(p.L - 1u) : var;
            rmean[c] = (1.0 - p.momentum) * rmean[c] + p.momentum * mean;
            rvar[c] = (1.0 - p.momentum) * rvar[c] + p.momentum * unb;
        }
    }
}
#elif defined(OP_APPLY)
layout(local_size_x = 64) in;
BUF_RO(1, saved);
BUF_RO(2, rmean);
BUF_RO(3, rvar);
BUF_RO(4, gamma);
BUF_RO(5, beta);
layout(std430, set = 0, binding = 6) buffer Buf6 { VT y[]; };
// TX = x, TY = residual (bound to x when there is none)
void main()
{
    uint c = gl_WorkGroupID.y;
    float mean = saved[c], inv = saved[p.C + c], g = gamma[c], b = beta[c];
    if ((p.flags & ENG_BN_EVAL) != 0u) {
        mean = rmean[c];
        inv = inversesqrt(rvar[c] + p.eps);
    }
    bool relu = (p.flags & ENG_BN_RELU) != 0u, residual = (p.flags & ENG_BN_RESIDUAL) != 0u;
    ELEM_LOOP_BEGIN
        VT v = (TFETCH(TX, i) - mean) * inv * g + b;
        VT r = TFETCH(TY, i);
        v += residual ? r : VT(0.0);
        v = relu ? max(v, VT(0.0)) : v;
    ELEM_LOOP_END(y[i] = v)
}
#elif defined(OP_BWD_SUMS)
BUF_RO(2, saved);
BUF_RW(3, dgamma);
BUF_RW(4, dbeta);
// TX = dy, TY = x
void main()
{
    uint c = gl_WorkGroupID.x, lid = gl_LocalInvocationID.x;
    uint base = c * SPAN;
    float mean = saved[c], inv = saved[p.C + c];
    VT sg = VT(0.0), sb = VT(0.0);
    for (uint j = lid; j < SPAN; j += BN_WG) {
        VT g = TFETCH(TX, base + j);
        sb += g;
        sg += g * (TFETCH(TY, base + j) - mean) * inv;
    }
    float tg = wg_sum(HSUM(sg));
    float tb = wg_sum(HSUM(sb));
    if (lid == 0u) {
        dgamma[c] = tg;
        dbeta[c] = tb;
    }
}
#elif defined(OP_BWD)
layout(local_size_x = 64) in;
BUF_RO(2, saved);
BUF_RO(3, dgamma);
BUF_RO(4, dbeta);
BUF_RO(5, gamma);
layout(std430, set = 0, binding = 6) buffer Buf6 { VT dx[]; };
// TX = x, TY = dy
void main()
{
    uint c = gl_WorkGroupID.y;
    float mean = saved[c], inv = saved[p.C + c], g = gamma[c], dg = dgamma[c], db = dbeta[c];
    float fl = float(p.L);
    ELEM_LOOP_BEGIN
        VT xhat = (TFETCH(TX, i) - mean) * inv;
        VT v = g * inv / fl * (fl * TFETCH(TY, i) - db - xhat * dg);
    ELEM_LOOP_END(dx[i] = v)
}
#endif
