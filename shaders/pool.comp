#version 450
// pool.comp - pooling on CNHW activations: planes = C*N planes of ih x iw, windows kh x kw with
// one stride and padding. Backward passes are gathers (each input sums the windows covering it):
// no atomics, deterministic.
//   OP_MAX_FWD  y = window max (padding never wins, as in PyTorch), idx = argmax (first max)
//   OP_MAX_BWD  dx = sum of dy over windows whose argmax is this element; ENG_POOL_RELU_MASK: times
//               (x > 0), the ReLU before the pool
//   OP_AVG_FWD  y = window mean, padding counted (PyTorch count_include_pad); global average
//               pooling is the window = whole plane
//   OP_AVG_BWD  dx = sum of dy / (kh*kw) over covering windows; OP_AVG_BWD_GLOBAL4 (TEX) for
//               global pooling
// With TEX (max pooling on CPU devices): inputs are uniform texel buffers, loops have uniform
// bounds and branch-free bodies, divisions go through udiv(), and the grid is (position in the
// plane, plane): on llvmpipe a storage-buffer load in a loop or branch is a scalar loop over
// the lanes and an integer division is scalarised, which made the plain kernels 20 ms per
// cnn-small backward pass. The argmax is stored as the float of the position (exact below
// 2^24) so that the backward pass can read it through an r32f view. OP_MAX_BWD_SCATTER is the
// backward pass for windows that tile the plane.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(push_constant) uniform PC {
    uint planes, ih, iw, oh, ow, kh, kw, stride, pad, flags;
    uint nwy, nwx; // TEX backward: most windows covering one input along y and x
} p;

uint elem_index()
{
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
}

#if defined(TEX)
layout(set = 0, binding = 8) uniform samplerBuffer T0;  // fwd: x; bwd: dy
layout(set = 0, binding = 9) uniform samplerBuffer T1;  // bwd: argmax (floats)
layout(set = 0, binding = 10) uniform samplerBuffer T2; // bwd: x (ReLU mask, ENG_POOL_RELU_MASK)

// grid: x = position in the plane (64 per workgroup), y + z * gridY = plane; planes past the
// end (when z folds them) compute plane planes-1 and store nothing
uint plane_raw()
{
    return gl_WorkGroupID.y + gl_WorkGroupID.z * gl_NumWorkGroups.y;
}
uint plane_index()
{
    return min(plane_raw(), p.planes - 1u);
}
#endif

#if defined(TEX) && defined(WIN2)
// Window i's plane's first element base and its top-left tap pos within the plane.
void win2_at(uint i, out uint base, out uint pos)
{
    uint ohw = p.oh * p.ow;
    uint pl = udiv(i, ohw), rr = i - pl * ohw;
    uint oy = udiv(rr, p.ow), ox = rr - oy * p.ow;
    base = pl * p.ih * p.iw;
    pos = 2u * (oy * p.iw + ox);
}

// Window ii of this invocation i (clamped to the n windows), its base and pos (win2_at).
void win2(out uint i, out uint ii, out uint n, out uint base, out uint pos)
{
    n = p.planes * p.oh * p.ow;
    i = elem_index();
    ii = min(i, n - 1u);
    win2_at(ii, base, pos);
}
#endif

#if defined(TEX) && defined(WIN2) && defined(PAIR)
// Pair jj of horizontally adjacent windows (2jj, 2jj+1: ow is even, so both lie in one row) of
// this invocation j (clamped to the n2 pairs), and base and pos of window 2jj: pos is a
// multiple of 4 when iw % 4 == 0 (then both input rows of the pair are one aligned vec4 each).
void win2_pair(out uint j, out uint jj, out uint n2, out uint base, out uint pos)
{
    n2 = (p.planes * p.oh * p.ow) >> 1;
    j = elem_index();
    jj = min(j, n2 - 1u);
    win2_at(jj * 2u, base, pos);
}
#endif

#if defined(TEX) && defined(WIN2) && defined(PAIR) && defined(OP_MAX_FWD)
// Two windows per invocation (iw % 4 == 0, T0 an rgba32f view): two vec4 fetches and vec2
// stores instead of four gathers and two scalar stores per window. Same comparisons in the same
// order as the one-window kernel, so the same maxima and argmaxes.
layout(std430, set = 0, binding = 1) buffer Buf1 { vec2 y2[]; };
layout(std430, set = 0, binding = 2) buffer Buf2 { uvec2 arg2[]; };
void main()
{
    uint j, jj, n2, base, pos;
    win2_pair(j, jj, n2, base, pos);
    vec4 top = texelFetch(T0, int((base + pos) >> 2));
    vec4 bot = texelFetch(T0, int((base + pos + p.iw) >> 2));
    float fp = float(pos), fw = float(pos + p.iw);
    vec2 best = top.xz, bi = vec2(fp, fp + 2.0);
    bvec2 t = greaterThan(top.yw, best);
    bi = mix(bi, vec2(fp + 1.0, fp + 3.0), t);
    best = mix(best, top.yw, t);
    t = greaterThan(bot.xz, best);
    bi = mix(bi, vec2(fw, fw + 2.0), t);
    best = mix(best, bot.xz, t);
    t = greaterThan(bot.yw, best);
    bi = mix(bi, vec2(fw + 1.0, fw + 3.0), t);
    best = mix(best, bot.yw, t);
    if (j < n2) {
        y2[jj] = best;
        arg2[jj] = floatBitsToUint(bi);
    }
}
#elif defined(TEX) && defined(WIN2) && defined(PAIR) && defined(OP_MAX_BWD_SCATTER)
// Two windows per invocation (iw % 4 == 0; T0 = dy and T1 = argmax rgba32f views, the pair's
// two values are one half of a texel): each of the two input rows is one vec4 store.
layout(std430, set = 0, binding = 3) buffer Buf3 { vec4 dx4[]; };
void main()
{
    uint j, jj, n2, base, pos;
    win2_pair(j, jj, n2, base, pos);
    bool hi = (jj & 1u) != 0u;
    vec4 av = texelFetch(T1, int(jj >> 1)), gv = texelFetch(T0, int(jj >> 1));
    vec2 a = hi ? av.zw : av.xy, g = hi ? gv.zw : gv.xy;
    if ((p.flags & ENG_POOL_RELU_MASK) != 0u) {
        g.x = texelFetch(T2, int(base) + int(a.x)).x > 0.0 ? g.x : 0.0;
        g.y = texelFetch(T2, int(base) + int(a.y)).x > 0.0 ? g.y : 0.0;
    }
    float fp = float(pos), fw = float(pos + p.iw);
    vec4 top = vec4(a.x == fp ? g.x : 0.0, a.x == fp + 1.0 ? g.x : 0.0, a.y == fp + 2.0 ? g.y : 0.0,
                    a.y == fp + 3.0 ? g.y : 0.0);
    vec4 bot = vec4(a.x == fw ? g.x : 0.0, a.x == fw + 1.0 ? g.x : 0.0, a.y == fw + 2.0 ? g.y : 0.0,
                    a.y == fw + 3.0 ? g.y : 0.0);
    if (j < n2) {
        dx4[(base + pos) >> 2] = top;
        dx4[(base + pos + p.iw) >> 2] = bot;
    }
}
#elif defined(TEX) && defined(WIN2) && defined(OP_MAX_FWD)
// 2x2 windows, stride 2, no padding: every window lies inside the plane. One invocation per
// window over all planes (elem_index), the four taps unrolled: no loop and no per-tap bounds
// test (the looped kernel's loop and masks cost as much as its stores). Same comparisons in
// the same order as the looped kernel, so the same maxima and argmaxes.
BUF_RW(1, y);
UBUF_RW(2, arg);
void main()
{
    uint i, ii, n, ubase, upos;
    win2(i, ii, n, ubase, upos);
    int pos = int(upos), base = int(ubase), w = int(p.iw);
    float v0 = texelFetch(T0, base + pos).x, v1 = texelFetch(T0, base + pos + 1).x;
    float v2 = texelFetch(T0, base + pos + w).x, v3 = texelFetch(T0, base + pos + w + 1).x;
    float best = v0, bi = float(pos);
    bi = v1 > best ? float(pos + 1) : bi;
    best = v1 > best ? v1 : best;
    bi = v2 > best ? float(pos + w) : bi;
    best = v2 > best ? v2 : best;
    bi = v3 > best ? float(pos + w + 1) : bi;
    best = v3 > best ? v3 : best;
    if (i < n) {
        y[i] = best;
        arg[i] = floatBitsToUint(bi);
    }
}
#elif defined(TEX) && defined(WIN2) && defined(OP_MAX_BWD_SCATTER)
// 2x2 windows, stride 2, no padding, even plane sizes (the windows tile the plane exactly):
// each window writes its two input rows as two vec2 stores. llvmpipe stores storage buffers
// lane by lane with a mask and bounds test per lane; a vec2 pays that once per 2 floats.
layout(std430, set = 0, binding = 3) buffer Buf3 { vec2 dx2[]; };
void main()
{
    uint i, ii, n, ibase, pos;
    win2(i, ii, n, ibase, pos);
    float a = texelFetch(T1, int(ii)).x, g = texelFetch(T0, int(ii)).x;
    if ((p.flags & ENG_POOL_RELU_MASK) != 0u)
        g = texelFetch(T2, int(ibase) + int(a)).x > 0.0 ? g : 0.0;
    float fp = float(pos), fw = float(pos + p.iw);
    vec2 top = vec2(a == fp ? g : 0.0, a == fp + 1.0 ? g : 0.0);
    vec2 bot = vec2(a == fw ? g : 0.0, a == fw + 1.0 ? g : 0.0);
    if (i < n) {
        dx2[(ibase + pos) >> 1] = top;
        dx2[(ibase + pos + p.iw) >> 1] = bot;
    }
}
#elif defined(TEX) && defined(OP_MAX_FWD)
BUF_RW(1, y);
UBUF_RW(2, arg);
void one(uint pl, uint r)
{
    uint ohw = p.oh * p.ow, rr = min(r, ohw - 1u);
    uint oy = udiv(rr, p.ow), ox = rr - oy * p.ow;
    int y0 = int(oy * p.stride) - int(p.pad), x0 = int(ox * p.stride) - int(p.pad);
    int base = int(pl * p.ih * p.iw);
    float best = -1.0 / 0.0, bi = 0.0;
    bool any = false;
    for (uint ky = 0; ky < p.kh; ky++) {
        int yy = y0 + int(ky);
        for (uint kx = 0; kx < p.kw; kx++) {
            int xx = x0 + int(kx);
            bool in_ = uint(yy) < p.ih && uint(xx) < p.iw;
            int pos = yy * int(p.iw) + xx;
            float v = texelFetch(T0, base + (in_ ? pos : 0)).x;
            bool take = in_ && (!any || v > best);
            best = take ? v : best;
            bi = take ? float(pos) : bi;
            any = any || in_;
        }
    }
    if (r < ohw && plane_raw() < p.planes) {
        uint o = pl * ohw + r;
        y[o] = best;
        arg[o] = floatBitsToUint(bi);
    }
}
#elif defined(TEX) && defined(OP_MAX_BWD)
BUF_RW(3, dx);
void one(uint pl, uint r)
{
    uint ihw = p.ih * p.iw, rr = min(r, ihw - 1u);
    uint iy = udiv(rr, p.iw), ix = rr - iy * p.iw;
    // window o covers t = i + pad when o*stride <= t < o*stride + k; the last is t / stride
    uint ty = iy + p.pad, tx = ix + p.pad;
    int qy = int(udiv(ty, p.stride)), qx = int(udiv(tx, p.stride));
    int obase = int(pl * p.oh * p.ow);
    float s = 0.0, me = float(rr);
    for (uint j = 0; j < p.nwy; j++) {
        int oy = qy - int(j);
        bool oky = oy >= 0 && oy < int(p.oh) && uint(oy) * p.stride + p.kh > ty;
        for (uint l = 0; l < p.nwx; l++) {
            int ox = qx - int(l);
            bool ok = oky && ox >= 0 && ox < int(p.ow) && uint(ox) * p.stride + p.kw > tx;
            int o = obase + (ok ? oy * int(p.ow) + ox : 0);
            float a = texelFetch(T1, o).x, g = texelFetch(T0, o).x;
            s += ok && a == me ? g : 0.0;
        }
    }
    if ((p.flags & ENG_POOL_RELU_MASK) != 0u)
        s = texelFetch(T2, int(pl * ihw + rr)).x > 0.0 ? s : 0.0;
    if (r < ihw && plane_raw() < p.planes)
        dx[pl * ihw + r] = s;
}
#elif defined(TEX) && defined(OP_MAX_BWD_SCATTER)
// Windows that tile the plane (stride = kh = kw, no padding): each output writes its own window
// (dy at the argmax, 0 elsewhere), 3 texel fetches per window instead of 3 per input. The last
// row and column of windows also zero the inputs that no window covers.
BUF_RW(3, dx);
void one(uint pl, uint r)
{
    uint ohw = p.oh * p.ow, rr = min(r, ohw - 1u);
    uint oy = udiv(rr, p.ow), ox = rr - oy * p.ow;
    uint ihw = p.ih * p.iw, ibase = pl * ihw;
    int o = int(pl * ohw + rr);
    float a = texelFetch(T1, o).x, g = texelFetch(T0, o).x;
    if ((p.flags & ENG_POOL_RELU_MASK) != 0u)
        g = texelFetch(T2, int(ibase) + int(a)).x > 0.0 ? g : 0.0;
    uint y0 = oy * p.stride, x0 = ox * p.stride;
    uint ey = oy + 1u == p.oh ? p.ih - y0 : p.kh, ex = ox + 1u == p.ow ? p.iw - x0 : p.kw;
    uint my = p.kh + (p.ih - p.oh * p.stride), mx = p.kw + (p.iw - p.ow * p.stride);
    bool live = r < ohw && plane_raw() < p.planes;
    for (uint ky = 0; ky < my; ky++)
        for (uint kx = 0; kx < mx; kx++) {
            uint pos = (y0 + ky) * p.iw + x0 + kx;
            if (live && ky < ey && kx < ex)
                dx[ibase + pos] = float(pos) == a ? g : 0.0;
        }
}
#elif defined(TEX) && defined(OP_AVG_BWD_GLOBAL4)
// Global average pooling backward (window = plane, ih*iw % 4 == 0; CPU devices): dx =
// dy[plane] / (ih*iw), four positions per invocation, one vec4 store (the general kernel's
// integer divisions and lane loops took 9.5 ms per resnet-8 step). Same bits as OP_AVG_BWD.
layout(std430, set = 0, binding = 3) buffer DX4 { vec4 dx4[]; };
void one(uint pl, uint r)
{
    uint hw4 = (p.ih * p.iw) >> 2;
    float s = texelFetch(T0, int(pl)).x / float(p.kh * p.kw);
    if (r < hw4 && plane_raw() < p.planes)
        dx4[pl * hw4 + r] = vec4(s);
}
#endif
#if defined(TEX) && !defined(WIN2)
void main()
{
    one(plane_index(), gl_GlobalInvocationID.x);
}
#elif defined(WIN2)
#elif defined(OP_MAX_FWD) || defined(OP_AVG_FWD)
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
    if ((p.flags & ENG_POOL_RELU_MASK) != 0u && !(x[i] > 0.0))
        s = 0.0;
#else
    s /= float(p.kh * p.kw);
#endif
    dx[i] = s;
}
#endif
