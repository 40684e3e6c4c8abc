#version 450
// reduce.comp - deterministic reductions and layout changes.
//   OP_ROWSUM    out[i*so] = sum_{j<len} in[i*si + j*sj] (+ out[i*so] when accumulate), summed
//                in index order by one invocation per output (per chunk, see below): bias
//                gradients, split-K partials.
//   OP_TRANSPOSE out[linear index of (i0,i1,i2,i3) in dims d] =
//                in[base + i0*s0 + i1*s1 + i2*s2 + i3*s3]: any permutation (and flip) of up
//                to four axes (flatten, weight transposes).
// With TEX (CPU devices) the source is a uniform texel buffer (binding 8) and divisions go
// through udiv() (OP_TRANSPOSE only): on llvmpipe storage-buffer loads in loops or branches
// are scalar loops over the lanes and integer division is scalarised. OP_ROWSUM with WG (GPUs)
// is one workgroup per row; on lavapipe it measured no faster than one invocation per row.
// OP_ROWSUM with TEX (CPU devices, chunk = len, no split): 8-invocation workgroups.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#if defined(OP_ROWSUM) && defined(TEX)
layout(local_size_x = 8) in;
#else
layout(local_size_x = 64) in;
#endif

BUF_RO(0, src);
BUF_RW(1, dst);

#if defined(TEX)
layout(set = 0, binding = 8) uniform samplerBuffer TS;
#endif

#if defined(OP_ROWSUM)
layout(push_constant) uniform PC {
    uint rows, len, si, sj, so, accumulate, chunk, sc;
    uint j0; // first j of this pass (CPU devices sum long rows in passes, see ops.c op_rowsum)
} p;
#endif

#if defined(OP_ROWSUM) && defined(WG)
// GPUs, long rows (bias gradients: 10-64 rows of 10^4-10^5): one workgroup per row, each
// invocation sums a fixed strided subset, then a fixed tree in shared memory (deterministic).
// The one-invocation-per-row kernel below ran such a sum on a single workgroup: 77% of the
// device time of a cnn-small step on an H200.
#define WG_SIZE 64
#include "wg_sum.glsl"

void main()
{
    uint i = gl_WorkGroupID.x, lid = gl_LocalInvocationID.x;
    float s = 0.0;
    uint base = i * p.si;
    for (uint j = lid; j < p.len; j += 64u)
        s += src[base + j * p.sj];
    float t = wg_sum(s);
    if (lid == 0u) {
        uint o = i * p.so;
        if (p.accumulate != 0u)
            t += dst[o];
        dst[o] = t;
    }
}
#elif defined(OP_ROWSUM) && defined(TEX)
// CPU devices: one invocation per row as below (same order of additions, so the same sums),
// reading through a texel buffer (a gather for 8 rows instead of a loop over the lanes), in
// workgroups of 8 so that a few rows (bias gradients: 10-64) still spread over the CPU threads.

void main()
{
    uint i = gl_GlobalInvocationID.x, ii = min(i, p.rows - 1u);
    float s = 0.0;
    int at = int(ii * p.si + p.j0 * p.sj), step = int(p.sj);
    for (uint j = 0u; j < p.len; j++, at += step)
        s += texelFetch(TS, at).x;
    if (i < p.rows) {
        uint o = i * p.so;
        if (p.accumulate != 0u)
            s += dst[o];
        dst[o] = s;
    }
}
#elif defined(OP_ROWSUM)
// Workgroup y = chunk c sums j in [c*chunk, min(len, (c+1)*chunk)) into dst[i*so + c*sc]: a
// first stage of a two-stage reduction when rows are few and long.

void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= p.rows)
        return;
    uint j0 = p.j0 + gl_WorkGroupID.y * p.chunk;
    uint j1 = min(p.j0 + p.len, j0 + p.chunk);
    float s = 0.0;
    uint base = i * p.si;
    for (uint j = j0; j < j1; j++)
        s += src[base + j * p.sj];
    uint o = i * p.so + gl_WorkGroupID.y * p.sc;
    if (p.accumulate != 0u)
        s += dst[o];
    dst[o] = s;
}
#else
layout(push_constant) uniform PC {
    uint d0, d1, d2, d3;
    uint s0, s1, s2, s3; // may be "negative" (two's complement): index math wraps mod 2^32
    uint base;
} p;

void main()
{
    uint idx = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
    uint total = p.d0 * p.d1 * p.d2 * p.d3;
    if (idx >= total)
        return;
#if defined(TEX)
    uint r = udiv(idx, p.d3), i3 = idx - r * p.d3;
    uint r2 = udiv(r, p.d2), i2 = r - r2 * p.d2;
    uint i0 = udiv(r2, p.d1), i1 = r2 - i0 * p.d1;
    dst[idx] = texelFetch(TS, int(p.base + i0 * p.s0 + i1 * p.s1 + i2 * p.s2 + i3 * p.s3)).x;
#else
    uint i3 = idx % p.d3, r = idx / p.d3;
    uint i2 = r % p.d2;
    r /= p.d2;
    uint i1 = r % p.d1, i0 = r / p.d1;
    dst[idx] = src[p.base + i0 * p.s0 + i1 * p.s1 + i2 * p.s2 + i3 * p.s3];
#endif
}
#endif
