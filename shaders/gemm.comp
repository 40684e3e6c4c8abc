#version 450
// gemm.comp - C = op(A) * op(B) with an optional fused epilogue, and the implicit-GEMM forms of
// convolution (no im2col buffer: B is gathered from the activation on the fly).
//
// Operand fetch (one define each):
//   A_PLAIN     A(m,k) = A[m*sam + k*sak]
//   B_PLAIN     B(k,n) = B[k*sbk + n*sbn]
//   B_IM2COL    conv forward: k = (ic,ky,kx), n = (img,oy,ox), B = X[ic][img][iy][ix] (CNHW)
//   B_IM2COL_T  conv filter gradient: k = (img,oy,ox), n = (ic,ky,kx), A = dY[oc][k]
//   B_DYGATHER  conv data gradient: k = (oc,ky,kx), n = (img,iy,ix), B = dY[oc][img][oy][ox],
//               A = weights transposed to [ic][oc*kh*kw] by the engine beforehand
// The k loop is three nested loops (L0, L1, L2) = (kc, ky, kx) so the convolution indices need
// no division; plain GEMMs use (K, 1, 1). Split-K: workgroup z handles kc in
// [z*kchunk, (z+1)*kchunk) and writes its partial sums at C + z*scz (summed by rowsum later).
//
// Epilogue flags (flags.h): ENG_EPI_BIAS, ENG_EPI_RELU, ENG_EPI_MASK (ReLU backward).
//
// Kernel shapes (one define):
//   SHAPE_REG  each invocation owns an 8x8 register block, 64 invocations, no shared memory:
//              fastest on CPU devices (lavapipe), where barriers are expensive
//   SHAPE_SG   like REG, but the 8 rows of A are loaded once per subgroup of 8 and shared by
//              subgroupBroadcast (needs subgroup size 8)
//   SHAPE_TILE 64x64 shared-memory tiles, 256 invocations with 4x4 blocks: for real GPUs
#extension GL_GOOGLE_include_directive : require
#if defined(SHAPE_SG)
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_ballot : require
#endif
#include "common.glsl"

layout(push_constant) uniform PC {
    uint M, N, K;
    uint sam, sak, sbk, sbn, scm, scn;
    uint kchunk, scz, flags;
    uint L0, L1, L2;               // k loop bounds (see above)
    uint cin, ih, iw, oh, ow, kh, kw, stride, pad, nimg;
} p;

BUF_RO(0, A);
BUF_RO(1, B);
BUF_RW(2, C);
BUF_RO(3, bias);
BUF_RO(4, mask);

// Per-column state, computed once per output column n (outside the k loop).
struct Col {
    int base; // element offset of (image, ...) in B
    int y0;   // first input row (im2col) or shifted output row (dygather)
    int x0;
    bool ok;  // n < N
};

Col col_setup(uint n)
{
    Col c;
    c.ok = n < p.N;
    uint nn = c.ok ? n : 0u;
#if defined(B_PLAIN)
    c.base = int(nn * p.sbn);
    c.y0 = 0;
    c.x0 = 0;
#elif defined(B_IM2COL)
    uint hw = p.oh * p.ow;
    uint img = nn / hw, r = nn - img * hw;
    uint oy = r / p.ow, ox = r - oy * p.ow;
    c.base = int(img * p.ih * p.iw);
    c.y0 = int(oy * p.stride) - int(p.pad);
    c.x0 = int(ox * p.stride) - int(p.pad);
#elif defined(B_IM2COL_T)
    uint kk = p.kh * p.kw;
    uint ic = nn / kk, r = nn - ic * kk;
    uint ky = r / p.kw, kx = r - ky * p.kw;
    c.base = int(ic * p.nimg * p.ih * p.iw);
    c.y0 = int(ky) - int(p.pad);
    c.x0 = int(kx) - int(p.pad);
#elif defined(B_DYGATHER)
    uint hw = p.ih * p.iw;
    uint img = nn / hw, r = nn - img * hw;
    uint iy = r / p.iw, ix = r - iy * p.iw;
    c.base = int(img * p.oh * p.ow);
    c.y0 = int(iy + p.pad);
    c.x0 = int(ix + p.pad);
#endif
    return c;
}

// B(k, n) for the column state c at k = (kc, ky, kx), k the linear index.
float bload(Col c, uint k, uint kc, uint ky, uint kx)
{
#if defined(B_PLAIN)
    return c.ok ? B[k * p.sbk + uint(c.base)] : 0.0;
#elif defined(B_IM2COL)
    int y = c.y0 + int(ky), x = c.x0 + int(kx);
    bool in_ = c.ok && uint(y) < p.ih && uint(x) < p.iw;
    int idx = int(kc * p.nimg * p.ih * p.iw) + c.base + y * int(p.iw) + x;
    return in_ ? B[in_ ? idx : 0] : 0.0;
#elif defined(B_IM2COL_T)
    // kc = image, ky = oy, kx = ox
    int y = c.y0 + int(ky * p.stride), x = c.x0 + int(kx * p.stride);
    bool in_ = c.ok && uint(y) < p.ih && uint(x) < p.iw;
    int idx = c.base + int(kc * p.ih * p.iw) + y * int(p.iw) + x;
    return in_ ? B[in_ ? idx : 0] : 0.0;
#elif defined(B_DYGATHER)
    // kc = output channel; y = iy + pad - ky must be a multiple of stride
    int y = c.y0 - int(ky), x = c.x0 - int(kx);
    int oy, ox;
    bool in_;
    if (p.stride == 1u) {
        oy = y;
        ox = x;
        in_ = true;
    } else if (p.stride == 2u) {
        oy = y >> 1;
        ox = x >> 1;
        in_ = ((y | x) & 1) == 0;
    } else {
        oy = y / int(p.stride);
        ox = x / int(p.stride);
        in_ = y == oy * int(p.stride) && x == ox * int(p.stride);
    }
    in_ = in_ && c.ok && y >= 0 && x >= 0 && uint(oy) < p.oh && uint(ox) < p.ow;
    int idx = int(kc * p.nimg * p.oh * p.ow) + c.base + oy * int(p.ow) + ox;
    return in_ ? B[in_ ? idx : 0] : 0.0;
#endif
}

float aload(uint m, uint k)
{
    return m < p.M ? A[m * p.sam + k * p.sak] : 0.0;
}

void store(uint m, uint n, float v)
{
    if (m >= p.M || n >= p.N)
        return;
    if ((p.flags & ENG_EPI_BIAS) != 0u)
        v += bias[m];
    if ((p.flags & ENG_EPI_RELU) != 0u)
        v = max(v, 0.0);
    uint idx = gl_WorkGroupID.z * p.scz + m * p.scm + n * p.scn;
    if ((p.flags & ENG_EPI_MASK) != 0u)
        v = mask[idx] > 0.0 ? v : 0.0;
    C[idx] = v;
}

#if defined(SHAPE_REG) || defined(SHAPE_SG)

// Each invocation owns an 8 x 8 block: rows m0..m0+7, columns n0..n0+7. Everything is unrolled
// by macros into named variables: CPU drivers turn arrays indexed in loops into per-lane
// memory, which was 10x slower on lavapipe. Accumulators are vec4 pairs (columns 0-3, 4-7).
layout(local_size_x = 64, local_size_y = 1, local_size_z = 1) in;

#define FOR8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint lx = lid & 7u, ly = lid >> 3;
    uint m0 = gl_WorkGroupID.y * 64u + ly * 8u;
    uint n0 = gl_WorkGroupID.x * 64u + lx * 8u;
    uint kc0 = gl_WorkGroupID.z * p.kchunk;
    uint kc1 = min(kc0 + p.kchunk, p.L0);
    // Rows are uniform per subgroup of 8 (ly), so whole subgroups leave together.
    if (m0 >= p.M)
        return;

#define COLS(j) Col cs##j = col_setup(n0 + uint(j));
    FOR8(COLS)
#define ACC(i) vec4 acc##i##a = vec4(0.0), acc##i##b = vec4(0.0);
    FOR8(ACC)
    uint k = kc0 * p.L1 * p.L2;
    for (uint kc = kc0; kc < kc1; kc++) {
        for (uint ky = 0; ky < p.L1; ky++) {
            for (uint kx = 0; kx < p.L2; kx++, k++) {
                vec4 ba = vec4(bload(cs0, k, kc, ky, kx), bload(cs1, k, kc, ky, kx),
                               bload(cs2, k, kc, ky, kx), bload(cs3, k, kc, ky, kx));
                vec4 bb = vec4(bload(cs4, k, kc, ky, kx), bload(cs5, k, kc, ky, kx),
                               bload(cs6, k, kc, ky, kx), bload(cs7, k, kc, ky, kx));
#if defined(SHAPE_SG)
                // lane lx fetches row m0 + lx; the others get it by broadcast (a register
                // shuffle on CPU devices instead of 8 memory loads).
                float a_mine = aload(m0 + lx, k);
#define AROW(i) float a##i = subgroupBroadcast(a_mine, i);
#else
#define AROW(i) float a##i = aload(m0 + uint(i), k);
#endif
                FOR8(AROW)
#define FMA(i)                                                                                 \
    acc##i##a = fma(vec4(a##i), ba, acc##i##a);                                                \
    acc##i##b = fma(vec4(a##i), bb, acc##i##b);
                FOR8(FMA)
            }
        }
    }
#define STORE(i)                                                                               \
    store(m0 + uint(i), n0 + 0u, acc##i##a.x);                                                    \
    store(m0 + uint(i), n0 + 1u, acc##i##a.y);                                                    \
    store(m0 + uint(i), n0 + 2u, acc##i##a.z);                                                    \
    store(m0 + uint(i), n0 + 3u, acc##i##a.w);                                                    \
    store(m0 + uint(i), n0 + 4u, acc##i##b.x);                                                    \
    store(m0 + uint(i), n0 + 5u, acc##i##b.y);                                                    \
    store(m0 + uint(i), n0 + 6u, acc##i##b.z);                                                    \
    store(m0 + uint(i), n0 + 7u, acc##i##b.w);
    FOR8(STORE)
}

#else // SHAPE_TILE

// 64x64 output tile per workgroup of 256 (16x16) invocations, each a 4x4 block; k in steps of
// 16 through shared memory. The tile loaders decompose k with divisions (cheap on GPUs).
layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;
const uint BM = 64, BN = 64, BK = 16;
shared float As[BK][BM];
shared float Bs[BK][BN];

float b_generic(uint k, uint n)
{
    uint l12 = p.L1 * p.L2;
    uint kc = k / l12, r = k - kc * l12;
    uint ky = r / p.L2, kx = r - ky * p.L2;
    return bload(col_setup(n), k, kc, ky, kx);
}

void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint tx = lid & 15u, ty = lid >> 4;
    uint mb = gl_WorkGroupID.y * BM, nb = gl_WorkGroupID.x * BN;
    uint l12 = p.L1 * p.L2;
    uint kbeg = gl_WorkGroupID.z * p.kchunk * l12;
    uint kend = min(gl_WorkGroupID.z * p.kchunk + p.kchunk, p.L0) * l12;
    float acc[4][4];
    for (uint i = 0; i < 4u; i++)
        for (uint j = 0; j < 4u; j++)
            acc[i][j] = 0.0;
    for (uint k0 = kbeg; k0 < kend; k0 += BK) {
        for (uint e = lid; e < BK * BM; e += 256u) {
            uint kk = e / BM, mm = e - kk * BM;
            uint k = k0 + kk;
            As[kk][mm] = k < kend ? aload(mb + mm, k) : 0.0;
            uint nn = e - kk * BN;
            Bs[kk][nn] = k < kend ? b_generic(k, nb + nn) : 0.0;
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            float a[4], b[4];
            for (uint i = 0; i < 4u; i++)
                a[i] = As[kk][ty + 16u * i];
            for (uint j = 0; j < 4u; j++)
                b[j] = Bs[kk][tx + 16u * j];
            for (uint i = 0; i < 4u; i++)
                for (uint j = 0; j < 4u; j++)
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier();
    }
    for (uint i = 0; i < 4u; i++)
        for (uint j = 0; j < 4u; j++)
            store(mb + ty + 16u * i, nb + tx + 16u * j, acc[i][j]);
}
#endif
