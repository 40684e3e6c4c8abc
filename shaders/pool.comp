#version 450
// pool.comp - pooling on CNHW activations: planes = C*N planes of ih x iw, windows kh x kw with
// one stride and padding. Backward passes are gathers (each input sums the windows covering it):
// no atomics, deterministic.
//   OP_MAX_FWD  y = window max (padding never wins, as in PyTorch), idx = argmax (first max)
//   OP_MAX_BWD  dx = sum of dy over windows whose argmax is this element; flags & 1: times
//               (x > 0), the ReLU before the pool
//   OP_AVG_FWD  y = window mean, padding counted (PyTorch count_include_pad); global average
//               pooling is the window = whole plane
//   OP_AVG_BWD  dx = sum of dy / (kh*kw) over covering windows
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(push_constant) uniform PC {
    uint planes, ih, iw, oh, ow, kh, kw, stride, pad, flags;
} p;

uint elem_index()
{
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
}

#if defined(OP_MAX_FWD) || defined(OP_AVG_FWD)
BUF_RO(0, x);
BUF_RW(1, y);
UBUF_RW(2, arg);
void main()
{
    uint i = elem_index();
    if (i >= p.planes * p.oh * p.ow)
        return;
    uint ohw = p.oh * p.ow;
    uint pl = i / ohw, r = i - pl * ohw;
    uint oy = r / p.ow, ox = r - oy * p.ow;
    int y0 = int(oy * p.stride) - int(p.pad), x0 = int(ox * p.stride) - int(p.pad);
    uint base = pl * p.ih * p.iw;
#if defined(OP_MAX_FWD)
    float best = -1.0 / 0.0;
    uint bi = 0u;
    bool any = false;
    for (uint ky = 0; ky < p.kh; ky++) {
        int yy = y0 + int(ky);
        if (uint(yy) >= p.ih)
            continue;
        for (uint kx = 0; kx < p.kw; kx++) {
            int xx = x0 + int(kx);
            if (uint(xx) >= p.iw)
                continue;
            uint pos = uint(yy) * p.iw + uint(xx);
            float v = x[base + pos];
            if (!any || v > best) {
                best = v;
                bi = pos;
                any = true;
            }
        }
    }
    y[i] = best;
    arg[i] = bi;
#else
    float s = 0.0;
    for (uint ky = 0; ky < p.kh; ky++) {
        int yy = y0 + int(ky);
        if (uint(yy) >= p.ih)
            continue;
        for (uint kx = 0; kx < p.kw; kx++) {
            int xx = x0 + int(kx);
            if (uint(xx) < p.iw)
                s += x[base + uint(yy) * p.iw + uint(xx)];
        }
    }
    y[i] = s / float(p.kh * p.kw);
#endif
}
#else
BUF_RO(0, dy);
UBUF_RO(1, arg);
BUF_RO(2, x);
BUF_RW(3, dx);
void main()
{
    uint i = elem_index();
    if (i >= p.planes * p.ih * p.iw)
        return;
    uint ihw = p.ih * p.iw;
    uint pl = i / ihw, pos = i - pl * ihw;
    uint iy = pos / p.iw, ix = pos - iy * p.iw;
    // Windows covering iy: oy*stride - pad <= iy <= oy*stride - pad + kh - 1.
    uint ty = iy + p.pad, tx = ix + p.pad;
    uint oy_lo = ty + 1u > p.kh ? (ty + 1u - p.kh + p.stride - 1u) / p.stride : 0u;
    uint oy_hi = min(ty / p.stride, p.oh - 1u);
    uint ox_lo = tx + 1u > p.kw ? (tx + 1u - p.kw + p.stride - 1u) / p.stride : 0u;
    uint ox_hi = min(tx / p.stride, p.ow - 1u);
    uint obase = pl * p.oh * p.ow;
    float s = 0.0;
    for (uint oy = oy_lo; oy <= oy_hi && oy < p.oh; oy++)
        for (uint ox = ox_lo; ox <= ox_hi && ox < p.ow; ox++) {
            uint o = obase + oy * p.ow + ox;
#if defined(OP_MAX_BWD)
            if (arg[o] == pos)
                s += dy[o];
#else
            s += dy[o];
#endif
        }
#if defined(OP_MAX_BWD)
    if ((p.flags & 1u) != 0u && !(x[i] > 0.0))
        s = 0.0;
#else
    s /= float(p.kh * p.kw);
#endif
    dx[i] = s;
}
#endif
