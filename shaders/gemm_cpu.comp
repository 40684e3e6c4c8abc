#version 450
// gemm_cpu.comp - C = A * B (+ epilogue) shaped for CPU devices (lavapipe/llvmpipe), where the
// invocations of a workgroup are the lanes of one SIMD vector.
//
// A(m,k) = A[a_off + m*sam + k*sak], B(k,n) = B[b_off + k*sbk + n*sbn],
// C(m,n) = C[c_off + z*scz + m*scm + n*scn] (z = split-K slice, see below).
//
// Why this shape: llvmpipe turns a buffer load whose address differs between invocations into a
// per-lane gather, but a load whose address is the same for the whole workgroup (it depends only
// on the workgroup id, push constants and loop counters) into one scalar load and a broadcast.
// So a workgroup is 8 invocations (one 256-bit vector); its 8 rows of A are workgroup-uniform
// scalar loads, and each invocation owns 2 columns (n and n+8) of B: per k, 8 broadcasts and
// 2 gathers feed 16 vector FMAs into 16 accumulators (fits the 16 AVX registers with little
// spilling). No shared memory and no barriers (each barrier switches coroutines on lavapipe).
// Each workgroup walks ctiles column tiles of 16 to amortise the per-workgroup cost.
//
// Epilogue flags (as gemm.comp): 1 add bias[m], 2 ReLU, 4 multiply by (mask[C index] > 0),
// 8 accumulate (C += result instead of C = result).
// Split-K: workgroup z sums k in [z*kchunk, min(K, (z+1)*kchunk)).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 8, local_size_y = 1, local_size_z = 1) in;

layout(push_constant) uniform PC {
    uint M, N, K;
    uint sam, sak, sbk, sbn, scm, scn;
    uint flags, kchunk, scz, ctiles;
    uint a_off, b_off, c_off;
} p;

BUF_RO(0, A);
BUF_RO(1, B);
BUF_RW(2, C);
BUF_RO(3, bias);
BUF_RO(4, mask);

#define FOR8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

void store(uint m, uint n, float v)
{
    if (m >= p.M || n >= p.N)
        return;
    if ((p.flags & 1u) != 0u)
        v += bias[m];
    if ((p.flags & 2u) != 0u)
        v = max(v, 0.0);
    uint idx = p.c_off + gl_WorkGroupID.z * p.scz + m * p.scm + n * p.scn;
    if ((p.flags & 4u) != 0u)
        v = mask[idx] > 0.0 ? v : 0.0;
    if ((p.flags & 8u) != 0u)
        v += C[idx];
    C[idx] = v;
}

void main()
{
    uint lane = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * 8u;
    uint k0 = gl_WorkGroupID.z * p.kchunk;
    uint k1 = min(k0 + p.kchunk, p.K);
    // Rows past M read row M-1 (a valid address, result discarded): no per-load branches.
#define AROW(i) uint ar##i = p.a_off + min(m0 + uint(i), p.M - 1u) * p.sam;
    FOR8(AROW)
    for (uint t = 0; t < p.ctiles; t++) {
        uint nb = (gl_WorkGroupID.x * p.ctiles + t) * 16u;
        if (nb >= p.N)
            break;
        uint n0 = nb + lane, n1 = nb + 8u + lane;
        uint b0 = p.b_off + min(n0, p.N - 1u) * p.sbn;
        uint b1 = p.b_off + min(n1, p.N - 1u) * p.sbn;
#define ACC(i) float c##i##a = 0.0, c##i##b = 0.0;
        FOR8(ACC)
        for (uint k = k0; k < k1; k++) {
            float bv0 = B[b0 + k * p.sbk];
            float bv1 = B[b1 + k * p.sbk];
            uint ak = k * p.sak;
#define FMA(i)                                                                                 \
    {                                                                                          \
        float a = A[ar##i + ak];                                                               \
        c##i##a = fma(a, bv0, c##i##a);                                                        \
        c##i##b = fma(a, bv1, c##i##b);                                                        \
    }
            FOR8(FMA)
        }
#define STORE(i)                                                                               \
    store(m0 + uint(i), n0, c##i##a);                                                          \
    store(m0 + uint(i), n1, c##i##b);
        FOR8(STORE)
    }
}
