#version 450
// gemm_cpu.comp - C = A * B (+ epilogue) shaped for CPU devices (lavapipe/llvmpipe), where the
// invocations of a workgroup are the lanes of one SIMD vector.
//
// A(m,k) = A[a_off + m*sam + k*sak], B(k,n) = B[b_off + k*sbk + n*sbn],
// C(m,n) = C[c_off + z*scz + m*scm + n*scn] (z = split-K slice, see below).
//
// Why this shape: in llvmpipe (Mesa 22.x) a storage-buffer load inside a loop becomes a scalar
// loop over the SIMD lanes with a bounds check per lane, whatever the address pattern, while a
// texelFetch from a uniform texel buffer is one call with branch-free bounds handling (texels
// outside the view read 0): a vpgatherdd for r32f, eight 16-byte loads and a transpose for
// rgba32f. So A and B are uniform texel buffers, and each
// invocation owns an 8x8 register block. A workgroup is 8 invocations side by side along n
// (one 256-bit vector): 8 rows x 64 columns, and walks ctiles such column tiles to amortise
// the per-workgroup cost. No shared memory and no barriers in the GEMM forms (each barrier
// switches coroutines on lavapipe; GEMM_DWL has one, at its end). Workgroup x = row block, so
// consecutive workgroups share the B panel in cache.
//
// Operand fetch (one define):
//   GEMM_SCALAR  r32f views, any strides: 16 fetches per k for 64 FMAs
//   GEMM_NN      rgba32f views; A rows k-contiguous (sak = 1), B rows n-contiguous (sbn = 1):
//                per 4 k, 8 fetches of A and 8 of B for 256 FMAs
//   GEMM_NT      rgba32f views; A and B both k-contiguous (sak = sbk = 1): per 4 k, 8 + 8
//                fetches for 256 FMAs (filter gradients, dense weight gradients)
//   GEMM_TN      rgba32f views; A m-contiguous (sam = 1, A is a transposed matrix), B rows
//                n-contiguous (sbn = 1): per k, 2 + 2 fetches for 64 FMAs (dense data gradient)
//   GEMM_IMPL    a convolution y = w * x without an im2col matrix: A = w as in GEMM_NN, B(k, n)
//                gathered from x (CNHW) with a scalar fetch per column and k; geometry in the
//                push constants ih..nimg; 16x8 register blocks (see its main). No im2col pass
//                (on lavapipe that pass stored every element lane by lane): cnn-small's conv2
//                forward 25.6 -> 16.4 ms with 16x4 blocks, 14 ms with 16x8.
//                No split-K (kchunk = K). IMPL_SA: rows of A as scalars (K % 4 != 0).
//   GEMM_DW      the filter gradient of a stride-1 convolution, dw = dy * im2col(x)^T, without
//                the im2col matrix: A = dy, one row per output channel, k-contiguous, as oh
//                rows of ow floats per image (ow a multiple of 4: dy itself, or dy widened to
//                frames of iw with zeros past the output width); B(k, n) for column n = (ci,
//                ky, kx) at dy position (oy, ox) is element (oy + ky)*iw + ox of copy kx of the
//                input frames (ih rows of iw, zero-padded, copy s shifted left by s; ops.c
//                conv_bwd_filter_shift). Fetched as in NT, so every row start must be a
//                multiple of 4: hence kw copies. Image by image, row by row, no k tail.
//                With DW_T, the transposed product dw^T = im2col(x) * dy^T (rows of A from
//                the copies, columns of B the dy rows; ops.c filter_grad_transposed).
//   CONV_WIN     GEMM_IMPL whose B is read as texel windows: a few aligned vec4 fetches per k
//                group (ci, ky) hold all kw taps of a lane's 8 pixels (CONV_S, CONV_KW,
//                CONV_PAD; CONV_FLAT: 3x3 stride 1 over the flattened pixels, any row length)
//   GEMM_DWL     a 3x3 filter gradient (DWL_S 1 or 2; DWL_FLAT) with the lanes along the
//                pixels: no lane-uniform operand; the lanes' sums meet in shared memory
// The vec4 variants need a_off, b_off, sam (and sbk for NN, sbn for NT) multiples of 4, and
// kchunk a multiple of 4 (the engine checks and falls back to GEMM_SCALAR).
//
// Epilogue flags (flags.h, as gemm.comp): ENG_EPI_BIAS, ENG_EPI_RELU, ENG_EPI_MASK multiply by
// (mask[C index] > 0), ENG_EPI_ACC accumulate (C = C + A*B, then bias and ReLU; not with
// ENG_EPI_MASK). ENG_EPI_MASK and ENG_EPI_ACC need the EPI_READ variant (one more texel fetch
// per element, which cost up to a third of a small-K GEMM; without EPI_READ those flags are
// ignored).
// Split-K: workgroup z sums k in [z*kchunk, min(K, (z+1)*kchunk)).
#extension GL_GOOGLE_include_directive : require
#if defined(VSTORE)
#define VEC4 // the epilogue's element type VT is vec4 (common.glsl)
#endif
#include "common.glsl"

layout(local_size_x = 8, local_size_y = 1, local_size_z = 1) in;

layout(push_constant) uniform PC {
    uint M, N, K;
    uint sam, sak, sbk, sbn, scm, scn;
    uint flags, kchunk, scz, ctiles;
    uint a_off, b_off, c_off;
    uint ih, iw, oh, ow, kh, kw, stride, pad, nimg; // GEMM_IMPL: the convolution's geometry
    uint bcopy; // GEMM_DW: floats between the shifted copies of the input frames
} p;

// C as elements of the epilogue's type VT: float, or vec4 in the VSTORE variants
layout(std430, set = 0, binding = 2) buffer Buf2 { VT C[]; };
layout(set = 0, binding = 8) uniform samplerBuffer TA;
layout(set = 0, binding = 9) uniform samplerBuffer TB;
// epilogue inputs, also texel buffers (r32f): bias[m]; the mask (flag 4) or, for flag 8, C
// itself (each element is read before the same invocation overwrites it)
layout(set = 0, binding = 10) uniform samplerBuffer TBIAS;
layout(set = 0, binding = 11) uniform samplerBuffer TMASK;

#define FOR8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

// Stores one element of C (VSTORE: four columns n..n+3, scn = 1; c_off, scm and scz multiples
// of 4; N a multiple of 8, so that a block's columns are all inside or all outside; the mask or
// C read through an rgba32f view). llvmpipe stores a storage buffer lane by lane with a mask
// and bounds test per lane and store: a vec4 store pays that once per four floats. Branch-free
// except for the final store: on llvmpipe each storage-buffer access in a branch is a loop over
// the lanes, texel fetches are vector gathers.
void store(uint m, uint n, VT v, float bias_m)
{
    uint idx = p.c_off + gl_WorkGroupID.z * p.scz + m * p.scm + n * p.scn;
#if defined(VSTORE)
    idx >>= 2; // in vec4s
#endif
#if defined(EPI_READ)
    // the ?: becomes a select and the fetch runs whatever the flags: hence two variants
    VT e = (p.flags & (ENG_EPI_MASK | ENG_EPI_ACC)) != 0u ? TFETCH(TMASK, idx) : VT(0.0);
#else
    VT e = VT(0.0);
#endif
    // accumulation first, so that a product split over K (ops.c) ends with bias and ReLU
    v += (p.flags & ENG_EPI_ACC) != 0u ? e : VT(0.0);
    v += bias_m;
    v = (p.flags & ENG_EPI_RELU) != 0u ? max(v, VT(0.0)) : v;
    v = (p.flags & ENG_EPI_MASK) != 0u ? mix(VT(0.0), v, VPOS(e)) : v;
    if (m < p.M && n < p.N)
        C[idx] = v;
}

// Stores the 8 columns n..n+7 of row m, held as two vec4s lo and hi.
#if defined(VSTORE)
#define STORE_ROW(m, n, lo, hi, bm)                                                            \
    store(m, n, lo, bm);                                                                       \
    store(m, n + 4u, hi, bm);
#else
#define STORE_ROW(m, n, lo, hi, bm)                                                            \
    store(m, n + 0u, lo.x, bm);                                                                \
    store(m, n + 1u, lo.y, bm);                                                                \
    store(m, n + 2u, lo.z, bm);                                                                \
    store(m, n + 3u, lo.w, bm);                                                                \
    store(m, n + 4u, hi.x, bm);                                                                \
    store(m, n + 5u, hi.y, bm);                                                                \
    store(m, n + 6u, hi.z, bm);                                                                \
    store(m, n + 7u, hi.w, bm);
#endif

#if defined(GEMM_IMPL)
// Column n = (image, oy, ox) of the implicit B: px = offset of input (y0, x0) in channel 0
// (negative next to the border), vb = bit ky*kw+kx set when tap (ky, kx) lies in the image.
void col_setup(uint n, out int px, out uint vb)
{
    uint ohw = p.oh * p.ow, nn = min(n, p.N - 1u);
    uint img = udiv(nn, ohw), r = nn - img * ohw;
    uint oy = udiv(r, p.ow), ox = r - oy * p.ow;
    int y0 = int(oy * p.stride) - int(p.pad), x0 = int(ox * p.stride) - int(p.pad);
    px = int(p.b_off + img * p.ih * p.iw) + y0 * int(p.iw) + x0; // b_off: first image's offset
    vb = 0u;
    for (uint ky = 0; ky < p.kh; ky++)
        for (uint kx = 0; kx < p.kw; kx++) {
            bool in_ = uint(y0 + int(ky)) < p.ih && uint(x0 + int(kx)) < p.iw;
            vb |= in_ ? 1u << (ky * p.kw + kx) : 0u;
        }
}
#endif

#if defined(CONV_FLAT) || defined(DWL_FLAT)
// Over the flattened pixels (CONV_FLAT, DWL_FLAT; 3x3, padding 1, iw = ow, ih = oh): which
// neighbours of pixel q of the batch lie in its image: x left, y right, z the row above, w the
// row below.
bvec4 flat_taps(uint q)
{
    uint ohw = p.oh * p.ow, im = udiv(q, ohw), rq = q - im * ohw;
    uint qy = udiv(rq, p.ow), qx = rq - qy * p.ow;
    return bvec4(qx > 0u, qx + 1u < p.iw, qy > 0u, qy + 1u < p.ih);
}

#define FSH2(i) fv[i] = s2 ? ff[i + 2] : ff[i];
#define FSH1(i) fu[i] = s1 ? fv[i + 1] : fv[i];
// fu = the 10 floats of x from float 4*tq + (st & 3): the 4 texels from tq, shifted by two
// rounds of selects (st & 3 is the same in all lanes)
void flat_window(int tq, int st, int tmax, out float fu[10])
{
    bool s1 = (st & 1) != 0, s2 = (st & 2) != 0;
    vec4 f0 = texelFetch(TB, clamp(tq, 0, tmax)), f1 = texelFetch(TB, clamp(tq + 1, 0, tmax));
    vec4 f2 = texelFetch(TB, clamp(tq + 2, 0, tmax)), f3 = texelFetch(TB, clamp(tq + 3, 0, tmax));
    float ff[16] = float[16](f0.x, f0.y, f0.z, f0.w, f1.x, f1.y, f1.z, f1.w, f2.x, f2.y, f2.z,
                             f2.w, f3.x, f3.y, f3.z, f3.w);
    float fv[11];
    FSH2(0) FSH2(1) FSH2(2) FSH2(3) FSH2(4) FSH2(5) FSH2(6) FSH2(7) FSH2(8) FSH2(9) FSH2(10)
    FSH1(0) FSH1(1) FSH1(2) FSH1(3) FSH1(4) FSH1(5) FSH1(6) FSH1(7) FSH1(8) FSH1(9)
}
#endif

#if defined(GEMM_DWL)
// The filter gradient of a 3x3, padding-1 convolution of stride DWL_S (1 or 2) with the lanes
// along the output pixels (the engine's conv_bwd_filter_lanes): dw[co][ci][ky][kx] = sum over
// output pixels p of dy[co][p] x[ci][DWL_S*p + (ky - 1, kx - 1)]. Workgroup (x, y) owns output
// channels m0..m0+7 and input channel ci, all 9 taps: 72 sums. Each lane takes 8 consecutive
// pixels ox..ox+7 of one row (ow a multiple of 8, iw = DWL_S*ow; DWL_FLAT: any 8 consecutive
// pixels) of each 64-pixel tile of the chunk (K pixels from a_off in dy, b_off in x), and per
// tile fetches dy's 8 rows (2 texels each) and, per ky, a window of 4 texels of x's row (as
// CONV_WIN; 5 at stride 2): 28 vec4 fetches for 576 multiply-adds, all per lane, where the GEMM
// forms (DW, DW_X) fetch a lane-uniform dy texel (about 40 instructions on llvmpipe) per 32. At the end the lanes' partial sums meet in shared memory (one barrier) and are
// added in lane order. Push constants: M = cout, N = cin*9, K pixels, sam = dy's channel
// stride, bcopy = x's, ctiles = tiles of 64 pixels, ENG_EPI_ACC accumulates onto C (EPI_READ).
#if !defined(DWL_S)
#define DWL_S 1
#endif
shared float dwl_part[8][72];
void main()
{
    uint lane = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.x * 8u, ci = gl_WorkGroupID.y;
    uint ohw = p.oh * p.ow, ihw = p.ih * p.iw;
    int iw4 = int(p.iw >> 2), tmax = textureSize(TB) - 1;
#define DROW(i) int dr##i = int((p.a_off + min(m0 + uint(i), p.M - 1u) * p.sam) >> 2);
    FOR8(DROW)
    int xb = int((p.b_off + ci * p.bcopy) >> 2);
#define DACC(i)                                                                                \
    float s##i##_0 = 0.0, s##i##_1 = 0.0, s##i##_2 = 0.0, s##i##_3 = 0.0, s##i##_4 = 0.0,       \
          s##i##_5 = 0.0, s##i##_6 = 0.0, s##i##_7 = 0.0, s##i##_8 = 0.0;
    FOR8(DACC)
    for (uint t = 0u; t < p.ctiles; t++) {
        uint pix = t * 64u + lane * 8u;
        bool pv = pix < p.K; // lanes past the chunk add zeros
#if defined(DWL_FLAT)
        uint nn = pix; // K may end inside a lane's 8 pixels: per-pixel masks below
#else
        uint nn = min(pix, p.K - 8u);
#endif
        int nn4 = int(nn >> 2);
#define DFETCH(i)                                                                              \
    vec4 dA##i = pv ? texelFetch(TA, dr##i + nn4) : vec4(0.0);                                 \
    vec4 dB##i = pv ? texelFetch(TA, dr##i + nn4 + 1) : vec4(0.0);
        FOR8(DFETCH)
#if defined(DWL_FLAT)
        // rows of any length (iw = ow, ih = oh, planes of whole texels): as CONV_FLAT, the 8
        // pixels may span rows and images; tap (ky, kx) of pixel q is x's float q + (ky-1)*iw +
        // kx - 1, read from a window of 4 texels at a shift, with per-pixel masks (which also
        // drop pixels past the chunk: dy's values there, another image's, are multiplied by 0)
        bvec4 pm[8];
        bool mV[8];
#define DPIX(j)                                                                                \
    pm[j] = flat_taps(nn + uint(j));                                                           \
    mV[j] = nn + uint(j) < p.K;
        FOR8(DPIX)
        int tb = xb + nn4;
#else
        uint img = udiv(nn, ohw), rr = nn - img * ohw;
        uint oy = udiv(rr, p.ow), ox = rr - oy * p.ow;
        // x's texel of input pixel (S*oy - 1, S*ox) of this image, minus one: the window of
        // ky = 0 (4 texels at stride 1, floats S*ox-4 .. S*ox+11; 5 at stride 2, to S*ox+15)
        int tb = xb + int((img * ihw + DWL_S * ox) >> 2) + (DWL_S * int(oy) - 1) * iw4 - 1;
        bool lft = ox == 0u, rgt = ox + 8u == p.ow;
#endif
#define DT1(i, T) s##i##_##T += dot(dA##i, b) + dot(dB##i, b2);
#define DTAP(T) DT1(0, T) DT1(1, T) DT1(2, T) DT1(3, T) DT1(4, T) DT1(5, T) DT1(6, T) DT1(7, T)
#if DWL_S == 1
#define DWIN                                                                                   \
    vec4 w0 = texelFetch(TB, clamp(tq, 0, tmax)), w1 = texelFetch(TB, clamp(tq + 1, 0, tmax)); \
    vec4 w2 = texelFetch(TB, clamp(tq + 2, 0, tmax)), w3 = texelFetch(TB, clamp(tq + 3, 0, tmax)); \
    w1 = rv ? w1 : vec4(0.0);                                                                  \
    w2 = rv ? w2 : vec4(0.0);                                                                  \
    float el = rv && !lft ? w0.w : 0.0, er = rv && !rgt ? w3.x : 0.0;
#define DB0 vec4 b = vec4(el, w1.xyz), b2 = vec4(w1.w, w2.xyz);
#define DB1 vec4 b = w1, b2 = w2;
#define DB2 vec4 b = vec4(w1.yzw, w2.x), b2 = vec4(w2.yzw, er);
#else
// stride 2: tap kx of pixel ox + j is float 2j + kx - 1 of the window from S*ox; nothing lies
// right of the row (iw = 2*ow)
#define DWIN                                                                                   \
    vec4 w0 = texelFetch(TB, clamp(tq, 0, tmax)), w1 = texelFetch(TB, clamp(tq + 1, 0, tmax)); \
    vec4 w2 = texelFetch(TB, clamp(tq + 2, 0, tmax)), w3 = texelFetch(TB, clamp(tq + 3, 0, tmax)); \
    vec4 w4 = texelFetch(TB, clamp(tq + 4, 0, tmax));                                          \
    w1 = rv ? w1 : vec4(0.0);                                                                  \
    w2 = rv ? w2 : vec4(0.0);                                                                  \
    w3 = rv ? w3 : vec4(0.0);                                                                  \
    w4 = rv ? w4 : vec4(0.0);                                                                  \
    float el = rv && !lft ? w0.w : 0.0;
#define DB0 vec4 b = vec4(el, w1.y, w1.w, w2.y), b2 = vec4(w2.w, w3.y, w3.w, w4.y);
#define DB1 vec4 b = vec4(w1.x, w1.z, w2.x, w2.z), b2 = vec4(w3.x, w3.z, w4.x, w4.z);
#define DB2 vec4 b = vec4(w1.y, w1.w, w2.y, w2.w), b2 = vec4(w3.y, w3.w, w4.y, w4.w);
#endif
#if defined(DWL_FLAT)
#define DRM0(j) (pm[j].z && mV[j])
#define DRM1(j) mV[j]
#define DRM2(j) (pm[j].w && mV[j])
#define DCM0(j) pm[j].x
#define DCM1(j) true
#define DCM2(j) pm[j].y
#define DFM(ky, kx, j) (DRM##ky(j) && DCM##kx(j) ? fu[j + kx] : 0.0)
#define DFB(ky, kx)                                                                            \
    vec4 b = vec4(DFM(ky, kx, 0), DFM(ky, kx, 1), DFM(ky, kx, 2), DFM(ky, kx, 3));             \
    vec4 b2 = vec4(DFM(ky, kx, 4), DFM(ky, kx, 5), DFM(ky, kx, 6), DFM(ky, kx, 7));
#define DKY(ky, T0, T1, T2)                                                                    \
    {                                                                                          \
        int st = (ky - 1) * int(p.iw) - 1;                                                     \
        float fu[10];                                                                          \
        flat_window(tb + (st >> 2), st, tmax, fu);                                             \
        {                                                                                      \
            DFB(ky, 0) DTAP(T0)                                                                \
        }                                                                                      \
        {                                                                                      \
            DFB(ky, 1) DTAP(T1)                                                                \
        }                                                                                      \
        {                                                                                      \
            DFB(ky, 2) DTAP(T2)                                                                \
        }                                                                                      \
    }
#else
#define DKY(ky, T0, T1, T2)                                                                    \
    {                                                                                          \
        bool rv = uint(DWL_S * int(oy) + ky - 1) < p.ih;                                       \
        int tq = tb + ky * iw4;                                                                \
        DWIN                                                                                   \
        {                                                                                      \
            DB0 DTAP(T0)                                                                       \
        }                                                                                      \
        {                                                                                      \
            DB1 DTAP(T1)                                                                       \
        }                                                                                      \
        {                                                                                      \
            DB2 DTAP(T2)                                                                       \
        }                                                                                      \
    }
#endif
        DKY(0, 0, 1, 2)
        DKY(1, 3, 4, 5)
        DKY(2, 6, 7, 8)
    }
#define DPUT(i)                                                                                \
    dwl_part[lane][i * 9 + 0] = s##i##_0;                                                      \
    dwl_part[lane][i * 9 + 1] = s##i##_1;                                                      \
    dwl_part[lane][i * 9 + 2] = s##i##_2;                                                      \
    dwl_part[lane][i * 9 + 3] = s##i##_3;                                                      \
    dwl_part[lane][i * 9 + 4] = s##i##_4;                                                      \
    dwl_part[lane][i * 9 + 5] = s##i##_5;                                                      \
    dwl_part[lane][i * 9 + 6] = s##i##_6;                                                      \
    dwl_part[lane][i * 9 + 7] = s##i##_7;                                                      \
    dwl_part[lane][i * 9 + 8] = s##i##_8;
    FOR8(DPUT)
    barrier();
    // lane l adds up outputs 9l .. 9l+8 (row m0 + l, the 9 taps of ci) over the lanes in order
#define DSUM(j)                                                                                \
    {                                                                                          \
        uint o = lane * 9u + uint(j);                                                          \
        float v = dwl_part[0][o] + dwl_part[1][o] + dwl_part[2][o] + dwl_part[3][o] +          \
                  dwl_part[4][o] + dwl_part[5][o] + dwl_part[6][o] + dwl_part[7][o];           \
        store(m0 + lane, ci * 9u + uint(j), v, 0.0);                                           \
    }
    DSUM(0) DSUM(1) DSUM(2) DSUM(3) DSUM(4) DSUM(5) DSUM(6) DSUM(7) DSUM(8)
}
#elif defined(GEMM_IMPL)
// B(k, n) = x[c][image][y0 + ky][x0 + kx] for k = (c, ky, kx), gathered from the input (CNHW)
// instead of an im2col matrix: one gather per column and k, taps outside the image select 0.
// The k state (c, ky, kx; off = c*nimg*ih*iw + ky*iw + kx) advances by one per step without
// divisions. The register block is 16 rows x 8 columns: per k, 8 gathers and 4 vec4 fetches
// of A (16 per 4 k) for 128 FMAs, workgroups of 16 rows x 64 columns: twice the FMAs per
// fetch of A of 16 x 4 blocks, and measured 1.15-1.2x faster than them (cnn-small's conv2
// 16.5 -> 14.0 ms per call, resnet-8's 44-47 -> 38-39 ms); 16 x 16 was slower again (15.3
// ms; more spilled accumulators).
#define FOR16(X) FOR8(X) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
void main()
{
    uint lane = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.x * 16u;
    uint k1 = p.K;
#if defined(IMPL_SA)
#define AROW(i) int ar##i = int(p.a_off + min(m0 + uint(i), p.M - 1u) * p.sam);
#else
#define AROW(i) int ar##i = int((p.a_off + min(m0 + uint(i), p.M - 1u) * p.sam) >> 2);
#endif
    FOR16(AROW)
    int cstride = int(p.nimg * p.ih * p.iw);
    for (uint t = 0; t < p.ctiles; t++) {
        uint nb = (gl_WorkGroupID.y * p.ctiles + t) * 64u;
        if (nb >= p.N)
            break;
        uint n0 = nb + lane * 8u;
#define ACC(i) vec4 c##i = vec4(0.0), d##i = vec4(0.0);
        FOR16(ACC)
#if defined(CONV_WIN)
        // B as texel windows (the engine's conv_window_ok): stride CONV_S (1, 2), kernel width
        // CONV_KW (1..3), padding CONV_PAD (0, 1) on the x axis, any kh (the same padding on y),
        // ow a multiple of 8, iw = CONV_S * ow. The lane's 8 columns are pixels ox..ox+7
        // (ox % 8 == 0) of one output row; for the k group (c, ky) tap kx of pixel ox + j reads
        // input float CONV_S*(ox + j) + kx - CONV_PAD of row CONV_S*oy + ky - CONV_PAD, i.e.
        // component r = CONV_S*j + kx - CONV_PAD of a window of WIN_N texels starting at input
        // float CONV_S*ox + 4*WIN_T0. A few vec4 fetches per input row and channel replace
        // 8*CONV_KW per-column gathers (a vpgatherdd each), and each tap's 8 values are fixed
        // components (no selects). Same k order and FMAs as the general path, so the same bits.
#if CONV_PAD > 0
#define WIN_T0 (-1)
#else
#define WIN_T0 0
#endif
#define WIN_N ((7 * CONV_S + CONV_KW - 1 - CONV_PAD) / 4 + 1 - WIN_T0)
#define WFETCH(q) win[q] = rv ? texelFetch(TB, clamp(tb + toff + q, 0, tmax)) : vec4(0.0);
#if WIN_N == 2
#define WFETCHES WFETCH(0) WFETCH(1)
#elif WIN_N == 3
#define WFETCHES WFETCH(0) WFETCH(1) WFETCH(2)
#elif WIN_N == 4
#define WFETCHES WFETCH(0) WFETCH(1) WFETCH(2) WFETCH(3)
#else
#define WFETCHES WFETCH(0) WFETCH(1) WFETCH(2) WFETCH(3) WFETCH(4)
#endif
#if defined(CONV_FLAT)
        // Rows of any length (3x3, stride 1, padding 1, iw = ow, ih = oh): the lane's 8
        // columns are 8 consecutive pixels nn.. of the batch, which may span rows and images.
        // Tap (ky, kx) of pixel q reads x at q + (ky - 1)*iw + kx - 1 in the channel, wherever
        // the row ends, so each group reads 10 floats from a window of 4 texels at a shift s =
        // ((ky - 1)*iw - 1) & 3 (two rounds of selects), and per-pixel masks zero the taps left
        // or right of a pixel's row and the rows above or below its image.
        uint nn = min(n0, p.N - 8u);
        int cs4 = int((p.nimg * p.ih * p.iw) >> 2), iwi = int(p.iw);
        int tb = int((p.b_off + nn) >> 2); // texel of pixel nn in channel 0
        bvec4 pm[8];
#define FPIX(j) pm[j] = flat_taps(nn + uint(j));
        FOR8(FPIX)
        int tmax = textureSize(TB) - 1, toff = 0;
        uint ky = 0u;
        float fu[10];
        bool rm[8];
#define FMASK0(j) (rm[j] && pm[j].x)
#define FMASK1(j) rm[j]
#define FMASK2(j) (rm[j] && pm[j].y)
#define FM(kx, j) (FMASK##kx(j) ? fu[j + kx] : 0.0)
#define WB(kx)                                                                                 \
    vec4 wb##kx = vec4(FM(kx, 0), FM(kx, 1), FM(kx, 2), FM(kx, 3));                            \
    vec4 we##kx = vec4(FM(kx, 4), FM(kx, 5), FM(kx, 6), FM(kx, 7));
#define FROW(j) rm[j] = ky == 0u ? pm[j].z : (ky == 2u ? pm[j].w : true);
#define WOPEN                                                                                  \
    {                                                                                          \
        int st = (int(ky) - 1) * iwi - 1;                                                      \
        flat_window(tb + toff + (st >> 2), st, tmax, fu);                                      \
        FOR8(FROW)                                                                             \
    }
#define WCLOSE                                                                                 \
    {                                                                                          \
        ky++;                                                                                  \
        bool wy = ky == 3u;                                                                    \
        ky = wy ? 0u : ky;                                                                     \
        toff += wy ? cs4 : 0;                                                                  \
    }
#else
        uint nn = min(n0, p.N - 8u), ohw = p.oh * p.ow;
        uint img = udiv(nn, ohw), rr = nn - img * ohw;
        uint oy = udiv(rr, p.ow), ox = rr - oy * p.ow;
        int iw4 = int(p.iw >> 2), cs4 = int((p.nimg * p.ih * p.iw) >> 2);
        int y0 = int(CONV_S * oy) - CONV_PAD; // input row of ky = 0
        // first window texel of group (c = 0, ky = 0)
        int tb = int((p.b_off + img * p.ih * p.iw + CONV_S * ox) >> 2) + y0 * iw4 + WIN_T0;
        // floats left of the row (r < 0) exist only at ox = 0; right of it (r >= 8*CONV_S) only
        // in the last 8 pixels of a row
        bool lft = ox == 0u, rgt = ox + 8u == p.ow;
        int tmax = textureSize(TB) - 1, toff = 0;
        uint ky = 0u;
        vec4 win[WIN_N];
// component r (a constant, -4 <= r) of the window
#define WV(r) win[((r) + 4) / 4 - 1 - WIN_T0][((r) + 4) % 4]
// the 8 values of tap kx: columns 0-3 (wb) and 4-7 (we)
#define WB(kx)                                                                                 \
    vec4 wb##kx = vec4(WV(kx - CONV_PAD), WV(CONV_S + kx - CONV_PAD),                          \
                       WV(2 * CONV_S + kx - CONV_PAD), WV(3 * CONV_S + kx - CONV_PAD));        \
    vec4 we##kx = vec4(WV(4 * CONV_S + kx - CONV_PAD), WV(5 * CONV_S + kx - CONV_PAD),         \
                       WV(6 * CONV_S + kx - CONV_PAD), WV(7 * CONV_S + kx - CONV_PAD));
#endif // CONV_FLAT
// Row i of a group, its taps one after another: each accumulator takes the group's
// multiply-adds in a row (in k order, as the general path), so the spilled accumulators (16 x
// 8 per lane) are loaded and stored once per group, not once per k.
#define WR1(i, A0, c0)                                                                         \
    c##i = fma(vec4(A0##i.c0), wb0, c##i);                                                     \
    d##i = fma(vec4(A0##i.c0), we0, d##i);
#define WR2(i, A0, c0, A1, c1)                                                                 \
    c##i = fma(vec4(A1##i.c1), wb1, fma(vec4(A0##i.c0), wb0, c##i));                           \
    d##i = fma(vec4(A1##i.c1), we1, fma(vec4(A0##i.c0), we0, d##i));
#define WR3(i, A0, c0, A1, c1, A2, c2)                                                         \
    c##i = fma(vec4(A2##i.c2), wb2, fma(vec4(A1##i.c1), wb1, fma(vec4(A0##i.c0), wb0, c##i))); \
    d##i = fma(vec4(A2##i.c2), we2, fma(vec4(A1##i.c1), we1, fma(vec4(A0##i.c0), we0, d##i)));
#define WG1(A0, c0)                                                                            \
    {                                                                                          \
        WB(0)                                                                                  \
        WR1(0, A0, c0) WR1(1, A0, c0) WR1(2, A0, c0) WR1(3, A0, c0)                            \
        WR1(4, A0, c0) WR1(5, A0, c0) WR1(6, A0, c0) WR1(7, A0, c0)                            \
        WR1(8, A0, c0) WR1(9, A0, c0) WR1(10, A0, c0) WR1(11, A0, c0)                          \
        WR1(12, A0, c0) WR1(13, A0, c0) WR1(14, A0, c0) WR1(15, A0, c0)                        \
    }
#define WG2(A0, c0, A1, c1)                                                                    \
    {                                                                                          \
        WB(0) WB(1)                                                                            \
        WR2(0, A0, c0, A1, c1) WR2(1, A0, c0, A1, c1) WR2(2, A0, c0, A1, c1)                   \
        WR2(3, A0, c0, A1, c1) WR2(4, A0, c0, A1, c1) WR2(5, A0, c0, A1, c1)                   \
        WR2(6, A0, c0, A1, c1) WR2(7, A0, c0, A1, c1) WR2(8, A0, c0, A1, c1)                   \
        WR2(9, A0, c0, A1, c1) WR2(10, A0, c0, A1, c1) WR2(11, A0, c0, A1, c1)                 \
        WR2(12, A0, c0, A1, c1) WR2(13, A0, c0, A1, c1) WR2(14, A0, c0, A1, c1)                \
        WR2(15, A0, c0, A1, c1)                                                                \
    }
#define WG3(A0, c0, A1, c1, A2, c2)                                                            \
    {                                                                                          \
        WB(0) WB(1) WB(2)                                                                      \
        WR3(0, A0, c0, A1, c1, A2, c2) WR3(1, A0, c0, A1, c1, A2, c2)                          \
        WR3(2, A0, c0, A1, c1, A2, c2) WR3(3, A0, c0, A1, c1, A2, c2)                          \
        WR3(4, A0, c0, A1, c1, A2, c2) WR3(5, A0, c0, A1, c1, A2, c2)                          \
        WR3(6, A0, c0, A1, c1, A2, c2) WR3(7, A0, c0, A1, c1, A2, c2)                          \
        WR3(8, A0, c0, A1, c1, A2, c2) WR3(9, A0, c0, A1, c1, A2, c2)                          \
        WR3(10, A0, c0, A1, c1, A2, c2) WR3(11, A0, c0, A1, c1, A2, c2)                        \
        WR3(12, A0, c0, A1, c1, A2, c2) WR3(13, A0, c0, A1, c1, A2, c2)                        \
        WR3(14, A0, c0, A1, c1, A2, c2) WR3(15, A0, c0, A1, c1, A2, c2)                        \
    }
#if !defined(CONV_FLAT)
        // the window of the current group (rows outside the input read zeros), then the group's
        // taps, then the next group (c, ky)
#define WOPEN                                                                                  \
    {                                                                                          \
        bool rv = uint(y0 + int(ky)) < p.ih;                                                   \
        WFETCHES                                                                               \
        if (WIN_T0 < 0)                                                                        \
            win[0] = lft ? vec4(0.0) : win[0];                                                 \
        if (4 * (WIN_N - 1 + WIN_T0) >= 8 * CONV_S)                                            \
            win[WIN_N - 1] = rgt ? vec4(0.0) : win[WIN_N - 1];                                 \
    }
#define WCLOSE                                                                                 \
    {                                                                                          \
        ky++;                                                                                  \
        toff += iw4;                                                                           \
        bool wy = ky == p.kh;                                                                  \
        ky = wy ? 0u : ky;                                                                     \
        toff += wy ? cs4 - int(p.kh) * iw4 : 0;                                                \
    }
#endif
#define AFX(i) vec4 ax##i = texelFetch(TA, ar##i + WIN_KT * int(kb));
#define AFY(i) vec4 ay##i = texelFetch(TA, ar##i + WIN_KT * int(kb) + 1);
#define AFZ(i) vec4 az##i = texelFetch(TA, ar##i + WIN_KT * int(kb) + 2);
#if CONV_KW == 3
        // 12 k (four groups) per step: three texels of each row of A
#define WIN_KT 3
        for (uint kb = 0u; kb < k1 / 12u; kb++) {
            FOR16(AFX)
            WOPEN WG3(ax, x, ax, y, ax, z) WCLOSE
            FOR16(AFY)
            WOPEN WG3(ax, w, ay, x, ay, y) WCLOSE
            FOR16(AFZ)
            WOPEN WG3(ay, z, ay, w, az, x) WCLOSE
            WOPEN WG3(az, y, az, z, az, w) WCLOSE
        }
#elif CONV_KW == 2
        // 4 k (two groups) per step
#define WIN_KT 1
        for (uint kb = 0u; kb < k1 / 4u; kb++) {
            FOR16(AFX)
            WOPEN WG2(ax, x, ax, y) WCLOSE
            WOPEN WG2(ax, z, ax, w) WCLOSE
        }
#else
        // 4 k (four groups) per step
#define WIN_KT 1
        for (uint kb = 0u; kb < k1 / 4u; kb++) {
            FOR16(AFX)
            WOPEN WG1(ax, x) WCLOSE
            WOPEN WG1(ax, y) WCLOSE
            WOPEN WG1(ax, z) WCLOSE
            WOPEN WG1(ax, w) WCLOSE
        }
#endif
#else
#define CSET(j)                                                                                \
    int px##j;                                                                                 \
    uint vb##j;                                                                                \
    col_setup(n0 + uint(j), px##j, vb##j);
        CSET(0) CSET(1) CSET(2) CSET(3) CSET(4) CSET(5) CSET(6) CSET(7)
        uint kt = 0u, kx = 0u, ky = 0u;
        int off = 0;
        uint kq1 = k1 >> 2, krem = k1 & 3u;
#define BG(j) (((vb##j >> kt) & 1u) != 0u ? texelFetch(TB, max(px##j + off, 0)).x : 0.0)
#define F1(i, cm) c##i = fma(vec4(a##i.cm), b, c##i); d##i = fma(vec4(a##i.cm), b2, d##i);
#define ISTEP(cm)                                                                              \
    {                                                                                          \
        vec4 b = vec4(BG(0), BG(1), BG(2), BG(3)), b2 = vec4(BG(4), BG(5), BG(6), BG(7));       \
        F1(0, cm) F1(1, cm) F1(2, cm) F1(3, cm) F1(4, cm) F1(5, cm) F1(6, cm) F1(7, cm)        \
        F1(8, cm) F1(9, cm) F1(10, cm) F1(11, cm) F1(12, cm) F1(13, cm) F1(14, cm) F1(15, cm)  \
        kt++;                                                                                  \
        kx++;                                                                                  \
        off++;                                                                                 \
        bool wx = kx == p.kw;                                                                  \
        kx = wx ? 0u : kx;                                                                     \
        ky = wx ? ky + 1u : ky;                                                                \
        off += wx ? int(p.iw) - int(p.kw) : 0;                                                 \
        bool wy = ky == p.kh;                                                                  \
        ky = wy ? 0u : ky;                                                                     \
        kt = wy ? 0u : kt;                                                                     \
        off += wy ? cstride - int(p.kh * p.iw) : 0;                                            \
    }
#if defined(IMPL_SA)
        // rows of A as scalars (an r32f view): K need not be a multiple of 4 (a 3-channel
        // first layer's 27); one fetch per row and k, four times the vec4 rows' fetches, still
        // about twice as fast there as im2col + GEMM (ops.c conv_gather_ok)
#define AFETCH1(i) vec4 a##i = vec4(texelFetch(TA, ar##i + int(k)).x);
        for (uint k = 0u; k < k1; k++) {
            FOR16(AFETCH1)
            ISTEP(x)
        }
#else
#define AFETCH(i) vec4 a##i = texelFetch(TA, ar##i + int(kq));
        for (uint kq = 0u; kq < kq1; kq++) {
            FOR16(AFETCH)
            ISTEP(x) ISTEP(y) ISTEP(z) ISTEP(w)
        }
        if (krem != 0u) {
            // last partial group of 4 k: the components past K belong to the next row of A
            uint kq = kq1;
            FOR16(AFETCH)
            ISTEP(x)
            if (krem > 1u)
                ISTEP(y)
            if (krem > 2u)
                ISTEP(z)
        }
#endif
#endif // CONV_WIN
#define STORE(i)                                                                               \
    {                                                                                          \
        uint m = m0 + uint(i);                                                                 \
        float bm = (p.flags & ENG_EPI_BIAS) != 0u                                              \
                       ? texelFetch(TBIAS, int(min(m, p.M - 1u))).x                            \
                       : 0.0;                                                                  \
        STORE_ROW(m, n0, c##i, d##i, bm)                                                       \
    }
        FOR16(STORE)
    }
}
#else
#if defined(GEMM_DW)
// First texel of im2col row n = (ci, ky, kx) in the copies at off: row ky of channel ci's
// frames in copy kx.
int dw_col(uint off, uint n)
{
    uint kk = p.kh * p.kw;
    uint ci = udiv(n, kk), r = n - ci * kk;
    uint ky = udiv(r, p.kw), kx = r - ky * p.kw;
    return int((off + kx * p.bcopy + ci * p.nimg * p.ih * p.iw + ky * p.iw) >> 2);
}
#endif

#define FMA2(i, av, bl, br)                                                                    \
    c##i##L = fma(vec4(av), bl, c##i##L);                                                      \
    c##i##R = fma(vec4(av), br, c##i##R);

void main()
{
    uint lane = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.x * 8u;
    uint k0 = gl_WorkGroupID.z * p.kchunk;
    uint k1 = min(k0 + p.kchunk, p.K);
    // Rows past M read row M-1 and columns past N column N-1 (valid addresses; the results
    // are discarded by store()).
#if defined(GEMM_SCALAR)
#define AROW(i) int ar##i = int(p.a_off + min(m0 + uint(i), p.M - 1u) * p.sam);
    FOR8(AROW)
#elif defined(GEMM_DW) && defined(DW_T)
#define AROW(i) int ar##i = dw_col(p.a_off, min(m0 + uint(i), p.M - 1u));
    FOR8(AROW)
#elif !defined(GEMM_TN)
#define AROW(i) int ar##i = int((p.a_off + min(m0 + uint(i), p.M - 1u) * p.sam) >> 2);
    FOR8(AROW)
#endif
    for (uint t = 0; t < p.ctiles; t++) {
        uint nb = (gl_WorkGroupID.y * p.ctiles + t) * 64u;
        if (nb >= p.N)
            break;
        uint n0 = nb + lane * 8u;
#define ACC(i) vec4 c##i##L = vec4(0.0), c##i##R = vec4(0.0);
        FOR8(ACC)
#if defined(GEMM_SCALAR)
#define BCOL(j) int bc##j = int(p.b_off + min(n0 + uint(j), p.N - 1u) * p.sbn);
        FOR8(BCOL)
        int sbk = int(p.sbk), sak = int(p.sak);
        int bk = int(k0) * sbk, ak = int(k0) * sak;
        for (uint k = k0; k < k1; k++, bk += sbk, ak += sak) {
            vec4 ba = vec4(texelFetch(TB, bc0 + bk).x, texelFetch(TB, bc1 + bk).x,
                           texelFetch(TB, bc2 + bk).x, texelFetch(TB, bc3 + bk).x);
            vec4 bb = vec4(texelFetch(TB, bc4 + bk).x, texelFetch(TB, bc5 + bk).x,
                           texelFetch(TB, bc6 + bk).x, texelFetch(TB, bc7 + bk).x);
#define FMA(i) FMA2(i, texelFetch(TA, ar##i + ak).x, ba, bb)
            FOR8(FMA)
        }
#elif defined(GEMM_NN)
        int bc = int((p.b_off + n0) >> 2), sbk4 = int(p.sbk >> 2);
        uint kq0 = k0 >> 2, kq1 = k1 >> 2, krem = k1 & 3u;
#define KSTEP(cm, c)                                                                           \
    {                                                                                          \
        vec4 ba = texelFetch(TB, brow + (c)*sbk4), bb = texelFetch(TB, brow + (c)*sbk4 + 1);     \
        FMA2(0, a0.cm, ba, bb) FMA2(1, a1.cm, ba, bb) FMA2(2, a2.cm, ba, bb)                   \
        FMA2(3, a3.cm, ba, bb) FMA2(4, a4.cm, ba, bb) FMA2(5, a5.cm, ba, bb)                   \
        FMA2(6, a6.cm, ba, bb) FMA2(7, a7.cm, ba, bb)                                          \
    }
#define AFETCH(i) vec4 a##i = texelFetch(TA, ar##i + int(kq));
        for (uint kq = kq0; kq < kq1; kq++) {
            FOR8(AFETCH)
            int brow = bc + int(kq * 4u) * sbk4;
            KSTEP(x, 0) KSTEP(y, 1) KSTEP(z, 2) KSTEP(w, 3)
        }
        if (krem != 0u) {
            // last partial group of 4 k: the components past k1 belong to the next row of A
            uint kq = kq1;
            FOR8(AFETCH)
            int brow = bc + int(kq * 4u) * sbk4;
            KSTEP(x, 0)
            if (krem > 1u)
                KSTEP(y, 1)
            if (krem > 2u)
                KSTEP(z, 2)
        }
#elif defined(GEMM_TN)
        // rows m0..m0+7 of A(., k) are two texels; rows past M read whatever follows (or 0
        // past the view) and are discarded by store()
        int ac = int((p.a_off + m0) >> 2), sak4 = int(p.sak >> 2);
        int bc = int((p.b_off + n0) >> 2), sbk4 = int(p.sbk >> 2);
        for (uint k = k0; k < k1; k++) {
            vec4 al = texelFetch(TA, ac + int(k) * sak4), ah = texelFetch(TA, ac + int(k) * sak4 + 1);
            vec4 ba = texelFetch(TB, bc + int(k) * sbk4), bb = texelFetch(TB, bc + int(k) * sbk4 + 1);
            FMA2(0, al.x, ba, bb) FMA2(1, al.y, ba, bb) FMA2(2, al.z, ba, bb)
            FMA2(3, al.w, ba, bb) FMA2(4, ah.x, ba, bb) FMA2(5, ah.y, ba, bb)
            FMA2(6, ah.z, ba, bb) FMA2(7, ah.w, ba, bb)
        }
#elif defined(GEMM_DW) && defined(DW_X)
        // B from x itself: column n = (ci, ky) of tap column kx = workgroup z, stored at C
        // column n*kw + kx (the engine sets scn = kw, scz = 1). Element (oy + ky - pad, ox +
        // kx - pad) of channel ci: the vec4 for ox = 4kq.. is a window at shift s = d & 3 of
        // texels q = kq + (d >> 2) and q + 1 of the row (d = kx - pad), so each column
        // carries its last texel and fetches one per step. Taps outside x select 0: rows
        // outside (per column), texels left of the row (before the first step) and right of
        // it (steps from kend on).
        int ry = int(p.ow >> 2), rx = int(p.iw >> 2);
        int iy = int((p.oh * p.ow) >> 2), ix = int((p.ih * p.iw) >> 2);
        int d = int(gl_WorkGroupID.z) - int(p.pad), q0 = d >> 2;
        bool s1 = (d & 1) != 0, s2 = (d & 2) != 0;
        int kend = clamp(rx - q0 - 1, 0, ry), tmax = textureSize(TB) - 1;
#define XCOL(j)                                                                                \
    uint ci##j = udiv(min(n0 + uint(j), p.N - 1u), p.kh);                                      \
    int ky##j = int(min(n0 + uint(j), p.N - 1u) - ci##j * p.kh) - int(p.pad);                  \
    int bc##j = int((p.b_off + ci##j * p.bcopy) >> 2) + ky##j * rx + q0;
        FOR8(XCOL)
#define XFIRST(j)                                                                              \
    bool rv##j = uint(row + ky##j) < p.ih;                                                     \
    vec4 pv##j = rv##j && q0 >= 0 ? texelFetch(TB, clamp(bc##j + bb, 0, tmax)) : vec4(0.0);
#define XFETCH(j)                                                                              \
    vec4 cu##j = rv##j ? texelFetch(TB, clamp(bc##j + bb + kq + 1, 0, tmax)) : vec4(0.0);
#define XZERO(j) vec4 cu##j = vec4(0.0);
#define XWIN(j)                                                                                \
    vec4 u##j = s2 ? vec4(pv##j.zw, cu##j.xy) : pv##j;                                         \
    float v##j = s2 ? cu##j.z : cu##j.x;                                                       \
    vec4 b##j = s1 ? vec4(u##j.yzw, v##j) : u##j;                                              \
    pv##j = cu##j;
#define XDOT8(i)                                                                               \
    {                                                                                          \
        vec4 a = texelFetch(TA, ar##i + ab + kq);                                              \
        e##i##L += vec4(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));                       \
        e##i##R += vec4(dot(a, b4), dot(a, b5), dot(a, b6), dot(a, b7));                       \
    }
#define XACC(i) vec4 e##i##L = vec4(0.0), e##i##R = vec4(0.0);
#define XADD(i)                                                                                \
    c##i##L += e##i##L;                                                                        \
    c##i##R += e##i##R;
        for (int img = 0; img < int(p.nimg); img++) {
            // per-image partial sums, added to the totals after each image: a fixed order,
            // and less rounding than one running sum over the whole batch
            FOR8(XACC)
            for (int row = 0; row < int(p.oh); row++) {
                int ab = img * iy + row * ry, bb = img * ix + row * rx;
                FOR8(XFIRST)
                for (int kq = 0; kq < kend; kq++) {
                    FOR8(XFETCH)
                    FOR8(XWIN)
                    FOR8(XDOT8)
                }
                for (int kq = kend; kq < ry; kq++) {
                    FOR8(XZERO)
                    FOR8(XWIN)
                    FOR8(XDOT8)
                }
            }
            FOR8(XADD)
        }
#elif defined(GEMM_DW)
        // texels per row and per image: dy (rows of ow, oh of them), the x frames (iw, ih)
        int ry = int(p.ow >> 2), rx = int(p.iw >> 2);
        int iy = int((p.oh * p.ow) >> 2), ix = int((p.ih * p.iw) >> 2);
#if defined(DW_T)
#define BCOL(j) int bc##j = int((p.b_off + min(n0 + uint(j), p.N - 1u) * p.sbn) >> 2);
        int ra = rx, rb = ry, fa = ix, fb = iy;
#else
#define BCOL(j) int bc##j = dw_col(p.b_off, min(n0 + uint(j), p.N - 1u));
        int ra = ry, rb = rx, fa = iy, fb = ix;
#endif
        FOR8(BCOL)
        for (int img = 0; img < int(p.nimg); img++)
            for (int row = 0; row < int(p.oh); row++) {
            int ab = img * fa + row * ra, bb = img * fb + row * rb;
            for (int kq = 0; kq < ry; kq++) {
#define BFETCH(j) vec4 b##j = texelFetch(TB, bc##j + bb + kq);
                FOR8(BFETCH)
#define DOT8(i)                                                                                \
    {                                                                                          \
        vec4 a = texelFetch(TA, ar##i + ab + kq);                                              \
        c##i##L += vec4(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));                       \
        c##i##R += vec4(dot(a, b4), dot(a, b5), dot(a, b6), dot(a, b7));                       \
    }
                FOR8(DOT8)
            }
            }
#else // GEMM_NT
#define BCOL(j) int bc##j = int((p.b_off + min(n0 + uint(j), p.N - 1u) * p.sbn) >> 2);
        FOR8(BCOL)
        uint kq0 = k0 >> 2, kq1 = (k1 + 3u) >> 2;
        for (uint kq = kq0; kq < kq1; kq++) {
            // in the last group, components past k1 belong to the next row: select them away
            // (a select, not a multiply, so that whatever lies there cannot make a NaN)
            bvec4 live = lessThan(uvec4(kq * 4u) + uvec4(0u, 1u, 2u, 3u), uvec4(k1));
#define BFETCH(j) vec4 b##j = mix(vec4(0.0), texelFetch(TB, bc##j + int(kq)), live);
            FOR8(BFETCH)
#define DOT8(i)                                                                                \
    {                                                                                          \
        vec4 a = mix(vec4(0.0), texelFetch(TA, ar##i + int(kq)), live);                        \
        c##i##L += vec4(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));                       \
        c##i##R += vec4(dot(a, b4), dot(a, b5), dot(a, b6), dot(a, b7));                       \
    }
            FOR8(DOT8)
        }
#endif
#define STORE(i)                                                                               \
    {                                                                                          \
        uint m = m0 + uint(i);                                                                 \
        float bm = (p.flags & ENG_EPI_BIAS) != 0u                                              \
                       ? texelFetch(TBIAS, int(min(m, p.M - 1u))).x                            \
                       : 0.0;                                                                  \
        STORE_ROW(m, n0, c##i##L, c##i##R, bm)                                                 \
    }
        FOR8(STORE)
    }
}
#endif // GEMM_IMPL
