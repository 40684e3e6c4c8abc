#version 450
// im2col.comp - explicit im2col / col2im for the CPU convolution path (a dense GEMM on a
// materialised column matrix beats an implicit-GEMM gather on lavapipe).
//
// Activations are CNHW (x[c][img][y][x], nimg images in total). A chunk is images
// [img0, img0 + ncols / (oh*ow)); column j = (img - img0, oy, ox), row r = (c, ky, kx).
//   OP_IM2COL  col[r][j] = x[c][img][oy*stride - pad + ky][ox*stride - pad + kx] (0 outside)
//   OP_COL2IM  dx[c][img][iy][ix] = sum of col[(c,ky,kx)][(img-img0, oy, ox)] over the (ky,kx)
//              with iy = oy*stride - pad + ky (same for x); flags 1: times (mask[dx index] > 0).
//              A gather per output element: deterministic, no atomics.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64, local_size_y = 1, local_size_z = 1) in;

layout(push_constant) uniform PC {
    uint c, ih, iw, oh, ow, kh, kw, stride, pad, nimg, img0, ncols, flags;
} p;

#if defined(OP_IM2COL)
BUF_RO(0, X);
BUF_RW(1, COL);

void main()
{
    uint j = gl_GlobalInvocationID.x;
    uint r = gl_WorkGroupID.y;
    if (j >= p.ncols)
        return;
    uint kk = p.kh * p.kw;
    uint c = r / kk, rk = r - c * kk;
    uint ky = rk / p.kw, kx = rk - ky * p.kw;
    uint hw = p.oh * p.ow;
    uint img = j / hw, rj = j - img * hw;
    uint oy = rj / p.ow, ox = rj - oy * p.ow;
    int y = int(oy * p.stride + ky) - int(p.pad);
    int x = int(ox * p.stride + kx) - int(p.pad);
    bool in_ = uint(y) < p.ih && uint(x) < p.iw;
    uint idx = ((c * p.nimg + p.img0 + img) * p.ih + uint(in_ ? y : 0)) * p.iw + uint(in_ ? x : 0);
    COL[r * p.ncols + j] = in_ ? X[idx] : 0.0;
}

#elif defined(OP_COL2IM)
BUF_RO(0, COL);
BUF_RW(1, DX);
BUF_RO(2, mask);

void main()
{
    uint i = gl_GlobalInvocationID.x; // (img - img0, iy, ix) within the chunk
    uint c = gl_WorkGroupID.y;
    uint ihw = p.ih * p.iw;
    uint nchunk = p.ncols / (p.oh * p.ow);
    if (i >= nchunk * ihw)
        return;
    uint img = i / ihw, ri = i - img * ihw;
    uint iy = ri / p.iw, ix = ri - iy * p.iw;
    uint out_idx = (c * p.nimg + p.img0 + img) * ihw + ri;
    float s = 0.0;
    if ((p.flags & 1u) == 0u || mask[out_idx] > 0.0) {
        for (uint ky = 0; ky < p.kh; ky++) {
            int ty = int(iy + p.pad) - int(ky);
            if (ty < 0 || ty % int(p.stride) != 0)
                continue;
            uint oy = uint(ty) / p.stride;
            if (oy >= p.oh)
                continue;
            for (uint kx = 0; kx < p.kw; kx++) {
                int tx = int(ix + p.pad) - int(kx);
                if (tx < 0 || tx % int(p.stride) != 0)
                    continue;
                uint ox = uint(tx) / p.stride;
                if (ox >= p.ow)
                    continue;
                uint r = (c * p.kh + ky) * p.kw + kx;
                s += COL[r * p.ncols + (img * p.oh + oy) * p.ow + ox];
            }
        }
    }
    DX[out_idx] = s;
}
#endif
