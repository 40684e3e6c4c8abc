#version 450
// im2col.comp - explicit im2col / col2im for the CPU convolution path (a dense GEMM on a
// materialised column matrix beats an implicit-GEMM gather on lavapipe).
//
// Activations are CNHW (x[c][img][y][x], nimg images in total). A chunk is images
// [img0, img0 + ncols / (oh*ow)); column j = (img - img0, oy, ox), row r = (c, ky, kx); rows
// of col are ld floats apart (ld >= ncols, a multiple of 4 for the vec4 GEMM variants).
//   OP_IM2COL  col[r][j] = x[c][img][oy*stride - pad + ky][ox*stride - pad + kx] (0 outside)
//   OP_COL2IM  dx[c][img][iy][ix] = sum of col[(c,ky,kx)][(img-img0, oy, ox)] over the (ky,kx)
//              with iy = oy*stride - pad + ky (same for x); flags 1: times (mask[dx index] > 0).
//              A gather per output element: deterministic, no atomics.
// The source is read through a uniform texel buffer (binding 8): a vector gather on llvmpipe,
// where storage-buffer loads are scalar loops over the lanes. Integer divisions go through
// udiv() below: llvmpipe has no vector integer division and scalarises it lane by lane.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64, local_size_y = 1, local_size_z = 1) in;

layout(push_constant) uniform PC {
    uint c, ih, iw, oh, ow, kh, kw, stride, pad, nimg, img0, ncols, ld, flags;
} p;

layout(set = 0, binding = 8) uniform samplerBuffer SRC;

// a / b for a < 2^24 and b >= 1: a float estimate corrected to the exact quotient.
uint udiv(uint a, uint b)
{
    uint q = uint(float(a) / float(b));
    if (q * b > a)
        q--;
    else if ((q + 1u) * b <= a)
        q++;
    return q;
}

#if defined(OP_IM2COL)
BUF_RW(1, COL);

// One invocation per (row r, image, oy): it writes the ow columns of that output row, so the
// index decomposition (the divisions) is paid once per row, not per element.
void main()
{
    uint q = gl_GlobalInvocationID.x; // (img - img0) * oh + oy
    uint r = gl_WorkGroupID.y;
    uint kk = p.kh * p.kw;
    uint c = udiv(r, kk), rk = r - c * kk;
    uint ky = udiv(rk, p.kw), kx = rk - ky * p.kw;
    uint rows = udiv(p.ncols, p.ow);
    uint qq = min(q, rows - 1u);
    uint img = udiv(qq, p.oh), oy = qq - img * p.oh;
    int y = int(oy * p.stride + ky) - int(p.pad);
    bool yok = uint(y) < p.ih;
    int rowbase = int(((c * p.nimg + p.img0 + img) * p.ih + uint(yok ? y : 0)) * p.iw);
    uint dst = r * p.ld + qq * p.ow;
    int x = int(kx) - int(p.pad);
    if (q < rows) {
        for (uint ox = 0; ox < p.ow; ox++, x += int(p.stride)) {
            bool in_ = yok && uint(x) < p.iw;
            float v = texelFetch(SRC, rowbase + (in_ ? x : 0)).x;
            COL[dst + ox] = in_ ? v : 0.0;
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
    float s = 0.0;
    for (uint ky = 0; ky < p.kh; ky++) {
        // oy = (iy + pad - ky) / stride when that is exact and in range
        int ty = int(iy + p.pad) - int(ky);
        uint oy = udiv(uint(max(ty, 0)), p.stride);
        bool oky = ty >= 0 && oy * p.stride == uint(ty) && oy < p.oh;
        for (uint kx = 0; kx < p.kw; kx++) {
            int tx = int(ix + p.pad) - int(kx);
            uint ox = udiv(uint(max(tx, 0)), p.stride);
            bool ok = oky && tx >= 0 && ox * p.stride == uint(tx) && ox < p.ow;
            uint r = (c * p.kh + ky) * p.kw + kx;
            int idx = int(r * p.ld + (img * p.oh + (ok ? oy : 0u)) * p.ow + (ok ? ox : 0u));
            float v = texelFetch(SRC, idx).x;
            s += ok ? v : 0.0;
        }
    }
    if (i < nchunk * ihw) {
        if ((p.flags & 1u) != 0u && !(mask[out_idx] > 0.0))
            s = 0.0;
        DX[out_idx] = s;
    }
}
#endif
