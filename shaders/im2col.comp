#version 450
// im2col.comp - explicit im2col / col2im for the CPU convolution path (a dense GEMM on a
// materialised column matrix beats an implicit-GEMM gather on lavapipe).
//
// Activations are CNHW (x[c][img][y][x], nimg images in total). A chunk is images
// [img0, img0 + ncols / (oh*ow)); column j = (img - img0, oy, ox), row r = (c, ky, kx); rows
// of col are ld floats apart (ld >= ncols, a multiple of 4 for the vec4 GEMM variants).
//   OP_IM2COL  col[r][j] = x[c][img][oy*stride - pad + ky][ox*stride - pad + kx] (0 outside);
//              OP_IM2COL4, OP_IM2COL4R (stride 1) and OP_IM2COL4S2 (stride 2) store vec4s
//   OP_COL2IM  dx[c][img][iy][ix] = sum of col[(c,ky,kx)][(img-img0, oy, ox)] over the (ky,kx)
//              with iy = oy*stride - pad + ky (same for x); ENG_COL_MASK: times
//              (mask[dx index] > 0).
//              A gather per output element: deterministic, no atomics.
//   OP_SHIFTPAD zero-padded, shifted frames of x and dy for the filter gradient (its main)
//   OP_PHASE2IM the data gradient of a stride-2 convolution from its stride phases (its main)
// The source is read through a uniform texel buffer (binding 8): a vector gather on llvmpipe,
// where storage-buffer loads are scalar loops over the lanes. Integer divisions go through
// udiv() (common.glsl): llvmpipe has no vector integer division and scalarises it lane by lane.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64, local_size_y = 1, local_size_z = 1) in;

#if defined(OP_SHIFTPAD)
// OP_SHIFTPAD's own geometry (see its main); row0 and col0 may be negative
layout(push_constant) uniform PC {
    uint c, ih, iw, nimg, img0, nc, rows, wp, cstride;
    int row0, col0;
} p;
#elif defined(OP_PHASE2IM)
// OP_PHASE2IM's: dx geometry, the chunk, where each stride phase lies in SRC (flags:
// ENG_COL_PHASE0 << ph: phase ph = 2*py + px has taps; ENG_COL_MASK: times the mask)
layout(push_constant) uniform PC {
    uint c, ih, iw, nimg, img0, nc;
    uint off[4];
    uint flags;
} p;
#else
layout(push_constant) uniform PC {
    uint c, ih, iw, oh, ow, kh, kw, stride, pad, nimg, img0, ncols, ld, flags;
} p;
#endif

layout(set = 0, binding = 8) uniform samplerBuffer SRC;

#if defined(OP_IM2COL) || defined(OP_IM2COL4) || defined(OP_IM2COL4R) || defined(OP_IM2COL4S2)
// Tap (c, ky, kx) of im2col row r.
void tap_of_row(uint r, out uint c, out uint ky, out uint kx)
{
    uint kk = p.kh * p.kw;
    c = udiv(r, kk);
    uint rk = r - c * kk;
    ky = udiv(rk, p.kw);
    kx = rk - ky * p.kw;
}

// First element of the input row that output row qq (= (img - img0) * oh + oy of the chunk)
// reads at tap row (c, ky); yok: that row lies inside the image (else row 0 stands in).
int src_row(uint qq, uint c, uint ky, out bool yok)
{
    uint img = udiv(qq, p.oh), oy = qq - img * p.oh;
    int y = int(oy * p.stride + ky) - int(p.pad);
    yok = uint(y) < p.ih;
    return int(((c * p.nimg + p.img0 + img) * p.ih + uint(yok ? y : 0)) * p.iw);
}
#endif

#if defined(OP_IM2COL4) || defined(OP_IM2COL4R) || defined(OP_IM2COL4S2) || defined(OP_SHIFTPAD)
// Element a split into an aligned texel t = floor(a / 4) and a shift sh = a - 4t.
void split4(int a, out int t, out uint sh)
{
    t = a >> 2;
    sh = uint(a - t * 4);
}

// The four consecutive source elements 4t + sh .. 4t + sh + 3: two aligned vec4 fetches and
// selects.
vec4 run4(int t, uint sh)
{
    // a texel outside the view holds only elements the caller masks: read the nearest one
    int last = textureSize(SRC) - 1;
    vec4 lo = texelFetch(SRC, clamp(t, 0, last)), hi = texelFetch(SRC, clamp(t + 1, 0, last));
    return sh == 0u ? lo
         : sh == 1u ? vec4(lo.yzw, hi.x)
         : sh == 2u ? vec4(lo.zw, hi.xy)
                    : vec4(lo.w, hi.xyz);
}

// Columns 4*o4 .. 4*o4 + 3 of an output row whose column 0 reads source column d of a row that
// starts at texel t0 + shift sh (split4): run4, with the columns outside the source row (or
// all, when the row itself lies outside: yok false) set to 0.
vec4 row_run4(int t0, uint sh, uint o4, int d, bool yok)
{
    vec4 v = run4(t0 + int(o4), sh);
    ivec4 x = ivec4(int(o4 * 4u) + d) + ivec4(0, 1, 2, 3);
    bvec4 in_ = lessThan(uvec4(x), uvec4(p.iw));
    in_ = yok ? in_ : bvec4(false);
    return mix(vec4(0.0), v, in_);
}
#endif

#if defined(OP_IM2COL)
BUF_RW(1, COL);

// One invocation per (row r, image, oy): it writes the ow columns of that output row, so the
// index decomposition (the divisions) is paid once per row, not per element.
void main()
{
    uint q = gl_GlobalInvocationID.x; // (img - img0) * oh + oy
    uint c, ky, kx;
    tap_of_row(gl_WorkGroupID.y, c, ky, kx);
    uint rows = udiv(p.ncols, p.ow);
    uint qq = min(q, rows - 1u);
    bool yok;
    int rowbase = src_row(qq, c, ky, yok);
    uint dst = gl_WorkGroupID.y * p.ld + qq * p.ow;
    int x = int(kx) - int(p.pad);
    if (q < rows) {
        for (uint ox = 0; ox < p.ow; ox++, x += int(p.stride)) {
            bool in_ = yok && uint(x) < p.iw;
            float v = texelFetch(SRC, rowbase + (in_ ? x : 0)).x;
            COL[dst + ox] = in_ ? v : 0.0;
        }
    }
}

#elif defined(OP_IM2COL4)
layout(std430, set = 0, binding = 1) buffer Buf1 { vec4 COL4[]; };

// OP_IM2COL for stride 1 with ow and ld multiples of 4, SRC an rgba32f view: each vec4 store
// of four columns takes its four source elements (consecutive in the input row) from run4,
// then zeroes those outside the image. About 2x faster than a scalar gather per element
// (resnet-8's im2col 1.0-1.4 -> 0.5-0.6 ms per call). Same matrix as OP_IM2COL.
void main()
{
    uint q = gl_GlobalInvocationID.x; // (img - img0) * oh + oy
    uint c, ky, kx;
    tap_of_row(gl_WorkGroupID.y, c, ky, kx);
    uint rows = udiv(p.ncols, p.ow);
    uint qq = min(q, rows - 1u);
    bool yok;
    int d = int(kx) - int(p.pad); // input column of output column 0
    int t0;
    uint sh;
    split4(src_row(qq, c, ky, yok) + d, t0, sh);
    uint dst = (gl_WorkGroupID.y * p.ld + qq * p.ow) >> 2;
    if (q < rows) {
        for (uint o4 = 0; o4 < (p.ow >> 2); o4++)
            COL4[dst + o4] = row_run4(t0, sh, o4, d, yok);
    }
}

#elif defined(OP_IM2COL4S2)
layout(std430, set = 0, binding = 1) buffer Buf1 { vec4 COL4[]; };

// OP_IM2COL for stride 2 with ow and ld multiples of 4, SRC an rgba32f view: output columns
// 4*o4 .. 4*o4 + 3 read every other source element from 8*o4 + d on, which lie in three
// aligned texels at one shift for the whole row; selects pick them, then those outside the
// image are zeroed. One vec4 store per four columns instead of four stores (each a loop over
// the lanes on llvmpipe). Same matrix as OP_IM2COL.
void main()
{
    uint q = gl_GlobalInvocationID.x; // (img - img0) * oh + oy
    uint c, ky, kx;
    tap_of_row(gl_WorkGroupID.y, c, ky, kx);
    uint rows = udiv(p.ncols, p.ow);
    uint qq = min(q, rows - 1u);
    bool yok;
    int d = int(kx) - int(p.pad); // input column of output column 0
    int t0;
    uint sh;
    split4(src_row(qq, c, ky, yok) + d, t0, sh);
    uint dst = (gl_WorkGroupID.y * p.ld + qq * p.ow) >> 2;
    int last = textureSize(SRC) - 1; // texels outside the view hold only masked elements
    if (q < rows) {
        for (uint o4 = 0; o4 < (p.ow >> 2); o4++) {
            int t = t0 + int(o4 * 2u);
            vec4 lo = texelFetch(SRC, clamp(t, 0, last));
            vec4 mid = texelFetch(SRC, clamp(t + 1, 0, last));
            vec4 hi = texelFetch(SRC, clamp(t + 2, 0, last));
            vec4 v = sh == 0u ? vec4(lo.xz, mid.xz)
                   : sh == 1u ? vec4(lo.yw, mid.yw)
                   : sh == 2u ? vec4(lo.z, mid.xz, hi.x)
                              : vec4(lo.w, mid.yw, hi.y);
            ivec4 x = ivec4(int(o4 * 8u) + d) + ivec4(0, 2, 4, 6);
            bvec4 in_ = lessThan(uvec4(x), uvec4(p.iw));
            COL4[dst + o4] = mix(vec4(0.0), v, yok ? in_ : bvec4(false));
        }
    }
}

#elif defined(OP_IM2COL4R)
layout(std430, set = 0, binding = 1) buffer Buf1 { vec4 COL4[]; };

// OP_IM2COL4 for output rows with ow % 4 == 2 (cnn-small's 14x14 layer) and an even number of
// rows per chunk: one invocation per pair of output rows, whose 2*ow columns are whole vec4s.
// Each vec4 reads the runs of both rows (four fetches) and takes each element from its own
// row's, so the vec4 that straddles the rows needs no branch. 1.8-1.9 -> 1.4-1.5 ms per call
// against OP_IM2COL in cnn-small.
void main()
{
    uint q = gl_GlobalInvocationID.x; // pair of output rows 2q, 2q + 1 in the chunk
    uint c, ky, kx;
    tap_of_row(gl_WorkGroupID.y, c, ky, kx);
    uint pairs = udiv(p.ncols, p.ow) >> 1;
    uint qq = min(q, pairs - 1u) * 2u;
    int d = int(kx) - int(p.pad);
    bool yok0, yok1;
    int ow = int(p.ow), t0, t1;
    uint sh0, sh1;
    // row 1's run starts ow columns before the pair's column 0 (element j of the pair is
    // column j - ow of row 1)
    split4(src_row(qq, c, ky, yok0) + d, t0, sh0);
    split4(src_row(qq + 1u, c, ky, yok1) + d - ow, t1, sh1);
    uint dst = (gl_WorkGroupID.y * p.ld + qq * p.ow) >> 2;
    if (q < pairs) {
        for (uint g = 0; g < (p.ow >> 1); g++) {
            int j0 = int(g * 4u);
            vec4 va = run4(t0 + int(g), sh0), vb = run4(t1 + int(g), sh1);
            ivec4 j = ivec4(j0) + ivec4(0, 1, 2, 3);
            bvec4 second = greaterThanEqual(j, ivec4(ow));
            ivec4 x = j - ivec4(second) * ow + d; // source column in its row
            bvec4 in_ = lessThan(uvec4(x), uvec4(p.iw));
            in_ = bvec4(uvec4(in_) & uvec4(mix(uvec4(yok0), uvec4(yok1), second)));
            COL4[dst + g] = mix(vec4(0.0), mix(va, vb, second), in_);
        }
    }
}

#elif defined(OP_SHIFTPAD)
layout(std430, set = 0, binding = 1) buffer Buf1 { vec4 OUT4[]; };

// Zero-padded frames of a CNHW source for the filter gradient of stride-1 convolutions
// (engine/ops.c conv_bwd_filter_shift): for copy s (workgroup y), channel c, image i of the
// chunk, frame row r < rows and column j < wp (a multiple of 4),
//   OUT[s*cstride + ((c*nc + i)*rows + r)*wp + j] = src[c][img0 + i][r + row0][j + col0 + s]
// and 0 where that lies outside the source image. One invocation per frame row, a vec4 store
// per four columns (row_run4, as OP_IM2COL4).
void main()
{
    uint q = gl_GlobalInvocationID.x; // (c, i, r)
    uint total = p.c * p.nc * p.rows, s = gl_WorkGroupID.y;
    uint qq = min(q, total - 1u);
    uint plane = udiv(qq, p.rows), r = qq - plane * p.rows;
    uint ch = udiv(plane, p.nc), i = plane - ch * p.nc;
    int y = int(r) + p.row0;
    bool yok = uint(y) < p.ih;
    int d = p.col0 + int(s); // source column of frame column 0
    int t0;
    uint sh;
    split4(int(((ch * p.nimg + p.img0 + i) * p.ih + uint(yok ? y : 0)) * p.iw) + d, t0, sh);
    uint dst = (s * p.cstride + qq * p.wp) >> 2;
    if (q < total) {
        for (uint o4 = 0; o4 < (p.wp >> 2); o4++)
            OUT4[dst + o4] = row_run4(t0, sh, o4, d, yok);
    }
}

#elif defined(OP_PHASE2IM)
layout(std430, set = 0, binding = 1) buffer Buf1 { vec4 DX4[]; };
layout(set = 0, binding = 9) uniform samplerBuffer MASK; // rgba32f, the forward input

// Element (c, i, a, b) of stride phase ph, whose planes are ny x nx; 0 for a phase without taps.
float phase_at(uint ph, uint ny, uint nx, uint a, uint b)
{
    uint idx = p.off[ph] + ((gl_WorkGroupID.y * p.nc + gl_GlobalInvocationID.z) * ny + a) * nx + b;
    float v = texelFetch(SRC, min(int(idx), textureSize(SRC) - 1)).x;
    return (p.flags & (ENG_COL_PHASE0 << ph)) != 0u ? v : 0.0;
}

// The data gradient of a stride-2 convolution from its four stride phases (ops.c
// conv_bwd_data_phase): dx[c][img0 + i][iy][ix] = phase (iy % 2, ix % 2) at (iy / 2, ix / 2),
// the phases' planes (c, i) of ceil((ih - py) / 2) x ceil((iw - px) / 2) at off[2*py + px] in
// SRC. One invocation per row of dx (x: row, y: channel, z: image of the chunk); iw a multiple of
// 4: a vec4 store per four columns, two from each column phase.
void main()
{
    uint iy = gl_GlobalInvocationID.x, c = gl_WorkGroupID.y, i = gl_GlobalInvocationID.z;
    uint py = iy & 1u, a = iy >> 1;
    uint ny = (p.ih - py + 1u) >> 1, nx0 = (p.iw + 1u) >> 1, nx1 = p.iw >> 1;
    uint row = ((c * p.nimg + p.img0 + i) * p.ih + min(iy, p.ih - 1u)) * p.iw;
    if (iy < p.ih) {
        for (uint o4 = 0; o4 < (p.iw >> 2); o4++) {
            uint b = o4 * 2u;
            vec4 v = vec4(phase_at(py * 2u, ny, nx0, a, b), phase_at(py * 2u + 1u, ny, nx1, a, b),
                          phase_at(py * 2u, ny, nx0, a, b + 1u),
                          phase_at(py * 2u + 1u, ny, nx1, a, b + 1u));
            uint t = (row >> 2) + o4;
            if ((p.flags & ENG_COL_MASK) != 0u) // a uniform branch: no fetch without a mask
                v = mix(vec4(0.0), v, greaterThan(texelFetch(MASK, int(t)), vec4(0.0)));
            DX4[t] = v;
        }
    }
}

#elif defined(OP_COL2IM)
BUF_RW(1, DX);
BUF_RO(2, mask);

void main()
{
    uint i = gl_GlobalInvocationID.x; // (img - img0, iy, ix) within the chunk
    uint c = gl_WorkGroupID.y;
    uint ihw = p.ih * p.iw;
    uint nchunk = udiv(p.ncols, p.oh * p.ow);
    uint ii = min(i, nchunk * ihw - 1u);
    uint img = udiv(ii, ihw), ri = ii - img * ihw;
    uint iy = udiv(ri, p.iw), ix = ri - iy * p.iw;
    uint out_idx = (c * p.nimg + p.img0 + img) * ihw + ri;
    // Only the taps with ky = ty - oy*stride (ty = iy + pad) contribute: oy runs down from
    // ty / stride, at most ceil(kh / stride) of them (2 of 3 for stride 2, where looping over
    // every ky with a division each cost 9 divisions and 9 fetches per element). Same order
    // as a loop over ky then kx (ascending), so the same sums.
    uint ty = iy + p.pad, tx = ix + p.pad;
    int qy = int(udiv(ty, p.stride)), qx = int(udiv(tx, p.stride));
    uint nwy = (p.kh + p.stride - 1u) / p.stride, nwx = (p.kw + p.stride - 1u) / p.stride;
    float s = 0.0;
    for (uint j = 0; j < nwy; j++) {
        int oy = qy - int(j), ky = int(ty) - oy * int(p.stride);
        bool oky = oy >= 0 && oy < int(p.oh) && ky < int(p.kh);
        for (uint l = 0; l < nwx; l++) {
            int ox = qx - int(l), kx = int(tx) - ox * int(p.stride);
            bool ok = oky && ox >= 0 && ox < int(p.ow) && kx < int(p.kw);
            uint r = (c * p.kh + uint(ok ? ky : 0)) * p.kw + uint(ok ? kx : 0);
            int idx = int(r * p.ld + (img * p.oh + uint(ok ? oy : 0)) * p.ow + uint(ok ? ox : 0));
            float v = texelFetch(SRC, idx).x;
            s += ok ? v : 0.0;
        }
    }
    if (i < nchunk * ihw) {
        if ((p.flags & ENG_COL_MASK) != 0u && !(mask[out_idx] > 0.0))
            s = 0.0;
        DX[out_idx] = s;
    }
}
#endif
